"""Analyse: one image plus what is known of the patient -> answer, probabilities, Grad-CAM."""

import base64
import hashlib
import json
import logging
import time

import numpy as np
import streamlit as st

import ui
from skin_model import vocab
from skin_model.i18n import error_text, per_hundred
from skin_model.inference.gradcam import blend, jet
from skin_model.inference.inputs import InvalidInputError, load_image
from skin_model.inference.referral import (
    BORDERLINE,
    CAM_TARGETS,
    CANNOT_JUDGE,
    MALIGNANT,
    NOT_SUSPICIOUS,
    SUSPICIOUS,
    answer_state,
    rule_evidence,
)
from skin_model.inference.torch_thread import TorchThreadError

UNLIKELY = 0.05  # a Grad-CAM of a class below this probability says so
DISPLAY_SIDE = 640  # images and overlays are shown at most this large: no work for pixels nobody sees

log = logging.getLogger(__name__)
tr = ui.tr

model = ui.model()
st.title(tr("diag.title"))
# A line, not a box: on a phone the verdict and its image must still fit the first screen.
st.caption(f":material/medical_information: {tr('app.disclaimer')}")


def thumbnail_of(image):
    small = image.copy()
    small.thumbnail((192, 192))  # shown at 96 px: sharp on a phone's screen
    return small


def read_image(name: str, data: bytes, source_id: str) -> dict:
    """A given image, decoded once: its name, where it came from, digest, the bounded image or
    the refusal."""
    given = {"name": name, "source_id": source_id, "sha256": hashlib.sha256(data).hexdigest()}
    try:
        given["image"] = load_image(data)
    except InvalidInputError as err:
        given["error"] = err
    return given


# Seconds an emptied widget's answer stays on the screen: replacing a file runs the page twice, with
# the old file gone and 0.02-0.06 s later with the new one (measured in Chromium). The camera's
# "clear photo" waits too (one rule for both widgets), though a new photo is a click of its own.
REPLACEMENT_WAIT = 0.3


def given_file(widget, name: str, **kwargs) -> dict | None:
    """The image of an uploader or camera, kept in the session (decoded, as ``read_image``) so that
    it outlives a visit to another page; removing it in the widget forgets it, and the page says so
    after ``REPLACEMENT_WAIT`` (``{"emptied": name}``, below)."""
    returning = f"{name}.widget" not in st.session_state  # first visit, or back from another page
    file = widget(key=f"{name}.widget", **kwargs)
    shown = st.session_state.pop(f"{name}.shown", None)  # the file the widget held in the last run
    if file is not None:
        st.session_state[f"{name}.shown"] = file.file_id
        kept = st.session_state.get(name)
        if kept is None or kept["source_id"] != file.file_id:  # a new file: read (and hash) it once
            st.session_state[name] = read_image(file.name, file.getvalue(), file.file_id)
    elif shown is not None and not returning:
        # Removed, or the first of a replacement's two runs: forgotten either way (a replacement's
        # next run reads its new file). An empty widget that held nothing in the last run (back
        # from another page, then any change) keeps the image.
        st.session_state.pop(name, None)
        st.session_state.pop("diagnosis", None)
        return {"emptied": name}
    kept = st.session_state.get(name)
    if kept is not None and file is None:
        # Back from another page: the widget is empty, but the image and its answer are kept.
        line, remove = st.columns([4, 1], vertical_alignment="center")
        line.caption(tr("diag.kept", name=kept["name"]))
        if remove.button(tr("diag.remove"), key=f"{name}.remove"):
            st.session_state.pop(name, None)
            st.rerun()
    return kept


inputs_col, result_col = st.columns([2, 3], gap="large")

