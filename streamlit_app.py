"""The server: the Streamlit pages (``navigation.py``) and, beside them, the prediction API
(``skin_model.serving.api``) at /api/v1, in one process with one model, loaded once at start-up.
Run: ``streamlit run streamlit_app.py``."""

import functools
import logging
import threading
from contextlib import asynccontextmanager

from skin_model.serving.memory import keep_memory_down

keep_memory_down()  # first: before the server's threads allocate (pages and API alike)

import streamlit as st  # noqa: E402
from streamlit import config  # noqa: E402

from skin_model import loaded_shared_model, shared_model  # noqa: E402
from skin_model.inference.card import read_card_of_shipped  # noqa: E402
from skin_model.serving.api import api_routes  # noqa: E402


def _load_model() -> None:
    try:
        shared_model()
    except Exception:  # the pages say why on their first use, and try again
        logging.getLogger(__name__).exception("the model could not be loaded at start-up")


@asynccontextmanager
async def lifespan(app):
    # Off the event loop: the server answers health checks, pages and /api/v1/version (from the
    # card) while the model loads; /api/v1/ready says when it has.
    threading.Thread(target=_load_model, name="skin-model-load", daemon=True).start()
    yield


# The API refuses bodies over the pages' own upload limit (.streamlit/config.toml).
app = st.App(
    "navigation.py",
    routes=api_routes(
        loaded_shared_model,
        config.get_option("server.maxUploadSize") * 2**20,
        card=functools.cache(read_card_of_shipped),
    ),
    lifespan=lifespan,
)
