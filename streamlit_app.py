"""The server: the Streamlit pages (``navigation.py``) and, beside them, the prediction API
(``skin_model.serving.api``) at /api/v1, in one process with one model. Run: ``streamlit run streamlit_app.py``."""

import streamlit as st
from streamlit import config

from skin_model import shared_model
from skin_model.serving.api import api_routes

# The API refuses bodies over the pages' own upload limit (.streamlit/config.toml).
app = st.App("navigation.py", routes=api_routes(shared_model, config.get_option("server.maxUploadSize") * 2**20))
