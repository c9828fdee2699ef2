"""Multimodal skin-lesion classification on HAM10000 (research and teaching only)."""

import threading

__version__ = "3.0.0"
_shared: dict = {}  # model folder (None: the shipped one) -> its loaded model
_shared_lock = threading.Lock()


def load_model(model_dir=None):
    """The shipped model (or the artifact in ``model_dir``), ready to predict and explain.

    Imported lazily, so that ``import skin_model`` stays light.
    """
    from skin_model.inference.predictor import SkinClassifier

    return SkinClassifier.load(model_dir)


def loaded_shared_model():
    """The process's one model if it has loaded, else None (never loads it: the API asks this, on
    the event loop, where a load would freeze every page)."""
    from skin_model.config import settings

    return _shared.get(settings().model_dir)


def shared_model():
    """The process's one model (of the folder ``SKIN_MODEL_DIR`` names, else the shipped one),
    loaded on first use: the pages and the API share it (one copy in memory, one torch thread).
    A model that fails to load is not kept: the next call tries again and says why."""
    from skin_model.config import settings

    folder = settings().model_dir
    with _shared_lock:
        if folder not in _shared:
            _shared[folder] = load_model(folder)
        return _shared[folder]
