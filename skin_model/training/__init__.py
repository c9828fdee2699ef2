"""Making a model: the one path from data to the shipped artifact.

``recipe`` (what to make) -> ``splits`` (who trains, who is checked, who is tested: each data
folder's declared role) -> ``data`` (images decoded once) -> ``crossval`` and ``train`` (a
model per fold, with ``augment``) -> ``export`` (every choice on out-of-fold predictions:
``calibration``, the referral threshold, the out-of-domain check) -> ``evaluate`` (test split,
check parts, images that are not dermoscopy; ``metrics``). ``holdout`` trains without one
source to see how the model does on a clinic it never saw. Needs scikit-learn and tqdm
(``requirements-dev.txt``); the app never imports it.
"""
