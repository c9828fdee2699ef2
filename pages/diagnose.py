"""Diagnose: one image plus what is known of the patient -> answer, probabilities, Grad-CAM."""
import hashlib
import json
import logging

import streamlit as st

import ui
from skin_model import vocab
from skin_model.i18n import error_text
from skin_model.inputs import InvalidInputError, load_image
from skin_model.gradcam import overlay

UNLIKELY = 0.05   # a Grad-CAM of a class below this probability says so

log = logging.getLogger(__name__)
tr = ui.tr

model = ui.model()
st.title(tr("diag.title"))
st.info(tr("app.disclaimer"), icon=":material/medical_information:")

inputs_col, result_col = st.columns([2, 3], gap="large")

# -- inputs ---------------------------------------------------------------------------------------
with inputs_col:
    sources = ["upload", "camera", "sample"]
    source = st.radio(tr("diag.source"), sources, format_func=lambda s: tr(f"diag.source.{s}"),
                      horizontal=True, key="source")
    data, sample_meta = None, None
    if source == "upload":
        upload = st.file_uploader(tr("diag.upload"), type=ui.UPLOAD_TYPES, key="upload")
        data = upload.getvalue() if upload else None
    elif source == "camera":
        shot = st.camera_input(tr("diag.camera"), key="camera")
        data = shot.getvalue() if shot else None
    else:
        table = ui.samples()
        row = table[st.selectbox(tr("diag.sample"), range(len(table)), key="sample",
                                 format_func=lambda i: f"{table[i]['image_id']} · {ui.label(table[i]['dx'])}")]
        data = open(row["path"], "rb").read()
        if st.checkbox(tr("diag.sample_meta"), value=True, key="sample_meta"):
            sample_meta = row

    with st.expander(tr("diag.patient"), expanded=True):
        if sample_meta is not None:
            age, sex, site = sample_meta["age"], sample_meta["sex"], sample_meta["localization"]
            st.caption(f"{tr('meta.age')}: {age} · {tr('meta.sex')}: {tr('sex.' + sex)} · "
                       f"{tr('meta.site')}: {tr('site.' + site)}")
        else:
            age = st.number_input(tr("meta.age"), min_value=vocab.AGE_MIN, max_value=vocab.AGE_MAX, value=None, step=1,
                                  key="age")
            sex = st.selectbox(tr("meta.sex"), vocab.SEXES, index=vocab.SEXES.index(vocab.UNKNOWN),
                               format_func=lambda s: tr(f"sex.{s}"), key="sex")
            site = st.selectbox(tr("meta.site"), vocab.SITES, index=vocab.SITES.index(vocab.UNKNOWN),
                                format_func=lambda s: tr(f"site.{s}"), key="site")

    prior = st.radio(tr("diag.prior"), vocab.PRIOR_NAMES, format_func=lambda p: tr(f"prior.{p}"),
                     key="prior", help=tr("diag.prior_help"))

# -- the model runs only when the image, the metadata or the prior change -------------------------------------
result = None
if data is not None:
    key = (hashlib.sha256(data).hexdigest(), age, sex, site, prior)
    result = st.session_state.get("diagnosis")
    if result is None or result["key"] != key:
        st.session_state.pop("diagnosis", None)
        try:
            with result_col, st.spinner(tr("diag.running")):
                image = load_image(data)
                prediction, explanation = model.diagnose(image, age=age, sex=sex, site=site, prior=prior)
            st.session_state["model_calls"] = st.session_state.get("model_calls", 0) + 1
            result = {"key": key, "image": image, "prediction": prediction,
                      "heatmaps": {explanation.target: explanation.heatmap}}
            st.session_state["diagnosis"] = result
        except InvalidInputError as err:
            result = None
            with result_col:
                st.error(error_text(err, ui.lang()), icon=":material/error:")
        except Exception:  # never a traceback on the page; the log has no image content
            result = None
            log.exception("diagnosis failed")
            with result_col:
                st.error(tr("error.InvalidInputError"), icon=":material/error:")

