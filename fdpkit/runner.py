"""Run LOSO folds and ablation grids; executors `local` (sequential or `--jobs N` processes) and Ray.

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
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pandas as pd

from fdpkit import __version__
from fdpkit.folds import Fold, fold_dirname, inner_val_split, loso_folds, shuffled_labels
from fdpkit.io import read_json, stable_hash, write_csv, write_json
from fdpkit.executors import run_tasks
from fdpkit.train import OPTIMISTIC_WARNING, TrainConfig, predict_proba, train_fold

CONFIG = "config.json"
SUMMARY = "summary.json"
RESULTS = "results.csv"
PREDICTIONS = "predictions.csv"
FOLD_METRICS = "metrics.json"
RUN_KEYS = ("model", "preset", "selection", "seed", "shuffle_labels")  # grid keys that are run args
ID_COLUMNS = ("dataset", "subject", "subject_uid", "clip", "clip_uid", "label", "pred")


class RunConfigMismatch(RuntimeError):
    """RUN_DIR holds a run made with another config (use force=True / --force)."""


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


def make_dataset(cache_dir, rows: pd.DataFrame, classes: list[str]):
    """The dataset of some manifest rows (the one place the runner opens the cache)."""
    from fdpkit.data.dataset import ClipDataset

    return ClipDataset(cache_dir, rows, classes)


class Relabelled:
    """A dataset whose labels are replaced (the label-shuffled control)."""

    def __init__(self, base, labels: np.ndarray):
        self.base, self.labels = base, np.asarray(labels)

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int):
        frames, image, _, uid = self.base[i]
        return frames, image, int(self.labels[i]), uid


class Subset:
    def __init__(self, base, index: Iterable[int]):
        self.base, self.index = base, [int(i) for i in index]

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int):
        return self.base[self.index[i]]


def run_fold(task: FoldTask) -> dict[str, Any]:
    """Train and evaluate one fold; returns predictions, metrics and log (writes only checkpoints).

    Runs with exactly `threads` torch threads (restored afterwards): CPU results depend on it."""
    import torch

    threads = TrainConfig(**task.train).threads
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        return _run_fold(task)
    finally:
        torch.set_num_threads(before)


def _run_fold(task: FoldTask) -> dict[str, Any]:
    from fdpkit.baselines import build
    from fdpkit.train import seed_everything

    fold, classes = task.fold, task.classes
    config = TrainConfig(**task.train)
    train_rows = task.rows.iloc[list(fold.train_index)].reset_index(drop=True)
    test_rows = task.rows.iloc[list(fold.test_index)].reset_index(drop=True)
    train_data = make_dataset(task.cache_dir, train_rows, classes)
    if task.shuffle_labels:
        true = np.array([classes.index(label) for label in train_rows["label"]])
        train_data = Relabelled(train_data, shuffled_labels(true, fold.seed))
    val_data, n_val = None, 0
    if config.selection == "inner_val":
        fit, val = inner_val_split(train_rows, fold.seed, config.inner_val_fraction)
        train_data, val_data, n_val = Subset(train_data, fit), Subset(train_data, val), len(val)
    elif config.selection == "test_best":  # opt-in, optimistic: the test subject selects the model
        val_data = make_dataset(task.cache_dir, test_rows, classes)

    seed_everything(fold.seed)
    model = build(task.model, task.preset, num_classes=len(classes), **task.model_overrides)
    result = train_fold(model, train_data, config, val_data=val_data, fold=fold.subject_uid,
                        seed=fold.seed, workdir=task.fold_dir, progress=task.progress)

    # Only now, after training, does the held-out subject's data reach the model (fixed_steps, inner_val).
    test_data = make_dataset(task.cache_dir, test_rows, classes)
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


def read_predictions(path) -> pd.DataFrame:
    """A predictions.csv with ids as strings (subject `01` stays `01`) and exact floats."""
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    for column in frame.columns:
        if column.startswith("p_"):
            frame[column] = frame[column].map(float)
    if "selected_step" in frame:
        frame["selected_step"] = frame["selected_step"].astype(int)
    if "optimistic" in frame:
        frame["optimistic"] = frame["optimistic"] == "True"
    return frame


def _write_fold(result: dict[str, Any], classes: list[str]) -> None:
    """Driver side: a fold's files, metrics.json last (its presence marks the fold finished)."""
    from fdpkit.metrics import per_subject_table

    fold_dir = Path(result["fold_dir"])
    write_csv(fold_dir / PREDICTIONS, result["predictions"])
    write_csv(fold_dir / "train_log.csv", result["log"])
    row = per_subject_table(read_predictions(fold_dir / PREDICTIONS), classes).iloc[0]
    metrics = {**result["metrics"], **{k: float(row[k]) for k in ("accuracy", "uf1", "uar", "weighted_f1")},
               "fold_metric_note": "this subject's clips alone (classes present in truth or predictions)"}
    write_json(fold_dir / FOLD_METRICS, metrics)


