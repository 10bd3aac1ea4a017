"""Building blocks of the frame encoder (Next-ViT family, Chen et al. 2022).

LRA ("local relational aggregator") = Next-ViT's NCB; GRA ("global relational aggregator") =
Next-ViT's NTB. The released FDP code's LFA block is an LRA whose MHCA is one dense 3x3 conv
(`MHCA(dense=True)`).

All blocks map (N, C, H, W) -> (N, C', H', W'); N is frames (of all clips) in one batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

BN_EPS = 1e-5


def make_divisible(value: float, divisor: int) -> int:
    """Round to the nearest multiple of `divisor` (at least `divisor`), never more than 10% below `value`."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


class DropPath(nn.Module):
    """Stochastic depth: zero a sample's residual branch with probability p (training only)."""

    def __init__(self, p: float = 0.0):
        super().__init__()
        self.p = float(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.p == 0.0 or not self.training:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f"p={self.p:.3f}"


class ConvNormAct(nn.Module):
    """conv k x k (padding k // 2) -> BatchNorm -> ReLU."""

    def __init__(self, cin: int, cout: int, kernel: int = 3, stride: int = 1, bias: bool = False):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2, bias=bias)
        self.norm = nn.BatchNorm2d(cout, eps=BN_EPS)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.conv(x)))


class PatchEmbed(nn.Module):
    """Downsample / re-width: (2x2 avg-pool if stride 2) -> 1x1 conv -> BN; identity otherwise."""

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.pool = (nn.AvgPool2d(2, stride=2, ceil_mode=True, count_include_pad=False)
                     if stride == 2 else nn.Identity())
        if stride == 2 or cin != cout:
            self.conv = nn.Conv2d(cin, cout, 1, bias=False)
            self.norm = nn.BatchNorm2d(cout, eps=BN_EPS)
        else:
            self.conv = nn.Identity()
            self.norm = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.conv(self.pool(x)))


class _SmallMapConv3x3(torch.autograd.Function):
    """Dense 3x3 conv (stride 1, padding 1, no bias) whose **weight gradient** is one GEMM over
    unfolded patches. Forward and input gradient are the ordinary conv, so outputs are
    bit-identical to `F.conv2d`. On the 2x2 maps of the official last stage, oneDNN's
    backward-weights kernel takes ~8x the forward's time on our CPU (fp32 and bf16); this GEMM is
    ~5x faster (fdpkit bench, benchmarks/README.md)."""

    @staticmethod
    def forward(ctx, x, weight):
        ctx.save_for_backward(x, weight)
        return F.conv2d(x, weight, padding=1)

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        grad = grad.contiguous()
        grad_x = grad_w = None
        if ctx.needs_input_grad[0]:
            grad_x = torch.ops.aten.convolution_backward(
                grad, x, weight, None, [1, 1], [1, 1], [1, 1], False, [0, 0], 1,
                [True, False, False])[0]
        if ctx.needs_input_grad[1]:
            patches = F.unfold(x, 3, padding=1)  # 'n (c kh kw) (h w)'
            grad_w = torch.einsum("nkl,ncl->kc", rearrange(grad, "n k h w -> n k (h w)"), patches)
            grad_w = rearrange(grad_w, "k (c kh kw) -> k c kh kw", kh=3, kw=3)
        return grad_x, grad_w


if hasattr(torch, "get_autocast_dtype"):  # torch >= 2.4
    def _cpu_autocast() -> tuple[bool, torch.dtype]:
        return torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu")
else:  # older torch
    def _cpu_autocast() -> tuple[bool, torch.dtype]:
        return torch.is_autocast_cpu_enabled(), torch.get_autocast_cpu_dtype()


