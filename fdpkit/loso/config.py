"""A LOSO run's configuration: `--set` overrides split into run / training / model fields, the
model config resolved and fitted to the cached clips, and the check of RUN_DIR's config.json.

`prepare_run_dir` compares the run fingerprint (the fields that change results) with the one saved
in RUN_DIR and refuses a folder made with another config (`RunConfigMismatch`), unless forced, when
it discards that run's results; resuming is only sound into a folder of the same config.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import pandas as pd

from fdpkit.data.preprocess.lookup import load_clip, read_flow
from fdpkit.errors import EXIT_RUN_MISMATCH, FdpkitError
from fdpkit.io import read_json, write_json
from fdpkit.model.config import make_config
from fdpkit.model.flownets import FLOW_SIZE, flow_model_config
from fdpkit.loso.outputs import PREDICTIONS, RESULTS, SUMMARY
from fdpkit.train.config import TrainConfig
from fdpkit.registry import MODELS, choices

CONFIG = "config.json"
RUN_KEYS = ("model", "preset", "selection", "seed", "shuffle_labels", "holdout")  # grid keys that are run args


@dataclass(frozen=True)
class LosoSpec:
    """What a LOSO run trains (the first group changes results) and how it runs (the second does not)."""

    preset: str = "tiny"                  # fdpkit.registry.PRESETS
    model: str = "fdp"                    # fdpkit.registry.MODELS
    selection: str = "fixed_steps"        # fixed_steps | inner_val | test_best (opt-in, optimistic)
    seed: int = 0
    folds: Any = None                     # subject ids (list or "01,02"); None: all
    overrides: dict | None = None         # TrainConfig / FDPConfig fields (`--set`)
    shuffle_labels: bool = False          # permutation control: labels shuffled within each fold
    holdout: str = "subject"              # subject: LOSO | dataset: cross-dataset (train on the other corpora)
    steps: int | None = None              # None: the preset's
    batch_size: int | None = None         # None: the preset's
    executor: str = "local"               # local | ray
    jobs: int = 1                         # local fold processes
    ray_address: str | None = None
    force: bool = False                   # discard a RUN_DIR made with another config
    progress: bool = True
    verbose: bool = True
    command: str | None = None            # the command line recorded in config.json


class RunConfigMismatch(FdpkitError, RuntimeError):
    """RUN_DIR holds a run made with another config (use force=True / --force); exit code 5."""

    exit_code = EXIT_RUN_MISMATCH


# ------------------------------------------------------------------------------- overrides
def parse_value(text: str) -> Any:
    """`--set` values: JSON when it parses (numbers, true/false/null, lists), else the string."""
    try:
        return json.loads(text)
    except (json.JSONDecodeError, ValueError):
        return text


def parse_sets(items: Iterable[str]) -> dict[str, Any]:
    out = {}
    for item in items or ():
        if "=" not in item:
            raise ValueError(f"--set expects KEY=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        out[key.strip()] = parse_value(value.strip())
    return out


def split_overrides(overrides: dict[str, Any] | None) -> tuple[dict, dict, dict]:
    """-> (run args, TrainConfig fields, model (FDPConfig) fields).

    Keys may carry a `train.` or `model.` prefix; otherwise TrainConfig fields go to training,
    `model`/`preset`/`selection`/`seed`/`shuffle_labels` to the run, everything else to the model.
    """
    train_fields = {f.name for f in dataclasses.fields(TrainConfig)}
    run, train, model = {}, {}, {}
    for key, value in (overrides or {}).items():
        if key.startswith("train."):
            train[key[6:]] = value
        elif key.startswith("model."):
            model[key[6:]] = value
        elif key in RUN_KEYS:
            run[key] = value
        elif key in train_fields:
            train[key] = value
        else:
            model[key] = value
    return run, train, model


# ------------------------------------------------------------------------------- model config
def model_config(model: str, preset: str, num_classes: int, overrides: dict) -> dict:
    """The resolved model configuration (validates the overrides without building the model)."""
    if model not in MODELS:
        raise ValueError(f"model must be one of {choices(MODELS)}, got {model!r}")
    if MODELS[model].input == "flow":
        return flow_model_config(model, num_classes, **overrides)
    extra = {} if MODELS[model].dynamic_image else {"dynamic_image": False}
    cfg = make_config(preset, **{**overrides, **extra, "num_classes": num_classes})
    return json.loads(json.dumps(cfg.to_dict()))


def input_shape(found: pd.DataFrame, inputs: str) -> tuple[int, int, int]:
    """The shape every cached input of a run shares: (T, H, W) of a clip's frames, or (3, S, S) of
    its optical flow (u, v, strain)."""
    if inputs == "flow":
        return tuple(int(v) for v in read_flow(found["flow_path"].iloc[0]).shape)
    return tuple(int(v) for v in load_clip(found["path"].iloc[0])["frames"].shape)


def fit_to_data(overrides: dict, preset: str, shape: tuple[int, int, int], inputs: str = "frames") -> dict:
    """Set the model's `frames` and `size` (a flow model's `size`) from the cache when the preset's
    differ (never silently against an explicit override)."""
    t, h, w = shape
    if h != w:
        raise ValueError(f"cached {inputs} are {h}x{w}; the model needs square inputs")
    out = dict(overrides)
    if inputs == "flow":
        if "size" in out and int(out["size"]) != h:
            raise ValueError(f"model size={out['size']} but the cache holds {h}x{w} optical flow")
        if h != FLOW_SIZE:
            out["size"] = h
        return out
    base = make_config(preset)
    for key, value in (("frames", t), ("size", h)):
        if key in out and int(out[key]) != value:
            raise ValueError(f"model {key}={out[key]} but the cache holds clips of {t} frames of {h}x{w}")
        if getattr(base, key) != value:
            out[key] = value
    return out


# ------------------------------------------------------------------------------- run folder
def run_fingerprint(config: dict) -> dict:
    return {
        "manifest_sha256": config["manifest"]["sha256"], "classes": config["manifest"]["classes"],
        "protocol": config["manifest"]["protocol"], "cache_clips_sha256": config["cache"]["clips_sha256"],
        "preset": config["preset"], "model": config["model"], "model_config": config["model_config"],
        "train": TrainConfig(**config["train"]).fingerprint(), "selection": config["selection"],
        "seed": config["seed"], "shuffle_labels": config["shuffle_labels"],
        # only when not LOSO, so run folders made before the cross-dataset protocol existed still resume
        **({"holdout": config["holdout"]} if config.get("holdout", "subject") != "subject" else {}),
    }


def _differences(old: dict, new: dict, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ, e.g. `train.steps (12 -> 3)`."""
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _differences(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key} ({a!r} -> {b!r})")
    return out


