"""About: the seven diagnoses in plain words, how to read Grad-CAM, how to run the app."""

import streamlit as st

import ui
from skin_model import vocab

tr = ui.tr
st.title(tr("about.title"))
st.info(tr("app.disclaimer"), icon=":material/medical_information:")

st.subheader(tr("about.glossary"))
for d in vocab.DIAGNOSES:
    st.markdown(f"**{d.code} — {d.name(ui.lang())}** {ui.badge(d.code)}  \n{tr('about.class.' + d.code)}")

st.subheader(tr("about.gradcam"))
st.markdown(tr("about.gradcam.text"))

st.subheader(tr("about.run"))
st.code("pip install --retries 0 -r requirements.txt\nstreamlit run streamlit_app.py", language="bash")
st.code("docker build -t skin-lesion-app .\ndocker run --rm -p 8501:8501 skin-lesion-app", language="bash")
st.markdown(tr("about.cloud"))

st.subheader(tr("about.api"))
st.markdown(tr("about.api.text"))
st.code("curl -F image=@lesion.jpg -F age=55 -F sex=male http://localhost:8501/api/v1/predict", language="bash")

st.subheader(tr("about.language"))
st.markdown(tr("about.language.text"))

st.subheader(tr("about.data"))
st.markdown(tr("about.data.text"))
