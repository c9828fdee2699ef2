"""Serving the model: many images at once (``batch``), the HTTP API (``api``) and the command
line (``cli``). Built on ``skin_model.inference``; the ``train`` command alone reaches into
``skin_model.training``, lazily, so that the app's install never needs it.
"""
