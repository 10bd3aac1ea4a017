"""Glue for the notebooks: parameter checks, smoke scaling, the work folder layout, data loading.

Every notebook's first cell (tagged ``parameters``) holds primitives; the next cell calls

    p = check_parameters(dataset=dataset, root=root, ..., notebook="03_loso")

which raises ``ParameterError`` naming the bad parameter, fills in the defaults (``root=""`` ->
the default SynthME under ``fdpkit_home()/synthme``, generated if absent; ``work_dir=""`` ->
``fdpkit_home()/work/<dataset>``) and, when the environment variable ``FDPKIT_SMOKE=1`` is set,
scales the run down for testing (a 4-subject x 4-clip SynthME, few steps, 2 folds, a small grid)
and prints a loud line saying so.

Work folder layout (shared by all notebooks, so each reads what the previous one wrote):

    work_dir/manifest.csv (+ .meta.json, .skipped.csv)   fdpkit manifest
    work_dir/cache/                                       fdpkit preprocess (the notebook's T, size)
    work_dir/cache-T<frames>/                             other frame counts (ablations)
    work_dir/runs/<name>/                                 fdpkit loso run folders
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from fdpkit.paths import fdpkit_home
from fdpkit.viz.records import (attribution_records, clip_records, comparison_table, fold_subjects,  # noqa: F401
                                load_fold_model, mean_face, pooled_table, rank_profiles, region_table,
                                results_table, sample_rows, train_log)

DATASETS = ("casme2", "samm", "casme_sq", "casme3", "synthme")
SMOKE_ENV = "FDPKIT_SMOKE"
SMOKE_BANNER = f"SMOKE MODE ({SMOKE_ENV}=1): scaled down for testing"
SMOKE_SYNTHME = {"subjects": 4, "clips_per_subject": 4}
SMOKE_LIMITS = {"steps": 4, "max_folds": 2, "n_clips": 2, "ig_steps": 4}
SMOKE_ABLATIONS = ("fdp", "rank-mean", "frames-4")
EXECUTORS = ("local", "ray")
SELECTIONS = ("fixed_steps", "inner_val", "test_best")
METHODS2 = ("saliency", "occlusion")


class ParameterError(ValueError):
    """A notebook parameter is invalid; the message names it."""


def smoke_mode() -> bool:
    return os.environ.get(SMOKE_ENV, "").strip().lower() not in ("", "0", "false", "no")


class Params(dict):
    """The checked parameters (attribute access) plus derived paths."""

    __getattr__ = dict.__getitem__


def _fail(name, value, rule) -> None:
    raise ParameterError(f"parameter {name!r} = {value!r}: {rule}")


def _int(name, value, low=None, high=None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer, float)) or int(value) != value:
        _fail(name, value, "must be a whole number")
    value = int(value)
    if low is not None and value < low:
        _fail(name, value, f"must be >= {low}")
    if high is not None and value > high:
        _fail(name, value, f"must be <= {high}")
    return value


def _choice(name, value, choices) -> str:
    if value not in choices:
        _fail(name, value, f"must be one of {', '.join(map(str, choices))}")
    return value


def _bool(name, value) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        _fail(name, value, "must be True or False")
    return bool(value)


def _str(name, value) -> str:
    if value is None:
        return ""
    if not isinstance(value, (str, os.PathLike)):
        _fail(name, value, "must be a string ('' for the default)")
    return str(value)


def _names(name, value, allowed=None) -> list[str]:
    """A comma-separated string (or a list) of names; '' -> []."""
    items = value if isinstance(value, (list, tuple)) else _str(name, value).split(",")
    items = [str(v).strip() for v in items if str(v).strip()]
    if allowed is not None:
        for item in items:
            if item not in allowed:
                _fail(name, value, f"{item!r} is not one of {', '.join(allowed)}")
    return items


def _rules() -> dict:
    """Notebook-specific parameter name -> check(name, value) returning the clean value."""
    from fdpkit.model import PRESETS

    def whole(low, high=None):
        return lambda n, v: _int(n, v, low, high)

    def one_of(*choices):
        return lambda n, v: _choice(n, v, choices)

    return {
        "preset": one_of(*PRESETS), "seed": whole(0), "steps": whole(0), "batch_size": whole(0),
        "frames": whole(2, 64), "size": whole(16, 512), "align": one_of("once", "per-frame"),
        "sampling": one_of("onset-offset", "official"), "workers": whole(1, 64), "lenient": _bool,
        "n_clips": whole(1, 64), "fold": _str, "executor": one_of(*EXECUTORS), "jobs": whole(0, 256),
        "selection": one_of(*SELECTIONS), "max_folds": whole(0), "include_official": _bool,
        "baselines": lambda n, v: _names(n, v, ("apex-frame", "difference")),
        "ablations": lambda n, v: _names(n, v, tuple(ABLATIONS)),
        "ig_steps": whole(2, 1024), "method2": one_of(*METHODS2), "run": _str,
    }


def check_parameters(dataset="synthme", root="", annotations="", protocol="", work_dir="",
                     notebook: str = "", quiet: bool = False, **extra) -> Params:
    """Validate and complete a notebook's parameters; raise ParameterError naming the bad one."""
    dataset = _str("dataset", dataset)
    _choice("dataset", dataset, DATASETS)
    smoke = smoke_mode()
    root, annotations = _str("root", root), _str("annotations", annotations)
    protocol, work_dir = _str("protocol", protocol), _str("work_dir", work_dir)
    rules = _rules()
    values = {}
    for name, value in extra.items():
        if name not in rules:
            raise ParameterError(f"parameter {name!r}: unknown (known: {', '.join(sorted(rules))})")
        values[name] = rules[name](name, value)

    if root:
        root_path = Path(root).expanduser().resolve()
        if not root_path.is_dir():
            _fail("root", root, "is not a folder")
    elif dataset == "synthme":
        root_path = fdpkit_home() / ("synthme-smoke" if smoke else "synthme")
    else:
        _fail("root", root, f"the {dataset} corpus is licensed and cannot be generated: pass its folder")
    if annotations and not Path(annotations).expanduser().is_file():
        _fail("annotations", annotations, "is not a file")
    if protocol:
        from fdpkit.data.protocols import list_protocols, load_protocol

        if protocol not in list_protocols():
            _fail("protocol", protocol, f"unknown; known protocols: {', '.join(list_protocols())}")
        if not load_protocol(protocol).covers(dataset):
            _fail("protocol", protocol, f"has no class map for {dataset}")
    if work_dir:
        work = Path(work_dir).expanduser().resolve()
    else:
        work = fdpkit_home() / "work" / (dataset + ("-smoke" if smoke else ""))

    if smoke:
        for name, limit in SMOKE_LIMITS.items():
            if name in values and values[name]:
                values[name] = min(values[name], limit)
        if "steps" in values and values["steps"] == 0:
            values["steps"] = SMOKE_LIMITS["steps"]
        if "max_folds" in values and values["max_folds"] == 0:
            values["max_folds"] = SMOKE_LIMITS["max_folds"]
        if "jobs" in values:
            values["jobs"] = 1  # no process pool for a few steps
        if "ablations" in values:
            values["ablations"] = [a for a in values["ablations"] if a in SMOKE_ABLATIONS] or values["ablations"][:2]
    p = Params(dataset=dataset, root=str(root_path), annotations=annotations or None,
               protocol=protocol or None, work_dir=str(work), smoke=smoke, notebook=notebook, **values)
    if smoke and not quiet:
        print("#" * len(SMOKE_BANNER) + "\n" + SMOKE_BANNER + "\n" + "#" * len(SMOKE_BANNER))
    if dataset == "synthme" and not root:
        ensure_synthme(root_path, smoke, quiet)
    work.mkdir(parents=True, exist_ok=True)
    if not quiet:
        shown = {k: v for k, v in p.items() if k not in ("smoke", "notebook")}
        print("parameters: " + ", ".join(f"{k}={v}" for k, v in shown.items()))
    return p


