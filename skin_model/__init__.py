"""Multimodal skin-lesion classification on HAM10000 (research and teaching only)."""
__version__ = "1.0.0"
