"""Batch: several images and an optional metadata CSV -> a table, a summary chart, a CSV."""

import io

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

import ui
from skin_model import vocab
from skin_model.config import settings
from skin_model.i18n import error_text, unread_field_text
from skin_model.inference.inputs import InvalidInputError
from skin_model.inference.referral import CANNOT_JUDGE, SUSPICIOUS, answer_state
from skin_model.inference.torch_thread import TorchThreadError
from skin_model.serving.batch import (
    BatchItem,
    metadata_for,
    predict_items,
    ranked,
    read_metadata_table,
    upload_ids,
    write_csv,
)

tr = ui.tr
model = ui.model()


THUMB = 56  # px, the table's row picture


def state_words(verdict: str, borderline) -> str:
    """The row's state at a glance, as on the Analyse page (near the line is never a plain verdict)."""
    if not verdict:
        return tr("column.refused")
    return tr("refer.short." + answer_state(verdict, borderline == 1))


def shrunk(image, side: int = 480):
    small = image.copy()
    small.thumbnail((side, side))
    return small


def thumbnail_uri(image) -> str:
    import base64

    small = image.copy()
    small.thumbnail((THUMB * 2, THUMB * 2))  # sharp on a phone's screen
    return "data:image/jpeg;base64," + base64.b64encode(ui.jpeg(small, quality=80)).decode()


@st.cache_data(show_spinner=False, max_entries=2)
def reports_zip(_reports: dict, lang: str, key: tuple = ()) -> bytes:
    """One PDF report per image (``serving.report``), zipped in memory."""
    import zipfile

    from skin_model.serving.report import pdf_report

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for image_id, (image, pred) in _reports.items():
            name = image_id.replace("/", "_").replace("\\", "_")
            archive.writestr(f"{name}.pdf", pdf_report(pred, image, None, lang))
    return buffer.getvalue()


def csv_text(table) -> str:
    buffer = io.StringIO()
    write_csv(table, buffer)
    return buffer.getvalue()


limit = settings().max_batch_files
st.title(tr("batch.title"))
st.info(tr("app.disclaimer"), icon=":material/medical_information:")

# Every file is accepted and read by the model's own decoder, which names what it refuses.
files = st.file_uploader(tr("batch.images"), accept_multiple_files=True, key="batch_images")
csv = st.file_uploader(tr("batch.metadata"), type=["csv", "txt"], key="batch_csv")
inputs = (tuple(f.file_id for f in files or ()), csv.file_id if csv else None)

kept = st.session_state.get("batch")
if kept is not None and files and kept["inputs"] != inputs:
    # New files: the old table described other inputs, so it goes.
    st.session_state.pop("batch")
    kept = None

if not files:
    if kept is None:
        st.caption(tr("batch.empty", limit=limit))
elif len(files) > limit:
    st.error(tr("batch.too_many", limit=limit, n=len(files)))
elif sum(f.size for f in files) > settings().max_batch_bytes:  # checked before any file is read
    st.error(
        tr(
            "batch.too_large",
            total=ui.num(sum(f.size for f in files) / 2**20, 0),
            limit=settings().max_batch_bytes // 2**20,
        )
    )
elif st.button(tr("batch.run", n=len(files)), type="primary", key="batch_run"):
    try:
        table = read_metadata_table(io.BytesIO(csv.getvalue())) if csv else {}
    except InvalidInputError as err:
        st.error(error_text(err, ui.lang()))
        st.stop()
    # Each upload is read when its turn comes (no copy of all of them first); ids as the CLI makes them.
    ids = upload_ids([f.name for f in files])
    items = [BatchItem(i, f, metadata_for(table, i)) for i, f in zip(ids, files)]
    bar = st.progress(0.0)
    lang = ui.lang()
    answers: dict[str, tuple] = {}  # image id -> (thumbnail, image shown small, prediction)
    try:
        result = ranked(  # riskiest first, as the CSV
            predict_items(
                model,
                items,
                prior=st.session_state.get("prior", vocab.DEFAULT_PRIOR),
                error_text=lambda err: error_text(err, lang),
                warning_text=lambda err: unread_field_text(err, lang),
                progress=lambda i, n: bar.progress(i / n, text=tr("batch.progress", i=i, n=n)),
                on_answer=lambda n, image, pred: answers.__setitem__(
                    items[n].image_id, (thumbnail_uri(image), image, pred)
                ),
            )
        )
    except TorchThreadError as err:  # the uploads stay: the button runs them again
        bar.empty()
        st.warning(error_text(err, lang), icon=":material/hourglass_top:")
        st.stop()
    bar.empty()
    # Only small images are kept: the reports are made from them, the uploads are never copied.
    thumbnails = {i: thumb for i, (thumb, _, _) in answers.items()}
    reports = {i: (shrunk(image), pred) for i, (_, image, pred) in answers.items()}
    kept = st.session_state["batch"] = {
        "inputs": inputs,
        "result": result,
        "thumbnails": thumbnails,
        "reports": reports,
    }