def ensure_synthme(root: Path, smoke: bool = False, quiet: bool = False) -> Path:
    """Generate the default SynthME into ``root`` unless it is already there."""
    from fdpkit.data.synthme import generate_synthme

    kwargs = dict(SMOKE_SYNTHME) if smoke else {}
    summary = generate_synthme(root, **kwargs)
    if not quiet and summary["status"] != "already present":
        print(f"SynthME generated in {summary['seconds']:.1f} s: {root} ({summary['n_clips']} clips)")
    return Path(root)


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
    from fdpkit.data.cache import preprocess as run, summary_line

    t = frames or p.get("frames", 8)
    folder = cache_dir(p.work_dir, None if frames is None else frames)
    report = run(manifest, folder, frames=t, size=p.get("size", 64), align=p.get("align", "once"),
                 sampling=p.get("sampling", "onset-offset"), workers=p.get("workers", 1),
                 lenient=p.get("lenient", False), progress=False)
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
    from fdpkit.folds import resolve_subjects

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
def auto_jobs(jobs: int = 0) -> int:
    """0 -> one fold process per CPU core (at most 4); each fold runs on one torch thread."""
    return jobs or max(1, min(4, os.cpu_count() or 1))


def run(p: Params, data: Data, name: str, model: str = "fdp", folds=None, overrides=None,
        cache: Data | None = None, quiet: bool = False) -> dict:
    """One LOSO run into ``work_dir/runs/<name>`` (finished folds are reused; a run made with
    other parameters is replaced, and the notebook says so). Returns the summary."""
    from fdpkit.runner import RunConfigMismatch, run_loso

    data = cache or data
    args = dict(preset=p.preset, model=model, seed=p.get("seed", 0), steps=p.get("steps") or None,
                batch_size=p.get("batch_size") or None, folds=folds, selection=p.get("selection", "fixed_steps"),
                executor=p.get("executor", "local"),
                jobs=min(auto_jobs(p.get("jobs", 0)), len(folds) if folds else 1 << 10),
                overrides={**data.model_overrides(), **(overrides or {})}, progress=False, verbose=not quiet)
    out = run_dir(p.work_dir, name)
    try:
        return run_loso(data.manifest_path, data.cache_dir, out, **args)
    except RunConfigMismatch as error:
        print(f"runs/{name}: {error}\n  -> replacing it with a run of the current parameters")
        return run_loso(data.manifest_path, data.cache_dir, out, force=True, **args)


