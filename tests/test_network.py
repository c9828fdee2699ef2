import pytest
import torch

from skin_model.inputs import Metadata, parse_metadata
from skin_model.network import BACKBONES, META_DIM, SkinNet, encode_metadata


def test_metadata_encoding():
    unknown = encode_metadata(Metadata.unknown())
    known = encode_metadata(parse_metadata(50, "female", "back"))
    assert unknown.shape == known.shape == (META_DIM,)
    assert unknown[1] == 1 and known[1] == 0 and known[0] == pytest.approx(0.5)
    assert unknown.sum() == 3 and known.sum() == pytest.approx(2.5)


@pytest.mark.parametrize("arch", sorted(BACKBONES))
def test_forward_shapes_with_and_without_metadata(arch):
    torch.manual_seed(0)
    net = SkinNet(arch).eval()
    x = torch.randn(3, 3, 64, 64)
    known = encode_metadata(parse_metadata(50, "female", "back")).expand(3, -1)
    unknown = encode_metadata(Metadata.unknown()).expand(3, -1)
    with torch.no_grad():
        fused, image_only = net(x, known), net(x, unknown)
        views, features = net.forward_views(x, (known, unknown))
    assert fused.shape == image_only.shape == (3, 7)
    assert not torch.allclose(fused, image_only)  # the metadata reaches the output
    torch.testing.assert_close(views, torch.stack([fused, image_only]))
    assert features.shape == (3, BACKBONES[arch].features)
    assert net.cam_layer is not None


def test_our_efficientnet_lite0_computes_what_timm_does():
    """Same weights, same input, same features as timm's tf_efficientnet_lite0 (TF 'same' padding)."""
    timm = pytest.importorskip("timm")
    from skin_model.efficientnet_lite import EfficientNetLite0

    torch.manual_seed(0)
    ours = EfficientNetLite0().eval()
    for m in ours.modules():  # non-trivial batch-norm statistics
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1), m.running_var.uniform_(0.5, 1.5)
    ref = timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=0).eval()
    ours_state, ref_keys = ours.state_dict(), list(ref.state_dict())
    assert len(ours_state) == len(ref_keys)
    ref.load_state_dict({r: v for r, v in zip(ref_keys, ours_state.values())}, strict=True)
    x = torch.randn(2, 3, 120, 160)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), ref(x), atol=1e-4, rtol=1e-4)


def test_pretrained_keys_map_onto_our_module():
    """EfficientNet-PyTorch names (as in the PyPI weight wheel) load strictly after renaming."""
    from skin_model.efficientnet_lite import EfficientNetLite0, rename_pretrained_keys

    ours = EfficientNetLite0()
    theirs = {
        "_conv_stem.weight": ours.stem[0].weight,
        "_bn0.weight": ours.stem[1].weight,
        "_blocks.0._depthwise_conv.weight": ours.blocks[0].depthwise[0].weight,
        "_blocks.1._expand_conv.weight": ours.blocks[1].expand[0].weight,
        "_blocks.1._bn0.bias": ours.blocks[1].expand[1].bias,
        "_blocks.15._project_conv.weight": ours.blocks[15].project[0].weight,
        "_blocks.15._bn2.running_var": ours.blocks[15].project[1].running_var,
        "_conv_head.weight": ours.head[0].weight,
        "_bn1.running_mean": ours.head[1].running_mean,
        "_fc.weight": torch.zeros(1000, 1280),
    }
    renamed = rename_pretrained_keys(theirs)
    state = ours.state_dict()
    assert "_fc.weight" not in renamed and len(renamed) == len(theirs) - 1
    for key, value in renamed.items():
        assert key in state and state[key].shape == value.shape, key


def test_a_pretrained_file_with_the_wrong_checksum_is_never_unpickled(tmp_path, monkeypatch):
    from skin_model.network import PretrainedFile

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    (tmp_path / "checkpoints").mkdir()
    torch.save({"w": torch.zeros(1)}, tmp_path / "checkpoints" / "weights.pth")
    unpickled = []
    monkeypatch.setattr(torch, "load", lambda *a, **k: unpickled.append(1))
    with pytest.raises(RuntimeError, match="sha256"):
        PretrainedFile("weights.pth", "0" * 64).load()
    assert not unpickled
    with pytest.raises(FileNotFoundError, match="absent.pth"):
        PretrainedFile("absent.pth", "0" * 64).load()
