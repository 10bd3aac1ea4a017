"""Execution modes of the model benchmarks, and the switches that put one shared model (and its
optimiser) into a mode between timed calls, so that every mode runs on the same weights. Used by
`fdpkit_bench.cases` and by tests/test_fast_paths.py, which checks each fast path against the
reference.

Modes (`mode_settings(name)`; a name is a base plus "+options"):
  reference              frame_loop=True, fp32, NCHW, plain conv kernels, torch.optim.Adam defaults
  batched                all B*T frames through the encoder as one batch (the model's default),
                         the model's 2x2-map conv weight-gradient path, fused Adam
  bf16                   batched under torch.autocast("cpu", bfloat16)
  +plainconv             oneDNN's own weight gradient on the 2x2 maps (ablation of that path)
  +channels_last         NHWC weights/activations
  +checkpoint            activation checkpointing of the encoder blocks (memory, not speed)
  +pure                  inference only: a bf16 copy of the weights, bf16 input, no autocast
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch

REFERENCE = "reference"

# A mode name is a base and options joined by "+": base "reference" (frames one at a time, fp32,
# torch.optim.Adam defaults: the released code's execution strategy), "batched" (all B*T frames
# as one encoder batch, fp32, fused Adam) or "bf16" (batched under bf16 autocast, fused Adam);
# options: "channels_last", "plainconv" (oneDNN's own weight gradient for the official 2x2-map
# MHCA convs instead of the model's GEMM path, fdpkit.model.blocks.conv3x3_small_map), "checkpoint"
# (encoder activation checkpointing), "unfused" (default Adam instead of fused), "pure" (inference:
# a bf16 copy of the weights). The reference runs the released code's kernels (plain convs).
BASES = {
    "reference": {"frame_loop": True, "precision": "fp32", "fused_adam": False,
                  "small_map_conv": False},
    "batched": {"frame_loop": False, "precision": "fp32", "fused_adam": True,
                "small_map_conv": True},
    "bf16": {"frame_loop": False, "precision": "bf16", "fused_adam": True, "small_map_conv": True},
}
OPTIONS = {
    "channels_last": {"channels_last": True},
    "plainconv": {"small_map_conv": False},
    "checkpoint": {"checkpoint": True},
    "unfused": {"fused_adam": False},
    "pure": {"pure_bf16": True},  # inference only: a bf16 copy of the weights, bf16 input, no autocast
}


def mode_settings(name: str) -> dict[str, Any]:
    """'bf16+checkpoint+channels_last' -> {'frame_loop': False, 'precision': 'bf16', ...}."""
    base, *options = name.split("+")
    if base not in BASES or any(o not in OPTIONS for o in options):
        raise ValueError(f"unknown mode {name!r}: base one of {sorted(BASES)}, "
                         f"options among {sorted(OPTIONS)}")
    settings = dict(BASES[base])
    for option in options:
        settings.update(OPTIONS[option])
    if settings.get("pure_bf16") and settings["precision"] != "bf16":
        raise ValueError(f"mode {name!r}: 'pure' needs the bf16 base")
    return settings


class _Modes(dict):
    def __missing__(self, name: str) -> dict[str, Any]:
        return mode_settings(name)


MODES: dict[str, dict[str, Any]] = _Modes()  # MODES["bf16+checkpoint"] -> settings

# The modes each benchmark measures by default (the first is the reference). `train_modes` picks
# per preset and batch size: plainconv only matters for the official variant (dense 3x3 MHCA on
# 2x2 maps); activation checkpointing is the memory option for large batches.
TRAIN_MODES = ("reference", "batched", "bf16")
FORWARD_MODES = ("reference", "batched", "bf16", "bf16+pure")
LARGE_BATCH = 32


def train_modes(preset: str, batch: int) -> tuple[str, ...]:
    if preset == "official":
        if batch >= LARGE_BATCH:  # the plain-conv ablation is measured at the small batch (time)
            return ("reference", "batched", "bf16")
        return ("reference", "batched+plainconv", "batched", "bf16")
    if preset == "paper" and batch >= LARGE_BATCH:
        return ("reference", "batched", "bf16", "bf16+checkpoint")
    return TRAIN_MODES


def mode_label(name: str) -> str:
    """The record's `mode` (precision has its own column)."""
    return name.replace("bf16", "batched", 1) if name.startswith("bf16") else name


