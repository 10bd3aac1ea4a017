"""Run LOSO (or cross-dataset) folds; executors `local` (sequential or `--jobs N` processes) and Ray.

Run folder (RUN_DIR):

    config.json                      everything needed to rerun (+ the fingerprint compared on re-runs)
    folds/<subject_uid, / -> _>/     checkpoint.pt, train_log.csv, predictions.csv, metrics.json
    predictions.csv                  pooled: dataset, subject, subject_uid, clip, clip_uid, label,
                                     pred, p_<class>..., fold, selected_step, selection[, optimistic]
    results.csv                      one row per subject (per-fold metrics, seed, selected step)
    summary.json                     pooled metrics + CIs, per class, per dataset, per-fold mean/sd

A fold is finished when its metrics.json exists (written last, atomically); re-running the same
command skips finished folds and resumes a half-done one from its checkpoint, so a run killed at
any moment and re-run gives the same files as an uninterrupted run. Fold tasks return data; the
driver writes every result file (the trainer itself writes only checkpoint.pt / train_log.csv).
Each fold's seed is a hash of (base seed, subject_uid) and every fold runs with the same number of
torch threads (`threads`, default 1), so results do not depend on fold order, executor or --jobs.

The run's config (`LosoSpec`, overrides, fingerprint, refusal of a RUN_DIR made with another config)
is `fdpkit.loso.config`; the result files are written by `fdpkit.loso.outputs`.
"""

from __future__ import annotations

import dataclasses
import shlex
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Subset

from fdpkit import __version__
from fdpkit.data.dataset import ClipDataset, Relabelled, ok_rows
from fdpkit.data.manifest import Manifest, read_manifest
from fdpkit.data.preprocess.lookup import check_cache_files, flow_settings
from fdpkit.errors import BadInput, FdpkitError
from fdpkit.io import stable_hash
from fdpkit.loso.config import (LosoSpec, RunConfigMismatch, fit_to_data, input_shape, model_config,
                               parse_sets, prepare_run_dir, run_fingerprint, split_overrides)
from fdpkit.loso.executors import auto_jobs, run_tasks
from fdpkit.loso.folds import Fold, fold_dirname, inner_val_split, make_folds, shuffled_labels
from fdpkit.loso.outputs import FOLD_METRICS, format_summary, pool_run, pooled_summary, write_fold
from fdpkit.model import build
from fdpkit.registry import MODELS, choices
from fdpkit.train.config import OPTIMISTIC_WARNING, TrainConfig
from fdpkit.train.progress import FoldBars
from fdpkit.train.evaluate import predict_proba
from fdpkit.train.loop import train_fold
from fdpkit.train.seeds import seed_everything


# ------------------------------------------------------------------------------- one fold
@dataclass
class FoldTask:
    """Everything one fold needs; picklable (sent to worker processes and Ray tasks)."""

    fold: Fold
    rows: pd.DataFrame  # the run's usable rows; the fold's indices point into them
    classes: list[str]
    cache_dir: str
    preset: str
    model: str
    model_overrides: dict
    train: dict
    shuffle_labels: bool
    fold_dir: str
    progress: bool = False
    inputs: str = "frames"  # what the model reads: "frames" or "flow" (fdpkit.registry.MODELS)


def make_dataset(cache_dir, rows: pd.DataFrame, classes: list[str], inputs: str = "frames"):
    """The dataset of some manifest rows (the one place the runner opens the cache)."""
    return ClipDataset(cache_dir, rows, classes, inputs=inputs)


def run_fold(task: FoldTask) -> dict[str, Any]:
    """Train and evaluate one fold; returns predictions, metrics and log (writes only checkpoints).

    Runs with exactly `threads` torch threads (restored afterwards): CPU results depend on it."""
    threads = TrainConfig(**task.train).threads
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        return _run_fold(task)
    finally:
        torch.set_num_threads(before)


