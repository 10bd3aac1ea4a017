"""Fold checkpoints, for `fdpkit.train.loop`'s exact resume.

A checkpoint (``checkpoint.pt``) holds the model, optimiser, AMP scaler, step, every global RNG
state, the log rows, the best-so-far weights and the config, all as tensors and plain types, so it
loads through `fdpkit.io.load_torch` (weights_only=True). `load_checkpoint` refuses one made for
another fold, seed or result-changing config; `restore_training_state` puts it back into the model,
optimiser, scaler and RNGs (`fdpkit.train.seeds`), so training continues bit-identically;
`load_selected` reads the selected weights of a finished fold.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from fdpkit.io import load_torch, write_torch
from fdpkit.train.config import TrainConfig
from fdpkit.train.seeds import rng_state, set_rng_state

CHECKPOINT = "checkpoint.pt"
FORMAT = 1


# ---------------------------------------------------------------------------------- checkpoints
def save_checkpoint(path: Path, *, fold: str, seed: int, step: int, complete: bool,
                    config: TrainConfig, model: torch.nn.Module, optimizer, scaler, log: dict,
                    best: dict | None, history: list) -> None:
    """Write the whole training state, the global RNG states as they are now included."""
    write_torch(path, {
        "format": FORMAT, "fold": fold, "seed": seed, "step": step, "complete": complete,
        "config": config.to_dict(), "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scaler": scaler.state_dict() if scaler.is_enabled() else {}, "rng": rng_state(),
        "log": log, "best": best, "history": history,
    })


def load_checkpoint(path: Path, config: TrainConfig, fold: str, seed: int) -> dict[str, Any]:
    """The checkpoint at `path`; ValueError unless it was made for this fold, seed and config
    (compared by `TrainConfig.fingerprint`: the fields that change results)."""
    ckpt = load_torch(path)
    if ckpt.get("format") != FORMAT:
        raise ValueError(f"{path}: checkpoint format {ckpt.get('format')} is not {FORMAT}")
    saved = TrainConfig(**ckpt["config"]).fingerprint()
    if saved != config.fingerprint() or ckpt.get("seed") != seed or ckpt.get("fold") != fold:
        diff = sorted(k for k in saved if saved[k] != config.fingerprint().get(k))
        raise ValueError(f"{path}: checkpoint was made for another fold, seed or config "
                         f"(differs in {diff or ['fold/seed']}); delete it or use another folder")
    return ckpt


def restore_training_state(ckpt: dict[str, Any], model: torch.nn.Module, optimizer, scaler) -> None:
    """Put a loaded checkpoint's weights, optimiser and scaler state and RNG states back."""
    model.load_state_dict(ckpt["model"])
    optimizer.load_state_dict(ckpt["optimizer"])
    if ckpt["scaler"]:
        scaler.load_state_dict(ckpt["scaler"])
    set_rng_state(ckpt["rng"])


def checkpoint_step(path) -> int | str:
    """The step of the checkpoint at `path`, "?" when it cannot be read (for error messages)."""
    try:
        return int(load_torch(path)["step"])
    except Exception:  # noqa: BLE001 - only for the message
        return "?"


def load_selected(path, model: torch.nn.Module) -> torch.nn.Module:
    """Load a fold checkpoint's selected weights (the trained model) into `model`."""
    ckpt = load_torch(path)
    if not ckpt.get("complete"):
        raise ValueError(f"{path}: training did not finish (step {ckpt.get('step')})")
    best = ckpt.get("best")
    selection = ckpt["config"]["selection"]
    model.load_state_dict(best["state"] if selection != "fixed_steps" and best else ckpt["model"])
    return model