# ------------------------------------------------------------------------------ model switches
def set_channels_last(model, optimizer=None, enabled: bool = True) -> None:
    """Re-lay every 4-D parameter (and its Adam state) as NHWC (enabled) or NCHW, in place.

    Parameter objects are kept (`p.data = ...`), so an optimiser holding them stays valid.
    """
    fmt = torch.channels_last if enabled else torch.contiguous_format
    for p in model.parameters():
        if p.dim() == 4:
            p.data = p.data.contiguous(memory_format=fmt)
            if p.grad is not None:
                p.grad = None
            if optimizer is not None:
                for key, value in optimizer.state.get(p, {}).items():
                    if torch.is_tensor(value) and value.dim() == 4:
                        optimizer.state[p][key] = value.contiguous(memory_format=fmt)


def checkpoint_targets(model) -> list:
    """The modules whose activations `set_checkpointing` drops: the frame encoder's stem layers and
    blocks (most of a train step's activation memory). (Checkpointing the SegNet layers as well was
    measured: slower and no lower peak on this CPU, so it is not done.)"""
    return list(model.encoder.stem) + list(model.encoder.blocks)


def set_checkpointing(model, enabled: bool = True) -> None:
    """Activation checkpointing per stem layer / encoder block (torch.utils.checkpoint, non-reentrant):
    only each module's input is kept for backward and its inside is recomputed. Installed as an
    instance-level `forward`, removed again with enabled=False. (BatchNorm running statistics are
    updated a second time during recomputation -- fine for timing and memory, not a recipe.)"""
    from torch.utils.checkpoint import checkpoint

    for module in checkpoint_targets(model):
        if enabled:
            plain = type(module).forward

            def forward(*args, _m=module, _f=plain, **kwargs):
                if not torch.is_grad_enabled():
                    return _f(_m, *args, **kwargs)
                return checkpoint(_f, _m, *args, use_reentrant=False, **kwargs)

            module.forward = forward
        else:
            module.__dict__.pop("forward", None)


def small_map_targets(model) -> list:
    """The dense (released-style) MHCA modules: their convs on 2x2 maps take the model's GEMM
    weight-gradient path (`fdpkit.model.blocks.conv3x3_small_map`) unless switched off."""
    from fdpkit.model.blocks import MHCA

    return [m for m in model.modules() if isinstance(m, MHCA) and getattr(m, "dense", False)]


def set_small_map_conv(model, enabled: bool = True) -> None:
    """Switch the model's small-map weight-gradient path on (its default) or off (plain conv
    kernels, as the released code) for every dense MHCA of `model`."""
    for module in small_map_targets(model):
        module.small_map_wgrad = bool(enabled)


class ModeSwitch:
    """Puts the shared model / optimiser into a mode for one call (untimed setup + a context)."""

    def __init__(self, model, optimizer=None):
        self.model, self.optimizer = model, optimizer
        self.channels_last = False
        self.checkpointing = False
        self.small_map: bool | None = None  # unknown until the first setup

    def setup(self, mode: dict[str, Any]) -> None:
        cl = bool(mode.get("channels_last"))
        if cl != self.channels_last:
            set_channels_last(self.model, self.optimizer, cl)
            self.channels_last = cl
        self.model.cfg.frame_loop = bool(mode.get("frame_loop"))
        small = bool(mode.get("small_map_conv"))
        if small != self.small_map:
            set_small_map_conv(self.model, small)
            self.small_map = small
        ckpt = bool(mode.get("checkpoint"))
        if ckpt != self.checkpointing:
            set_checkpointing(self.model, ckpt)
            self.checkpointing = ckpt
        if self.optimizer is not None:
            fused = bool(mode.get("fused_adam"))
            for group in self.optimizer.param_groups:
                group["fused"] = fused or None
                group["foreach"] = None if fused else False

    @staticmethod
    def autocast(mode: dict[str, Any]):
        if mode.get("precision") == "bf16":
            return torch.autocast("cpu", dtype=torch.bfloat16)
        return contextlib.nullcontext()
