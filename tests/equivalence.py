"""Comparing two execution paths of an FDP model so that the verdict holds on any x86 CPU.

Tests using this carry the pytest marker `equivalence`; `.ci/run` runs them again under PyTorch's,
oneDNN's and MKL's dispatch overrides (AVX2 and SSE4.1 kernels), so every machine checks kernels
other than its own.

What is promised, and how it is checked (README, "Numerics across CPUs"):

* The same kernels in the same order (a resumed run, the same call twice, a round-tripped state
  dict, the small-map conv's forward which *is* `F.conv2d`) give identical bits: `torch.equal`.
* Two paths that compute the same maths with other kernels or in another order (frame loop vs
  batched frames, NHWC vs NCHW, SDPA vs explicit softmax, grouped conv vs Conv3d) agree
  - in float64 to `RTOL[float64]` of each output's scale: this checks the maths, since float64
    rounding (1e-16) is far below anything a wrong index, frame order or weight could cause;
  - in float32 (what runs) to `RTOL[float32]` of each output's scale for logits, rank scores and
    frame features. Measured worst case across AVX-512, AVX2 and SSE4.1 kernels: 3.6e-6 of the
    scale (official preset, 20 blocks + 26-conv decoder); the bound is ~5x that, ~170 float32 ulps;
  - the dynamic image is not a smooth function of its input: the SegNet decoder's 2x2 max-pool
    picks an index that max-unpool later writes to, so a last-bit difference between two nearly
    equal activations moves a whole value to another pixel and the convolutions after it spread
    that over a neighbourhood (measured on SSE4.1 kernels: 1e-2 over most of the official 64x64
    image, from a 3e-6 difference in the features). `assert_dynamic_images_agree` therefore
    recomputes both runs' pooling indices from their pre-pool activations, requires every
    window whose index differs to be a near-tie (if |a - b| <= d everywhere and the runs pick
    maxima p != q, then a_p - a_q <= 2d: a flip beyond that is a bug, not rounding), and marks
    the output pixels those windows reach through max-unpool and the later convolutions.
    Outside that footprint the images must agree to `DI_ATOL`; inside it any value in [0, 1] is
    legitimate. With no flip (the usual case) the whole image is held to `DI_ATOL`; one flip in
    the deepest level of the official decoder (4x4 maps) reaches every pixel. (Exact ties of
    equal non-zero values, which another kernel might break the other way, do not occur in
    continuous data; exact ties of zeros after ReLU move nothing.)
"""

from __future__ import annotations

import contextlib
import copy

import torch
import torch.nn.functional as F

FIELDS = ("logits", "rank_scores", "frame_features")  # smooth outputs; dynamic_image apart

# Relative to each output's largest magnitude (see the module docstring for the float32 figure;
# float64 differences measured ~1e-15 of the scale, 1e-10 leaves room for deeper models).
RTOL = {torch.float32: 2e-5, torch.float64: 1e-10}
# The decoder's activations before each max-pool (they decide the footprint below): up to 13 more
# 3x3 convolutions (sums of up to 512 x 9 terms) after the features; measured <= 2.4e-5 of their
# scale across kernels (AVX2, official preset, level 3), bound 4x that.
DECODER_RTOL = {torch.float32: 1e-4, torch.float64: 1e-10}
# Dynamic image in [0, 1] outside the near-tie footprint. float32: the training target is an
# 8-bit image (steps of 1/255 = 3.9e-3); 1e-3 is a quarter grey level, ~14x the largest smooth
# difference measured across kernels (7e-5, official preset, whose float32 image itself is 3e-5
# from the float64 one).
DI_ATOL = {torch.float32: 1e-3, torch.float64: 1e-9}


def calibrate(model: torch.nn.Module, x: torch.Tensor) -> torch.nn.Module:
    """BatchNorm running statistics := the statistics of one batch `x`, then eval mode.

    At initialisation the running statistics are (0, 1) and the small initial weights shrink the
    signal ~10x per block, so an uncalibrated eval model gives features of ~1e-9 and the same
    logits for every clip: a comparison at any absolute tolerance would then pass whatever the
    paths did. Calibrated, every output depends on the input."""
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.momentum = None  # cumulative average: after one batch, exactly its statistics
            m.reset_running_stats()
    with torch.no_grad():
        model.train()(x)
    return model.eval()


def as_float64(model: torch.nn.Module) -> torch.nn.Module:
    return copy.deepcopy(model).double()


@contextlib.contextmanager
def decoder_probe(model: torch.nn.Module):
    """Records the SegNet decoder's pre-pool activations (the output of every down level) of each
    forward inside the block: yields a list that fills with one list of tensors per call."""
    calls: list[list[torch.Tensor]] = []
    decoder = getattr(model, "di_decoder", None)
    hooks = []
    if decoder is not None:
        def record(module, inputs, output):
            if module is decoder.down[0]:
                calls.append([])
            calls[-1].append(output.detach().float().contiguous()
                             if output.dtype == torch.bfloat16 else output.detach().contiguous())

        hooks = [level.register_forward_hook(record) for level in decoder.down]
    try:
        yield calls
    finally:
        for h in hooks:
            h.remove()


def probed(model, fn):
    """(fn(), pre-pool activations of the decoder call fn made) -- fn must call `model` once."""
    with decoder_probe(model) as calls:
        out = fn()
    assert len(calls) == (1 if getattr(model, "di_decoder", None) is not None else 0), len(calls)
    return out, (calls[0] if calls else [])


def scale_of(t: torch.Tensor) -> float:
    return float(t.detach().abs().max()) if t.numel() else 0.0