# ------------------------------------------------------------------------------- executors
def _execute(tasks: list[FoldTask], classes, executor: str, jobs: int, ray_address: str | None,
             threads: int, progress: bool) -> None:
    if not tasks:
        return
    bar = None
    if progress and (executor != "local" or jobs > 1 or len(tasks) > 1):
        from tqdm.auto import tqdm

        bar = tqdm(total=len(tasks), desc="folds", unit="fold")

    def done(result):
        _write_fold(result, classes)
        if bar is not None:
            bar.update(1)

    try:
        run_tasks(tasks, run_fold, done, executor=executor, jobs=jobs, ray_address=ray_address,
                  threads=threads)
    finally:
        if bar is not None:
            bar.close()


# ------------------------------------------------------------------------------- run folder
def _fingerprint(config: dict) -> dict:
    return {
        "manifest_sha256": config["manifest"]["sha256"], "classes": config["manifest"]["classes"],
        "protocol": config["manifest"]["protocol"], "cache_clips_sha256": config["cache"]["clips_sha256"],
        "preset": config["preset"], "model": config["model"], "model_config": config["model_config"],
        "train": TrainConfig(**config["train"]).fingerprint(), "selection": config["selection"],
        "seed": config["seed"], "shuffle_labels": config["shuffle_labels"],
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


def _prepare_run_dir(out_dir: Path, config: dict, force: bool) -> None:
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
    write_json(path, config)


def _model_config(model: str, preset: str, num_classes: int, overrides: dict) -> dict:
    """The resolved model configuration (validates the overrides without building the model)."""
    from fdpkit.baselines import MODEL_KINDS
    from fdpkit.model import make_config

    if model not in MODEL_KINDS:
        raise ValueError(f"model must be one of {MODEL_KINDS}, got {model!r}")
    extra = {"dynamic_image": False} if model != "fdp" else {}
    cfg = make_config(preset, **{**overrides, **extra, "num_classes": num_classes})
    return json.loads(json.dumps(cfg.to_dict()))


def _clip_shape(path) -> tuple[int, int, int]:
    """(T, H, W) of a cached clip (all clips of a cache share it)."""
    from fdpkit.data.cache import load_clip

    return tuple(int(v) for v in load_clip(path)["frames"].shape)


def _fit_to_data(overrides: dict, preset: str, shape: tuple[int, int, int]) -> dict:
    """Set the model's `frames` and `size` from the cache when the preset differs (never silently
    against an explicit override)."""
    from fdpkit.model import make_config

    t, h, w = shape
    if h != w:
        raise ValueError(f"cached frames are {h}x{w}; the model needs square frames")
    base = make_config(preset)
    out = dict(overrides)
    for key, value in (("frames", t), ("size", h)):
        if key in out and int(out[key]) != value:
            raise ValueError(f"model {key}={out[key]} but the cache holds clips of {t} frames of {h}x{w}")
        if getattr(base, key) != value:
            out[key] = value
    return out


def _as_manifest(manifest):
    from fdpkit.data.manifest import Manifest, read_manifest

    if isinstance(manifest, Manifest):
        return manifest, None
    return read_manifest(manifest), str(Path(manifest).resolve())


# ------------------------------------------------------------------------------- public API
def run_loso(manifest, cache_dir, out_dir, preset: str = "tiny", model: str = "fdp",
             selection: str = "fixed_steps", seed: int = 0, folds=None, executor: str = "local",
             jobs: int = 1, overrides: dict | None = None, shuffle_labels: bool = False,
             force: bool = False, progress: bool = True, steps: int | None = None,
             batch_size: int | None = None, ray_address: str | None = None,
             command: str | None = None, verbose: bool = True) -> dict[str, Any]:
    """Leave-one-subject-out over the manifest's clips that are usable in the cache.

    `overrides`: TrainConfig fields (lr, steps, di_weight, threads, ...) and model (FDPConfig)
    fields, optionally prefixed `train.` / `model.`. Returns the summary dict (also in summary.json).
    """
    from fdpkit.data.dataset import ok_rows
    from fdpkit.data.cache import lookup

    run_over, train_over, model_over = split_overrides(overrides)
    if run_over:
        raise ValueError(f"pass {sorted(run_over)} as run_loso arguments, not overrides")
    manifest, manifest_path = _as_manifest(manifest)
    classes = list(manifest.classes)
    rows = manifest.rows[manifest.rows["label"].isin(classes)]
    usable = ok_rows(cache_dir, rows)
    rows = usable.rows.reset_index(drop=True)
    if verbose and usable.n_dropped:
        print(f"note: {usable.n_dropped} clip(s) not usable in the cache are left out: {usable.reasons()}")
    if verbose:   # every manifest row is accounted for: used, or dropped with its reason
        n_all, reasons = len(manifest.rows), usable.reasons()
        if n_all - len(usable.rows) - usable.n_dropped:
            reasons = {"label not in the protocol's classes": n_all - len(usable.rows) - usable.n_dropped, **reasons}
        shown = "; ".join(f"{reason}: {count}" for reason, count in reasons.items())
        print(f"manifest rows {n_all} = used {len(rows)} + dropped {n_all - len(rows)}" + (f" ({shown})" if shown else ""))
    if rows["subject_uid"].nunique() < 2:
        raise ValueError("LOSO needs clips of at least 2 subjects in the cache")
    train = TrainConfig.from_preset(preset, **{**train_over, "selection": selection, "steps": steps,
                                               "batch_size": batch_size})
    fold_list = loso_folds(rows, seed, folds)
    found = lookup(cache_dir, rows)
    data_shape = _clip_shape(found["path"].iloc[0])
    model_over = _fit_to_data(model_over, preset, data_shape)
    out_dir = Path(out_dir)
    config: dict[str, Any] = {
        "fdpkit_version": __version__, "command": command,
        "manifest": {"path": manifest_path, "sha256": manifest.sha256, "protocol": manifest.protocol,
                     "classes": classes},
        "cache": {"dir": str(Path(cache_dir).resolve()), "n_usable": len(rows),
                  "n_dropped": usable.n_dropped, "dropped_reasons": usable.reasons(),
                  "clips_sha256": stable_hash(sorted(zip(found["clip_uid"],
                                                         found["path"].map(lambda p: Path(p).name))), 64)},
        "data_shape": {"frames": data_shape[0], "height": data_shape[1], "width": data_shape[2]},
        "preset": preset, "model": model, "model_overrides": model_over,
        "model_config": _model_config(model, preset, len(classes), model_over),
        "train": train.to_dict(), "selection": selection, "seed": seed, "shuffle_labels": shuffle_labels,
        "folds": [f.subject_uid for f in fold_list], "fold_seeds": {f.subject_uid: f.seed for f in fold_list},
        "executor": {"name": executor, "jobs": jobs, "ray_address": ray_address},
    }
    if selection == "test_best":
        config["warning"] = OPTIMISTIC_WARNING
    config["fingerprint"] = _fingerprint(config)
    _prepare_run_dir(out_dir, config, force)

    tasks = []
    for fold in fold_list:
        fold_dir = out_dir / "folds" / fold_dirname(fold.subject_uid)
        if (fold_dir / FOLD_METRICS).exists():
            continue
        tasks.append(FoldTask(fold, rows, classes, str(cache_dir), preset, model, model_over,
                              train.to_dict(), shuffle_labels, str(fold_dir),
                              progress=progress and executor == "local" and jobs <= 1))
    if verbose and len(tasks) < len(fold_list):
        print(f"{len(fold_list) - len(tasks)} of {len(fold_list)} folds already finished in {out_dir}")
    started = time.perf_counter()
    _execute(tasks, classes, executor, jobs, ray_address, train.threads, progress)
    summary = pool_run(out_dir, config, fold_list)
    if verbose:
        print(format_summary(summary) + f"  ({time.perf_counter() - started:.0f} s)")
    return summary


def pool_run(out_dir: Path, config: dict, fold_list: list[Fold]) -> dict[str, Any]:
    """Pool the finished folds' predictions into predictions.csv, results.csv, summary.json."""
    from fdpkit.metrics import per_subject_table, summarize

    out_dir, classes = Path(out_dir), config["manifest"]["classes"]
    frames, fold_rows = [], []
    for fold in fold_list:
        fold_dir = out_dir / "folds" / fold_dirname(fold.subject_uid)
        frames.append(read_predictions(fold_dir / PREDICTIONS))
        fold_rows.append(read_json(fold_dir / FOLD_METRICS))
    predictions = pd.concat(frames, ignore_index=True)
    write_csv(out_dir / PREDICTIONS, predictions)
    selection = config["selection"]
    summary = summarize(predictions, classes, seed=config["seed"])
    meta = {
        "selection": selection, "preset": config["preset"], "model": config["model"],
        "protocol": config["manifest"]["protocol"], "manifest_sha256": config["manifest"]["sha256"],
        "seeds": {"base": config["seed"], "folds": config["fold_seeds"]},
        "shuffle_labels": config["shuffle_labels"], "train": TrainConfig(**config["train"]).fingerprint(),
        "model_overrides": config["model_overrides"], "fdpkit_version": config["fdpkit_version"],
    }
    if config["shuffle_labels"]:
        meta["control"] = "label-shuffled training labels (test labels true): expect chance level"
    if selection == "test_best":
        meta["warning"] = OPTIMISTIC_WARNING
    summary = {**meta, **summary}
    table = per_subject_table(predictions, classes)
    info = pd.DataFrame([{"subject_uid": m["subject_uid"], "fold_seed": m["fold_seed"],
                          "selected_step": m["selected_step"], "n_train": m["n_train"],
                          "n_inner_val": m["n_inner_val"]} for m in fold_rows])
    table.insert(0, "subject_uid", table["dataset"].astype(str) + "/" + table["subject"].astype(str)
                 if "dataset" in table else table["subject"])
    table = table.merge(info, on="subject_uid", how="left")
    table["selection"] = selection
    if selection == "test_best":
        table["warning"] = OPTIMISTIC_WARNING
    write_csv(out_dir / RESULTS, table)
    write_json(out_dir / SUMMARY, summary)
    return summary


def format_summary(summary: dict) -> str:
    ci = summary["ci"]["intervals"]
    p = summary["pooled"]
    text = (f"pooled UF1 {p['uf1']:.3f} [95% {ci['uf1'][0]:.3f}, {ci['uf1'][1]:.3f}]  "
            f"UAR {p['uar']:.3f} [{ci['uar'][0]:.3f}, {ci['uar'][1]:.3f}]  "
            f"accuracy {p['accuracy']:.3f}  ({summary['n']} clips, {summary['n_subjects']} subjects)  "
            f"selection: {summary['selection']}")
    if summary.get("warning"):
        text += f"\nWARNING: {summary['warning']}"
    if summary.get("shuffle_labels"):
        text += "\n(label-shuffled control)"
    return text


def run_grid(manifest, cache_dir, out_dir, grid: list[tuple[str, dict]], **kwargs) -> pd.DataFrame:
    """Each (name, overrides) as one LOSO run into out_dir/<name>/; a table of pooled metrics + CIs.

    Overrides may also set the run arguments `model`, `preset`, `selection`, `seed`, `shuffle_labels`.
    """
    from fdpkit.metrics import METRICS

    rows = []
    for name, overrides in grid:
        run_args, rest = {}, {}
        for key, value in (overrides or {}).items():
            (run_args if key in RUN_KEYS else rest)[key] = value
        args = {**kwargs, **run_args}
        merged = {**(args.pop("overrides", None) or {}), **rest}
        summary = run_loso(manifest, cache_dir, Path(out_dir) / name, overrides=merged, **args)
        row = {"name": name, "model": summary["model"], "selection": summary["selection"],
               "n": summary["n"], "n_subjects": summary["n_subjects"]}
        for metric in METRICS:
            low, high = summary["ci"]["intervals"][metric]
            row.update({metric: summary["pooled"][metric], f"{metric}_low": low, f"{metric}_high": high})
        row["overrides"] = json.dumps(overrides or {}, sort_keys=True)
        rows.append(row)
    table = pd.DataFrame(rows)
    write_csv(Path(out_dir) / "grid.csv", table)
    return table


def _command(args) -> str:
    """The `fdpkit loso` command line that reproduces `args`."""
    import shlex

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
    """`fdpkit loso`: 0 on success, 2 on a bad manifest/config, 5 for a refused RUN_DIR, 6 when
    training diverged (the message names the fold and step), 7 on an I/O error such as a full disk
    (the message names the file; re-running the same command resumes)."""
    from fdpkit.data.manifest import ManifestError
    from fdpkit.train import TrainingDiverged

    try:
        overrides = parse_sets(args.set)
        run_loso(args.manifest, args.cache, args.out, preset=args.preset, model=args.model,
                 selection=args.selection, seed=args.seed, folds=args.folds, executor=args.executor,
                 jobs=args.jobs, overrides=overrides, shuffle_labels=args.shuffle_labels,
                 force=args.force, steps=args.steps, batch_size=args.batch_size,
                 ray_address=args.ray_address, command=_command(args))
    except RunConfigMismatch as error:
        print(f"fdpkit loso: {error}", file=sys.stderr)
        return 5
    except TrainingDiverged as error:
        print(f"fdpkit loso: {error}", file=sys.stderr)
        return 6
    except (ManifestError, ValueError, TypeError, FileNotFoundError) as error:
        print(f"fdpkit loso: {error}", file=sys.stderr)
        return 2
    except OSError as error:   # e.g. disk full on a checkpoint: the last checkpoint is kept, re-run resumes
        print(f"fdpkit loso: {error}", file=sys.stderr)
        return 7
    return 0


__all__ = ["run_loso", "run_grid", "run_fold", "run_cli", "FoldTask", "RunConfigMismatch",
           "parse_sets", "split_overrides", "pool_run", "format_summary", "read_predictions",
           "make_dataset"]
