"""About: reading the answer (verdict, threshold, borderline, calibrated, base rates), the seven
diagnoses in plain words, how to read Grad-CAM, the data. Installing is the README's job."""

import streamlit as st

import ui
from skin_model import vocab

tr = ui.tr
st.title(tr("about.title"))
st.info(tr("app.disclaimer"), icon=":material/medical_information:")

st.subheader(tr("about.answer"))
st.markdown(tr("about.answer.text"))

st.subheader(tr("about.glossary"))
for d in vocab.DIAGNOSES:
    st.markdown(f"**{ui.label(d.code)}** {ui.badge(d.code)}  \n{tr('about.class.' + d.code)}")

st.subheader(tr("about.gradcam"))
st.markdown(tr("about.gradcam.text"))

st.subheader(tr("about.api"))
st.markdown(tr("about.api.text"))

st.subheader(tr("about.language"))
st.markdown(tr("about.language.text"))

st.subheader(tr("about.data"))
st.markdown(tr("about.data.text", datasets=ui.joined([tr(f"cite.{name}") for name in ui.shipped_datasets()])))
