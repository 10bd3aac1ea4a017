"""The report's ``index.html``: what it shows, read from the work folder the notebooks wrote
(headline metrics with intervals, comparison, confusions, per-dataset / per-class / ablation
tables, provenance), rendered with the jinja2 template in ``templates/report`` (CSS inlined, so
the page opens offline). `fdpkit.nb.report` executes the notebooks and calls `write_index`."""

from __future__ import annotations

import base64
import datetime
import io
import os
import platform
import shlex
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import jinja2
import pandas as pd
import torch

from fdpkit import __version__
from fdpkit.io import read_json, write_text
from fdpkit.metrics import METRIC_NAMES, pooled_metrics
from fdpkit.loso.outputs import constant_predictor_warning
from fdpkit.nb.params import smoke_mode
from fdpkit.registry import MODELS
from fdpkit.viz import figures

HEADLINE_METRICS = ("uf1", "uar", "accuracy", "weighted_f1")
TEMPLATES = Path(__file__).parent / "templates" / "report"
HEADLINE_RUNS = tuple(MODELS)  # work_dir/runs/<name>: FDP first, then the baselines (fdpkit.registry)
COMPARISON_FILE = "comparison.csv"  # work_dir/runs/comparison.csv: the paired comparison with FDP, when made


def _png(fig) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _table_html(frame) -> str:
    return frame.to_html(index=False, border=0, float_format=lambda v: f"{v:.3f}", na_rep="")


def _runs(work_dir: Path) -> list[tuple[str, dict]]:
    found = []
    for name in HEADLINE_RUNS:
        path = work_dir / "runs" / name / "summary.json"
        if path.exists():
            found.append((name, read_json(path)))
    return found


def _headline(runs) -> dict:
    rows, table = [], []
    for name, summary in runs:
        intervals = summary.get("ci", {}).get("intervals", {})
        cells = []
        row = {"name": name}
        for metric in HEADLINE_METRICS:
            value = summary["pooled"][metric]
            low, high = intervals.get(metric, (value, value))
            cells.append({"value": f"{value:.3f}", "low": f"{low:.3f}", "high": f"{high:.3f}"})
            row.update({metric: value, f"{metric}_low": low, f"{metric}_high": high})
        rows.append({"name": name, "n": summary.get("n"), "subjects": summary.get("n_subjects"), "cells": cells})
        table.append(row)
    fdp = runs[0][1]
    uniform = fdp.get("chance", {}).get("uniform_random", {})
    # a model that learned nothing is said so, not just scored
    warnings = [f"{name}: {text}" for name, text in
                ((name, constant_predictor_warning(summary)) for name, summary in runs) if text]
    figure = figures.metric_bars(pd.DataFrame(table), chance={m: uniform.get(m) for m in ("uf1", "uar")},
                                 title="pooled UF1 and UAR, 95% bootstrap-over-subjects intervals")
    return {"runs": rows, "headline_png": _png(figure), "constant_warnings": warnings,
            "chance_row": [f"{uniform[m]:.3f}" if m in uniform else "" for m in HEADLINE_METRICS]}


def _per_dataset(work_dir: Path, classes) -> str:
    path = work_dir / "runs" / "fdp" / "predictions.csv"
    if not path.exists():
        return ""
    predictions = pd.read_csv(path, dtype=str, keep_default_na=False)
    rows = []
    for dataset, group in predictions.groupby("dataset"):
        metrics = pooled_metrics(group["label"], group["pred"], classes)
        rows.append({"dataset": dataset, "clips": len(group), "subjects": group["subject_uid"].nunique(),
                     **{METRIC_NAMES.get(m, m): metrics[m] for m in HEADLINE_METRICS}})
    return _table_html(pd.DataFrame(rows))


def _per_class(summary: dict) -> str:
    per_class = summary.get("per_class", {})
    order = [c for c in summary.get("classes", []) if c in per_class] or list(per_class)
    rows = [{"class": name, "precision": per_class[name]["precision"], "recall": per_class[name]["recall"],
             "F1": per_class[name]["f1"], "support": per_class[name]["support"],
             "predicted": per_class[name]["n_pred"]} for name in order]
    return _table_html(pd.DataFrame(rows)) if rows else ""


def _ablations(work_dir: Path) -> tuple[str, str]:
    path = work_dir / "runs" / "ablations" / "grid.csv"
    if not path.exists():
        return "", ""
    grid = pd.read_csv(path)
    shown = pd.DataFrame({"entry": grid["name"], "clips": grid["n"], "subjects": grid["subjects"]})
    for metric in ("uf1", "uar", "accuracy"):
        shown[METRIC_NAMES.get(metric, metric)] = [
            f"{v:.3f} [{lo:.3f}, {hi:.3f}]" for v, lo, hi in zip(grid[metric], grid[f"{metric}_low"], grid[f"{metric}_high"])]
    subjects = f"{int(grid['subjects'].max())} subjects" if len(grid) else ""
    return _table_html(shown), subjects


