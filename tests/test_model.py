"""Training, the artifact and the predictor, on the shared test model (``conftest``: made in seconds
by the shipped path on synthetic data)."""

import json
import shutil
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from skin_model import vocab
from skin_model.config import CARD_FILE, WEIGHTS_FILE
from skin_model.inference.artifact import ModelArtifactError, load_artifact
from skin_model.inference.gradcam import grayscale_png, overlay
from skin_model.inference.network import BACKBONES, encode_metadata
from skin_model.inference.predictor import SkinClassifier
from skin_model.inference.preprocess import IMAGENET_MEAN
from skin_model.inference.torch_thread import LANE_NAME, THREAD_NAME

from .conftest import synthetic_lesion


@pytest.mark.parametrize("fold", range(5))
def test_every_fold_model_trains_and_lowers_its_loss(cv_run, fold):
    folder = cv_run.run / "tiny" / f"fold{fold}"
    log = pd.read_csv(folder / "log.csv")
    assert list(log["epoch"]) == [1, 2]
    assert log["train_loss"].iloc[1] < log["train_loss"].iloc[0]
    assert (folder / "done.json").exists()
    assert sorted(p.name for p in folder.glob("epoch_*.safetensors")) == [
        "epoch_01.safetensors",
        "epoch_02.safetensors",
    ]


def test_artifact_describes_itself(model_dir):
    card = json.loads((model_dir / CARD_FILE).read_text())
    assert [m["name"] for m in card["members"]] == [f"tiny_fold{k}" for k in range(5)]
    for member in card["members"]:  # each member carries its own preprocessing
        assert member["architecture"] in BACKBONES
        assert (member["input"]["height"], member["input"]["width"]) == (48, 64)
        assert tuple(member["input"]["mean"]) == IMAGENET_MEAN and member["temperature"] > 0
    assert (card["source"]["height"], card["source"]["width"]) == (150, 200)
    assert card["source"]["colour_constancy"]["p"] == 6
    assert card["tta"]["views"] == ["identity", "hflip", "vflip", "hvflip"]
    frequencies = card["prior"]["training_frequencies"]
    assert list(frequencies) == list(vocab.CLASSES) and sum(frequencies.values()) == pytest.approx(1.0)
    assert list(card["bias"]) == list(vocab.CLASSES)
    assert card["vocabulary"]["classes"] == list(vocab.CLASSES)
    assert card["temperature"] > 0 and 0 < card["referral"]["threshold"] < 1
    assert card["ood"]["threshold"] > 0 and card["ood"]["outlier_exposure"]
    assert "Tschandl" in card["data"]["citation"]


def test_resume_restores_the_interrupted_state(cv_run, tmp_path, monkeypatch):
    """Training interrupted after epoch 2 and resumed ends with the very weights of an
    uninterrupted run: model, optimiser, schedule, EMA and random streams all restored."""
    from safetensors.torch import load_file as load

    from skin_model.training import train
    from skin_model.training.splits import fold_parts

    cfg = replace(cv_run.recipe.members[0], epochs=3)
    straight, interrupted = train.Run(tmp_path / "straight"), train.Run(tmp_path / "interrupted")
    in_train, in_val = fold_parts(cv_run.data.df, 0)
    data = {"train": cv_run.data.subset(in_train), "val": cv_run.data.subset(in_val)}
    train.train_member(data, straight, cfg)

    scored_epochs = []
    real_outputs = train.member_outputs

    def crash_in_epoch_3(*args, **kwargs):
        scored_epochs.append(1)
        if len(scored_epochs) == 3:
            raise KeyboardInterrupt
        return real_outputs(*args, **kwargs)

    monkeypatch.setattr(train, "member_outputs", crash_in_epoch_3)
    with pytest.raises(KeyboardInterrupt):
        train.train_member(data, interrupted, cfg)
    assert not (interrupted.member_dir(cfg.name) / "done.json").exists()
    monkeypatch.setattr(train, "member_outputs", real_outputs)
    train.train_member(data, interrupted, cfg, resume=True)

    log = pd.read_csv(interrupted.member_dir(cfg.name) / "log.csv")
    assert list(log["epoch"]) == [1, 2, 3]  # epochs 1-2 were not redone
    for name in ("epoch_03.safetensors", "val_logits_03.safetensors"):
        a = load(str(straight.member_dir(cfg.name) / name))
        b = load(str(interrupted.member_dir(cfg.name) / name))
        assert a.keys() == b.keys()
        for key in a:
            assert torch.equal(a[key], b[key]), (name, key)


