"""The field's two standard optical-flow baselines, STSTNet and OFF-ApexNet, on onset->apex flow.

Both take ``x`` (B, 3, S, S) float: the channels (u, v, strain) of `fdpkit.data.flow.flow_inputs`
(u, v in pixels of the resized grid, strain unscaled; S = `FLOW_SIZE` = 28 in both papers).
Nothing is normalised upstream, so each model first min-max scales every channel of every sample to
[0, 1] (`minmax_per_channel`): the papers train on flow and strain stored as images (STSTNet's
released inputs are the folder ``norm_u_v_os``), and MEB's public flow extraction
(tvaranka/meb ``tools/extract_optical_flow.py``) scales each channel of each sample to [0, 1]. The
outputs are therefore unchanged when a channel is scaled by a positive constant or shifted; a
constant channel becomes zeros.

Both return an `FDPOutput` like FDP: logits (B, C), no dynamic image, ``rank_scores`` zeros
(B, 1, 1), ``frame_features`` the penultimate features as one "frame" (B, 1, D), and ``attentions``
``[]`` when asked for (no attention blocks). The loss is plain cross-entropy (`fdp_loss` with no
dynamic image), as in both papers.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from fdpkit.model.fdp import FDPOutput, as_model_input

FLOW_SIZE = 28  # input side in both papers (STSTNet Table I; OFF-ApexNet's 28 x 28 x 2 input)
FLOW_CHANNELS = ("u", "v", "strain")  # the channel order of fdpkit.data.flow.flow_inputs


def minmax_per_channel(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> the same with each (sample, channel) map scaled to [0, 1]. A constant map
    (e.g. no vertical motion at all) becomes 0 with finite gradients (divided by 1, not by 0); a
    nearly constant one is stretched to [0, 1] like any other, as in the public reproductions."""
    low = x.amin(dim=(-2, -1), keepdim=True)
    span = x.amax(dim=(-2, -1), keepdim=True) - low
    return (x - low) / torch.where(span > 0, span, torch.ones_like(span))


