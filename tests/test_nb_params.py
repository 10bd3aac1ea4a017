"""`fdpkit.nb.params`: one typed dataclass of notebook parameters whose choices come from the
registries, one generic check, defaults for what a notebook does not declare, and a bad `fdpkit
report -p` parameter as bad input (exit 2)."""

from __future__ import annotations

import dataclasses

import pytest

from fdpkit.cli import main as cli_main
from fdpkit.errors import EXIT_BAD_INPUT, BadInput
from fdpkit.explain.attribution import METHODS
from fdpkit.nb.params import ABLATIONS, PARAMETERS, ParameterError, Params, check_parameters
from fdpkit.registry import DATASETS, MODELS, PRESETS
from fdpkit.train.config import SELECTIONS


def test_parameters_are_one_typed_dataclass_with_choices_from_the_registries():
    fields = {f.name: f for f in dataclasses.fields(Params)}
    choices = {name: f.metadata.get("choices") for name, f in fields.items()}
    assert choices["dataset"] == tuple(DATASETS) and choices["preset"] == tuple(PRESETS)
    assert choices["baselines"] == tuple(m for m in MODELS if m != "fdp")
    assert choices["selection"] == tuple(SELECTIONS) and choices["ablations"] == tuple(ABLATIONS)
    assert set(choices["method2"]) == set(METHODS) - {"integrated_gradients"}
    assert "smoke" not in PARAMETERS and "notebook" not in PARAMETERS and "frames" in PARAMETERS


def test_unknown_parameter_lists_every_known_one(tmp_path):
    with pytest.raises(ParameterError) as error:
        check_parameters(root=str(tmp_path), work_dir=str(tmp_path / "w"), quiet=True, stepz=3)
    assert all(name in str(error.value) for name in PARAMETERS)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), True, "8", None])
def test_a_whole_number_parameter_refuses_what_is_not_one(tmp_path, value):
    with pytest.raises(ParameterError, match=r"parameter 'frames' = .*: must be a whole number"):
        check_parameters(root=str(tmp_path), work_dir=str(tmp_path / "w"), quiet=True, frames=value)
    assert not (tmp_path / "w").exists()


def test_a_whole_float_and_a_names_list_are_accepted(tmp_path):
    p = check_parameters(root=str(tmp_path), work_dir=str(tmp_path / "w"), quiet=True, frames=4.0,
                         baselines=["difference", " apex-frame "])
    assert p.frames == 4 and isinstance(p.frames, int) and p.baselines == ["difference", "apex-frame"]


def test_parameters_a_notebook_does_not_declare_keep_their_defaults(tmp_path, monkeypatch):
    monkeypatch.delenv("FDPKIT_SMOKE", raising=False)
    p = check_parameters(root=str(tmp_path), work_dir=str(tmp_path / "w"), quiet=True, steps=5)
    assert (p.steps, p.frames, p.size, p.executor, p.selection, p.lenient) == (5, 8, 64, "local", "fixed_steps", False)
    assert p.ablations == list(ABLATIONS) and p.annotations == "" and p.seed == 0
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.steps = 6  # checked once: a cell cannot slip an unchecked value in


def test_a_parameter_error_is_bad_input():
    assert issubclass(ParameterError, BadInput)


def test_a_report_parameter_without_a_value_is_bad_input(tmp_path, capsys):
    out = tmp_path / "report"
    assert cli_main(["report", "--out", str(out), "-p", "steps"]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "parameter 'steps' is not key=value" in err[0] and not out.exists()
