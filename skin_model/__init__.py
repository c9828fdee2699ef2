"""Multimodal skin-lesion classification on HAM10000 (research and teaching only)."""

__version__ = "2.2.0"


def load_model(model_dir=None):
    """The shipped model (or the artifact in ``model_dir``), ready to predict and explain.

    Imported lazily, so that ``import skin_model`` stays light.
    """
    from .predictor import SkinClassifier

    return SkinClassifier.load(model_dir)