def _data(work_dir: Path) -> dict | None:
    path = work_dir / "manifest.csv.meta.json"
    if not path.exists():
        return None
    meta = read_json(path)
    summary = meta.get("summary", {})
    per_class = summary.get("per_class", {})
    table = pd.DataFrame({"class": list(meta.get("classes", [])),
                          "clips": [per_class.get(c, 0) for c in meta.get("classes", [])]})
    return {"clips": summary.get("clips", "?"), "subjects": summary.get("subjects", "?"),
            "protocol": meta.get("protocol", "?"), "table": _table_html(table)}


def _git_commit() -> str:
    repo = Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(["git", "-C", str(repo), "rev-parse", "--short=12", "HEAD"], capture_output=True,
                                text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""
    return commit + (" (with uncommitted changes)" if dirty else "")


def provenance(command: str | None = None) -> dict:
    """fdpkit version and git commit, the command, library versions and the machine."""
    libraries = {"python": platform.python_version()}
    for name in ("torch", "numpy", "pandas", "scikit-learn", "captum", "matplotlib", "opencv-python-headless",
                 "opencv-contrib-python-headless", "dlib-bin", "papermill", "nbconvert", "jinja2"):
        try:
            libraries[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    machine = f"{platform.platform()}, {platform.machine()}, {os.cpu_count()} logical CPUs"
    machine += f", GPU {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ", no GPU"
    return {"fdpkit_version": __version__, "git": _git_commit(), "libraries": libraries, "machine": machine,
            "command": command or shlex.join(["fdpkit", *sys.argv[1:]] if sys.argv[0].endswith("fdpkit")
                                             else sys.argv),
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}


def report_context(out_dir: Path, dataset: str, pages, work_dir: Path, command: str | None = None) -> dict:
    """Everything index.html shows, read from the work folder the notebooks wrote."""
    runs = _runs(work_dir)
    context = {"dataset": dataset, "smoke": smoke_mode(), "pages": pages, "provenance": provenance(command),
               "metric_names": [METRIC_NAMES.get(m, m) for m in HEADLINE_METRICS], "runs": [],
               "comparison": "", "confusions": [], "per_dataset": "", "per_class": "", "seeds": "",
               "selection": "", "optimistic": False, "data": _data(work_dir), "constant_warnings": []}
    context["ablations"], context["ablation_subjects"] = _ablations(work_dir)
    comparison = work_dir / "runs" / COMPARISON_FILE
    if comparison.exists():
        context["comparison"] = _table_html(pd.read_csv(comparison))
    if runs:
        fdp = runs[0][1]
        context.update(_headline(runs))
        context.update(selection=fdp.get("selection", "?"), optimistic=fdp.get("selection") == "test_best",
                       preset=fdp.get("preset", "?"), steps=fdp.get("train", {}).get("steps", "?"),
                       protocol=fdp.get("protocol", "?"),
                       confusions=[{"name": name, "png": _png(figures.confusion(s["confusion"]["matrix"],
                                                                                s["confusion"]["labels"], title=name))}
                                   for name, s in runs],
                       per_dataset=_per_dataset(work_dir, fdp.get("classes", [])), per_class=_per_class(fdp))
        seeds = fdp.get("seeds", {})
        n = len(seeds.get("folds", {}))
        context["seeds"] = (f"base seed {seeds.get('base')}; one seed per fold derived from it "
                            f"({n} fold{'s' if n != 1 else ''}, listed in runs/fdp/summary.json)")
    return context


def render_index(context: dict) -> str:
    """index.html from ``context`` with the jinja2 template in ``templates/report`` (CSS inlined)."""
    environment = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)),
                                     autoescape=jinja2.select_autoescape(["html", "j2"]),
                                     undefined=jinja2.StrictUndefined)
    return environment.get_template("index.html.j2").render(**context)


def write_index(out_dir: Path, dataset: str, pages, work_dir: Path, command: str | None = None) -> Path:
    """``out_dir/index.html`` for the executed notebook ``pages`` and the work folder they wrote."""
    context = report_context(out_dir, dataset, pages, work_dir, command)
    return write_text(out_dir / "index.html", render_index(context))


__all__ = ["HEADLINE_RUNS", "HEADLINE_METRICS", "COMPARISON_FILE", "provenance", "report_context", "render_index",
           "write_index"]
