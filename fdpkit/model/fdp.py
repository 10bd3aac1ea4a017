"""The FDP model: frames -> per-frame features -> rank pooling -> MER logits + dynamic image.

    x (B, T, 1, H, W)
      -> forward_features: every frame of every clip through the frame encoder as one batch
         (or one frame position at a time with `frame_loop=True`) -> frame_features (B, T, D)
      -> forward_head: layout to maps (B, T, s, s) with s * s = D
                       (paper: 'b t (h w) -> b t h w'; official: the released scrambled layout)
                    -> rank scorer + temporal pooling -> R (B, K, s, s), rank_scores (B, K, T)
                    -> MER head -> logits (B, C)
                    -> SegNet decoder -> sigmoid -> dynamic_image (B, s, s)
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from .config import FDPConfig, make_config
from .encoder import FrameEncoder
from .heads import MERHead, SegNetDecoder
from .official import official_layout
from .rank import MeanPool, RankPool, chronological_rank_loss


class FDPOutput(NamedTuple):
    """Model output. `dynamic_image` is None when the decoder is switched off; `attentions` is a
    list (one per GRA block, in order) of (B*T, heads, L_q, L_kv) softmax weights, only when
    `return_attention=True` (rows indexed by frame (b t) in that order; [] for an encoder without
    GRA blocks). `rank_scores[:, k, t]` is the spatial mean of frame t's contribution to rank
    channel k; in the `official` variant the last axis is instead the released Conv3d's
    kernel-depth position (a feature offset within each frame, see `fdpkit.model.official`)."""

    logits: torch.Tensor  # (B, C)
    dynamic_image: torch.Tensor | None  # (B, s, s) in [0, 1]
    rank_scores: torch.Tensor  # (B, K, T)
    frame_features: torch.Tensor  # (B, T, D)
    attentions: list[torch.Tensor] | None = None


def as_model_input(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Frames of another floating dtype (float64, float16) are cast to the weights' dtype; integer
    frames (uint8 pixels) are refused: the model takes floats in [-1, 1] (`x / 127.5 - 1`, what
    `fdpkit.data.dataset.frames_to_float` does)."""
    if not torch.is_floating_point(x):
        raise TypeError(f"frames must be floating point in [-1, 1], got {x.dtype}; convert uint8 "
                        "pixels with x / 127.5 - 1 (fdpkit.data.dataset.frames_to_float)")
    return x if x.dtype == dtype else x.to(dtype)