# -- the answer ----------------------------------------------------------------------------------------------
with result_col:
    if result is None:
        if data is None:
            st.caption(tr("diag.waiting"))
        st.stop()
    pred = result["prediction"]
    diagnosis = vocab.BY_CODE[pred.label]
    if pred.ood:
        # Not dermoscopy of a lesion: the warning comes first and the answer only on request.
        st.warning(tr("diag.ood"), icon=":material/warning:")
        if not st.checkbox(tr("diag.show_anyway"), key=f"show_anyway_{result['key'][0][:16]}"):
            st.stop()
        st.subheader(tr("diag.ood_answer", code=pred.label))
    elif pred.uncertain_between:
        # A near tie is said in words, without a coloured verdict.
        st.subheader(tr("diag.uncertain", a=pred.uncertain_between[0], b=pred.uncertain_between[1]))
    else:
        st.subheader(tr("diag.result", code=pred.label, name=diagnosis.name(ui.lang())))
        st.markdown(ui.badge(pred.label))
    st.markdown(tr("diag.malignant", p=ui.pct(pred.malignant_probability)))
    st.metric(tr("diag.confidence"), ui.pct(pred.confidence))
    st.markdown(f"**{tr('diag.chart')}**")
    st.caption(tr("diag.prior_in_force", prior=tr(f"prior.{pred.prior}")))
    st.plotly_chart(ui.probability_chart(pred.probabilities, pred.label), config={"displayModeBar": False})

    st.markdown(f"**{tr('diag.cam')}**")
    target = st.selectbox(tr("diag.cam_class"), vocab.CLASSES, index=vocab.CLASSES.index(pred.label),
                          format_func=ui.label, key="cam_class")
    opacity = st.slider(tr("diag.opacity"), 0.0, 1.0, 0.45, 0.05, key="opacity")
    if target not in result["heatmaps"]:
        with st.spinner(tr("diag.running")):
            result["heatmaps"][target] = model.diagnose(result["image"], age=age, sex=sex, site=site, target=target,
                                                        prior=prior)[1].heatmap
        st.session_state["model_calls"] += 1
    original, explained = st.columns(2)
    original.image(result["image"], caption=tr("diag.original"), width="stretch")
    explained.image(overlay(result["image"], result["heatmaps"][target], opacity),
                    caption=tr("diag.overlay", code=target), width="stretch")
    explained.image(ui.colour_legend(), width="stretch")
    explained.caption(tr("diag.legend", code=target))
    if pred.probabilities[target] < UNLIKELY:
        st.warning(tr("diag.cam_unlikely", code=target, p=ui.pct(pred.probabilities[target])))

    st.markdown(f"**{tr('diag.metadata_effect')}**")
    if pred.metadata == type(pred.metadata).unknown():
        st.caption(tr("diag.no_metadata"))
    # A markdown table (codes and percentages) stays narrow on a phone and needs no pandas.
    rows = [f"| {c} | {ui.pct(pred.probabilities[c])} | {ui.pct(pred.image_only[c])} |"
            for c in sorted(vocab.CLASSES, key=pred.probabilities.get, reverse=True)]
    st.markdown("\n".join([f"| {tr('chart.class')} | {tr('diag.fused')} | {tr('diag.image_only')} |",
                           "|:--|--:|--:|", *rows]))

    st.markdown(f"**{tr('diag.similar')}**")
    cases = pred.neighbours
    st.image([n.thumbnail for n in cases], width=96,
             caption=[tr("diag.similar_caption", code=n.dx, how=tr(f"dx_type.{n.dx_type}")) for n in cases])

    report = {"disclaimer": "Research and teaching demonstrator; not a medical device.",
              **pred.as_dict(), "image_sha256": result["key"][0]}
    st.download_button(tr("diag.download"), json.dumps(report, indent=2), file_name="skin_model_result.json",
                       mime="application/json", icon=":material/download:")
