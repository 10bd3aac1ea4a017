"""Glue for the notebooks: the work folder layout, data loading, LOSO runs and ablations.

Every notebook's first cell (tagged ``parameters``) holds primitives; the next cell calls
``check_parameters`` (`fdpkit.nb.params`, re-exported here), which validates and completes
them and scales a smoke run (``FDPKIT_SMOKE=1``) down for testing.

Work folder layout (shared by all notebooks, so each reads what the previous one wrote):

    work_dir/manifest.csv (+ .meta.json, .skipped.csv)   fdpkit manifest
    work_dir/cache/                                       fdpkit preprocess (the notebook's T, size)
    work_dir/cache-T<frames>/                             other frame counts (ablations)
    work_dir/runs/<name>/                                 fdpkit loso run folders
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from fdpkit.loso.executors import auto_jobs
from fdpkit.nb.params import (ABLATIONS, DEFAULT_ABLATIONS, SMOKE_ABLATIONS, SMOKE_BANNER,  # noqa: F401
                                    SMOKE_LIMITS, ParameterError, Params, check_parameters, smoke_mode,
                                    text_progress_when_headless)
from fdpkit.viz.records import (attribution_records, clip_records, comparison_table, fold_subjects,  # noqa: F401
                                load_fold_model, mean_face, pooled_table, rank_profiles, region_table,
                                results_table, sample_rows, train_log)


# ------------------------------------------------------------------------ layout
def manifest_path(work_dir) -> Path:
    return Path(work_dir) / "manifest.csv"


def cache_dir(work_dir, frames: int | None = None) -> Path:
    """``work_dir/cache`` (the notebooks' frame count) or ``work_dir/cache-T<frames>``."""
    return Path(work_dir) / ("cache" if frames is None else f"cache-T{int(frames)}")


def run_dir(work_dir, name: str) -> Path:
    return Path(work_dir) / "runs" / name


# ------------------------------------------------------------------------ data
@dataclass
class Data:
    """What the notebooks train on: the manifest, its usable rows and the cache they come from."""

    manifest: object  # fdpkit.data.manifest.Manifest
    rows: pd.DataFrame  # rows usable in the cache
    cache_dir: Path
    manifest_path: Path
    frames: int
    size: int

    @property
    def classes(self) -> list[str]:
        return list(self.manifest.classes)

    def model_overrides(self) -> dict:
        """FDPConfig fields that must follow the cache (frame count, input size) when not default."""
        return {k: v for k, v, default in (("frames", self.frames, 8), ("size", self.size, 64)) if v != default}

    def dataset(self, rows: pd.DataFrame | None = None):
        from fdpkit.data.dataset import ClipDataset

        return ClipDataset(self.cache_dir, self.rows if rows is None else rows, self.classes)


def build_manifest(p: Params, quiet: bool = False):
    """dataset -> manifest (always rebuilt: cheap, and it follows edits of the annotations)."""
    from fdpkit.data.adapters import build_manifest as build, skipped_path
    from fdpkit.data.manifest import write_manifest
    from fdpkit.io import write_csv

    manifest, skipped, summary = build(p.dataset, p.root, p.annotations, p.protocol,
                                       lenient=p.get("lenient", False))
    path = manifest_path(p.work_dir)
    write_manifest(manifest, path)
    write_csv(skipped_path(path), skipped)
    if not quiet:
        print(f"manifest: {len(manifest.rows)} clips, {manifest.rows['subject_uid'].nunique()} subjects, "
              f"protocol {manifest.protocol}; {len(skipped)} spreadsheet rows excluded/skipped -> {path}")
    return manifest, skipped, summary


def preprocess(p: Params, manifest, frames: int | None = None, quiet: bool = False) -> pd.DataFrame:
    """manifest -> aligned cache under the work folder (strict unless the `lenient` parameter is set)."""
    from fdpkit.data.preprocess.cache import preprocess as run, summary_line

    t = frames or p.get("frames", 8)
    folder = cache_dir(p.work_dir, None if frames is None else frames)
    report = run(manifest, folder, frames=t, size=p.get("size", 64), align=p.get("align", "once"),
                 sampling=p.get("sampling", "onset-offset"), workers=p.get("workers", 1),
                 lenient=p.get("lenient", False), progress=not quiet)
    if not quiet:
        print(f"preprocess: {summary_line(report)} in {report.attrs['seconds']:.1f} s -> {folder}")
    return report


def load_data(p: Params, frames: int | None = None, quiet: bool = False) -> Data:
    """The manifest and cache of the work folder, made first if a notebook runs on its own."""
    from fdpkit.data.dataset import ok_rows
    from fdpkit.data.manifest import read_manifest
    from fdpkit.io import read_json

    path = manifest_path(p.work_dir)
    if path.exists():
        manifest = read_manifest(path)
    else:
        if not quiet:
            print("no manifest in the work folder yet (run 01_preprocess first): making it now")
        manifest = build_manifest(p, quiet)[0]
    folder = cache_dir(p.work_dir, frames)
    meta = folder / "preprocess.json"
    stale = not meta.exists() or read_json(meta).get("manifest_sha256") != manifest.sha256
    if stale:
        preprocess(p, manifest, frames, quiet)
    params = read_json(meta)["params"]
    usable = ok_rows(folder, manifest.rows[manifest.rows["label"].isin(manifest.classes)])
    return Data(manifest, usable.rows.reset_index(drop=True), folder, path,
                int(params["frames"]), int(params["size"]))


def manifest_tables(manifest) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(clips per class, clips per subject x class) of a manifest."""
    rows = manifest.rows
    per_class = (rows["label"].value_counts().reindex(manifest.classes, fill_value=0)
                 .rename_axis("class").reset_index(name="clips"))
    per_subject = pd.crosstab(rows["subject_uid"], rows["label"]).reindex(columns=manifest.classes,
                                                                          fill_value=0)
    per_subject["total"] = per_subject.sum(axis=1)
    return per_class, per_subject


def pick_folds(data: Data, max_folds: int = 0, fold: str = "") -> list[str] | None:
    """subject_uids to run: ``fold`` if given, else ``max_folds`` spread over the sorted subjects
    (0: all -> None)."""
    from fdpkit.loso.folds import resolve_subjects

    if fold:
        try:
            return resolve_subjects(data.rows, fold)
        except ValueError as error:
            raise ParameterError(f"parameter 'fold' = {fold!r}: {error}") from None
    subjects = sorted(data.rows["subject_uid"].astype(str).unique())
    if not max_folds or max_folds >= len(subjects):
        return None
    positions = np.linspace(0, len(subjects) - 1, max_folds).round().astype(int)
    return [subjects[i] for i in dict.fromkeys(positions.tolist())]


# ------------------------------------------------------------------------ runs
def run(p: Params, data: Data, name: str, model: str = "fdp", folds=None, overrides=None,
        cache: Data | None = None, quiet: bool = False) -> dict:
    """One LOSO run into ``work_dir/runs/<name>`` (finished folds are reused; a run made with
    other parameters is replaced, and the notebook says so). Returns the summary."""
    from fdpkit.loso.run import RunConfigMismatch, run_loso

    data = cache or data
    args = dict(preset=p.preset, model=model, seed=p.get("seed", 0), steps=p.get("steps") or None,
                batch_size=p.get("batch_size") or None, folds=folds, selection=p.get("selection", "fixed_steps"),
                executor=p.get("executor", "local"),
                jobs=auto_jobs(p.get("jobs", 0)),
                overrides={**data.model_overrides(), **(overrides or {})}, progress=not quiet, verbose=not quiet)
    out = run_dir(p.work_dir, name)
    try:
        return run_loso(data.manifest_path, data.cache_dir, out, **args)
    except RunConfigMismatch as error:
        print(replacing_message(name, str(error)))
        return run_loso(data.manifest_path, data.cache_dir, out, force=True, **args)


def replacing_message(name: str, error: str) -> str:
    """The notebook's sentence for a run folder made with other parameters (the runner's message
    speaks to the command line)."""
    import re

    found = re.search(r"differs in: (.*)\);", error)
    changed = f" ({found.group(1)})" if found else ""
    return (f"The run in runs/{name} was made with other parameters{changed}. Its results are discarded and "
            "the run starts again with the parameters of this notebook; give the run another name to keep both.")


def reuse_folds(source, target, subjects=None) -> int:
    """Copy ``source``'s finished folds (of ``subjects``; None: all) into run folder ``target`` when
    both were made with the same configuration fingerprint (or ``target`` is new); `run` then skips
    them. Returns the number of folds copied."""
    import shutil

    from fdpkit.loso.folds import fold_dirname
    from fdpkit.io import read_json

    source, target = Path(source), Path(target)
    if not (source / "config.json").exists() or source.resolve() == target.resolve():
        return 0
    if (target / "config.json").exists():
        if read_json(target / "config.json").get("fingerprint") != read_json(source / "config.json").get("fingerprint"):
            return 0
    copied = 0
    for subject in fold_subjects(source) if subjects is None else subjects:
        folder, dest = source / "folds" / fold_dirname(subject), target / "folds" / fold_dirname(subject)
        if (folder / "metrics.json").exists() and not (dest / "metrics.json").exists():
            shutil.rmtree(dest, ignore_errors=True)
            shutil.copytree(folder, dest)
            copied += 1
    if copied and not (target / "config.json").exists():
        shutil.copy2(source / "config.json", target / "config.json")
    return copied


def parameter_table(model) -> pd.DataFrame:
    """Parameters per top-level module of a model (and the total), as `fdpkit model-info` counts them."""
    rows = [{"module": name, "parameters": sum(p.numel() for p in module.parameters())}
            for name, module in model.named_children()]
    rows.append({"module": "total", "parameters": sum(p.numel() for p in model.parameters())})
    return pd.DataFrame(rows)


def fold_split(data: Data, subject: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(training rows, held-out rows) of the LOSO fold that holds out ``subject``."""
    held_out = data.rows["subject_uid"].astype(str) == str(subject)
    return data.rows[~held_out].reset_index(drop=True), data.rows[held_out].reset_index(drop=True)


