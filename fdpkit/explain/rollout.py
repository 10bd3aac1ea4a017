"""Attention roll-out (Abnar & Zuidema 2020) over the GRA blocks of the ``paper`` variant.

Each block's head-averaged attention A (L_q, L_kv) is first expanded to (L_q, L_q) -- a key/value
token is the average of ``kernel = min(sr_ratio**2, L_q)`` consecutive query tokens (E-MHSA spatial
reduction), so its weight is shared equally among them -- then mixed with the residual path
(``residual * I + (1 - residual) * A``). Between stages the grid halves: a token of the coarser
grid averages its 2x2 children. Products of these row-stochastic matrices give, for every token
of the last GRA block, a distribution over the tokens of the first GRA block; its mean over the
last block's tokens, upsampled to the input size, is the per-frame attention map (sums to 1). The
convolutional (LRA) blocks between GRA blocks are treated as identity, the usual roll-out
approximation.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from fdpkit.model.blocks import GRA


def gra_kernels(model) -> list[int]:
    """Spatial-reduction pool size (sr_ratio**2) of each GRA block, in order."""
    return [block.attn.sr_ratio ** 2 for block in model.encoder.blocks if isinstance(block, GRA)]


def _expand_kv(attention: torch.Tensor, kernel: int) -> torch.Tensor:
    """(N, L_q, L_kv) -> (N, L_q, L_q): each key/value token's weight shared by its pooled tokens."""
    l_q, l_kv = attention.shape[-2:]
    if l_kv == l_q:
        return attention
    kernel = min(kernel, l_q)
    pool = torch.zeros(l_kv, l_q, dtype=attention.dtype)
    for j in range(l_kv):
        pool[j, j * kernel:(j + 1) * kernel] = 1.0 / kernel
    return attention @ pool


def _downsample(l_fine: int, l_coarse: int, dtype) -> torch.Tensor:
    """(L_coarse, L_fine): a coarse token = mean of its children on square raster grids."""
    fine, coarse = math.isqrt(l_fine), math.isqrt(l_coarse)
    if fine * fine != l_fine or coarse * coarse != l_coarse or fine % coarse:
        raise ValueError(f"cannot map a {l_fine}-token grid onto {l_coarse} tokens (not square grids)")
    f = fine // coarse
    matrix = torch.zeros(l_coarse, l_fine, dtype=dtype)
    for r in range(fine):
        for c in range(fine):
            matrix[(r // f) * coarse + c // f, r * fine + c] = 1.0 / (f * f)
    return matrix


def rollout_matrix(attentions, kernels=None, residual: float = 0.5) -> torch.Tensor:
    """(N, L_last, L_first) row-stochastic roll-out from the GRA attentions [(N, heads, L_q, L_kv)]."""
    if not attentions:
        raise ValueError("no attention maps: the model has no GRA block "
                         "(encoder='cnn' or variant='official'); use variant='paper', encoder lgfat/vit")
    kernels = kernels or [a.shape[-2] // a.shape[-1] for a in attentions]
    joint = None
    for attention, kernel in zip(attentions, kernels):
        a = _expand_kv(attention.detach().double().mean(dim=1), kernel)
        a = residual * torch.eye(a.shape[-1], dtype=a.dtype) + (1 - residual) * a
        a = a / a.sum(dim=-1, keepdim=True)
        if joint is None:
            joint = a
            continue
        if joint.shape[-2] != a.shape[-1]:
            joint = _downsample(joint.shape[-2], a.shape[-1], a.dtype) @ joint
        joint = a @ joint
    return joint.float()


def attention_maps(model, x: torch.Tensor, residual: float = 0.5) -> np.ndarray:
    """Rolled-out attention per frame on the input grid: x (B, T, 1, H, W) -> (B, T, H, W), each
    frame's map summing to 1."""
    model = model.eval()
    with torch.no_grad():
        attentions = model(x, return_attention=True).attentions
    joint = rollout_matrix(attentions, gra_kernels(model), residual)
    tokens = joint.mean(dim=1)  # (B*T, L_first)
    side = math.isqrt(tokens.shape[-1])
    grid = tokens.reshape(-1, 1, side, side)
    b, t, _, h, w = x.shape
    up = F.interpolate(grid, size=(h, w), mode="bilinear", align_corners=False).clamp_min(0)
    up = up / up.sum(dim=(-2, -1), keepdim=True)
    return up.reshape(b, t, h, w).cpu().numpy()


__all__ = ["gra_kernels", "rollout_matrix", "attention_maps"]
