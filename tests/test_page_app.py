"""The app as a whole, driven headless by streamlit.testing: a broken artifact at start-up."""

import pytest

from .app_helpers import _app


@pytest.mark.parametrize("damage", ["missing", "corrupted"])
def test_broken_artifact_gives_a_clear_start_up_error(tmp_path, monkeypatch, damage):
    import shutil

    import streamlit as st

    from skin_model.config import PACKAGE_DIR, WEIGHTS_FILE

    model_dir = tmp_path / "model"
    shutil.copytree(PACKAGE_DIR / "model", model_dir)
    weights = model_dir / WEIGHTS_FILE
    if damage == "missing":
        weights.unlink()
    else:
        weights.write_bytes(weights.read_bytes()[:1000])
    monkeypatch.setenv("SKIN_MODEL_DIR", str(model_dir))
    st.cache_resource.clear()
    try:
        at = _app()
        assert len(at.error) == 1 and str(weights) in at.error[0].value
        assert "diagnosis" not in at.session_state
    finally:
        st.cache_resource.clear()  # the next test loads the real model again


def test_no_message_goes_by_reference_to_the_browser_s_copy(monkeypatch):
    """Under the app's own config (``.streamlit/config.toml``), Streamlit sends even a large
    element whole: a reference to the browser's cached copy raced fast reruns and put "Connection
    error ... Cached ForwardMsg MISS" over the answer (streamlit/streamlit#11357)."""
    from streamlit import config
    from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
    from streamlit.runtime.forward_msg_cache import populate_hash_if_needed

    from .conftest import REPO

    monkeypatch.chdir(REPO)
    config.get_config_options(force_reparse=True)
    msg = ForwardMsg()
    msg.delta.new_element.markdown.body = "x" * 200_000  # a verdict's picture or a batch's thumbnails weigh less
    populate_hash_if_needed(msg)
    assert msg.hash and not msg.metadata.cacheable
