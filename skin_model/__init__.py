"""Multimodal skin-lesion classification on HAM10000 (research and teaching only)."""

import threading

__version__ = "2.2.0"
_shared, _shared_lock = None, threading.Lock()


def load_model(model_dir=None):
    """The shipped model (or the artifact in ``model_dir``), ready to predict and explain.

    Imported lazily, so that ``import skin_model`` stays light.
    """
    from .predictor import SkinClassifier

    return SkinClassifier.load(model_dir)


def shared_model():
    """The process's one model, loaded on first use: the pages and the API share it (one copy
    in memory, one torch thread)."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = load_model()
        return _shared
