"""Rank scorer + temporal pooling: T per-frame maps -> K-channel dynamic representation R.

Learned scorer (`RankPool`), for rank channel k and frame t:
    c[k, t] = W[k, t] * map_t            (3x3 spatial conv, zero padding)
    s[k, t] = spatial mean of c[k, t]    (the rank score of frame t in channel k)
    R[k]    = sum_t c[k, t] + b[k]       (the pooled dynamic representation)
This is exactly a Conv3d(1 -> K) whose kernel spans the whole time axis, written so that the
per-frame terms are visible; the weight is stored as (K, 1, kh, kw, T) -- the released code's
Conv3d layout with time last -- so that `weight[k, 0, :, :, t]` is W[k, t]. Note the identity
sum_t s[k, t] + b[k] = spatial mean of R[k].

`MeanPool` (ablation): R = plain temporal average of the maps (one channel, no parameters), and
rank scores = per-frame spatial means (B, 1, T).

`chronological_rank_loss` is **an fdpkit extension, not in the paper or the released code**: a
pairwise logistic (RankNet) loss asking every channel's scores to rise with time.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange, reduce
from torch import nn


def rank_pooling_coefficients(num_frames: int) -> torch.Tensor:
    """Approximate rank pooling weights alpha_t = sum_{i=t..T} (2i - T - 1) / i, t = 1..T (float64).

    T = 8: [-8.461, -1.461, 1.039, 2.039, 2.289, 2.089, 1.589, 0.875] (Bilen et al.).
    """
    i = torch.arange(1, num_frames + 1, dtype=torch.float64)
    terms = (2 * i - num_frames - 1) / i
    return terms.flip(0).cumsum(0).flip(0)


class RankPool(nn.Module):
    """Learned rank scorer + temporal pooling over maps (B, T, h, w).

    forward -> (R (B, K, h, w), scores (B, K, T));
    `return_contributions=True` also returns c (B, K, T, h, w).
    init="arp": the centre tap of W[k, t] starts at alpha_t / max|alpha| (approximate rank pooling)
    plus the default random init scaled by 0.1 so that the K channels differ.
    fused=True (the `official` variant): R is computed by one `F.conv3d` on the time-last stack,
    the released code's own op, so that R is bit-identical to it (the decoder's max-unpool turns
    last-bit differences of R into visible pixels); the scores still come from the contributions.
    """

    def __init__(self, frames: int, channels: int = 8, kernel: int = 3, init: str = "random",
                 fused: bool = False):
        super().__init__()
        self.frames, self.channels, self.kernel, self.fused = frames, channels, kernel, fused
        self.weight = nn.Parameter(torch.empty(channels, 1, kernel, kernel, frames))
        self.bias = nn.Parameter(torch.empty(channels))
        self.reset_parameters(init)

    def reset_parameters(self, init: str = "random") -> None:
        # nn.Conv3d's default initialisation (fan_in = kernel * kernel * frames)
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        bound = 1 / math.sqrt(self.kernel * self.kernel * self.frames)
        nn.init.uniform_(self.bias, -bound, bound)
        if init == "arp":
            alpha = rank_pooling_coefficients(self.frames)
            alpha = (alpha / alpha.abs().max()).to(self.weight.dtype)
            with torch.no_grad():
                self.weight.mul_(0.1)
                self.weight[:, 0, self.kernel // 2, self.kernel // 2, :] += alpha
        elif init != "random":
            raise ValueError(f"unknown rank init {init!r}")

    def forward(self, maps: torch.Tensor, return_contributions: bool = False):
        t = maps.shape[1]
        if t != self.frames:
            raise ValueError(f"RankPool was built for {self.frames} frames, got {t}")
        # one grouped conv computes every (k, t) term: group t holds the K kernels of frame t
        weight = rearrange(self.weight, "k one i j t -> (t k) one i j")
        contrib = F.conv2d(maps, weight, padding=self.kernel // 2, groups=t)
        contrib = rearrange(contrib, "b (t k) h w -> b k t h w", t=t)
        scores = reduce(contrib, "b k t h w -> b k t", "mean")
        if self.fused:  # the same sum, as the released Conv3d(kernel (k, k, T), padding (p, p, 0))
            p = self.kernel // 2
            stack = rearrange(maps, "b t h w -> b 1 h w t")
            pooled = F.conv3d(stack, self.weight, self.bias, padding=(p, p, 0))
            pooled = rearrange(pooled, "b k h w 1 -> b k h w")
        else:
            pooled = reduce(contrib, "b k t h w -> b k h w", "sum") + self.bias[:, None, None]
        if return_contributions:
            return pooled, scores, contrib
        return pooled, scores

    def extra_repr(self) -> str:
        return (f"frames={self.frames}, channels={self.channels}, kernel={self.kernel}, "
                f"fused={self.fused}")


class MeanPool(nn.Module):
    """Ablation: R = temporal mean of the maps (B, 1, h, w); scores = per-frame spatial means."""

    channels = 1

    def forward(self, maps: torch.Tensor, return_contributions: bool = False):
        pooled = reduce(maps, "b t h w -> b 1 h w", "mean")
        scores = reduce(maps, "b t h w -> b 1 t", "mean")
        if return_contributions:
            return pooled, scores, rearrange(maps / maps.shape[1], "b t h w -> b 1 t h w")
        return pooled, scores


def chronological_rank_loss(scores: torch.Tensor) -> torch.Tensor:
    """fdpkit extension (not in the paper/released code): mean over (batch, channel, t < t') of
    log(1 + exp(-(s[t'] - s[t]))) -- a pairwise logistic loss rewarding scores that increase with
    time, as in rank pooling's ranking objective. scores: (B, K, T) -> scalar."""
    t = scores.shape[-1]
    if t < 2:
        return scores.sum() * 0
    diff = scores[..., None, :] - scores[..., :, None]  # [..., i, j] = s_j - s_i
    later = torch.triu(torch.ones(t, t, dtype=torch.bool, device=scores.device), diagonal=1)
    return F.softplus(-diff[..., later]).mean()
