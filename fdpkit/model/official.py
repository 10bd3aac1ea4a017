"""The released code's layout and checkpoint format (github.com/CYF-cuber/FDP, `fdp.py`).

Facts reproduced here (measured by running the released code; no code is taken from it):

* the 8 frame features (B, 8, 4096) are stacked and `reshape(-1, 1, 64, 64, 8)`-ed. Read as
  einops, that reshape is ``'b t (r w c) -> b (t r) w c'`` with w = 64, c = 8, r = 64 / 8: the last
  axis holds **8 consecutive feature values of one frame**, and frame t fills rows 8t .. 8t+7. The
  intended layout (8 maps of 64x64 over time) is what the `paper` variant uses.
* the MER Conv3d(1 -> 8, kernel (3, 3, 8), padding (1, 1, 0)) therefore pools over that
  within-frame axis c, not over time. `official_layout` hands the rank scorer this stack with c as
  its "time" axis, so for the official variant `rank_scores[:, k, p]` is the spatial mean of the
  Conv3d's contribution from kernel-depth position p (feature offset p within each group of 8),
  **not** a per-frame score; their sum over p plus the bias is the mean of the Conv3d output.
* state_dict: 438 tensors under `frame_rep.` (encoder), `mer.` (Conv3d + FCs), `dyimg_net.`
  (SegNet). `official_module_table` maps those module paths onto fdpkit's; leaf names
  (weight, bias, running_mean, ...) are identical, and so are all shapes.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from typing import Any, Mapping

import torch
from einops import rearrange
from torch import nn

from fdpkit.io import load_torch

from .config import FDPConfig
from .encoder import block_plan


def official_layout(frame_features: torch.Tensor, side: int) -> torch.Tensor:
    """(B, T, D) -> (B, c=T, s, s): the released `reshape(-1, 1, s, s, T)`, channel axis first.

    Map row (t r) = frame t, sub-row r; within a row, feature index = r * s * T + w * T + c.
    """
    t = frame_features.shape[1]
    if side % t:
        raise ValueError(f"official layout needs feature side {side} divisible by T = {t}")
    return rearrange(frame_features, "b t (r w c) -> b c (t r) w", w=side, c=t)


def official_module_table(cfg: FDPConfig) -> list[tuple[str, str]]:
    """(released module path, fdpkit module path) for every module holding tensors, in the
    released state_dict's order."""
    table: list[tuple[str, str]] = []
    for i in range(len(cfg.stem_chs) + 1):
        table += [(f"frame_rep.stem.{i}.conv", f"encoder.stem.{i}.conv"),
                  (f"frame_rep.stem.{i}.norm", f"encoder.stem.{i}.norm")]
    for j, spec in enumerate(block_plan(cfg)):
        src, dst = f"frame_rep.features.{j}", f"encoder.blocks.{j}"
        if spec.stride == 2 or spec.cin != spec.cout:
            table += [(f"{src}.patch_embed.conv", f"{dst}.patch_embed.conv"),
                      (f"{src}.patch_embed.norm", f"{dst}.patch_embed.norm")]
        table += [(f"{src}.mhca.group_conv3x3", f"{dst}.mhca.conv"),
                  (f"{src}.norm", f"{dst}.norm"),
                  (f"{src}.mlp.conv1", f"{dst}.mlp.fc1"),
                  (f"{src}.mlp.conv2", f"{dst}.mlp.fc2")]
    table += [("frame_rep.norm", "encoder.norm"), ("frame_rep.proj_head.0", "encoder.head"),
              ("mer.conv3d", "rank"), ("mer.fc1", "mer_head.fc1"), ("mer.fc2", "mer_head.fc2")]
    if cfg.dynamic_image:
        depths = cfg.segnet_depths
        levels = len(depths)
        for lvl, depth in enumerate(depths):  # encoder: conv{L}{I}, bn{L}{I}
            for i in range(depth):
                name = f"{lvl + 1}{i + 1}"
                table += [(f"dyimg_net.conv{name}", f"di_decoder.down.{lvl}.{i}.conv"),
                          (f"dyimg_net.bn{name}", f"di_decoder.down.{lvl}.{i}.norm")]
        for j in range(levels):  # decoder: level L = levels - j, conv{L}{I}d for I = n .. 1
            lvl, depth = levels - 1 - j, depths[levels - 1 - j]
            for i in range(depth):
                name = f"{lvl + 1}{depth - i}d"
                if lvl == 0 and i == depth - 1:
                    table.append((f"dyimg_net.conv{name}", "di_decoder.out"))
                else:
                    table += [(f"dyimg_net.conv{name}", f"di_decoder.up.{j}.{i}.conv"),
                              (f"dyimg_net.bn{name}", f"di_decoder.up.{j}.{i}.norm")]
    return table