if kept is not None:
    result = kept["result"]
    if not files:  # back from another page: the uploaders are empty, the results are kept
        line, clear = st.columns([4, 1], vertical_alignment="center")
        line.caption(tr("batch.kept", n=len(result)))
        if clear.button(tr("batch.clear"), key="batch_clear"):
            st.session_state.pop("batch")
            st.rerun()
    failed = int((result["error"] != "").sum())
    if failed:
        st.warning(tr("batch.failed", n=failed, column=tr("column.error")))
    warned = int((result["warning"] != "").sum())
    if warned:
        st.warning(tr("batch.warned", n=warned, column=tr("column.warning")))
    # "Should be seen": the suspicious rows only; an image that cannot be judged is counted apart.
    referred = int((result["verdict"] == SUSPICIOUS).sum())
    if referred:
        st.info(tr("batch.refer", n=referred, column=tr("column.verdict")), icon=":material/priority_high:")
    flagged = int((result["verdict"] == CANNOT_JUDGE).sum())
    if flagged:
        st.warning(tr("batch.ood", n=flagged, column=tr("column.verdict")))
    # The table is already riskiest first (``batch.ranked``: the CSV's order too). What matters fits
    # at 1280 px: the picture, the state, P(malignant), the answer, then the seven, malignant ones
    # first; numbers in the page's language, one decimal, like everywhere else.
    pct = ui.pct
    classes = ["mel", "bcc", "akiec", "nv", "bkl", "df", "vasc"]
    shown_result = pd.DataFrame(
        {
            "rank": result["rank"],
            "thumbnail": [kept.get("thumbnails", {}).get(i) for i in result["image_id"]],
            "verdict": [state_words(v, b) for v, b in zip(result["verdict"], result["borderline"])],
            "malignant_probability": [pct(p) if pd.notna(p) else "" for p in result["malignant_probability"]],
            "image_id": result["image_id"],
            "prediction": result["prediction"],
            "uncertain_between": result["uncertain_between"],
            **{c: [pct(p) if pd.notna(p) else "" for p in result[c]] for c in classes},
            "warning": result["warning"],
            "error": result["error"],
        }
    )
    labels = {c: tr(f"column.{c}") if c not in vocab.CLASSES else c for c in shown_result.columns}
    config = {c: st.column_config.TextColumn(label) for c, label in labels.items()}
    config["rank"] = st.column_config.NumberColumn("#", width=36)
    config["thumbnail"] = st.column_config.ImageColumn("", width=THUMB)
    config |= {c: st.column_config.TextColumn(c, width=52) for c in classes}
    config["malignant_probability"] = st.column_config.TextColumn(labels["malignant_probability"], width=76)
    config["verdict"] = st.column_config.TextColumn(labels["verdict"], width=110)
    config["image_id"] = st.column_config.TextColumn(labels["image_id"], width=110)
    config["prediction"] = st.column_config.TextColumn(labels["prediction"], width=64)
    config["uncertain_between"] = st.column_config.TextColumn(labels["uncertain_between"], width=90)
    for prior in sorted(set(result["prior"]) - {""}):  # one, unless nothing was read
        st.caption(tr("diag.prior_in_force", prior=tr(f"prior.{prior}")))
    empty = [c for c in ("uncertain_between", "warning", "error") if (shown_result[c] == "").all()]
    shown = [c for c in shown_result.columns if c not in empty]
    st.dataframe(shown_result, hide_index=True, width="stretch", column_config=config, column_order=shown)

    # The chart counts diagnoses of the images the model could judge: an image unlike dermoscopy
    # has no diagnosis to count.
    judged = (result["prediction"] != "") & (result["verdict"] != CANNOT_JUDGE)
    counts = result.loc[judged, "prediction"].value_counts().reindex(vocab.CLASSES, fill_value=0)
    if counts.sum() == 0:
        st.caption(tr("batch.none"))
    else:
        # Horizontal bars with codes: readable on a phone; full names on hover; whole counts only.
        fig = go.Figure(
            go.Bar(
                x=counts.values,
                y=list(counts.index),
                orientation="h",
                customdata=[ui.label(c) for c in counts.index],
                text=counts.values,
                textposition="outside",
                cliponaxis=False,
                hovertemplate="%{customdata}: %{x}<extra></extra>",
                marker_color="#9aa5b1",
            )
        )
        fig.update_layout(
            title=tr("batch.summary"),
            height=300,
            margin=dict(l=10, r=30, t=40, b=40),
            xaxis=dict(
                title=tr("batch.count"), rangemode="tozero", tickformat="d", dtick=max(1, int(counts.max()) // 5)
            ),
            yaxis=dict(autorange="reversed", automargin=True),
        )
        st.plotly_chart(fig, config={"displayModeBar": False})
    if kept.get("reports"):
        lang, reports, inputs = ui.lang(), kept["reports"], kept["inputs"]
        st.download_button(
            tr("batch.reports"),
            lambda: reports_zip(reports, lang, inputs),  # made when asked for, off the page's run
            file_name="skin_model_reports.zip",
            mime="application/zip",
            on_click="ignore",
            icon=":material/picture_as_pdf:",
        )
    st.download_button(
        tr("batch.download"),
        csv_text(result),
        file_name="skin_model_batch.csv",
        mime="text/csv",
        icon=":material/download:",
    )