def prepare_run_dir(out_dir: Path, config: dict, force: bool) -> None:
    """Write config.json into a new RUN_DIR; keep the one of a run with the same fingerprint (a
    re-run of a finished run only reads, so its folder may be read-only); refuse or (force) clear a
    run made with another config."""
    path = out_dir / CONFIG
    if path.exists():
        old = read_json(path)
        old_fp = old.get("fingerprint", {})
        new_fp = config["fingerprint"]
        if old_fp != new_fp:
            keys = _differences(old_fp, new_fp)
            if not force:
                raise RunConfigMismatch(
                    f"{out_dir} holds a run made with another config (differs in: {', '.join(keys)}); "
                    "use another --out, or --force to discard its results and start again")
            for name in ("folds", PREDICTIONS, RESULTS, SUMMARY):
                target = out_dir / name
                if target.is_dir():
                    shutil.rmtree(target)
                elif target.exists():
                    target.unlink()
        else:  # same results-defining config: resume into it; config.json gains any new folds
            merged = merge_folds(old, config)
            if merged != old:
                write_json(path, merged)
            return
    write_json(path, config)


def merge_folds(old: dict, new: dict) -> dict:
    """`old`'s config.json with the folds (and their seeds) of `new` added: a run first made for some
    folds and resumed for more lists them all (a re-run of the same folds changes nothing)."""
    folds = list(old.get("folds", []))
    folds += [f for f in new["folds"] if f not in folds]
    return {**old, "folds": sorted(folds), "fold_seeds": {**old.get("fold_seeds", {}), **new["fold_seeds"]}}


__all__ = ["LosoSpec", "CONFIG", "RUN_KEYS", "RunConfigMismatch", "parse_value", "parse_sets", "split_overrides",
           "model_config", "input_shape", "fit_to_data", "run_fingerprint", "prepare_run_dir", "merge_folds"]