class FDP(nn.Module):
    def __init__(self, cfg: FDPConfig):
        super().__init__()
        self.cfg = cfg.validate()
        self.encoder = FrameEncoder(cfg)
        if cfg.rank_scorer == "learned":
            self.rank = RankPool(cfg.frames, cfg.rank_channels, cfg.rank_kernel, cfg.rank_init,
                                 fused=cfg.variant == "official")
        else:
            self.rank = MeanPool()
        self.mer_head = MERHead(cfg.rank_out_channels, cfg.feature_size, cfg.num_classes,
                                cfg.mer_hidden, cfg.mer_pool)
        self.di_decoder = (SegNetDecoder(cfg.rank_out_channels, 1, cfg.segnet_widths,
                                         cfg.segnet_depths) if cfg.dynamic_image else None)

    # -- frames -> frame features -------------------------------------------------------------
    def forward_features(self, x: torch.Tensor, return_attention: bool = False):
        """(B, T, C, H, W) -> (frame_features (B, T, D), attentions or None)."""
        if x.ndim != 5:
            raise ValueError(f"expected x of shape (B, T, C, H, W), got {tuple(x.shape)}")
        b, t = x.shape[:2]
        expected = (self.cfg.in_chans, self.cfg.size, self.cfg.size)
        if tuple(x.shape[2:]) != expected:
            raise ValueError(f"expected frames of shape {expected}, got {tuple(x.shape[2:])}")
        x = as_model_input(x, self.encoder.head.weight.dtype)
        if self.cfg.frame_loop:
            feats, attns = [], [] if return_attention else None
            for i in range(t):  # as the released code: BatchNorm sees B frames per call
                f, a = self.encoder(x[:, i], return_attention)
                feats.append(f)
                if return_attention:
                    attns.append(a)
            feats = rearrange(feats, "t b d -> b t d")  # a list of T tensors stacks on t
            if return_attention:  # per GRA block: T tensors (b ...) -> ((b t) ...)
                attns = [rearrange(list(per_block), "t b ... -> (b t) ...")
                         for per_block in zip(*attns)]
            return feats, attns
        frames = rearrange(x, "b t c h w -> (b t) c h w")
        # official: the final Linear per frame position, to keep the released loop's bits
        per_position = t if self.cfg.variant == "official" else None
        feats, attns = self.encoder(frames, return_attention, head_per_position=per_position)
        return rearrange(feats, "(b t) d -> b t d", b=b, t=t), attns

    # -- frame features -> outputs ------------------------------------------------------------
    def to_maps(self, frame_features: torch.Tensor) -> torch.Tensor:
        """(B, T, D) -> (B, T', s, s), the stack the rank scorer pools over its second axis."""
        s = self.cfg.feature_size
        if self.cfg.variant == "official":
            return official_layout(frame_features, s)
        return rearrange(frame_features, "b t (h w) -> b t h w", h=s, w=s)

    def forward_head(self, frame_features: torch.Tensor, attentions=None) -> FDPOutput:
        rep, scores = self.rank(self.to_maps(frame_features))
        logits = self.mer_head(rep)
        di = None
        if self.di_decoder is not None:
            di = torch.sigmoid(rearrange(self.di_decoder(rep), "b 1 h w -> b h w"))
        return FDPOutput(logits, di, scores, frame_features, attentions)

    def forward(self, x: torch.Tensor, return_attention: bool = False) -> FDPOutput:
        feats, attns = self.forward_features(x, return_attention)
        return self.forward_head(feats, attns)

    def forward_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Logits only, the function to hand to Captum:
        `IntegratedGradients(model.forward_logits)` (or wrap the model in `LogitsOnly`)."""
        return self.forward(x).logits

    def representation(self, x: torch.Tensor, return_contributions: bool = False):
        """R (B, K, s, s) and rank scores (and per-frame contributions c (B, K, T, s, s))."""
        return self.rank(self.to_maps(self.forward_features(x)[0]), return_contributions)


class LogitsOnly(nn.Module):
    """Wrap an FDP so that calling it returns only the logits (for Captum and friends)."""

    def __init__(self, model: FDP):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x).logits


def build_model(preset: str = "paper", num_classes: int | None = None, **overrides: Any) -> FDP:
    """Build an FDP model: defaults <- `PRESETS[preset]` <- overrides (any `FDPConfig` field)."""
    if num_classes is not None:
        overrides["num_classes"] = num_classes
    return FDP(make_config(preset, **overrides))


def fdp_loss(output: FDPOutput, labels: torch.Tensor, di_target: torch.Tensor | None = None,
             ce_weight: float = 1.0, di_weight: float = 100.0, rank_weight: float = 0.0,
             detached_parts: bool = False):
    """total = ce_weight * CE(logits, labels) + di_weight * MSE(dynamic_image, di_target)
             + rank_weight * chronological_rank_loss(rank_scores).

    * CE: mean cross-entropy on the logits (= the released NLL of log_softmax).
    * DI: mean squared error against `di_target` (B, H, W) in [0, 1]; if the prediction is smaller
      (e.g. 16x16 in `tiny`), the target is area-averaged to the prediction's size first. Skipped
      (0) when the model has no decoder, `di_target` is None or `di_weight` is 0.
    * rank: the fdpkit extension (off by default, weight 0), see `rank.chronological_rank_loss`.

    Returns (total, parts): `total` is a scalar tensor with grad; `parts` maps "ce", "di", "rank"
    to the *unweighted* terms (for logging) as floats, or, with `detached_parts=True`, as detached
    tensors on the loss's device (the trainer reads them back every few steps, not every step).
    """
    value = (lambda t: t.detach()) if detached_parts else (lambda t: float(t.detach()))
    ce = F.cross_entropy(output.logits, labels)
    total = ce_weight * ce
    zero = value(ce.new_zeros(()))  # an off term: a device tensor too, so reading it never syncs
    parts = {"ce": value(ce), "di": zero, "rank": zero}
    if output.dynamic_image is not None and di_target is not None and di_weight:
        pred = output.dynamic_image
        target = di_target.to(pred.dtype)
        if target.shape[-2:] != pred.shape[-2:]:
            target = F.adaptive_avg_pool2d(rearrange(target, "b h w -> b 1 h w"), pred.shape[-2:])
            target = rearrange(target, "b 1 h w -> b h w")
        di = F.mse_loss(pred, target)
        total = total + di_weight * di
        parts["di"] = value(di)
    if rank_weight:
        rank = chronological_rank_loss(output.rank_scores)
        total = total + rank_weight * rank
        parts["rank"] = value(rank)
    return total, parts
