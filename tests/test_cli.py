import subprocess
import sys

import pytest

from fdpkit.cli import VERBS, build_parser, main


def test_help_lists_every_verb(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    for verb in ["synth", "manifest", "preprocess", "loso", "report", "bench", "model-info"]:
        assert verb in out


@pytest.mark.parametrize("verb", sorted(VERBS))
def test_each_verb_has_help(verb, capsys):
    with pytest.raises(SystemExit) as done:
        main([verb, "--help"])
    assert done.value.code == 0
    assert "usage: fdpkit " + verb in capsys.readouterr().out


def test_no_verb_prints_help_and_fails(capsys):
    assert main([]) == 2
    assert "COMMAND" in capsys.readouterr().out


def test_python_dash_m_entry_point():
    result = subprocess.run([sys.executable, "-m", "fdpkit", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "preprocess" in result.stdout


def test_parser_rejects_unknown_dataset():
    with pytest.raises(SystemExit):
        build_parser().parse_args(["manifest", "--dataset", "nope", "--root", "x", "--out", "y"])
