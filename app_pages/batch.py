"""Batch: several images and an optional metadata CSV -> a table, a summary chart, a CSV."""

import io

import plotly.graph_objects as go
import streamlit as st

import ui
from skin_model import vocab
from skin_model.config import settings
from skin_model.i18n import error_text, unread_field_text
from skin_model.inference.inputs import InvalidInputError
from skin_model.inference.referral import CANNOT_JUDGE, NOT_SUSPICIOUS, SUSPICIOUS
from skin_model.inference.torch_thread import TorchThreadError
from skin_model.serving.batch import (
    BatchItem,
    metadata_for,
    predict_items,
    read_metadata_table,
    upload_ids,
    write_csv,
)

tr = ui.tr
model = ui.model()


def verdict_words(verdict: str, borderline) -> str:
    words = tr(f"refer.short.{verdict}")
    return f"{words} · {tr('refer.borderline_short')}" if borderline == 1 and verdict != CANNOT_JUDGE else words


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
    try:
        result = predict_items(
            model,
            items,
            prior=st.session_state.get("prior", vocab.DEFAULT_PRIOR),
            error_text=lambda err: error_text(err, lang),
            warning_text=lambda err: unread_field_text(err, lang),
            progress=lambda i, n: bar.progress(i / n, text=tr("batch.progress", i=i, n=n)),
        )
    except TorchThreadError as err:  # the uploads stay: the button runs them again
        bar.empty()
        st.warning(error_text(err, lang), icon=":material/hourglass_top:")
        st.stop()
    bar.empty()
    kept = st.session_state["batch"] = {"inputs": inputs, "result": result}

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
    referred = int((result["refer"] == 1).sum())
    if referred:
        st.info(tr("batch.refer", n=referred, column=tr("column.verdict")), icon=":material/priority_high:")
    flagged = int((result["ood"] == 1).sum())
    if flagged:
        st.warning(tr("batch.ood", n=flagged, column=tr("column.verdict")))
    # Riskiest first: suspicious, then cannot judge, then not suspicious, each by P(malignant);
    # refused files last. The verdict leads each row, in words, so that a phone shows it first.
    order = {SUSPICIOUS: 0, CANNOT_JUDGE: 1, NOT_SUSPICIOUS: 2, "": 3}
    shown_result = (
        result.assign(
            _rank=result["verdict"].map(order),
            _p=-result["malignant_probability"].fillna(-1.0),
            verdict=[
                verdict_words(v, b) if v else tr("column.refused")
                for v, b in zip(result["verdict"], result["borderline"])
            ],
        )
        .sort_values(["_rank", "_p"], kind="stable")
        .drop(columns=["_rank", "_p"])
    )
    labels = {c: tr(f"column.{c}") if c not in vocab.CLASSES else c for c in result.columns}
    config = {c: st.column_config.Column(label) for c, label in labels.items()}
    config |= {c: st.column_config.NumberColumn(c, format="percent", width=64) for c in vocab.CLASSES}
    config["malignant_probability"] = st.column_config.NumberColumn(
        labels["malignant_probability"], format="percent", width=90
    )
    config["verdict"] = st.column_config.TextColumn(labels["verdict"], width="medium")
    # The prior (one value for the whole batch), the referral's tick, threshold and band, the
    # out-of-domain flag and score are in the verdict's words or the CSV, not on the screen; nor
    # are text columns empty for every row (the warnings above count the others).
    for prior in sorted(set(result["prior"]) - {""}):  # one, unless nothing was read
        st.caption(tr("diag.prior_in_force", prior=tr(f"prior.{prior}")))
    empty = [c for c in ("uncertain_between", "warning", "error") if (result[c] == "").all()]
    hidden = {"prior", "ood_score", "refer", "refer_threshold", "borderline", "ood", *empty}
    first = ["verdict", "malignant_probability", "image_id", "prediction"]
    shown = first + [c for c in result.columns if c not in hidden and c not in first]
    st.dataframe(shown_result, hide_index=True, width="stretch", column_config=config, column_order=shown)

    # The chart counts diagnoses of the images the model could judge: an image unlike dermoscopy
    # has no diagnosis to count.
    judged = (result["prediction"] != "") & (result["ood"] == 0)
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
    st.download_button(
        tr("batch.download"),
        csv_text(result),
        file_name="skin_model_batch.csv",
        mime="text/csv",
        icon=":material/download:",
    )