def official_key_map(model: nn.Module) -> "OrderedDict[str, str]":
    """released state_dict key -> fdpkit key, for an `official`-variant model, released order."""
    if model.cfg.variant != "official":
        raise ValueError("official_key_map needs a model built with variant='official'")
    mapping: OrderedDict[str, str] = OrderedDict()
    for src, dst in official_module_table(model.cfg):
        for leaf in model.get_submodule(dst).state_dict(keep_vars=True):
            if "." in leaf:
                raise AssertionError(f"{dst} is not a leaf module ({leaf})")
            mapping[f"{src}.{leaf}"] = f"{dst}.{leaf}"
    return mapping


def to_official_state_dict(model: nn.Module) -> "OrderedDict[str, torch.Tensor]":
    """An `official`-variant model's state_dict under the released code's key names (and order)."""
    ours = model.state_dict()
    mapping = official_key_map(model)
    if set(mapping.values()) != set(ours):
        missing = sorted(set(ours) - set(mapping.values()))
        raise AssertionError(f"key table does not cover the model: {missing[:5]}")
    return OrderedDict((src, ours[dst]) for src, dst in mapping.items())


def _infer_overrides(state: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    conv3d, fc2, head = state["mer.conv3d.weight"], state["mer.fc2.weight"], \
        state["frame_rep.proj_head.0.weight"]
    side = int(round(head.shape[0] ** 0.5))
    if side * side != head.shape[0]:
        raise ValueError(f"feature dim {head.shape[0]} is not a square")
    return {"num_classes": fc2.shape[0], "rank_channels": conv3d.shape[0],
            "frames": conv3d.shape[-1], "rank_kernel": conv3d.shape[2], "feature_size": side,
            "mer_hidden": fc2.shape[1], "dynamic_image": any(k.startswith("dyimg_net.")
                                                             for k in state)}


def load_official_checkpoint(path_or_state_dict: str | os.PathLike | Mapping[str, torch.Tensor],
                             num_classes: int | None = None, *, preset: str = "official",
                             **overrides: Any) -> nn.Module:
    """Build the `official` variant and load a released-format state_dict into it (eval mode).

    Accepts a path (read with `torch.load(..., weights_only=True)`) or a state_dict. A leading
    `module.` (DataParallel) is dropped. num_classes, T, K, D and the hidden width are read from the
    tensors; a `num_classes` that disagrees raises. `preset` and extra `overrides` go to
    `build_model` (the variant is always "official"; ``preset="tiny"`` reads a checkpoint of
    `build_model("tiny", variant="official")`).

    The loaded model runs with ``frame_loop=True`` unless told otherwise: the released execution
    op for op, so its outputs are bit-identical to the released code's (measured: max |diff| 0 for
    logits and dynamic image, eval and train). ``frame_loop=False`` (batched, faster to train) is
    the same maths; its logits agree to ~1e-7, but a convolution picked for another batch size can
    change the last bits, and the decoder's max-unpool can turn that into dynamic-image pixel
    differences of ~1e-4 where two pooled values nearly tie.
    """
    from .fdp import build_model  # late import: fdp imports this module

    if isinstance(path_or_state_dict, (str, os.PathLike)):
        state = load_torch(path_or_state_dict)
    else:
        state = path_or_state_dict
    state = OrderedDict((k[len("module."):] if k.startswith("module.") else k, v)
                        for k, v in state.items())
    if "mer.conv3d.weight" not in state:
        raise ValueError("not a released-format FDP state_dict (no 'mer.conv3d.weight'); "
                         "fdpkit-format checkpoints load with model.load_state_dict")
    inferred = _infer_overrides(state)
    if num_classes is not None and num_classes != inferred["num_classes"]:
        raise ValueError(f"checkpoint has {inferred['num_classes']} classes, not {num_classes}")
    inferred["frame_loop"] = True
    inferred.update(overrides)
    inferred.update(variant="official", encoder="cnn")
    model = build_model(preset, **inferred)
    mapping = official_key_map(model)
    unknown = sorted(set(state) - set(mapping))
    missing = sorted(set(mapping) - set(state))
    if unknown or missing:
        raise KeyError(f"state_dict mismatch: unexpected {unknown[:5]}, missing {missing[:5]}")
    model.load_state_dict(OrderedDict((mapping[k], v) for k, v in state.items()), strict=True)
    return model.eval()
