"""Glue for the notebooks: the work folder layout, data loading and LOSO runs.

Every notebook's first cell (tagged ``parameters``) holds primitives; the next cell calls
`fdpkit.nb.params.check_parameters`, which validates and completes them and scales a smoke run
(``FDPKIT_SMOKE=1``) down for testing. The figures' inputs (clip records, tables read from run
folders) come from `fdpkit.viz.records`; the ablation grid from `fdpkit.nb.ablations`.

Work folder layout (shared by all notebooks, so each reads what the previous one wrote):

    work_dir/manifest.csv (+ .meta.json, .skipped.csv)   fdpkit manifest
    work_dir/cache/                                       fdpkit preprocess (the notebook's T, size)
    work_dir/cache-T<frames>/                             other frame counts (ablations)
    work_dir/runs/<name>/                                 fdpkit loso run folders
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from fdpkit.data.adapters import build_manifest, skipped_path
from fdpkit.data.dataset import ClipDataset, ok_rows
from fdpkit.data.manifest import Manifest, read_manifest, write_manifest
from fdpkit.data.preprocess.cache import preprocess
from fdpkit.data.preprocess.report import summary_line
from fdpkit.io import read_json, write_csv
from fdpkit.loso.compare import compare_many
from fdpkit.loso.config import LosoSpec, RunConfigMismatch
from fdpkit.loso.executors import auto_jobs
from fdpkit.loso.folds import fold_dirname, resolve_subjects
from fdpkit.loso.run import run_loso
from fdpkit.nb.params import ParameterError, Params
from fdpkit.viz.records import fold_subjects


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

    manifest: Manifest
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

    def dataset(self, rows: pd.DataFrame | None = None) -> ClipDataset:
        return ClipDataset(self.cache_dir, self.rows if rows is None else rows, self.classes)


def make_manifest(p: Params, quiet: bool = False):
    """dataset -> ``work_dir/manifest.csv`` (always rebuilt: cheap, and it follows edits of the
    annotations). Returns (manifest, skipped rows, summary) as `fdpkit.data.adapters.build_manifest`."""
    manifest, skipped, summary = build_manifest(p.dataset, p.root, p.annotations or None, p.protocol or None,
                                                lenient=p.lenient)
    path = manifest_path(p.work_dir)
    write_manifest(manifest, path)
    write_csv(skipped_path(path), skipped)
    if not quiet:
        print(f"The manifest lists {len(manifest.rows)} clips of {manifest.rows['subject_uid'].nunique()} "
              f"subjects (protocol {manifest.protocol}); {len(skipped)} spreadsheet rows were excluded or "
              f"skipped. Written to {path}.")
    return manifest, skipped, summary


def _flow(p: Params, frames: int | None) -> str | None:
    """The optical flow a cache gets: the `flow` parameter for the main cache; none for the ablations'
    caches with other frame counts (only FDP variants read those)."""
    return (p.flow or None) if frames is None else None


def make_cache(p: Params, manifest, frames: int | None = None, quiet: bool = False) -> pd.DataFrame:
    """manifest -> aligned cache under the work folder (strict unless the `lenient` parameter is set).
    Returns `fdpkit.data.preprocess.cache.preprocess`'s report."""
    folder = cache_dir(p.work_dir, frames)
    report = preprocess(manifest, folder, frames=frames or p.frames, size=p.size, align=p.align,
                        sampling=p.sampling, workers=p.workers, lenient=p.lenient, progress=not quiet,
                        flow=_flow(p, frames))
    if not quiet:
        print(f"Preprocessing: {summary_line(report)} in {report.attrs['seconds']:.1f} s, cached in {folder}.")
    return report