def test_prediction_is_a_distribution(tiny_model):
    pred = tiny_model.predict(synthetic_lesion("vasc", 5), age=60, sex="female", site="trunk")
    for probs in (pred.probabilities, pred.image_only):
        assert list(probs) == list(vocab.CLASSES)
        assert sum(probs.values()) == pytest.approx(1.0, abs=1e-5)
        assert all(0 <= p <= 1 for p in probs.values())
    assert pred.label == max(pred.probabilities, key=pred.probabilities.get)  # the answer is the top row shown
    assert pred.metadata.age == 60 and pred.model_version == "0.0.test"


def test_metadata_changes_the_fused_but_not_the_image_only_output(tiny_model):
    img = synthetic_lesion("nv", 6)
    a = tiny_model.predict(img, age=5, sex="male", site="face")
    b = tiny_model.predict(img, age=90, sex="female", site="foot")
    assert a.probabilities != b.probabilities
    assert a.image_only == pytest.approx(b.image_only)
    assert tiny_model.predict(img).probabilities == pytest.approx(a.image_only)


def test_diagnose_agrees_with_predict(tiny_model):
    img = synthetic_lesion("bcc", 7)
    pred, explanation = tiny_model.diagnose(img, age=40, sex="male", site="back")
    alone = tiny_model.predict(img, age=40, sex="male", site="back")
    assert pred.probabilities == pytest.approx(alone.probabilities, abs=1e-6)
    assert explanation.target == pred.label


@pytest.mark.parametrize("size", [(80, 60), (333, 201), (64, 64)])
def test_gradcam_is_aligned_with_the_image(tiny_model, size):
    img = synthetic_lesion("mel", 8, size=size)
    heat = tiny_model.explain(img, target="mel").heatmap
    assert heat.shape == (size[1], size[0]) and heat.dtype == np.float32
    assert heat.min() >= 0 and heat.max() <= 1 and heat.max() > 0
    assert overlay(img, heat, 0.4).size == img.size
    assert grayscale_png(heat).mode == "L"


def test_gradcam_at_a_display_size_matches_the_full_size_map_shrunk(tiny_model):
    img = synthetic_lesion("mel", 8, size=(800, 600))
    full = tiny_model.diagnose(img, target="mel")[1].heatmap
    small = tiny_model.diagnose(img, target="mel", heatmap_size=(200, 150))[1].heatmap
    assert full.shape == (600, 800) and small.shape == (150, 200)
    shrunk = np.asarray(Image.fromarray(full, mode="F").resize((200, 150), Image.Resampling.BILINEAR))
    assert np.abs(small - shrunk).mean() < 0.02  # the same map, made at the size it is shown


def test_gradcam_differs_between_images_and_classes(tiny_model):
    a = tiny_model.explain(synthetic_lesion("mel", 9), target="mel").heatmap
    b = tiny_model.explain(synthetic_lesion("df", 10), target="mel").heatmap
    c = tiny_model.explain(synthetic_lesion("mel", 9), target="nv").heatmap
    assert np.abs(a - b).mean() > 1e-3
    assert np.abs(a - c).mean() > 1e-3


def test_unknown_target_class_is_refused(tiny_model):
    with pytest.raises(ValueError, match="Unknown class"):
        tiny_model.explain(synthetic_lesion("mel", 9), target="cancer")


def test_threads_share_one_model_safely(tiny_model):
    jobs = [(synthetic_lesion(c, 20 + i), vocab.CLASSES[(i + 3) % 7]) for i, c in enumerate(vocab.CLASSES + ("mel",))]

    def run(job):
        img, target = job
        pred, explanation = tiny_model.diagnose(img, age=50, sex="female", site="back", target=target)
        return pred.probabilities, explanation.heatmap

    alone = [run(j) for j in jobs]
    with ThreadPoolExecutor(max_workers=8) as pool:
        together = list(pool.map(run, jobs))
    for (p1, h1), (p2, h2) in zip(alone, together):
        assert p1 == pytest.approx(p2, abs=1e-6)
        np.testing.assert_allclose(h1, h2, atol=1e-5)


