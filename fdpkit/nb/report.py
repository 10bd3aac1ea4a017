"""`fdpkit report`: run the ordered notebooks with papermill, render HTML, write index.html."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from fdpkit.registry import MODELS
from fdpkit.io import read_json, write_text
from fdpkit.loso.metrics import METRIC_NAMES
from fdpkit.errors import EXIT_BAD_INPUT
from fdpkit.nb.params import ParameterError, check_parameters, smoke_mode
from fdpkit.paths import notebooks_dir
from fdpkit.loso.outputs import constant_predictor_warning

HEADLINE_METRICS = ("uf1", "uar", "accuracy", "weighted_f1")


class NotebookFailed(RuntimeError):
    """A notebook of the report raised; the message shows the failing cell."""


def parse_parameters(pairs: list[str]) -> dict:
    """`key=value` strings -> dict; values parse as JSON when they can (numbers, booleans, lists)."""
    parameters = {}
    for pair in pairs:
        if "=" not in pair:
            raise ValueError(f"parameter {pair!r} is not key=value")
        key, value = pair.split("=", 1)
        try:
            parameters[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            parameters[key.strip()] = value
    return parameters


def report_notebooks(folder: Path | None = None) -> list[Path]:
    """The ordered notebooks: names starting with two digits (01_..., 02_...)."""
    folder = folder or notebooks_dir()
    return sorted(p for p in folder.glob("[0-9][0-9]_*.ipynb"))


def build_report(dataset: str, out_dir, root=None, annotations=None, parameters=None,
                 notebooks=None, progress: bool = True) -> Path:
    """Execute each notebook in order into `out_dir`, render it to HTML, then write index.html.

    Every notebook receives the parameters it declares among: dataset, root, annotations, work_dir
    (shared by all notebooks so each reads what the previous one wrote) and the user's `parameters`.
    """
    import papermill

    # the user's parameters are checked before anything runs or is created (exit 2 in one line)
    check_parameters(dataset=dataset, root=root or "", annotations=annotations or "", quiet=True,
                     **(parameters or {}))
    out_dir = Path(out_dir).resolve()
    work_dir = out_dir / "work"
    work_dir.mkdir(parents=True, exist_ok=True)
    # Notebooks run with cwd = notebooks/, so relative paths from the caller must be resolved here.
    absolute = (lambda path: str(Path(path).resolve()) if path else "")
    offered = {"dataset": dataset, "root": absolute(root), "annotations": absolute(annotations),
               "work_dir": str(work_dir), **(parameters or {})}
    pages = []
    for notebook in notebooks or report_notebooks():
        declared = papermill.inspect_notebook(str(notebook))
        unknown = [k for k in (parameters or {}) if k not in declared]
        if unknown and progress:
            print(f"{notebook.name}: does not take {', '.join(unknown)}", file=sys.stderr)
        executed = out_dir / notebook.name
        try:
            papermill.execute_notebook(
                str(notebook), str(executed), cwd=str(notebook.parent),
                parameters={k: v for k, v in offered.items() if k in declared},
                progress_bar=progress, kernel_name="python3",
            )
        except papermill.PapermillExecutionError as error:
            pages.append({"stem": notebook.stem, "href": _render_html(executed).name, "status": "failed", "time": ""})
            _write_index(out_dir, dataset, pages, work_dir)
            raise NotebookFailed(
                f"{notebook.name} failed in cell {error.cell_index}:\n{error.source}\n"
                f"{error.ename}: {error.evalue}\n(see {executed.with_suffix('.html')})"
            ) from None
        node = _read_notebook(executed)
        seconds = float(node.metadata.papermill.duration)  # papermill's wall time
        if progress:
            print(f"{notebook.name}: ok, {seconds:.0f} s", file=sys.stderr)
        pages.append({"stem": notebook.stem, "href": _render_html(executed, node).name, "status": "ok",
                      "time": f"{seconds:.0f} s"})
    return _write_index(out_dir, dataset, pages, work_dir)


def _read_notebook(executed: Path):
    import nbformat

    return nbformat.read(str(executed), as_version=4)


TEMPLATES = Path(__file__).parent / "templates"


def terminal_text(text: str) -> str:
    """Stream text as a terminal shows it: each line keeps what follows its last carriage return
    (a text progress bar's final state, not every update)."""
    lines = [line.rstrip("\r").split("\r")[-1] for line in text.split("\n")]
    return "\n".join(lines)


def offline_notebook(node):
    """The notebook as the offline page shows it: progress bars in their final state, widget
    outputs with only their text (no widget manager can load offline), no saved widget state."""
    node.metadata.pop("widgets", None)
    for cell in node.cells:
        merged = []
        for output in cell.get("outputs", []):  # consecutive writes to one stream -> one output
            previous = merged[-1] if merged else None
            if (output.get("output_type") == "stream" and previous is not None
                    and previous.get("output_type") == "stream" and previous.get("name") == output.get("name")):
                previous["text"] = previous.get("text", "") + output.get("text", "")
                continue
            merged.append(output)
        if "outputs" in cell:
            cell["outputs"] = merged
        for output in merged:
            if output.get("output_type") == "stream":
                output["text"] = terminal_text(output.get("text", ""))
            data = output.get("data", {})
            if "application/vnd.jupyter.widget-view+json" in data and "text/plain" in data:
                data.pop("application/vnd.jupyter.widget-view+json")
    return node


def _render_html(executed: Path, node=None) -> Path:
    """The executed notebook as one HTML page that opens offline: JupyterLab's page without
    require.js, MathJax, the widget manager or mermaid (`templates/nbconvert/offline`)."""
    import nbconvert

    exporter = nbconvert.HTMLExporter(extra_template_basedirs=[str(TEMPLATES / "nbconvert")],
                                      template_name="offline")
    body, _ = exporter.from_notebook_node(offline_notebook(node or _read_notebook(executed)))
    return write_text(executed.with_suffix(".html"), body)


HEADLINE_RUNS = tuple(MODELS)  # work_dir/runs/<name>: FDP first, then the baselines (fdpkit.registry)
COMPARISON_FILE = "comparison.csv"  # work_dir/runs/comparison.csv: the paired comparison with FDP, when made


def _png(fig) -> str:
    import base64
    import io

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
    import pandas as pd

    from fdpkit.viz import figures

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
    import pandas as pd

    from fdpkit.loso.metrics import pooled_metrics

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
    import pandas as pd

    per_class = summary.get("per_class", {})
    order = [c for c in summary.get("classes", []) if c in per_class] or list(per_class)
    rows = [{"class": name, "precision": per_class[name]["precision"], "recall": per_class[name]["recall"],
             "F1": per_class[name]["f1"], "support": per_class[name]["support"],
             "predicted": per_class[name]["n_pred"]} for name in order]
    return _table_html(pd.DataFrame(rows)) if rows else ""


def _ablations(work_dir: Path) -> tuple[str, str]:
    import pandas as pd

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
    import pandas as pd

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
    import subprocess

    repo = Path(__file__).resolve().parent.parent
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
    import datetime
    import os
    import platform
    import shlex
    from importlib import metadata

    from fdpkit import __version__

    libraries = {"python": platform.python_version()}
    for name in ("torch", "numpy", "pandas", "scikit-learn", "captum", "matplotlib", "opencv-python-headless",
                 "opencv-contrib-python-headless", "dlib-bin", "papermill", "nbconvert", "jinja2"):
        try:
            libraries[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    machine = f"{platform.platform()}, {platform.machine()}, {os.cpu_count()} logical CPUs"
    try:
        import torch

        if torch.cuda.is_available():
            machine += f", GPU {torch.cuda.get_device_name(0)}"
        else:
            machine += ", no GPU"
    except ImportError:
        pass
    return {"fdpkit_version": __version__, "git": _git_commit(), "libraries": libraries, "machine": machine,
            "command": command or shlex.join(["fdpkit", *sys.argv[1:]] if sys.argv[0].endswith("fdpkit")
                                             else sys.argv),
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}


def report_context(out_dir: Path, dataset: str, pages, work_dir: Path, command: str | None = None) -> dict:
    """Everything index.html shows, read from the work folder the notebooks wrote."""
    from fdpkit.viz import figures

    runs = _runs(work_dir)
    context = {"dataset": dataset, "smoke": smoke_mode(), "pages": pages, "provenance": provenance(command),
               "metric_names": [METRIC_NAMES.get(m, m) for m in HEADLINE_METRICS], "runs": [],
               "comparison": "", "confusions": [], "per_dataset": "", "per_class": "", "seeds": "",
               "selection": "", "optimistic": False, "data": _data(work_dir), "constant_warnings": []}
    context["ablations"], context["ablation_subjects"] = _ablations(work_dir)
    comparison = work_dir / "runs" / COMPARISON_FILE
    if comparison.exists():
        import pandas as pd

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
    import jinja2

    environment = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES / "report")),
                                     autoescape=jinja2.select_autoescape(["html", "j2"]),
                                     undefined=jinja2.StrictUndefined)
    return environment.get_template("index.html.j2").render(**context)


def _write_index(out_dir: Path, dataset: str, pages, work_dir: Path, command: str | None = None) -> Path:
    context = report_context(out_dir, dataset, pages, work_dir, command)
    return write_text(out_dir / "index.html", render_index(context))


def run_cli(args) -> int:
    try:
        parameters = parse_parameters(args.parameter)
        index = build_report(args.dataset, args.out, root=args.root, annotations=args.annotations,
                             parameters=parameters)
    except ParameterError as error:
        print(f"fdpkit report: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except (NotebookFailed, ValueError) as error:
        print(f"fdpkit report: {error}", file=sys.stderr)
        return 1
    print(f"report written: {index}")
    return 0