# -- inputs ---------------------------------------------------------------------------------------
with inputs_col:
    source = ui.choice(
        st.radio,
        tr("diag.source"),
        ["upload", "camera", "sample"],
        "source",
        "upload",
        lambda s: tr(f"diag.source.{s}"),
        horizontal=True,
    )
    sample = None
    if source == "upload":
        # Every file is accepted here and read by the model's own decoder, which refuses what
        # it cannot read in words (the browser's type filter would leave red rows behind).
        given = given_file(st.file_uploader, "upload", label=tr("diag.upload"))
    elif source == "camera":
        given = given_file(st.camera_input, "camera", label=tr("diag.camera"))
    else:
        table = ui.samples()
        index = ui.choice(
            st.selectbox,
            tr("diag.sample"),
            range(len(table)),
            "sample",
            0,
            lambda i: f"{table[i]['image_id']} · {tr('diag.confirmed_short', code=table[i]['dx'])}",
        )
        sample = table[index]
        given = st.session_state.get("sample_image")
        if given is None or given["source_id"] != sample["path"]:  # decoded once per sample chosen
            with open(sample["path"], "rb") as f:
                given = st.session_state["sample_image"] = read_image(sample["image_id"], f.read(), sample["path"])
        use_recorded = ui.kept(st.checkbox, "sample_meta", True, label=tr("diag.sample_meta"))

    # Folded once there is an image, so that on a phone the answer follows the image at once.
    with st.expander(tr("diag.patient"), expanded=given is None):
        if sample is not None and use_recorded:
            age, sex, site = sample["age"], sample["sex"], sample["localization"]
            st.caption(
                f"{tr('field.age').capitalize()}: {age} · {tr('field.sex').capitalize()}: {tr('sex.' + sex)}"
                f" · {tr('field.site').capitalize()}: {tr('site.' + site)}"
            )
        else:
            age = ui.kept(
                st.number_input,
                "age",
                None,
                label=tr("meta.age"),
                min_value=vocab.AGE_MIN,
                max_value=vocab.AGE_MAX,
                step=1,
            )
            sex = ui.choice(st.selectbox, tr("meta.sex"), vocab.SEXES, "sex", vocab.UNKNOWN, lambda s: tr(f"sex.{s}"))
            site = ui.choice(
                st.selectbox, tr("meta.site"), vocab.SITES, "site", vocab.UNKNOWN, lambda s: tr(f"site.{s}")
            )


prior = vocab.DEFAULT_PRIOR  # the probabilities shown are the calibrated ones: one malignancy number


def answer(image):
    """The model's answer for this page's image and patient information, from one forward pass that
    also records what the heatmaps need (``attention``): the verdict is on the page before any
    heatmap or quality check is made, and a heatmap is then one backward pass (the image is decoded
    and brought to size once). Returns the prepared inputs too, for the quality check."""
    with st.spinner(tr("diag.running")):
        prepared = model.prepare(image, age=age, sex=sex, site=site)
        return (prepared, *model.answer_prepared(prepared, prior))


def quality_checked(result: dict):
    """The answer with its photo's quality check, made once, after the verdict is on the screen;
    the answer as it was if the model is busy (the next run tries again)."""
    try:
        checked = result["prediction"].with_quality(model.check_quality(result["prepared"]))
    except TorchThreadError:
        return result["prediction"]
    except Exception:  # the check is advice: never a traceback, never the answer lost
        log.exception("quality check failed")
        checked = result["prediction"]
    result.pop("prepared")
    result["prediction"] = checked
    return checked


def heatmap(result: dict, target: str):
    """The Grad-CAM of ``target`` at the display's size (a backward pass of the answer's forward pass)."""
    with st.spinner(tr("diag.running")):
        return result["attention"].heatmap(target, result["display"].size).heatmap