@pytest.mark.parametrize(
    "call", ["predict", "diagnose", "member_logits", "predict_prepared", "diagnose_prepared", "answer_prepared"]
)
def test_network_runs_on_the_torch_thread_and_decoding_does_not(tiny_model, monkeypatch, call):
    import skin_model.inference.predictor as predictor

    network, decoding = [], []
    for net in tiny_model.members:
        monkeypatch.setattr(net, "classify", _recording(net.classify, network))
    monkeypatch.setattr(predictor, "load_image", _recording(predictor.load_image, decoding))
    img = synthetic_lesion("df", 11)
    prepared = tiny_model.prepare(img)
    network.clear(), decoding.clear()
    calls = {
        "predict": lambda: tiny_model.predict(img),
        "diagnose": lambda: tiny_model.diagnose(img),
        "member_logits": lambda: tiny_model.member_logits(prepared.pixels, encode_metadata(prepared.metadata)[None]),
        "predict_prepared": lambda: tiny_model.predict_prepared([prepared]),
        "diagnose_prepared": lambda: tiny_model.diagnose_prepared(prepared),
        "answer_prepared": lambda: tiny_model.answer_prepared(prepared),
    }
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="caller") as caller:  # e.g. a Streamlit script thread
        caller.submit(calls[call]).result()
    # The torch thread, or its lanes within its call (torch_thread.map_lanes).
    assert network and all(name == THREAD_NAME or name.startswith(LANE_NAME) for name in network), network
    assert all(name.startswith("caller") for name in decoding), decoding


def _recording(fn, seen):
    def wrapped(*args, **kwargs):
        seen.append(threading.current_thread().name)
        return fn(*args, **kwargs)

    return wrapped


# -- a damaged artifact fails loudly, naming the file, never with random weights -------------
def _copy(src, dst):
    shutil.copytree(src, dst)
    return dst


def test_missing_weights(model_dir, tmp_path):
    model_dir = _copy(model_dir, tmp_path / "m")
    (model_dir / WEIGHTS_FILE).unlink()
    with pytest.raises(ModelArtifactError, match=WEIGHTS_FILE):
        load_artifact(model_dir)


def test_missing_card(tmp_path):
    with pytest.raises(ModelArtifactError, match=CARD_FILE):
        load_artifact(tmp_path)


def test_corrupted_weights(model_dir, tmp_path):
    model_dir = _copy(model_dir, tmp_path / "m")
    data = (model_dir / WEIGHTS_FILE).read_bytes()
    (model_dir / WEIGHTS_FILE).write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelArtifactError, match="corrupted"):
        load_artifact(model_dir)


def test_weights_that_do_not_match_the_card(model_dir, tmp_path):
    model_dir = _copy(model_dir, tmp_path / "m")
    card = json.loads((model_dir / CARD_FILE).read_text())
    for member in card["members"]:
        member["meta_hidden"] = 16  # the metadata branch's shapes no longer match the weights
    (model_dir / CARD_FILE).write_text(json.dumps(card))
    with pytest.raises(ModelArtifactError, match="do not match"):
        load_artifact(model_dir)


def test_extra_tensors_are_refused(model_dir, tmp_path):
    model_dir = _copy(model_dir, tmp_path / "m")
    tensors = load_file(str(model_dir / WEIGHTS_FILE))
    tensors["members.9.stray"] = tensors[next(iter(tensors))].clone()
    save_file(tensors, str(model_dir / WEIGHTS_FILE))
    with pytest.raises(ModelArtifactError, match="does not describe"):
        load_artifact(model_dir)


def test_an_index_built_with_other_image_statistics_is_refused_at_load(model_dir, tmp_path):
    """An artifact exported before the statistics changed would fail at its first answer;
    it is refused when it loads, with what to do."""
    from safetensors import safe_open

    from skin_model.config import INDEX_FILE

    model_dir = _copy(model_dir, tmp_path / "m")
    path = str(model_dir / INDEX_FILE)
    with safe_open(path, "pt") as f:
        metadata = f.metadata()
    tensors = load_file(path)
    tensors["stats_mean"] = tensors["stats_mean"][:-1].clone()
    tensors["stats_precision"] = tensors["stats_precision"][:-1, :-1].clone()
    save_file(tensors, path, metadata=metadata)
    with pytest.raises(ModelArtifactError, match="image statistics.*export stage"):
        SkinClassifier.load(model_dir)


def test_foreign_vocabulary_is_refused(model_dir, tmp_path):
    model_dir = _copy(model_dir, tmp_path / "m")
    card = json.loads((model_dir / CARD_FILE).read_text())
    card["vocabulary"]["classes"] = card["vocabulary"]["classes"][::-1]
    (model_dir / CARD_FILE).write_text(json.dumps(card))
    with pytest.raises(ModelArtifactError, match="vocabulary"):
        SkinClassifier.load(model_dir)