def _check_args(model: str, num_classes, size, min_size: int) -> None:
    for name, value, least in (("num_classes", num_classes, 2), ("size", size, min_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise ValueError(f"{model}: {name} must be an int >= {least}, got {value!r}"
                             + (f" ({model} pools its input below a {min_size}x{min_size} grid; "
                                f"the paper uses {FLOW_SIZE})" if name == "size" else ""))


class _FlowBaseline(nn.Module):
    """The shared contract: input checks, normalisation, `features` (normalised (B, 3, S, S) ->
    penultimate (B, D), defined by each model) -> `classifier` -> FDPOutput."""

    name = "flow baseline"

    def __init__(self, num_classes: int, size: int):
        super().__init__()
        self.num_classes, self.size = num_classes, size

    def _check_input(self, x: torch.Tensor) -> torch.Tensor:
        expected = (len(FLOW_CHANNELS), self.size, self.size)
        if x.ndim != 4 or tuple(x.shape[1:]) != expected:
            shape, got = f"(B, {expected[0]}, {self.size}, {self.size})", tuple(x.shape)
            raise ValueError(f"{self.name} expects flow inputs of shape {shape} (channels u, v, "
                             f"strain of fdpkit.data.flow.flow_inputs, size {self.size}), got {got}")
        return as_model_input(x, self.classifier.weight.dtype)

    def forward(self, x: torch.Tensor, return_attention: bool = False) -> FDPOutput:
        x = self._check_input(x)
        feats = self.features(minmax_per_channel(x))
        return FDPOutput(self.classifier(feats), None, x.new_zeros(x.shape[0], 1, 1),
                         rearrange(feats, "b d -> b 1 d"), [] if return_attention else None)

    def forward_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Logits only (for Captum: `IntegratedGradients(model.forward_logits)`)."""
        return self.forward(x).logits


class _SameMaxPool(nn.Module):
    """MATLAB's max pooling with ``'Padding','same'``: output ceil(S / stride), the padding
    (max((out - 1) * stride + k - S, 0)) split top/left = floor, bottom/right = ceil, padded
    values never win (-inf). At S = 28, k = stride = 3 this is 1 each side -> 10 x 10."""

    def __init__(self, kernel: int, stride: int):
        super().__init__()
        self.kernel, self.stride = kernel, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = []
        for side in (x.shape[-1], x.shape[-2]):  # F.pad order: (left, right, top, bottom)
            total = max((math.ceil(side / self.stride) - 1) * self.stride + self.kernel - side, 0)
            pads += [total // 2, total - total // 2]
        return F.max_pool2d(F.pad(x, pads, value=float("-inf")), self.kernel, self.stride)


class STSTNet(_FlowBaseline):
    """Shallow Triple Stream Three-dimensional CNN, Liong, Gan, See, Khor and Huang, FG 2019 /
    MEGC 2019, arXiv:1902.03634, Sec. II (Proposed Method, last paragraphs) and Table I:

    ==========  ============================  ======  =======  ==========  ==============
    layer       what                          kernel  stride   padding     output (S=28)
    ==========  ============================  ======  =======  ==========  ==============
    input       u, v, strain (min-max)        -       -        -           28 x 28 x 3
    C1-1/2/3    conv, 3 / 5 / 8 filters       3 x 3   1        same (1)    28 x 28 x 3/5/8
    (released)  ReLU -> BatchNorm             -       -        -           same
    P1-1/2/3    max pool                      3 x 3   3        same        10 x 10 x 3/5/8
    (released)  dropout p = 0.5               -       -        -           same
    concat      depth concatenation           -       -        -           10 x 10 x 16
    P2          average pool                  2 x 2   2        0           5 x 5 x 16
    FC          flatten (the features, D)     -       -        -           400
    output      linear to classes             -       -        -           C
    ==========  ============================  ======  =======  ==========  ==============

    The ReLU -> BatchNorm -> ... -> dropout(0.5) order per stream is the authors' released layer
    graph (``STSTNet.mat`` and ``main.py`` in github.com/christy1206/STSTNet; the paper's text names
    only conv, max pool, concatenation, average pool and FC). The released PyTorch ``main.py`` pads
    the 3x3 convs by 2 (30 x 30 maps); this follows Table I's "same" (28 x 28), which both reach
    10 x 10 after pooling. Parameters at C = 3: 1683 (Table V says 0.00167 M).
    Sizes other than 28 work (S >= 4; features 16 * (ceil(S/3) // 2)^2).
    """

    name = "STSTNet"
    MIN_SIZE = 4
    WIDTHS = (3, 5, 8)

    def __init__(self, num_classes: int, size: int = FLOW_SIZE):
        _check_args(self.name, num_classes, size, self.MIN_SIZE)
        super().__init__(num_classes, size)
        self.streams = nn.ModuleList(
            nn.Sequential(nn.Conv2d(len(FLOW_CHANNELS), width, 3, padding=1), nn.ReLU(),
                          nn.BatchNorm2d(width), _SameMaxPool(3, 3), nn.Dropout(0.5))
            for width in self.WIDTHS)
        self.pool = nn.AvgPool2d(2, 2)
        side = math.ceil(size / 3) // 2
        self.feature_dim = sum(self.WIDTHS) * side * side
        self.classifier = nn.Linear(self.feature_dim, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        maps = torch.cat([stream(x) for stream in self.streams], dim=1)  # widths differ: no einops
        return rearrange(self.pool(maps), "b c h w -> b (c h w)")


class OffApexNet(_FlowBaseline):
    """OFF-ApexNet (Optical Flow Features from Apex frame Network), Gan, Liong, Yau, Huang and Tan,
    Signal Processing: Image Communication 74 (2019); preprint arXiv:1805.08699, the method
    section's network description (its section number and table were not checked against the
    text, see below). Two identical streams, one on the horizontal flow u (channel 0), one on the
    vertical flow v (channel 1); the strain (channel 2) is accepted for a common input and ignored.

    ==========  ============================  ======  =======  ==========  ==============
    layer       what                          kernel  stride   padding     output (S=28)
    ==========  ============================  ======  =======  ==========  ==============
    input       u | v (min-max), per stream   -       -        -           28 x 28 x 1
    conv1       conv, 6 filters, ReLU         5 x 5   1        same (2)    28 x 28 x 6
    pool1       max pool                      2 x 2   2        same        14 x 14 x 6
    conv2       conv, 16 filters, ReLU        5 x 5   1        same (2)    14 x 14 x 16
    pool2       max pool                      2 x 2   2        same        7 x 7 x 16
    concat      flatten both streams          -       -        -           1568
    FC1         linear, ReLU, dropout 0.5     -       -        -           1024
    FC2         linear, ReLU, dropout 0.5     -       -        -           1024 (features, D)
    output      linear to classes             -       -        -           C
    ==========  ============================  ======  =======  ==========  ==============

    Layer sizes as the public reproduction ECNU-Cross-Innovation-Lab/PRICAI2021-Off-TANet
    ``models/off_apexnet.py`` (2.66 M parameters at C = 3; this has 2,664,475), consistent with
    the depth 5 (2 conv + 3 FC) and 28 x 28 x 2 input listed for OFF-ApexNet in STSTNet's Table V
    (which gives 2.77 M parameters; the 0.11 M gap is not explained by any layer choice here). The
    ReLU after each conv is MEB's (that reproduction has none). MEB's ``OffApexNet`` is a
    single-stream simplification (one conv stack on both channels, 3x3 kernels, one FC) and is not
    followed. Sizes other than 28 work (S >= 4).
    """

    name = "OffApexNet"
    MIN_SIZE = 4
    HIDDEN = 1024

    def __init__(self, num_classes: int, size: int = FLOW_SIZE):
        _check_args(self.name, num_classes, size, self.MIN_SIZE)
        super().__init__(num_classes, size)
        self.streams = nn.ModuleList(self._stream() for _ in ("u", "v"))
        side = math.ceil(math.ceil(size / 2) / 2)
        self.feature_dim = self.HIDDEN
        self.fc = nn.Sequential(
            nn.Linear(2 * 16 * side * side, self.HIDDEN), nn.ReLU(), nn.Dropout(0.5),
            nn.Linear(self.HIDDEN, self.HIDDEN), nn.ReLU(), nn.Dropout(0.5))
        self.classifier = nn.Linear(self.HIDDEN, num_classes)

    @staticmethod
    def _stream() -> nn.Sequential:
        return nn.Sequential(  # ceil_mode: 'same' pooling, ceil(S / 2); the same at even sizes
            nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2, 2, ceil_mode=True),
            nn.Conv2d(6, 16, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2, 2, ceil_mode=True))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        flows = rearrange(x[:, :2], "b s h w -> s b 1 h w")  # s: the u and v streams
        maps = [stream(flow) for stream, flow in zip(self.streams, flows)]
        return self.fc(rearrange(maps, "s b c h w -> b (s c h w)"))


def flow_model_config(model: str, num_classes: int, **overrides) -> dict:
    """A flow model's whole configuration (what the runner records): its one field is ``size`` (the
    cached flow's side); FDP's model fields are refused by name."""
    unknown = sorted(set(overrides) - {"size"})
    if unknown:
        raise ValueError(f"{model} takes no {unknown} (only size, the flow's side); "
                         "FDP's model fields do not apply to it")
    return {"architecture": model, "num_classes": num_classes, "size": int(overrides.get("size", FLOW_SIZE))}


def build_ststnet(preset: str = "tiny", num_classes: int = 5, **overrides) -> STSTNet:
    """`ststnet` in `fdpkit.registry.MODELS`: one architecture, so ``preset`` sets only training."""
    return STSTNet(num_classes, flow_model_config("ststnet", num_classes, **overrides)["size"])


def build_off_apexnet(preset: str = "tiny", num_classes: int = 5, **overrides) -> OffApexNet:
    """`off-apexnet` in `fdpkit.registry.MODELS`: one architecture, so ``preset`` sets only training."""
    return OffApexNet(num_classes, flow_model_config("off-apexnet", num_classes, **overrides)["size"])