# -- the model runs only when the image, the metadata or the prior change -------------------------------------
with result_col:
    if given is not None and "emptied" in given:
        # Nothing is drawn for a moment, so the old answer stays on the screen and a replacement's
        # verdict takes its place: clearing it first made the browser tear the page down and build
        # it again while the model ran on the same cores. The new file's run stops this one (fast
        # reruns, .streamlit/config.toml); after a removal, the page is drawn without the image.
        time.sleep(REPLACEMENT_WAIT)
        st.caption(tr("diag.waiting"))
        st.rerun()
    if given is None or "error" in given:
        st.session_state.pop("diagnosis", None)  # an answer lives only as long as its image
    if given is None:
        st.caption(tr("diag.waiting"))
        st.stop()
    if "error" in given:
        st.error(error_text(given["error"], ui.lang()), icon=":material/error:")
        st.stop()
    key = (given["sha256"], age, sex, site, prior)
    result = st.session_state.get("diagnosis")
    if result is None or result["key"] != key:
        previous = st.session_state.pop("diagnosis", None)
        display = given["image"].copy()
        display.thumbnail((DISPLAY_SIDE, DISPLAY_SIDE))
        try:
            prepared, prediction, attention = answer(given["image"])
        except TorchThreadError as err:  # busy or timed out: the inputs stay, a rerun tries again
            st.warning(error_text(err, ui.lang()), icon=":material/hourglass_top:")
            st.stop()
        except InvalidInputError as err:
            st.error(error_text(err, ui.lang()), icon=":material/error:")
            st.stop()
        except Exception:  # never a traceback on the page; the log has no image content
            log.exception("analysis failed")
            st.error(tr("error.unexpected"), icon=":material/error:")
            st.stop()
        result = {
            "key": key,
            "display": display,  # encoded (and read as pixels) once, by the first heatmap, after the verdict
            "thumbnail": ui.jpeg(thumbnail_of(display)),  # beside the verdict
            "prediction": prediction,
            "prepared": prepared,  # until the photo's quality is checked, after the verdict
            "attention": attention,
            "heatmaps": {},  # each class asked for, made after the verdict is shown
            # Same image, other patient information: say what moved.
            "before": previous["prediction"] if previous and previous["key"][0] == key[0] else None,
        }
        st.session_state["diagnosis"] = result
        ui.forget("cam_class")  # a new answer explains its own class first


def cam_label(target: str) -> str:
    return tr("diag.cam_malignant") if target == MALIGNANT else ui.label(target)


@st.fragment
def explain(result: dict) -> None:
    """The Grad-CAM of a chosen class over the image; its controls rerun only this part."""
    pred = result["prediction"]
    if "pixels" not in result:  # once per answer, not on each slider step
        result["display_jpeg"], result["pixels"] = ui.jpeg(result["display"]), np.asarray(result["display"])
    original, explained = st.columns(2)
    with explained:
        # The first heatmap explains the most probable diagnosis: its maps lie on the lesion far more
        # often than the referral score's (docs/model.md); that one is the selector's first choice.
        target = ui.choice(st.selectbox, tr("diag.cam_class"), CAM_TARGETS, "cam_class", pred.label, cam_label)
        if target not in result["heatmaps"]:
            try:
                result["heatmaps"][target] = heatmap(result, target)
            except TorchThreadError as err:  # the answer above stays; choosing the class again retries
                st.warning(error_text(err, ui.lang()), icon=":material/hourglass_top:")
                return
        if result.get("coloured") != target:  # the shown class in jet colours, so that a slider step only blends
            result["coloured"], result["colours"] = target, jet(result["heatmaps"][target]).astype(np.float32)
    original.image(result["display_jpeg"], caption=tr("diag.original"), width="stretch")
    with explained:
        # Low by default: the lesion stays visible under the colours.
        # In percent: the slider shows its value as written here, with no decimal point to translate.
        opacity = ui.kept(
            st.slider, "opacity", 30, label=tr("diag.opacity"), min_value=0, max_value=100, step=5, format="%d%%"
        )
        st.image(
            blend(result["pixels"], result["colours"], opacity / 100),
            caption=tr("diag.overlay", code=cam_label(target)),
            width="stretch",
            output_format="JPEG",
        )
        st.image(ui.colour_legend(), width="stretch")
        st.caption(tr("diag.legend", code=cam_label(target)))
    if target != MALIGNANT and pred.probabilities[target] < UNLIKELY:
        st.warning(tr("diag.cam_unlikely", code=target, p=ui.pct(pred.probabilities[target])))


STATE_STYLE = {  # colour and icon of each state's heading: a borderline answer never gets a green tick
    SUSPICIOUS: ("red", ":material/priority_high:"),
    BORDERLINE: ("orange", ":material/warning:"),
    NOT_SUSPICIOUS: ("green", ":material/check_circle:"),
    CANNOT_JUDGE: ("gray", ":material/help:"),
}