def predictions_table(probs, labels, clip_uids, classes) -> pd.DataFrame:
    """One row per clip: true and predicted class and the predicted class's probability."""
    probs = np.asarray(probs)
    pred = probs.argmax(axis=1)
    return pd.DataFrame({"clip_uid": list(clip_uids), "true": [classes[int(i)] for i in labels],
                         "predicted": [classes[int(i)] for i in pred], "p(predicted)": probs.max(axis=1).round(3)})


RUNS_FOR_ATTRIBUTION = ("fdp", "fdp-one-fold")  # 03's full LOSO first, then 02's fold


def pick_run(p: Params, quiet: bool = False) -> Path:
    """The run folder 05 explains: ``p.run`` when given, else the first of `RUNS_FOR_ATTRIBUTION`
    with a finished fold (03's full LOSO, else 02's one fold); says which. ParameterError when
    there is none, naming what to run."""
    names = [p.run] if p.get("run") else list(RUNS_FOR_ATTRIBUTION)
    for name in names:
        folder = run_dir(p.work_dir, name)
        done = fold_subjects(folder) if (folder / "config.json").exists() else []
        if done:
            if not quiet:
                print(f"Explaining the models of runs/{name} ({len(done)} finished "
                      f"fold{'s' if len(done) > 1 else ''}) in {folder}.")
            return folder
    if p.get("run"):
        raise ParameterError(f"parameter 'run' = {p.run!r}: {run_dir(p.work_dir, p.run)} has no finished fold; "
                             "leave run empty to use the run that exists, or train it first")
    raise ParameterError(f"No trained run in {run_dir(p.work_dir, '')}: run 02_train (one fold) or 03_loso "
                         "(every fold) with the same work_dir first.")