def test_batched_prediction_equals_one_by_one(tiny_model):
    from skin_model.serving.batch import BatchItem, predict_items

    images = [synthetic_lesion(c, 40 + i) for i, c in enumerate(vocab.CLASSES)]
    items = [
        BatchItem(f"img{i}", img, {"age": str(20 + i), "sex": "male", "localization": "back"})
        for i, img in enumerate(images)
    ]
    items.insert(3, BatchItem("broken", b"not an image", {}))
    table = predict_items(tiny_model, items, batch_size=3, answer_anyway=True)
    assert list(table["image_id"]) == [item.image_id for item in items]
    assert table.loc[3, "error"] and table.loc[3, "prediction"] == ""
    for i, img in enumerate(images):
        row = table[table["image_id"] == f"img{i}"].iloc[0]
        alone = tiny_model.predict(img, age=20 + i, sex="male", site="back")
        assert row["prediction"] == alone.label
        assert row[list(vocab.CLASSES)].to_numpy(float) == pytest.approx(list(alone.probabilities.values()), abs=1e-5)


@pytest.fixture
def pass_sizes(monkeypatch) -> list[int]:
    """The number of images in each of the model's passes (``predict_prepared``), in order."""
    sizes = []
    predict_prepared = SkinClassifier.predict_prepared
    monkeypatch.setattr(
        SkinClassifier,
        "predict_prepared",
        lambda self, prepared, *a: sizes.append(len(prepared)) or predict_prepared(self, prepared, *a),
    )
    return sizes


@pytest.mark.parametrize("views, per_pass", [(("identity", "hflip", "vflip", "hvflip"), 1), (("identity", "vflip"), 2)])
def test_batches_are_small_by_default(tiny_model, monkeypatch, views, per_pass, pass_sizes):
    """The network sees at most VIEWS_PER_PASS views at once (images x test-time views): a
    100-image batch must not need the memory of 100 images' activations."""
    from skin_model.serving.batch import VIEWS_PER_PASS, BatchItem, images_per_pass, predict_items

    monkeypatch.setattr(tiny_model, "views", views)
    assert images_per_pass(tiny_model) == per_pass and per_pass * len(views) <= VIEWS_PER_PASS
    items = [BatchItem(f"img{i}", synthetic_lesion("nv", 60 + i), {}) for i in range(2 * per_pass + 1)]
    assert len(predict_items(tiny_model, items)) == len(items)
    assert pass_sizes == [per_pass, per_pass, 1]


def test_the_predict_command_runs_bigger_passes_in_its_own_process(
    tiny_model, model_dir, monkeypatch, tmp_path, pass_sizes
):
    """The command is not bound by the app's memory: CLI_VIEWS_PER_PASS views a pass, and the
    same rows as the app's small passes."""
    from skin_model.serving.batch import CLI_VIEWS_PER_PASS, images_per_pass, predict_paths

    per_pass = images_per_pass(tiny_model, CLI_VIEWS_PER_PASS)
    assert per_pass * len(tiny_model.views) <= CLI_VIEWS_PER_PASS and per_pass > images_per_pass(tiny_model)
    for i in range(per_pass + 1):
        synthetic_lesion("nv", 60 + i).save(tmp_path / f"img{i}.png")
    big = predict_paths([tmp_path], out_csv=tmp_path / "big.csv", model_dir=model_dir).table
    assert pass_sizes == [per_pass, 1]
    monkeypatch.setattr("skin_model.serving.batch.CLI_VIEWS_PER_PASS", 1)  # one image a pass
    small = predict_paths([tmp_path], out_csv=tmp_path / "small.csv", model_dir=model_dir).table
    assert pass_sizes[2:] == [1] * (per_pass + 1)
    assert list(big["image_id"]) == list(small["image_id"])
    assert big[list(vocab.CLASSES)].to_numpy(float) == pytest.approx(
        small[list(vocab.CLASSES)].to_numpy(float), abs=1e-5
    )


# Tensor views of a decoded image (no computation): all the torch a caller's thread may do.
CALLER_TORCH_CALLS = {"permute", "unsqueeze", "__get__", "dtype", "shape"}