def state_heading(state: str, picture: str = "") -> str:
    colour, icon = STATE_STYLE[state]
    return f"#### {picture}:{colour}[{icon} {tr('refer.' + state)}]"


def evidence_line() -> str:
    """What is known of the rule at home and on a clinic it never saw, in one sentence."""
    known = rule_evidence(model.card)
    home = {"sens": per_hundred(known["sensitivity"]), "fp": per_hundred(known["false_alarms"])}
    unseen = known["unseen"]
    if unseen is None:
        return tr("refer.evidence_home", **home)
    return tr(
        "refer.evidence",
        **home,
        clinic=ui.clinics([unseen["source"]])[0],
        sens_u=per_hundred(unseen["sensitivity"]),
        fp_u=per_hundred(unseen["false_alarms"]),
        cj_u=per_hundred(unseen["cannot_judge"]),
    )


def referral(pred, thumbnail: bytes) -> None:
    """The answer a clinician needs first, beside the image it is about (both on a phone's first
    screen): the state at a glance, one plain sentence, the number (none when the image cannot be
    judged), what is known of the rule; the technical detail one click away."""
    state = answer_state(pred.verdict, pred.borderline)
    with st.container(border=True):
        # The image floats at the heading's left: beside it on any screen, and on a phone's first one.
        picture = (
            f'<img src="data:image/jpeg;base64,{base64.b64encode(thumbnail).decode()}" alt="" '
            'style="float:left;width:96px;margin:0 12px 6px 0;border-radius:4px">'
        )
        st.markdown(state_heading(state, picture), unsafe_allow_html=True)
        if state != CANNOT_JUDGE:
            st.markdown(
                f"{tr('refer.number')}{tr('punct.colon')}**{ui.pct(pred.referral_probability)}** "
                f"({tr('refer.line', threshold=ui.pct(pred.refer_threshold))})"
            )
        st.markdown(tr(f"refer.plain.{state}"))
        if state == SUSPICIOUS and vocab.BY_CODE[pred.label].group == "benign":
            st.markdown(
                tr(
                    "refer.conflict",
                    code=ui.label(pred.label),
                    top=ui.pct(pred.confidence),
                    p=ui.pct(pred.referral_probability),
                    threshold=ui.pct(pred.refer_threshold),
                )
            )
        st.caption(evidence_line())
        with st.expander(tr("refer.details")):
            if state == CANNOT_JUDGE:  # why, and no threshold of a rule that does not apply
                st.markdown(
                    tr(
                        "refer.cannot_judge_details",
                        score=ui.num(pred.ood_score),
                        threshold=ui.num(model.ood.threshold),
                    )
                )
                return
            band = model.borderline_band
            st.markdown(
                tr(
                    "refer.details_text",
                    threshold=ui.pct(model.refer_threshold),
                    n=ui.num(model.card["referral"]["validation"]["n"], 0),
                    low=ui.pct(band["low"]),
                    high=ui.pct(band["high"]),
                    share=ui.pct(band["malignant_share"]),
                )
            )


def pdf_of(result: dict, pred, lang: str) -> bytes:
    """The answer's one-page report (``serving.report``), made once per answer and language."""

    from skin_model.serving.report import pdf_report

    made = result.setdefault("reports", {})
    key = (lang, pred.answered_anyway)
    if key not in made:
        first = next(iter(result["heatmaps"]), None)  # the heatmap the page showed first
        overlay = blend(result["pixels"], jet(result["heatmaps"][first]).astype(np.float32), 0.3) if first else None
        made[key] = pdf_report(pred, result["display"], overlay, lang)
    return made[key]