def _run_fold(task: FoldTask) -> dict[str, Any]:
    fold, classes = task.fold, task.classes
    config = TrainConfig(**task.train)
    train_rows = task.rows.iloc[list(fold.train_index)].reset_index(drop=True)
    test_rows = task.rows.iloc[list(fold.test_index)].reset_index(drop=True)
    train_data = make_dataset(task.cache_dir, train_rows, classes, task.inputs)
    if task.shuffle_labels:
        true = np.array([classes.index(label) for label in train_rows["label"]])
        train_data = Relabelled(train_data, shuffled_labels(true, fold.seed))
    val_data, n_val = None, 0
    if config.selection == "inner_val":
        fit, val = inner_val_split(train_rows, fold.seed, config.inner_val_fraction)
        train_data, val_data, n_val = Subset(train_data, fit.tolist()), Subset(train_data, val.tolist()), len(val)
    elif config.selection == "test_best":  # opt-in, optimistic: the test subject selects the model
        val_data = make_dataset(task.cache_dir, test_rows, classes, task.inputs)

    seed_everything(fold.seed)
    model = build(task.model, task.preset, num_classes=len(classes), **task.model_overrides)
    result = train_fold(model, train_data, config, val_data=val_data, fold=fold.subject_uid,
                        seed=fold.seed, workdir=task.fold_dir, progress=task.progress)

    # Only now, after training, does the held-out subject's data reach the model (fixed_steps, inner_val).
    test_data = (val_data if config.selection == "test_best"
                 else make_dataset(task.cache_dir, test_rows, classes, task.inputs))
    probs, tensors = predict_proba(result.model, test_data, config.eval_batch_size,
                                   precision=config.precision)
    predictions = test_rows.loc[:, ["dataset", "subject", "subject_uid", "clip", "clip_uid", "label"]].copy()
    if list(predictions["clip_uid"]) != tensors.clip_uids:
        raise RuntimeError(f"fold {fold.subject_uid}: dataset order differs from the manifest rows")
    predictions["pred"] = [classes[i] for i in probs.argmax(1)]
    for c, name in enumerate(classes):
        predictions[f"p_{name}"] = probs[:, c]
    predictions["fold"] = fold.subject_uid
    predictions["selected_step"] = result.selected_step
    predictions["selection"] = config.selection
    if result.optimistic:
        predictions["optimistic"] = True
    metrics = {
        "subject_uid": fold.subject_uid, "fold_seed": fold.seed, "selection": config.selection,
        "selected_step": result.selected_step, "steps": result.steps_done,
        "select_metric": config.metric if config.selection != "fixed_steps" else None,
        "best_score": result.best_score, "history": [list(h) for h in result.history],
        "n_train": len(train_rows) - n_val, "n_inner_val": n_val, "n_test": len(test_rows),
        "shuffle_labels": task.shuffle_labels, "train_seconds": result.train_seconds,
        "final_loss": float(result.log["loss"].iloc[-1]) if len(result.log) else None,
    }
    if result.optimistic:
        metrics["warning"] = OPTIMISTIC_WARNING
    return {"subject_uid": fold.subject_uid, "fold_dir": task.fold_dir, "predictions": predictions,
            "metrics": metrics, "log": result.log}


# ------------------------------------------------------------------------------- executors
def _execute(tasks: list[FoldTask], classes, executor: str, jobs: int, ray_address: str | None,
             threads: int, progress: bool) -> None:
    """Run the fold tasks; with `progress`, the `folds` bar (unless one fold runs here) and a step
    bar per running fold, fed from wherever the folds run (`fdpkit.train.progress`)."""
    if not tasks:
        return
    bars = None
    if progress:
        bars = FoldBars(len(tasks), folds_bar=executor != "local" or jobs > 1 or len(tasks) > 1)

    def done(result):
        write_fold(result, classes)
        if bars is not None:
            bars.fold_done()

    try:
        run_tasks(tasks, run_fold, done, executor=executor, jobs=jobs, ray_address=ray_address,
                  threads=threads, progress=bars)
    finally:
        if bars is not None:
            bars.close()


