"""Answering one image: what the app, the API and the command line need, and nothing more.

Its inputs (``inputs``, ``preprocess``), the network (``network``), the artifact on disk
(``card``, ``artifact``), the answer's parts (``priors``, ``referral``, ``uncertainty``,
``similar``, ``ood``, ``gradcam``) and the loaded model (``predictor``), whose torch work runs
on one thread (``torch_thread``). Needs neither Streamlit nor scikit-learn; imports only
``skin_model``'s shared modules (``config``, ``vocab``).
"""
