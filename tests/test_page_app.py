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