def conv3x3_small_map(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """`F.conv2d(x, weight, padding=1)` with the GEMM weight gradient; casts like CPU autocast."""
    enabled, dtype = _cpu_autocast()
    if enabled:
        x, weight = x.to(dtype), weight.to(dtype)
    with torch.autocast("cpu", enabled=False):
        return _SmallMapConv3x3.apply(x, weight)


class MHCA(nn.Module):
    """Multi-head convolutional attention.

    Paper / Next-ViT: grouped 3x3 conv (groups = C / head_dim: one group per head) -> BN -> ReLU
    -> 1x1 projection mixing the heads. ``dense=True``: the released code's version, a single dense
    3x3 conv with no groups, BN, activation or projection.

    Training fast path (dense only): on maps of at most `small_map_pixels` pixels (the 2x2 maps of
    the last stage) with grad enabled on CPU, the conv goes through `conv3x3_small_map` (same
    outputs, faster weight gradient). Set `small_map_wgrad = False` (class or instance) for the
    plain conv kernels.
    """

    small_map_wgrad = True
    small_map_pixels = 4

    def __init__(self, dim: int, head_dim: int, dense: bool = False):
        super().__init__()
        self.dense = dense
        if dense:
            self.conv = nn.Conv2d(dim, dim, 3, padding=1, bias=False)
        else:
            self.conv = nn.Conv2d(dim, dim, 3, padding=1, groups=dim // head_dim, bias=False)
            self.norm = nn.BatchNorm2d(dim, eps=BN_EPS)
            self.act = nn.ReLU(inplace=True)
            self.proj = nn.Conv2d(dim, dim, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.dense:
            if (self.small_map_wgrad and torch.is_grad_enabled() and x.device.type == "cpu"
                    and x.shape[-2] * x.shape[-1] <= self.small_map_pixels):
                return conv3x3_small_map(x, self.conv.weight)
            return self.conv(x)
        return self.proj(self.act(self.norm(self.conv(x))))


class ConvMlp(nn.Module):
    """1x1 conv -> ReLU -> 1x1 conv; hidden width rounded to a multiple of `divisor`."""

    def __init__(self, dim: int, ratio: float, divisor: int = 32):
        super().__init__()
        hidden = make_divisible(dim * ratio, divisor)
        self.fc1 = nn.Conv2d(dim, hidden, 1)
        self.act = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(hidden, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class LRA(nn.Module):
    """Local relational aggregator (Next-ViT NCB; the released code's LFA when dense_mhca=True).

    x = patch_embed(x); x = x + MHCA(x); x = x + MLP(BN(x)).
    """

    def __init__(self, cin: int, cout: int, stride: int = 1, head_dim: int = 32,
                 mlp_ratio: float = 3.0, mlp_divisor: int = 32, drop_path: float = 0.0,
                 dense_mhca: bool = False):
        super().__init__()
        self.patch_embed = PatchEmbed(cin, cout, stride)
        self.mhca = MHCA(cout, head_dim, dense=dense_mhca)
        self.mhca_drop = DropPath(drop_path)
        self.norm = nn.BatchNorm2d(cout, eps=BN_EPS)
        self.mlp = ConvMlp(cout, mlp_ratio, mlp_divisor)
        self.mlp_drop = DropPath(drop_path)

    def forward(self, x: torch.Tensor, return_attention: bool = False):
        x = self.patch_embed(x)
        x = x + self.mhca_drop(self.mhca(x))
        x = x + self.mlp_drop(self.mlp(self.norm(x)))
        return x, None


class EfficientMHSA(nn.Module):
    """Multi-head self-attention whose keys/values are spatially reduced (Next-ViT E-MHSA).

    Tokens (N, L, C). Keys and values come from an average pool over `sr_ratio ** 2` consecutive
    tokens (raster order, as Next-ViT) followed by BatchNorm1d; the pool kernel is clamped to L for
    small maps. The fast path uses the fused `scaled_dot_product_attention`; with
    `return_attention=True` the weights are computed explicitly and returned as
    (N, heads, L_q, L_kv).
    """

    def __init__(self, dim: int, head_dim: int = 32, sr_ratio: int = 1):
        super().__init__()
        self.heads = dim // head_dim
        self.head_dim = head_dim
        self.sr_ratio = sr_ratio
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim)
        self.proj = nn.Linear(dim, dim)
        self.norm = nn.BatchNorm1d(dim, eps=BN_EPS) if sr_ratio > 1 else nn.Identity()

    def kv_pool(self, tokens: int) -> int:
        """How many consecutive query tokens one key/value token averages: min(sr^2, L)."""
        return min(self.sr_ratio**2, tokens) if self.sr_ratio > 1 else 1

    def forward(self, x: torch.Tensor, return_attention: bool = False):
        kv = x
        if self.sr_ratio > 1:
            kernel = self.kv_pool(x.shape[1])
            kv = rearrange(x, "n l c -> n c l")
            kv = self.norm(F.avg_pool1d(kv, kernel, kernel))
            kv = rearrange(kv, "n c l -> n l c")
        q = rearrange(self.q(x), "n l (h d) -> n h l d", h=self.heads)
        k = rearrange(self.k(kv), "n l (h d) -> n h l d", h=self.heads)
        v = rearrange(self.v(kv), "n l (h d) -> n h l d", h=self.heads)
        if return_attention:
            logits = torch.einsum("nhqd,nhkd->nhqk", q, k) * self.head_dim**-0.5
            attn = torch.softmax(logits, dim=-1)
            out = torch.einsum("nhqk,nhkd->nhqd", attn, v)
        else:
            attn = None
            out = F.scaled_dot_product_attention(q, k, v)
        out = self.proj(rearrange(out, "n h l d -> n l (h d)"))
        return out, attn


class GRA(nn.Module):
    """Global relational aggregator (Next-ViT NTB).

    x = patch_embed(x) to the attention width; x = x + E-MHSA(BN(x)); an MHCA branch on a 1x1
    projection of x (out = proj(x); out = out + MHCA(out)); x = concat(x, out) -> width `cout`;
    x = x + MLP(BN(x)). The attention width is `mix_ratio * cout` rounded to a multiple of
    head_dim, kept at most `cout - head_dim` so that the MHCA branch is never empty.
    """

    def __init__(self, cin: int, cout: int, stride: int = 1, head_dim: int = 32, sr_ratio: int = 1,
                 mlp_ratio: float = 2.0, mlp_divisor: int = 32, mix_ratio: float = 0.75,
                 drop_path: float = 0.0):
        super().__init__()
        mhsa_c = min(make_divisible(cout * mix_ratio, head_dim), cout - head_dim)
        mhca_c = cout - mhsa_c
        self.patch_embed = PatchEmbed(cin, mhsa_c, stride)
        self.norm1 = nn.BatchNorm2d(mhsa_c, eps=BN_EPS)
        self.attn = EfficientMHSA(mhsa_c, head_dim, sr_ratio)
        self.attn_drop = DropPath(drop_path * mix_ratio)
        self.projection = PatchEmbed(mhsa_c, mhca_c, 1)
        self.mhca = MHCA(mhca_c, head_dim)
        self.mhca_drop = DropPath(drop_path * (1 - mix_ratio))
        self.norm2 = nn.BatchNorm2d(cout, eps=BN_EPS)
        self.mlp = ConvMlp(cout, mlp_ratio, mlp_divisor)
        self.mlp_drop = DropPath(drop_path)

    def forward(self, x: torch.Tensor, return_attention: bool = False):
        x = self.patch_embed(x)
        h, w = x.shape[-2:]
        tokens = rearrange(self.norm1(x), "n c h w -> n (h w) c")
        out, attn = self.attn(tokens, return_attention)
        x = x + self.attn_drop(rearrange(out, "n (h w) c -> n c h w", h=h, w=w))
        out = self.projection(x)
        out = out + self.mhca_drop(self.mhca(out))
        x = torch.cat([x, out], dim=1)
        x = x + self.mlp_drop(self.mlp(self.norm2(x)))
        return x, attn
