"""`fdpkit report`: run the ordered notebooks with papermill, render HTML, write index.html."""

from __future__ import annotations

import html
import json
import sys
from pathlib import Path

from fdpkit.io import read_json, write_text
from fdpkit.metrics import METRIC_NAMES
from fdpkit.notebook_params import smoke_mode
from fdpkit.paths import notebooks_dir

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
            pages.append((notebook.stem, _render_html(executed), "failed"))
            _write_index(out_dir, dataset, pages, work_dir)
            raise NotebookFailed(
                f"{notebook.name} failed in cell {error.cell_index}:\n{error.source}\n"
                f"{error.ename}: {error.evalue}\n(see {executed.with_suffix('.html')})"
            ) from None
        node = _read_notebook(executed)
        status = f"ok, {float(node.metadata.papermill.duration):.0f} s"  # papermill's wall time
        if progress:
            print(f"{notebook.name}: {status}", file=sys.stderr)
        pages.append((notebook.stem, _render_html(executed, node), status))
    return _write_index(out_dir, dataset, pages, work_dir)


def _read_notebook(executed: Path):
    import nbformat

    return nbformat.read(str(executed), as_version=4)


def _render_html(executed: Path, node=None) -> Path:
    import nbconvert

    body, _ = nbconvert.HTMLExporter().from_notebook_node(node or _read_notebook(executed))
    return write_text(executed.with_suffix(".html"), body)


HEADLINE_RUNS = ("fdp", "apex-frame", "difference")  # work_dir/runs/<name>: FDP first, then the baselines


def headline(work_dir: Path) -> tuple[dict | None, dict | None]:
    """The FDP LOSO summary and the data summary that the notebooks wrote, when present."""
    summary_path = work_dir / "runs" / "fdp" / "summary.json"
    meta_path = work_dir / "manifest.csv.meta.json"
    summary = read_json(summary_path) if summary_path.exists() else None
    meta = read_json(meta_path) if meta_path.exists() else None
    return summary, meta


def _metric_cell(summary: dict, name: str) -> str:
    value = summary.get("pooled", {}).get(name)
    if value is None:
        return "–"
    ci = summary.get("ci", {})
    interval = (ci.get("intervals") or ci).get(name)  # fdpkit.metrics.summarize: ci.intervals
    text = f"{value:.3f}"
    if interval:
        text += f" [{interval[0]:.3f}, {interval[1]:.3f}]"
    return text


def _metric_rows(work_dir: Path) -> str:
    rows = []
    for name in HEADLINE_RUNS:
        path = work_dir / "runs" / name / "summary.json"
        if path.exists():
            run = read_json(path)
            rows.append(f"<tr><td>{html.escape(name)}</td><td>{run.get('n', '?')} clips, "
                        f"{run.get('n_subjects', '?')} subjects</td>"
                        + "".join(f"<td>{_metric_cell(run, m)}</td>" for m in HEADLINE_METRICS) + "</tr>")
    return "".join(rows)


def _write_index(out_dir: Path, dataset: str, pages, work_dir: Path) -> Path:
    summary, meta = headline(work_dir)
    parts = [f"<h1>fdpkit report: {html.escape(dataset)}</h1>"]
    if smoke_mode():
        parts.append("<p><b>SMOKE MODE (FDPKIT_SMOKE=1): scaled down for testing; these numbers are not "
                     "results.</b></p>")
    if summary:
        selection = summary.get("selection", "?")
        warn = " <b>(optimistic: model chosen on the test subject)</b>" if selection == "test_best" else ""
        parts.append("<h2>Headline (pooled over LOSO folds, 95% bootstrap-over-subjects intervals)</h2>")
        parts.append("<table border=1 cellpadding=4><tr><th>model</th><th>pooled over</th>" + "".join(
            f"<th>{METRIC_NAMES.get(m, m)}</th>" for m in HEADLINE_METRICS) + "</tr>" + _metric_rows(work_dir)
            + "</table>")
        parts.append(f"<p>selection rule: {html.escape(str(selection))}{warn}; preset: "
                     f"{html.escape(str(summary.get('preset', '?')))}; training steps per fold: "
                     f"{html.escape(str(summary.get('train', {}).get('steps', '?')))}; protocol: "
                     f"{html.escape(str(summary.get('protocol', '?')))}</p>")
    if meta:
        data = meta.get("summary", {})
        parts.append(f"<h2>Data</h2><p>{data.get('clips', '?')} clips, {data.get('subjects', '?')} "
                     f"subjects, classes {html.escape(', '.join(meta.get('classes', [])))}; per class: "
                     f"{html.escape(json.dumps(data.get('per_class', {})))}</p>")
    parts.append("<h2>Notebooks</h2><ul>")
    for stem, page, status in pages:
        parts.append(f'<li><a href="{html.escape(page.name)}">{html.escape(stem)}</a> ({status})</li>')
    parts.append("</ul>")
    document = "<!doctype html><html><head><meta charset='utf-8'><title>fdpkit report</title></head><body>"
    return write_text(out_dir / "index.html", document + "\n".join(parts) + "</body></html>\n")


def run_cli(args) -> int:
    try:
        parameters = parse_parameters(args.parameter)
        index = build_report(args.dataset, args.out, root=args.root, annotations=args.annotations,
                             parameters=parameters)
    except (NotebookFailed, ValueError) as error:
        print(f"fdpkit report: {error}", file=sys.stderr)
        return 1
    print(f"report written: {index}")
    return 0