def differential(pred) -> None:
    """The diagnoses in the order of the probabilities shown, named, down to those that matter;
    "uncertain between" is only ever the first two of them."""
    ranked = sorted(pred.probabilities, key=pred.probabilities.get, reverse=True)
    st.markdown(f"**{tr('diag.differential')}**")
    if pred.uncertain_between:
        a, b = pred.uncertain_between
        st.markdown(
            tr(
                "diag.uncertain",
                a=ui.label(a),
                p_a=ui.pct(pred.probabilities[a]),
                b=ui.label(b),
                p_b=ui.pct(pred.probabilities[b]),
            )
        )
        rest = ranked[2:]
    else:
        st.markdown(tr("diag.most_probable", label=ui.label(pred.label), p=ui.pct(pred.confidence)))
        st.markdown(ui.badge(pred.label))
        rest = ranked[1:]
    worth = [c for c in rest if pred.probabilities[c] >= UNLIKELY]
    if worth:
        st.markdown(tr("diag.then", items="; ".join(f"{ui.label(c)}, {ui.pct(pred.probabilities[c])}" for c in worth)))


def what_changed(before, after) -> None:
    """One line after the patient information changed: what moved, and whether the verdict did."""
    if before is None:
        return
    verdict = (
        tr("diag.verdict_same")
        if before.verdict == after.verdict
        else f"{tr('refer.short.' + before.verdict)} → {tr('refer.short.' + after.verdict)}"
    )
    st.info(
        tr(
            "diag.changed",
            before=ui.pct(before.referral_probability),
            after=ui.pct(after.referral_probability),
            top_before=before.label,
            top_after=after.label,
            verdict=verdict,
        ),
        icon=":material/compare_arrows:",
    )


# -- the answer ----------------------------------------------------------------------------------------------
with result_col:
    pred = result["prediction"]
    referral(pred, result["thumbnail"])
    if "prepared" in result:
        pred = quality_checked(result)
    if pred.quality and pred.quality.problems:  # advice to retake the photo; the answer stands
        st.warning(
            tr("quality.intro") + " " + " ".join(tr(f"quality.{p}") for p in pred.quality.problems),
            icon=":material/photo_camera:",
        )
    st.caption(f":material/block: {tr('diag.coverage')}")
    what_changed(result.get("before"), pred)
    if not pred.judged:
        # Unlike the dermoscopy it learnt from: no number, diagnosis or heatmap unless asked for.
        if not st.checkbox(tr("diag.show_anyway"), key=f"show_anyway_{result['key'][0][:16]}"):
            st.stop()
        pred = pred.anyway()
        st.warning(tr("diag.anyway"), icon=":material/warning:")
    # The image and what the network looked at, right under the verdict (the first screen of a phone).
    st.markdown(f"**{tr('diag.cam')}**")
    explain(result)
    differential(pred)
    if sample is not None:
        # A teaching moment: the recorded diagnosis beside the model's answer.
        st.markdown(
            tr(
                "diag.confirmed",
                code=sample["dx"],
                name=vocab.BY_CODE[sample["dx"]].name(ui.lang()),
                how=tr(f"dx_type.{sample['dx_type']}"),
            )
        )

    st.markdown(f"**{tr('diag.chart')}**")
    # Right above what it changes: an extra column of the table. The verdict and the
    # probabilities never depend on it.
    balanced = ui.kept(st.toggle, "balanced", False, label=tr("diag.balanced_toggle"), help=tr("diag.balanced_help"))
    st.markdown(
        ui.probability_table(
            pred.probabilities, pred.image_only, pred.label, pred.before_base_rates if balanced else None
        ),
        unsafe_allow_html=True,
    )
    if pred.metadata == type(pred.metadata).unknown():
        st.caption(tr("diag.no_metadata"))

    st.markdown(f"**{tr('diag.similar')}**")
    st.caption(tr("diag.similar_tap"))
    st.markdown(ui.similar_cases(pred.neighbours), unsafe_allow_html=True)

    lang = ui.lang()
    st.download_button(
        tr("report.download"),
        lambda: pdf_of(result, pred, lang),  # made when asked for, off the answer's path
        file_name="skin_model_report.pdf",
        mime="application/pdf",
        icon=":material/picture_as_pdf:",
        on_click="ignore",
        type="primary",
    )
    report = {
        "disclaimer": "Research and teaching demonstrator; not a medical device.",
        **pred.as_dict(),
        "image_sha256": result["key"][0],
    }
    st.download_button(
        tr("diag.download"),
        json.dumps(report, indent=2),
        file_name="skin_model_result.json",
        mime="application/json",
        icon=":material/download:",
    )