# ------------------------------------------------------------------------------- public API
def _as_manifest(manifest):

    if isinstance(manifest, Manifest):
        return manifest, None
    return read_manifest(manifest), str(Path(manifest).resolve())


def run_loso(manifest, cache_dir, out_dir, spec: LosoSpec | None = None, **fields) -> dict[str, Any]:
    """Leave-one-subject-out over the manifest's clips that are usable in the cache.

    ``spec`` (`LosoSpec`) says what to train and how to run it; keyword ``fields`` replace its
    fields (``run_loso(m, cache, out, preset="tiny", jobs=2)``). ``spec.overrides``: TrainConfig
    fields (lr, steps, di_weight, threads, ...) and model (FDPConfig) fields, optionally prefixed
    `train.` / `model.`. Returns the summary dict (also in summary.json).
    """
    spec = dataclasses.replace(spec or LosoSpec(), **fields)
    if spec.model not in MODELS:
        raise ValueError(f"model must be one of {choices(MODELS)}, got {spec.model!r}")
    run_over, train_over, model_over = split_overrides(spec.overrides)
    if run_over:
        raise ValueError(f"pass {sorted(run_over)} as run_loso arguments, not overrides")
    manifest, manifest_path = _as_manifest(manifest)
    classes = list(manifest.classes)
    rows = manifest.rows[manifest.rows["label"].isin(classes)]
    usable = ok_rows(cache_dir, rows)
    rows = usable.rows.reset_index(drop=True)
    if spec.verbose and usable.n_dropped:
        print(f"note: {usable.n_dropped} clip(s) not usable in the cache are left out: {usable.reasons()}")
    if spec.verbose:   # every manifest row is accounted for: used, or dropped with its reason
        n_all, reasons = len(manifest.rows), usable.reasons()
        if n_all - len(usable.rows) - usable.n_dropped:
            reasons = {"label not in the protocol's classes": n_all - len(usable.rows) - usable.n_dropped, **reasons}
        shown = "; ".join(f"{reason}: {count}" for reason, count in reasons.items())
        print(f"manifest rows {n_all} = used {len(rows)} + dropped {n_all - len(rows)}" + (f" ({shown})" if shown else ""))
    if rows["subject_uid"].nunique() < 2:
        raise ValueError("LOSO needs clips of at least 2 subjects in the cache")
    for key in ("steps", "batch_size"):   # --steps N and --set steps=N are one setting
        value = getattr(spec, key)
        if value is not None and train_over.get(key, value) != value:
            raise ValueError(f"{key} is given twice ({value} and {train_over[key]}); give it once")
        if value is not None:
            train_over[key] = value
    train = TrainConfig.from_preset(spec.preset, **{**train_over, "selection": spec.selection})
    fold_list = make_folds(rows, spec.holdout, spec.seed, spec.folds)
    inputs = MODELS[spec.model].input
    found = check_cache_files(cache_dir, rows, inputs)  # a corrupt cache file is named now, not mid-training
    data_shape = input_shape(found, inputs)
    model_over = fit_to_data(model_over, spec.preset, data_shape, inputs)
    names = found["path"].map(lambda p: Path(p).name)   # the cache fingerprint: the files the run reads
    if inputs == "flow":
        names = names + "|" + found["flow_path"].map(lambda p: Path(p).name)
    out_dir = Path(out_dir)
    config: dict[str, Any] = {
        "fdpkit_version": __version__, "command": spec.command,
        "manifest": {"path": manifest_path, "sha256": manifest.sha256, "protocol": manifest.protocol,
                     "classes": classes},
        "cache": {"dir": str(Path(cache_dir).resolve()), "n_usable": len(rows),
                  "n_dropped": usable.n_dropped, "dropped_reasons": usable.reasons(),
                  "clips_sha256": stable_hash(sorted(zip(found["clip_uid"], names)), 64)},
        "data_shape": {"frames" if inputs == "frames" else "flow_channels": data_shape[0],
                       "height": data_shape[1], "width": data_shape[2]},
        "preset": spec.preset, "model": spec.model, "model_overrides": model_over,
        "model_config": model_config(spec.model, spec.preset, len(classes), model_over),
        "train": train.to_dict(), "selection": spec.selection, "seed": spec.seed,
        "shuffle_labels": spec.shuffle_labels, "holdout": spec.holdout,
        "folds": [f.subject_uid for f in fold_list], "fold_seeds": {f.subject_uid: f.seed for f in fold_list},
        "executor": {"name": spec.executor, "jobs": spec.jobs, "ray_address": spec.ray_address},
    }
    if inputs == "flow":
        config["flow"] = flow_settings(cache_dir)
    if spec.selection == "test_best":
        config["warning"] = OPTIMISTIC_WARNING
    config["fingerprint"] = run_fingerprint(config)
    prepare_run_dir(out_dir, config, spec.force)

    tasks = []
    for fold in fold_list:
        fold_dir = out_dir / "folds" / fold_dirname(fold.subject_uid)
        if (fold_dir / FOLD_METRICS).exists():
            continue
        tasks.append(FoldTask(fold, rows, classes, str(cache_dir), spec.preset, spec.model, model_over,
                              train.to_dict(), spec.shuffle_labels, str(fold_dir),
                              progress=spec.progress, inputs=inputs))
    if spec.verbose and len(tasks) < len(fold_list):
        print(f"{len(fold_list) - len(tasks)} of {len(fold_list)} folds already finished in {out_dir}")
    started = time.perf_counter()
    summary = pooled_summary(out_dir, fold_list) if not tasks else None
    if summary is None:
        _execute(tasks, classes, spec.executor, spec.jobs, spec.ray_address, train.threads, spec.progress)
        summary = pool_run(out_dir, config, fold_list)
    if spec.verbose:
        print(format_summary(summary) + f"  ({time.perf_counter() - started:.0f} s)")
    return summary


