"""Invalid notebook parameters: `fdpkit.nb.params.check_parameters`, called by every notebook's first cell
after the papermill `parameters` cell, raises ParameterError naming the parameter before any work."""

from __future__ import annotations

import json

import pytest

from faultkit import REPO

from fdpkit.nb import params as notebook


@pytest.mark.parametrize("name, value, message", [
    ("frames", 1, r"parameter 'frames' = 1: must be >= 2"),
    ("frames", 2.5, r"parameter 'frames' = 2\.5: must be a whole number"),
    ("size", "big", r"parameter 'size' = 'big': must be a whole number"),
    ("steps", -1, r"parameter 'steps' = -1: must be >= 0"),
    ("lenient", "yes", r"parameter 'lenient' = 'yes': must be True or False"),
    ("executor", "slurm", r"parameter 'executor' = 'slurm': must be one of local, ray"),
    ("selection", "best", r"parameter 'selection' = 'best': must be one of"),
    ("stepz", 10, r"parameter 'stepz': unknown \(known: "),
])
def test_invalid_parameter_is_named(tmp_path, name, value, message):
    with pytest.raises(notebook.ParameterError, match=message):
        notebook.check_parameters(root=str(tmp_path), work_dir=str(tmp_path / "work"), quiet=True,
                                  **{name: value})
    assert not (tmp_path / "work").exists()            # refused before creating anything


@pytest.mark.parametrize("kwargs, message", [
    ({"dataset": "casme4"}, r"parameter 'dataset' = 'casme4': must be one of casme2, samm"),
    ({"dataset": "casme2", "root": ""}, r"parameter 'root' = '': the casme2 corpus is licensed"),
    ({"root": "/nonexistent/corpus"}, r"parameter 'root' = '/nonexistent/corpus': is not a folder"),
    ({"annotations": "/nonexistent.xlsx"}, r"parameter 'annotations' = '/nonexistent\.xlsx': is not a file"),
    ({"protocol": "casme2_9class"}, r"parameter 'protocol' = 'casme2_9class': unknown; known protocols: "),
])
def test_invalid_data_parameters_are_named(tmp_path, kwargs, message):
    kwargs = {"root": str(tmp_path), **kwargs}
    with pytest.raises(notebook.ParameterError, match=message):
        notebook.check_parameters(work_dir=str(tmp_path / "work"), quiet=True, **kwargs)


def test_valid_parameters_pass_and_are_completed(tmp_path):
    p = notebook.check_parameters(root=str(tmp_path), work_dir=str(tmp_path / "work"), quiet=True, frames=8,
                                  size=64, lenient=False, executor="local")
    assert p.frames == 8 and p.lenient is False and p.root == str(tmp_path.resolve())


NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_each_notebook_checks_its_parameters_in_the_first_cell(path):
    cells = [c for c in json.loads(path.read_text(encoding="utf-8"))["cells"] if c["cell_type"] == "code"]
    tagged = [i for i, c in enumerate(cells) if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert tagged, f"{path.name}: no cell tagged 'parameters'"
    following = "".join(cells[tagged[0] + 1]["source"])
    assert "check_parameters(" in following, f"{path.name}: the cell after the parameters does not check them"