def load_data(p: Params, frames: int | None = None, quiet: bool = False) -> Data:
    """The manifest and cache of the work folder, made first if a notebook runs on its own."""
    path = manifest_path(p.work_dir)
    if path.exists():
        manifest = read_manifest(path)
    else:
        if not quiet:
            print("There is no manifest in the work folder yet (01_preprocess makes it): making it now.")
        manifest = make_manifest(p, quiet)[0]
    folder = cache_dir(p.work_dir, frames)
    meta = folder / "preprocess.json"
    made = read_json(meta) if meta.exists() else {}
    if (made.get("manifest_sha256") != manifest.sha256
            or (_flow(p, frames) and (made.get("flow") or {}).get("method") != p.flow)):
        make_cache(p, manifest, frames, quiet)   # a cache without the flow asked for gains only the flow files
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
    data = cache or data
    spec = LosoSpec(preset=p.preset, model=model, seed=p.seed, steps=p.steps or None,
                    batch_size=p.batch_size or None, folds=folds, selection=p.selection, executor=p.executor,
                    jobs=auto_jobs(p.jobs), overrides={**data.model_overrides(), **(overrides or {})},
                    progress=not quiet, verbose=not quiet)
    out = run_dir(p.work_dir, name)
    try:
        return run_loso(data.manifest_path, data.cache_dir, out, spec)
    except RunConfigMismatch as error:
        print(replacing_message(name, str(error)))
        return run_loso(data.manifest_path, data.cache_dir, out, spec, force=True)


def paired_comparison(p: Params, names, quiet: bool = False) -> pd.DataFrame:
    """The first run of ``work_dir/runs/<name>`` against each of the others on the same folds (the
    difference in pooled UF1 / UAR, its bootstrap-over-subjects interval and the sign-flip
    permutation p-value, `fdpkit.loso.compare`); written to ``runs/comparison.csv`` for the report."""
    runs = [folder for folder in (run_dir(p.work_dir, n) for n in names) if (folder / "summary.json").exists()]
    target = Path(p.work_dir) / "runs" / "comparison.csv"
    if len(runs) < 2:
        target.unlink(missing_ok=True)   # a comparison of earlier runs must not reach the report
        return pd.DataFrame()
    result = compare_many(runs[0], runs[1:], seed=p.seed)
    rows = []
    for c in result["comparisons"]:
        row = {"model": Path(c["b"]["run"]).name}
        for k, name in (("uf1", "UF1"), ("uar", "UAR")):
            d = c["difference"][k]
            row.update({name: round(d["b"], 3), f"{name} - {runs[0].name}": round(d["diff"], 3),
                        f"{name} 95% CI": f"[{d['ci'][0]:+.3f}, {d['ci'][1]:+.3f}]", f"p ({name})": round(d["p"], 4)})
        rows.append(row)
    table = pd.DataFrame(rows)
    write_csv(target, table)
    if not quiet:
        first = result["comparisons"][0]
        print(f"Each model against {runs[0].name} on the same {first['n_subjects']} subjects "
              f"({first['n_clips']} clips): difference of pooled scores, 95% bootstrap-over-subjects interval, "
              f"sign-flip permutation p-value.")
    return table


def replacing_message(name: str, error: str) -> str:
    """The notebook's sentence for a run folder made with other parameters (the runner's message
    speaks to the command line)."""
    found = re.search(r"differs in: (.*)\);", error)
    changed = f" ({found.group(1)})" if found else ""
    return (f"The run in runs/{name} was made with other parameters{changed}. Its results are discarded and "
            "the run starts again with the parameters of this notebook; give the run another name to keep both.")


def reuse_folds(source, target, subjects=None) -> int:
    """Copy ``source``'s finished folds (of ``subjects``; None: all) into run folder ``target`` when
    both were made with the same configuration fingerprint (or ``target`` is new); `run` then skips
    them. Returns the number of folds copied."""
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
    for name in [p.run] if p.run else RUNS_FOR_ATTRIBUTION:
        folder = run_dir(p.work_dir, name)
        done = fold_subjects(folder) if (folder / "config.json").exists() else []
        if done:
            if not quiet:
                print(f"Explaining the models of runs/{name} ({len(done)} finished "
                      f"fold{'s' if len(done) > 1 else ''}) in {folder}.")
            return folder
    if p.run:
        raise ParameterError(f"parameter 'run' = {p.run!r}: {run_dir(p.work_dir, p.run)} has no finished fold; "
                             "leave run empty to use the run that exists, or train it first.")
    raise ParameterError(f"No trained run in {run_dir(p.work_dir, '')}: run 02_train (one fold) or 03_loso "
                         "(every fold) with the same work_dir first.")


__all__ = ["Data", "manifest_path", "cache_dir", "run_dir", "make_manifest", "make_cache", "load_data",
           "manifest_tables", "pick_folds", "run", "replacing_message", "reuse_folds", "predictions_table",
           "pick_run", "RUNS_FOR_ATTRIBUTION"]