def _command(args) -> str:
    """The `fdpkit loso` command line that reproduces `args`."""

    parts = ["fdpkit", "loso"]
    for key, value in vars(args).items():
        if key == "verb" or value is None or value is False or value == []:
            continue
        flag = "--" + key.replace("_", "-")
        if value is True:
            parts.append(flag)
        elif isinstance(value, list):
            for item in value:
                parts += [flag, str(item)]
        else:
            parts += [flag, str(value)]
    return shlex.join(parts)


def run_cli(args) -> int:
    """`fdpkit loso`. Exit codes (`fdpkit.errors`, turned into one line by `fdpkit.cli.main`): 2 a bad
    manifest/config, 5 a refused RUN_DIR, 6 training diverged (naming fold and step), 7 an I/O error
    such as a full disk (naming the file; re-running the same command resumes)."""
    try:
        overrides = parse_sets(args.set)
        if getattr(args, "device", None):
            overrides["device"] = args.device
        spec = LosoSpec(preset=args.preset, model=args.model, selection=args.selection, seed=args.seed,
                        folds=args.folds, overrides=overrides, shuffle_labels=args.shuffle_labels,
                        holdout=args.holdout, steps=args.steps, batch_size=args.batch_size,
                        executor=args.executor, jobs=auto_jobs(args.jobs), ray_address=args.ray_address,
                        force=args.force, command=_command(args))
        run_loso(args.manifest, args.cache, args.out, spec)
    except FdpkitError:
        raise
    except (ValueError, TypeError, FileNotFoundError) as error:   # a config value or file to correct
        raise BadInput(str(error)) from None
    return 0


__all__ = ["LosoSpec", "run_loso", "run_fold", "run_cli", "FoldTask", "make_dataset"]
