"""Single-frame baselines on FDP's own frame encoder: does FDP's temporal modelling help?

* `apex-frame`: the middle sampled frame (index T // 2; with onset-offset sampling it sits near the
  apex) -> the same frame encoder as FDP -> Linear(D -> C).
* `difference`: (middle frame - first frame), values in [-2, 2] -> the same encoder -> Linear.

The encoder is `build_model(preset, dynamic_image=False, **overrides).encoder`, i.e. the exact
`FrameEncoder` (same preset, same overrides, same initialisation for the same seed) that FDP uses.
Outputs are `FDPOutput`s with `dynamic_image=None`, so `fdp_loss` trains them with CE alone and the
trainer, runner and metrics treat them like FDP.
"""

from __future__ import annotations

import torch
from torch import nn

from fdpkit.model.fdp import FDPOutput, as_model_input, build_model

BASELINES = ("apex-frame", "difference")


class FrameBaseline(nn.Module):
    def __init__(self, kind: str, encoder: nn.Module, feature_dim: int, num_classes: int, cfg=None):
        super().__init__()
        if kind not in BASELINES:
            raise ValueError(f"baseline must be one of {BASELINES}, got {kind!r}")
        self.kind, self.cfg = kind, cfg
        self.encoder = encoder
        self.head = nn.Linear(feature_dim, num_classes)

    def select_frame(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, 1, H, W) -> the encoder's input (B, 1, H, W)."""
        if x.ndim != 5:
            raise ValueError(f"expected x of shape (B, T, C, H, W), got {tuple(x.shape)}")
        x = as_model_input(x, self.head.weight.dtype)
        middle = x[:, x.shape[1] // 2]
        return middle if self.kind == "apex-frame" else middle - x[:, 0]

    def forward(self, x: torch.Tensor, return_attention: bool = False):
        features, attentions = self.encoder(self.select_frame(x), return_attention)
        logits = self.head(features)
        scores = x.new_zeros(x.shape[0], 1, x.shape[1])  # no rank scorer
        return FDPOutput(logits, None, scores, features[:, None], attentions)

    def forward_logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward(x).logits


def build_baseline(kind: str, preset: str = "tiny", num_classes: int = 5, **overrides) -> FrameBaseline:
    """The baseline `kind` on the frame encoder of `build_model(preset, **overrides)`."""
    overrides = {**overrides, "dynamic_image": False}
    fdp = build_model(preset, num_classes=num_classes, **overrides)
    return FrameBaseline(kind, fdp.encoder, fdp.cfg.feature_dim, num_classes, fdp.cfg)


def build_apex_frame(preset: str = "tiny", num_classes: int = 5, **overrides) -> FrameBaseline:
    """`apex-frame` in `fdpkit.registry.MODELS`."""
    return build_baseline("apex-frame", preset, num_classes, **overrides)


def build_difference(preset: str = "tiny", num_classes: int = 5, **overrides) -> FrameBaseline:
    """`difference` in `fdpkit.registry.MODELS`."""
    return build_baseline("difference", preset, num_classes, **overrides)


__all__ = ["BASELINES", "FrameBaseline", "build_baseline", "build_apex_frame", "build_difference"]
