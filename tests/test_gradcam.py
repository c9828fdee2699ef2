"""Our Grad-CAM against the reference implementation, its hooks, and the colour overlay."""

import copy

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from skin_model.inference.gradcam import LayerCAM, jet, overlay, upsample
from skin_model.inference.inputs import parse_metadata
from skin_model.inference.network import SkinNet, encode_metadata

from .conftest import synthetic_lesion


class WithMetadata(nn.Module):
    """The one-input model that pytorch_grad_cam expects: metadata held fixed."""

    def __init__(self, net: SkinNet, meta: torch.Tensor):
        super().__init__()
        self.net, self.meta = net, meta

    def forward(self, image):
        return self.net(image, self.meta.expand(len(image), -1))


@pytest.mark.parametrize("member", [0, 1, 2])
@pytest.mark.parametrize("lesion", ["mel", "vasc"])
def test_maps_match_pytorch_grad_cam(tiny_model, member, lesion):
    pytorch_grad_cam = pytest.importorskip("pytorch_grad_cam")
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    # In float64: the maps of a barely trained member are sums of 1280 terms that nearly
    # cancel, where float32's summation order alone moved them by ~1e-4 between the two.
    net = copy.deepcopy(tiny_model.members[member]).double()
    model = WithMetadata(net, encode_metadata(parse_metadata(50, "female", "back")).double())
    pixels = tiny_model.prepare(synthetic_lesion(lesion, 3)).pixels
    x = tiny_model.member_inputs[member].normalize(pixels).double().requires_grad_(True)  # weights are frozen
    index = int(model(x).argmax())  # the top class: its map is not all negative
    size = (x.shape[-1], x.shape[-2])  # (width, height), as upsample takes it

    with pytorch_grad_cam.LayerCAM(model=model, target_layers=[net.cam_layer]) as reference:
        expected = reference(input_tensor=x, targets=[ClassifierOutputTarget(index)])[0]

    with LayerCAM(net.cam_layer) as cam:
        model(x)[0, index].backward()
        ours = upsample(cam.maps()[0], size).astype(np.float32)

    assert expected.max() > 0.5 and expected.std() > 0.05  # a real map on both sides
    np.testing.assert_allclose(ours, expected, atol=1e-4)


def test_hooks_are_removed_even_after_an_error():
    layer = nn.Conv2d(3, 4, 3)
    with pytest.raises(ZeroDivisionError):
        with LayerCAM(layer):
            assert len(layer._forward_hooks) == 1
            raise ZeroDivisionError
    assert len(layer._forward_hooks) == 0


def test_a_block_records_only_its_own_thread_s_pass():
    """Two parts of one member's views pass the same layer on two lanes at once: each block keeps
    its own thread's activations, not the other's, whichever ran last."""
    import threading

    layer = nn.Conv2d(3, 4, 3)
    inputs = [torch.full((1, 3, 8, 8), 1.0), torch.full((1, 3, 8, 8), -1.0)]
    entered, recorded = threading.Barrier(2, timeout=30), {}

    def part(k: int) -> None:
        with LayerCAM(layer) as cam:
            entered.wait()  # both hooks are on the layer before either pass
            layer(inputs[k])
            entered.wait()  # both passes are done before either block closes
        recorded[k] = cam.activations

    threads = [threading.Thread(target=part, args=(k,)) for k in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    with torch.no_grad():
        for k in (0, 1):
            assert torch.equal(recorded[k], layer(inputs[k]))


def test_maps_need_a_backward_pass():
    layer = nn.Conv2d(3, 4, 3)
    with LayerCAM(layer) as cam, pytest.raises(RuntimeError, match="backward"):
        layer(torch.randn(1, 3, 8, 8))
        cam.maps()


def test_jet_follows_matplotlib():
    cm = pytest.importorskip("matplotlib").colormaps["jet"]
    values = np.linspace(0, 1, 256)
    # matplotlib samples its map into a 256-entry table: agreement to that table's step.
    np.testing.assert_allclose(jet(values), cm(values)[:, :3], atol=1 / 255)
    assert jet(np.array(0.0)).argmax() == 2 and jet(np.array(1.0)).argmax() == 0  # blue low, red high


@pytest.mark.parametrize("opacity", [0.0, 0.5, 1.0])
def test_overlay_blends_by_opacity(opacity):
    rgb = np.random.default_rng(0).integers(0, 256, (30, 40, 3), dtype=np.uint8)
    heat = np.tile(np.linspace(0, 1, 40, dtype=np.float32), (30, 1))
    out = np.asarray(overlay(Image.fromarray(rgb), heat, opacity), dtype=np.float32)
    expected = (1 - opacity) * rgb + opacity * 255 * jet(heat)
    np.testing.assert_allclose(out, expected, atol=0.51)


@pytest.mark.parametrize("opacity, shape, message", [(1.5, (30, 40), "opacity"), (0.5, (40, 30), "shape")])
def test_overlay_refuses_bad_arguments(opacity, shape, message):
    with pytest.raises(ValueError, match=message):
        overlay(Image.new("RGB", (40, 30)), np.zeros(shape, np.float32), opacity)
