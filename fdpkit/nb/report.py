"""`fdpkit report`: run the ordered notebooks with papermill, render each as an offline HTML page,
then write index.html (`fdpkit.nb.index_page`)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from fdpkit.errors import EXIT_BAD_INPUT
from fdpkit.io import write_text
from fdpkit.nb.index_page import write_index
from fdpkit.nb.params import ParameterError, check_parameters
from fdpkit.paths import notebooks_dir

TEMPLATES = Path(__file__).parent / "templates" / "nbconvert"


class NotebookFailed(RuntimeError):
    """A notebook of the report raised; the message shows the failing cell."""


def parse_parameters(pairs: list[str]) -> dict:
    """`key=value` strings -> dict; values parse as JSON when they can (numbers, booleans, lists)."""
    parameters = {}
    for pair in pairs:
        if "=" not in pair:
            raise ParameterError(f"parameter {pair!r} is not key=value (e.g. -p steps=30)")
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
    # the user's parameters are checked before anything runs or is created (exit 2 in one line)
    check_parameters(dataset=dataset, root=root or "", annotations=annotations or "", quiet=True,
                     **(parameters or {}))
    import papermill  # seconds to import; a bad parameter is refused before

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
            pages.append({"stem": notebook.stem, "href": render_html(executed).name, "status": "failed", "time": ""})
            write_index(out_dir, dataset, pages, work_dir)
            raise NotebookFailed(
                f"{notebook.name} failed in cell {error.cell_index}:\n{error.source}\n"
                f"{error.ename}: {error.evalue}\n(see {executed.with_suffix('.html')})"
            ) from None
        node = _read_notebook(executed)
        seconds = float(node.metadata.papermill.duration)  # papermill's wall time
        if progress:
            print(f"{notebook.name}: ok, {seconds:.0f} s", file=sys.stderr)
        pages.append({"stem": notebook.stem, "href": render_html(executed, node).name, "status": "ok",
                      "time": f"{seconds:.0f} s"})
    return write_index(out_dir, dataset, pages, work_dir)


def _read_notebook(executed: Path):
    import nbformat  # seconds to import; only once a notebook has run

    return nbformat.read(str(executed), as_version=4)


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


def render_html(executed: Path, node=None) -> Path:
    """The executed notebook as one HTML page that opens offline: JupyterLab's page without
    require.js, MathJax, the widget manager or mermaid (`templates/nbconvert/offline`)."""
    import nbconvert  # seconds to import; only once a notebook has run

    exporter = nbconvert.HTMLExporter(extra_template_basedirs=[str(TEMPLATES)], template_name="offline")
    body, _ = exporter.from_notebook_node(offline_notebook(node or _read_notebook(executed)))
    return write_text(executed.with_suffix(".html"), body)


def run_cli(args) -> int:
    """`fdpkit report`: a bad parameter is exit 2, a failing notebook exit 1 (its cell is shown)."""
    try:
        parameters = parse_parameters(args.parameter)
        index = build_report(args.dataset, args.out, root=args.root, annotations=args.annotations,
                             parameters=parameters)
    except ParameterError as error:
        print(f"fdpkit report: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except NotebookFailed as error:
        print(f"fdpkit report: {error}", file=sys.stderr)
        return 1
    print(f"report written: {index}")
    return 0


__all__ = ["NotebookFailed", "parse_parameters", "report_notebooks", "build_report", "terminal_text",
           "offline_notebook", "render_html", "run_cli"]
