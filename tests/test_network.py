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


def _with_learnt_statistics(net: SkinNet) -> SkinNet:
    """Batch norms whose statistics and affine weights are not the identity, as a trained net's."""
    gen = torch.Generator().manual_seed(1)
    for module in net.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            n = module.num_features
            module.running_mean.copy_(torch.randn(n, generator=gen) * 0.2)
            module.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
            module.weight.data.copy_(torch.rand(n, generator=gen) + 0.5)
            module.bias.data.copy_(torch.randn(n, generator=gen) * 0.1)
    return net.eval()


@pytest.mark.parametrize("arch, left", [("mobilenet_v2", 0), ("resnet18", None)])
def test_folding_batch_norms_keeps_the_logits_and_the_grad_cam_layer(arch, left):
    import copy

    from skin_model.inference.gradcam import LayerCAM
    from skin_model.inference.network import fold_batch_norms

    torch.manual_seed(0)
    net = _with_learnt_statistics(SkinNet(arch))
    folded = fold_batch_norms(copy.deepcopy(net))
    norms = lambda m: sum(isinstance(x, torch.nn.BatchNorm2d) for x in m.modules())  # noqa: E731
    if left is not None:
        assert norms(folded) == left  # every MobileNetV2 batch norm follows its convolution
    assert norms(folded) < norms(net)
    x = torch.randn(2, 3, 96, 128)
    meta = encode_metadata(parse_metadata(50, "female", "back")).expand(2, -1)
    maps = []
    for model in (net, folded):
        with LayerCAM(model.cam_layer) as cam:
            logits = model(x, meta)
            logits[:, 4].sum().backward()
            maps.append(cam.maps())
        maps.append(logits.detach())
    torch.testing.assert_close(maps[3], maps[1], rtol=0, atol=1e-4)  # logits
    torch.testing.assert_close(maps[2], maps[0], rtol=1e-3, atol=1e-4)  # the Grad-CAM layer's map


def test_folding_refuses_a_network_in_training():
    from skin_model.inference.network import fold_batch_norms

    with pytest.raises(ValueError, match="eval mode"):
        fold_batch_norms(SkinNet("resnet18").train())
