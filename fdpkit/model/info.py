"""Model info: parameters per top-level module and forward FLOPs per clip.

FLOPs come from `torch.utils.flop_counter.FlopCounterMode` (a multiply-add counts 2) for one clip
(B = 1) in eval mode. The fused CPU attention kernel is not counted by FlopCounterMode, so the
count runs the explicit attention path (`return_attention=True`), which does the same maths.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from .fdp import build_model

TOP_LEVEL = ("encoder", "rank", "mer_head", "di_decoder")


def _count(module: torch.nn.Module | None) -> int:
    return 0 if module is None else sum(p.numel() for p in module.parameters())


def model_info(preset: str = "paper", num_classes: int = 5, frames: int = 8, size: int = 64,
               **overrides: Any) -> dict[str, Any]:
    """{"preset", "config", "params": {module: n, ..., "total": n}, "flops": {module: n, ...,
    "total": n}, "input_shape", "output_shapes"} for one clip of `frames` x `size` x `size`."""
    model = build_model(preset, num_classes=num_classes, frames=frames, size=size,
                        **overrides).eval()
    params = {name: _count(getattr(model, name)) for name in TOP_LEVEL}
    params["total"] = _count(model)
    x = torch.zeros(1, frames, model.cfg.in_chans, size, size)
    with torch.no_grad(), FlopCounterMode(display=False, depth=2) as counter:
        out = model(x, return_attention=True)
    counts = counter.get_flop_counts()
    flops = {name: int(sum(counts.get(f"FDP.{name}", {}).values())) for name in TOP_LEVEL}
    flops["total"] = int(counter.get_total_flops())
    shapes = {k: None if v is None else tuple(v.shape)
              for k, v in out._asdict().items() if k != "attentions"}
    return {"preset": preset, "config": model.cfg.to_dict(), "params": params, "flops": flops,
            "input_shape": tuple(x.shape), "output_shapes": shapes,
            "gra_blocks": len(out.attentions or [])}


def format_model_info(preset: str = "paper", num_classes: int = 5, **kwargs: Any) -> str:
    """A plain-text table of `model_info` (what `fdpkit model-info --preset NAME` prints)."""
    info = model_info(preset, num_classes, **kwargs)
    cfg = info["config"]
    lines = [f"FDP preset '{preset}' (variant {cfg['variant']}, encoder {cfg['encoder']}, "
             f"rank scorer {cfg['rank_scorer']}, K={cfg['rank_channels']}, "
             f"D={cfg['feature_size']}x{cfg['feature_size']}, C={num_classes})",
             f"input per clip: {info['input_shape']}",
             f"{'module':<12}{'parameters':>16}{'GFLOP/clip':>14}"]
    for name in (*TOP_LEVEL, "total"):
        n, f = info["params"][name], info["flops"][name]
        lines.append(f"{name:<12}{n:>16,}{f / 1e9:>14.3f}")
    lines.append("outputs: " + ", ".join(f"{k} {v}" for k, v in info["output_shapes"].items()))
    lines.append("FLOPs: forward, eval, one clip; a multiply-add counts 2.")
    return "\n".join(lines)


def run_cli(args: Any) -> int:
    """`fdpkit model-info`: prints the table of `args.preset` for `args.num_classes` classes. A bad
    preset or class count is a `ConfigError` (exit 2 through `fdpkit.cli`)."""
    print(format_model_info(args.preset, args.num_classes))
    return 0