def assert_smooth_close(a, b, rtol: float, what: str = "") -> None:
    """max |a - b| <= rtol * max |b| (plus a floor of 1e-30 for all-zero outputs)."""
    a, b = a.detach().double(), b.detach().double()
    assert a.shape == b.shape, (what, a.shape, b.shape)
    diff, scale = float((a - b).abs().max()), scale_of(b)
    assert diff <= rtol * scale + 1e-30, f"{what}: max diff {diff:.3e} > {rtol:g} x scale {scale:.3e}"


def _flipped_windows(pre_a: torch.Tensor, pre_b: torch.Tensor, what: str) -> torch.Tensor:
    """(N, h/2, w/2) bool: 2x2 windows where the two runs' max-pools pick another index (in any
    channel). Each must be a near-tie: if |a - b| <= d everywhere and the runs pick p and q, then
    a_p - a_q <= 2d; a flip beyond that is a real difference, not rounding."""
    _, idx_a = F.max_pool2d(pre_a, 2, 2, return_indices=True)  # the model's own pooling call
    _, idx_b = F.max_pool2d(pre_b, 2, 2, return_indices=True)
    flipped = idx_a != idx_b
    if flipped.any():
        d = float((pre_a - pre_b).abs().max())
        plane = pre_a.flatten(2)
        gap = plane.gather(2, idx_a.flatten(2)) - plane.gather(2, idx_b.flatten(2))
        worst = float(gap.view_as(idx_a)[flipped].max())
        assert worst <= 2 * d, f"{what}: max-pool index differs where the gap {worst:.3e} > 2 x {d:.3e}"
    return flipped.any(1)


def _dilate(mask: torch.Tensor, steps: int) -> torch.Tensor:
    """Pixels reached by `steps` 3x3 convolutions (padding 1) from `mask` (N, h, w)."""
    m = mask[:, None].float()
    for _ in range(steps):
        m = F.max_pool2d(m, 3, stride=1, padding=1)
    return m[:, 0] > 0


def unpool_footprint(decoder, pre_a: list[torch.Tensor], pre_b: list[torch.Tensor],
                     what: str = "") -> torch.Tensor:
    """(N, H, W) bool: output pixels that a max-pool index which differs between the runs can
    reach. The decoder's up path at level l unpools (to the level's pre-pool size) then applies
    its convolutions; a flipped window marks its 2x2 block, every later 3x3 conv dilates the mark
    by one pixel, every later unpool doubles it, and `out` (one more 3x3 conv) ends it."""
    levels = len(pre_a)
    assert len(decoder.up) == levels
    mask = None
    for i, up_level in enumerate(decoder.up):
        level = levels - 1 - i
        windows = _flipped_windows(pre_a[level], pre_b[level], f"{what} decoder level {level}")
        mask = windows if mask is None else (mask | windows)
        mask = mask.repeat_interleave(2, 1).repeat_interleave(2, 2)  # unpool: a 2x2 block
        mask = _dilate(mask, len(up_level))
    return _dilate(mask, 1)  # decoder.out


def assert_dynamic_images_agree(decoder, di_a, di_b, pre_a, pre_b, dtype, what: str = "") -> float:
    """The dynamic images agree to DI_ATOL[dtype] outside the max-unpool footprint of the windows
    whose max-pool index differs between the runs (each a near-tie); the decoder's pre-pool activations agree to DECODER_RTOL[dtype] of their scale (this is
    what keeps the footprint small and catches a wrong down path). Returns the footprint's share."""
    for level, (a, b) in enumerate(zip(pre_a, pre_b)):
        assert_smooth_close(a, b, DECODER_RTOL[dtype], f"{what} decoder level {level} before pooling")
    footprint = unpool_footprint(decoder, pre_a, pre_b, what)
    diff = (di_a.detach().double() - di_b.detach().double()).abs()
    assert diff.shape == footprint.shape, (diff.shape, footprint.shape)
    outside = diff[~footprint]
    worst = float(outside.max()) if outside.numel() else 0.0
    share = float(footprint.float().mean())
    print(f"{what}: near-tie footprint {share:.1%} of pixels, max diff outside {worst:.2e}, "
          f"inside {float(diff.max()):.2e}")  # shown with pytest -s
    assert worst <= DI_ATOL[dtype], (
        f"{what} dynamic image: max diff {worst:.3e} > {DI_ATOL[dtype]:g} outside the near-tie "
        f"footprint ({share:.1%} of pixels; max diff inside {float(diff.max()):.3e})")
    return share


def assert_outputs_equivalent(model, out_a, out_b, pre_a, pre_b, what: str = "") -> None:
    """Two runs of the same-weight `model` in its own dtype: smooth outputs within RTOL of their
    scale, the dynamic image as `assert_dynamic_images_agree`."""
    dtype = out_b.logits.dtype
    for field in FIELDS:
        assert_smooth_close(getattr(out_a, field), getattr(out_b, field), RTOL[dtype], f"{what} {field}")
    if out_b.dynamic_image is not None:
        assert_dynamic_images_agree(model.di_decoder, out_a.dynamic_image, out_b.dynamic_image,
                                    pre_a, pre_b, dtype, what)


def assert_paths_equivalent(model, x, run_a, run_b, what: str = "") -> None:
    """`run_a(m, x)` vs `run_b(m, x)` (each one forward of `m`), on a float64 copy of `model`
    (the maths) and on `model` itself in float32 (what runs)."""
    for m, inputs in ((as_float64(model), x.double()), (model, x)):
        a, pre_a = probed(m, lambda: run_a(m, inputs))
        b, pre_b = probed(m, lambda: run_b(m, inputs))
        assert_outputs_equivalent(m, a, b, pre_a, pre_b, f"{what} {inputs.dtype}")
