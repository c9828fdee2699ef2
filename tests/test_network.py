import pytest
import torch

from skin_model.inference.inputs import Metadata, parse_metadata
from skin_model.inference.network import BACKBONES, META_DIM, SkinNet, encode_metadata


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


def test_a_pretrained_file_with_the_wrong_checksum_is_never_unpickled(tmp_path, monkeypatch):
    from skin_model.inference.network import PretrainedFile

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