def reuse_folds(source, target, subjects=None) -> int:
    """Copy ``source``'s finished folds (of ``subjects``; None: all) into run folder ``target`` when
    both were made with the same configuration fingerprint (or ``target`` is new); `run` then skips
    them. Returns the number of folds copied."""
    import shutil

    from fdpkit.folds import fold_dirname
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


# ------------------------------------------------------------------------ ablations
# name -> (overrides for run_grid, needs a cache with another frame count)
ABLATIONS = {
    "fdp": {},
    "encoder-cnn": {"encoder": "cnn"},
    "encoder-vit": {"encoder": "vit"},
    "rank-mean": {"rank_scorer": "mean"},
    "di_weight-100": {"di_weight": 100.0},  # the released weighting (tiny trains with 10 by default)
    "di_weight-0": {"di_weight": 0.0},
    "variant-official": {"variant": "official"},
    "frames-4": {"frames": 4},
}
DEFAULT_ABLATIONS = "fdp,encoder-cnn,encoder-vit,rank-mean,di_weight-100,di_weight-0,variant-official,frames-4"


def ablation_grid(names, include_official: bool = False, quiet: bool = False,
                  preset: str = "tiny") -> list[tuple[str, dict]]:
    """The chosen switches as (name, overrides); `variant-official` is skipped on a CPU unless asked."""
    import torch

    from fdpkit.model import make_config
    from fdpkit.train import TrainConfig

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
           "manifest_tables", "pick_folds", "run", "reuse_folds", "comparison_table", "pooled_table",
           "ABLATIONS", "DEFAULT_ABLATIONS", "ablation_grid", "run_ablations", "clip_records",
           "attribution_records", "load_fold_model", "fold_subjects", "train_log", "results_table",
           "rank_profiles", "mean_face", "region_table", "sample_rows"]