@pytest.mark.parametrize(
    "call", ["predict", "diagnose", "predict_prepared", "diagnose_prepared", "answer_prepared", "heatmap"]
)
def test_every_torch_computation_runs_on_the_torch_thread(tiny_model, call):
    """The network, calibration, embedding, similar cases and out-of-domain score: every torch
    function the caller's thread runs is recorded (torch function modes are per thread), and
    none computes anything: torch keeps a thread pool per calling thread."""
    from torch.overrides import TorchFunctionMode

    class Recorder(TorchFunctionMode):
        def __init__(self):
            super().__init__()
            self.names = []

        def __torch_function__(self, func, types, args=(), kwargs=None):
            self.names.append(getattr(func, "__name__", str(func)))
            return func(*args, **(kwargs or {}))

    img = synthetic_lesion("df", 11)
    prepared = tiny_model.prepare(img)
    calls = {
        "predict": lambda: tiny_model.predict(img, age=50),
        "diagnose": lambda: tiny_model.diagnose(img, age=50),
        "predict_prepared": lambda: tiny_model.predict_prepared([prepared]),
        "diagnose_prepared": lambda: tiny_model.diagnose_prepared(prepared),
        "answer_prepared": lambda: tiny_model.answer_prepared(prepared),
        "heatmap": lambda: attention.heatmap("mel"),  # a later class, from the kept forward pass
    }
    attention = tiny_model.answer_prepared(prepared)[1]

    def on_the_callers_thread():
        with Recorder() as recorder:
            result = calls[call]()
        return recorder.names, result

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="caller") as caller:
        names, result = caller.submit(on_the_callers_thread).result()
    assert set(names) <= CALLER_TORCH_CALLS, sorted(set(names) - CALLER_TORCH_CALLS)
    done = result[0] if isinstance(result, (list, tuple)) else result
    assert done.label in vocab.CLASSES if call != "heatmap" else done.heatmap.max() == 1  # done, elsewhere
    with Recorder() as everywhere:  # the recorder does see torch work on the thread it watches
        tiny_model.calibrate(torch.zeros(1, 2, 1, len(vocab.CLASSES)))
    assert "softmax" in everywhere.names


def test_the_referral_scores_heatmap_is_its_own_map(tiny_model):
    img = synthetic_lesion("mel", 9)
    malignant = tiny_model.explain(img, target="malignant")
    assert malignant.target == "malignant" and malignant.heatmap.max() == pytest.approx(1.0)
    assert np.abs(malignant.heatmap - tiny_model.explain(img, target="nv").heatmap).mean() > 1e-3


def test_every_class_s_heatmap_from_one_forward_pass_is_a_fresh_pass_s(tiny_model, monkeypatch):
    """The answer's forward pass is kept for its heatmaps: each class asked for after it, in any
    order, is the map a forward and backward pass of its own gives, and the image never goes
    through the network again."""
    img = synthetic_lesion("mel", 9)
    prepared = tiny_model.prepare(img, age=50, sex="male", site="back")
    prediction, attention = tiny_model.answer_prepared(prepared)
    passes = []
    for net in tiny_model.members:
        monkeypatch.setattr(net, "classify", _recording(net.classify, passes))
    later = {target: attention.heatmap(target, (80, 60)).heatmap for target in ("mel", "malignant", "nv", "mel")}
    assert not passes  # no forward pass for any of them
    monkeypatch.undo()
    checked = prediction.with_quality(tiny_model.check_quality(prepared))
    for target, heat in later.items():
        fresh = tiny_model.diagnose_prepared(prepared, target, heatmap_size=(80, 60))
        assert fresh[0] == checked
        np.testing.assert_allclose(heat, fresh[1].heatmap, atol=1e-5)
    assert np.abs(later["mel"] - later["nv"]).mean() > 1e-3  # the classes' maps differ


def test_the_verdict_s_pass_leaves_the_quality_check_for_after_it(tiny_model):
    """``answer_prepared`` (the page's verdict) does nothing the verdict does not need: its answer
    has no quality check yet, and ``check_quality`` then gives the check that ``predict`` and
    ``diagnose`` carry, with the same answer otherwise."""
    dark = Image.fromarray((np.asarray(synthetic_lesion("nv", 3)) * 0.2).astype(np.uint8))
    prepared = tiny_model.prepare(dark, age=40, sex="female", site="back")
    answered, _ = tiny_model.answer_prepared(prepared)
    assert answered.quality is None and answered.as_dict()["image_quality"] is None
    quality = tiny_model.check_quality(prepared)
    assert "too_dark" in quality.problems
    assert tiny_model.predict_prepared([prepared])[0] == answered.with_quality(quality)
    assert tiny_model.diagnose_prepared(prepared)[0] == answered.with_quality(quality)
