"""The pages' entry script: page config, shared sidebar, and the page list (nothing else).

Served by ``streamlit_app.py``, which adds the prediction API beside it."""

import streamlit as st

from skin_model import __version__
from skin_model.i18n import LANGUAGES
from ui import ASSETS, lang, model_version, tr

st.set_page_config(page_title=tr("app.title"), page_icon=str(ASSETS / "logo.png"), layout="wide")

with st.sidebar:
    st.selectbox(
        tr("app.language"), list(LANGUAGES), index=list(LANGUAGES).index(lang()), format_func=LANGUAGES.get, key="lang"
    )
    st.query_params["lang"] = lang()  # in the URL, so that a reload or a shared link keeps it
    st.caption(tr("app.versions", app=__version__, model=model_version()))

st.logo(str(ASSETS / "logo.png"))
pages = [
    st.Page("app_pages/analyse.py", title=tr("page.analyse"), icon=":material/biotech:", default=True),
    st.Page("app_pages/batch.py", title=tr("page.batch"), icon=":material/photo_library:"),
    st.Page("app_pages/model_card.py", title=tr("page.card"), icon=":material/analytics:"),
    st.Page("app_pages/about.py", title=tr("page.about"), icon=":material/info:"),
]
st.navigation(pages).run()