# ------------------------------------------------------------------------ ablations


def ablation_grid(names, include_official: bool = False, quiet: bool = False,
                  preset: str = "tiny") -> list[tuple[str, dict]]:
    """The chosen switches as (name, overrides); `variant-official` is skipped on a CPU unless asked."""
    import torch

    from fdpkit.model import make_config
    from fdpkit.train.config import TrainConfig

    if not quiet:
        model, train = make_config(preset), TrainConfig.from_preset(preset)
        print(f"fdp = preset {preset}: encoder {model.encoder}, rank scorer {model.rank_scorer}, dynamic-image "
              f"loss weight {train.di_weight:g}, variant {model.variant}, T = {model.frames}")
    grid = []
    for name in names:
        if name == "variant-official" and not include_official and not torch.cuda.is_available():
            if not quiet:
                print("variant-official SKIPPED: no CUDA device, and the default grid leaves the released "
                      "layout to GPU machines to stay affordable on a CPU; set include_official=True to run it")
            continue
        grid.append((name, dict(ABLATIONS[name])))
    return grid


def run_ablations(p: Params, data: Data, grid, folds, quiet: bool = False) -> pd.DataFrame:
    """Each grid entry as a LOSO run over ``folds`` into ``work_dir/runs/ablations/<name>``; a
    `frames` entry uses its own cache (``work_dir/cache-T<frames>``); the `fdp` entry reuses the
    matching folds of ``runs/fdp``. Returns the pooled metrics table (also ablations/grid.csv)."""
    from fdpkit.io import write_csv

    names = []
    for name, overrides in grid:
        overrides, cache = dict(overrides), None
        if "frames" in overrides and overrides["frames"] != data.frames:
            cache = load_data(p, frames=overrides.pop("frames"), quiet=quiet)
        overrides.pop("frames", None)
        target = f"ablations/{name}"
        if not overrides and cache is None:
            reuse_folds(run_dir(p.work_dir, "fdp"), run_dir(p.work_dir, target), folds)
        if not quiet:
            print(f"== {name} ==")
        run(p, data, target, folds=folds, overrides=overrides, cache=cache, quiet=quiet)
        names.append(target)
    table = comparison_table(p, names)
    table["name"] = table["name"].str.replace("ablations/", "", regex=False)
    write_csv(run_dir(p.work_dir, "ablations") / "grid.csv", table)
    return table


__all__ = ["ParameterError", "Params", "Data", "check_parameters", "smoke_mode", "SMOKE_BANNER",
           "manifest_path", "cache_dir", "run_dir", "build_manifest", "preprocess", "load_data",
           "manifest_tables", "pick_folds", "run", "reuse_folds", "replacing_message", "parameter_table",
           "fold_split", "predictions_table", "pick_run", "RUNS_FOR_ATTRIBUTION", "comparison_table", "pooled_table",
           "ABLATIONS", "DEFAULT_ABLATIONS", "ablation_grid", "run_ablations", "clip_records",
           "attribution_records", "load_fold_model", "fold_subjects", "train_log", "results_table",
           "rank_profiles", "mean_face", "region_table", "sample_rows"]
