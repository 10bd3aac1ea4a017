"""STSTNet and OFF-ApexNet (fdpkit.model.flownets): the FDPOutput contract, the papers' layer sizes
(parameter counts worked out by hand), input refusals, gradients, a tiny overfit, and what the
per-channel min-max normalisation makes the output invariant to."""

import re

import pytest
import torch
from torch import nn

from fdpkit.model.fdp import fdp_loss
from fdpkit.model.flownets import (FLOW_SIZE, OffApexNet, STSTNet, _SameMaxPool, build_off_apexnet,
                                   build_ststnet, minmax_per_channel)

MODELS = [STSTNet, OffApexNet]


@pytest.fixture(autouse=True)
def _one_thread():
    """These nets are tiny: one thread is fastest, and two OpenMP threads on a shared, busy 2-core
    box spin (measured 30x slower per step). Restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
FEATURES = {STSTNet: 400, OffApexNet: 1024}


def _flow(b: int, size: int = FLOW_SIZE, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    uv = torch.randn(b, 2, size, size, generator=g) * 2.0  # pixels
    strain = torch.rand(b, 1, size, size, generator=g) * 0.1
    return torch.cat([uv, strain], dim=1)


def _model(cls, num_classes: int = 3, size: int = FLOW_SIZE, seed: int = 0):
    torch.manual_seed(seed)
    return cls(num_classes, size)


@pytest.mark.parametrize("cls", MODELS)
@pytest.mark.parametrize("b", [1, 4])
def test_output_contract(cls, b):
    model = _model(cls).eval()
    out = model(_flow(b))
    assert out.logits.shape == (b, 3)
    assert out.dynamic_image is None
    assert out.rank_scores.shape == (b, 1, 1) and not out.rank_scores.any()
    assert out.frame_features.shape == (b, 1, FEATURES[cls])
    assert out.attentions is None
    assert model(_flow(b), return_attention=True).attentions == []
    assert torch.equal(model.forward_logits(_flow(b)), out.logits)


def test_parameter_counts_match_the_papers_layer_sizes():
    # STSTNet, Table I of arXiv:1902.03634 (+ the released graph's BatchNorm: scale and offset):
    #   convs 3x3 on 3 channels: (3*3*3 + 1) * (3 + 5 + 8) = 28 * 16 = 448
    #   BatchNorm:               2 * (3 + 5 + 8)                  =  32
    #   FC 5*5*16 = 400 -> 3:    400 * 3 + 3                     = 1203
    #   total                                                     = 1683  (Table V: 0.00167 M)
    assert sum(p.numel() for p in STSTNet(3).parameters()) == 448 + 32 + 1203 == 1683
    assert sum(p.numel() for p in STSTNet(5).parameters()) == 448 + 32 + 400 * 5 + 5
    # OFF-ApexNet, two streams, each conv 5x5x6 and conv 5x5x16:
    #   conv1: 5*5*1*6 + 6 = 156; conv2: 5*5*6*16 + 16 = 2416; two streams: 2 * 2572 = 5144
    #   FC1: 2*7*7*16 = 1568 -> 1024: 1568*1024 + 1024 = 1,606,656
    #   FC2: 1024 -> 1024:            1024*1024 + 1024 = 1,049,600
    #   out: 1024 -> 3:               1024*3 + 3       =     3,075
    #   total                                          = 2,664,475 (Off-TANet's count: 2.66 M)
    assert sum(p.numel() for p in OffApexNet(3).parameters()) == 5144 + 1606656 + 1049600 + 3075
    assert sum(p.numel() for p in OffApexNet(3).parameters()) == 2664475


def test_ststnet_stream_maps_follow_table_one():
    model = _model(STSTNet).eval()
    x = minmax_per_channel(_flow(2))
    for stream, width in zip(model.streams, (3, 5, 8)):
        assert stream[0](x).shape == (2, width, 28, 28)  # 3x3 conv, 'same'
        assert stream(x).shape == (2, width, 10, 10)  # 3x3 max pool, stride 3, 'same'


def test_same_max_pool_is_matlabs_same_padding():
    x = torch.randn(2, 3, 28, 28) - 5.0  # all negative: a zero pad would win, -inf must not
    assert torch.equal(_SameMaxPool(3, 3)(x), nn.MaxPool2d(3, 3, padding=1)(x))  # 2 pads: 1 + 1
    y = torch.randn(2, 3, 27, 27)
    assert torch.equal(_SameMaxPool(3, 3)(y), nn.MaxPool2d(3, 3)(y))  # divisible: no padding
    z = torch.randn(1, 1, 29, 29) - 5.0  # total pad 1: none on top/left, one on bottom/right
    assert torch.equal(_SameMaxPool(3, 3)(z)[..., :9, :9], nn.MaxPool2d(3, 3)(z))
    assert _SameMaxPool(3, 3)(z).shape[-2:] == (10, 10)


@pytest.mark.parametrize("cls", MODELS)
def test_integer_input_refused(cls):
    with pytest.raises(TypeError, match="floating point"):
        _model(cls)(torch.zeros(2, 3, 28, 28, dtype=torch.uint8))


@pytest.mark.parametrize("cls", MODELS)
def test_float64_input_is_cast_to_the_weights(cls):
    model = _model(cls).eval()
    out = model(_flow(2).double())
    assert out.logits.dtype == torch.float32
    assert torch.allclose(out.logits, model(_flow(2)).logits, atol=1e-5)


@pytest.mark.parametrize("cls", MODELS)
@pytest.mark.parametrize("shape", [(2, 2, 28, 28), (2, 3, 32, 32), (3, 28, 28), (2, 3, 28, 27)])
def test_wrong_shape_refused_naming_the_expected_shape(cls, shape):
    got = re.escape(repr(shape))
    with pytest.raises(ValueError, match=r"shape \(B, 3, 28, 28\).*got " + got):
        _model(cls)(torch.zeros(shape))


@pytest.mark.parametrize("cls", MODELS)
def test_other_sizes_are_checked_against_their_own_size(cls):
    model = _model(cls, size=14).eval()
    assert model(_flow(2, size=14)).logits.shape == (2, 3)
    with pytest.raises(ValueError, match=r"\(B, 3, 14, 14\)"):
        model(_flow(2))


@pytest.mark.parametrize("cls", MODELS)
@pytest.mark.parametrize("num_classes, size, bad", [
    (1, 28, "num_classes"), (True, 28, "num_classes"), (3.0, 28, "num_classes"),
    (3, 0, "size"), (3, 3, "size"), (3, "28", "size"), (3, 28.0, "size")])
def test_bad_arguments_refused(cls, num_classes, size, bad):
    with pytest.raises(ValueError, match=f"{cls.__name__}: {bad} must be an int"):
        cls(num_classes, size)


def test_builders():
    assert FLOW_SIZE == 28
    s, o = build_ststnet("tiny", 3), build_off_apexnet("paper", 4, size=16)
    assert isinstance(s, STSTNet) and (s.num_classes, s.size) == (3, 28)
    assert isinstance(o, OffApexNet) and (o.num_classes, o.size) == (4, 16)
    assert o(_flow(1, size=16)).logits.shape == (1, 4)
    with pytest.raises(ValueError, match="takes no .'drop_path'"):   # FDP's fields are refused by name
        build_ststnet("tiny", 3, drop_path=0.1)


def test_registered_and_built_by_name():
    from fdpkit.model import build
    from fdpkit.registry import MODELS as REGISTERED

    for name, cls in (("ststnet", STSTNet), ("off-apexnet", OffApexNet)):
        assert REGISTERED[name].input == "flow" and not REGISTERED[name].dynamic_image
        model = build(name, "tiny", num_classes=3)
        assert isinstance(model, cls) and model.num_classes == 3


@pytest.mark.parametrize("cls", MODELS)
def test_gradients_reach_every_parameter(cls):
    model = _model(cls).train()
    loss, parts = fdp_loss(model(_flow(4)), torch.tensor([0, 1, 2, 1]))
    assert parts["di"] == 0.0 and loss.item() == pytest.approx(parts["ce"])
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("cls", MODELS)
def test_overfits_eight_samples(cls):
    model = _model(cls, num_classes=2, seed=1)
    x, y = _flow(8, seed=2), torch.tensor([0, 1] * 4)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(100):
        opt.zero_grad()
        fdp_loss(model(x), y)[0].backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        assert (model(x).logits.argmax(1) == y).float().mean().item() == 1.0


def test_off_apexnet_uses_u_and_v_only():
    model = _model(OffApexNet).eval()
    x = _flow(3)
    other = x.clone()
    other[:, 2] = torch.rand(3, 28, 28) * 5.0  # a different strain
    assert torch.equal(model(other).logits, model(x).logits)
    for channel in (0, 1):  # while u and v both matter
        moved = x.clone()
        moved[:, channel] = torch.flip(moved[:, channel], dims=(-1,))
        assert not torch.allclose(model(moved).logits, model(x).logits)


@pytest.mark.parametrize("cls", MODELS)
def test_minmax_makes_output_invariant_to_channel_scale_and_shift(cls):
    model = _model(cls).eval()
    x = _flow(3)
    scale = torch.tensor([4.0, 0.25, 8.0]).view(1, 3, 1, 1)  # powers of two: exact in float
    assert torch.equal(model(x * scale).logits, model(x).logits)
    shift = torch.tensor([5.0, -2.0, 0.3]).view(1, 3, 1, 1)
    shifted = x * torch.tensor([3.7, 0.6, 11.0]).view(1, 3, 1, 1) + shift
    assert torch.allclose(model(shifted).logits, model(x).logits, atol=1e-5)
    # not invariant to the pattern itself: a sign flip of u changes the min-max map
    flipped = x.clone()
    flipped[:, 0] = -flipped[:, 0]
    assert not torch.allclose(model(flipped).logits, model(x).logits)


def test_minmax_per_channel_range_and_constant_channels():
    x = _flow(2)
    x[1, 2] = 7.0  # a constant map
    y = minmax_per_channel(x)
    assert torch.equal(y.amin(dim=(-2, -1))[0], torch.zeros(3))
    assert torch.equal(y.amax(dim=(-2, -1))[0], torch.ones(3))
    assert torch.equal(y[1, 2], torch.zeros(28, 28))
    x.requires_grad_(True)
    minmax_per_channel(x).sum().backward()
    assert torch.isfinite(x.grad).all()
