"""Safety: no unpickling anywhere in the package or notebooks, no network access at run time, strict
by default, and every command's printed counts add up."""

from __future__ import annotations

import ast
import json
import re
import shutil
import socket

import pandas as pd
import pytest

from fdpkit.cli import main as cli_main

from faultkit import REPO

PICKLE_MODULES = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "joblib", "shelve", "marshal"}


def unsafe_loads(source: str, where: str) -> list[str]:
    """Calls that can execute code from a file: torch.load without weights_only=True, np.load without
    allow_pickle=False, any allow_pickle=True / weights_only=False, pickle-family loads,
    pandas read_pickle / to_pickle (pickled datasets)."""
    problems = []
    tree = ast.parse(source)
    aliases = {}                                      # local name -> module for `import numpy as np`
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                aliases[alias.asname or alias.name.split(".")[0]] = alias.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.module:
            root = node.module.split(".")[0]
            for alias in node.names:
                if root in PICKLE_MODULES and alias.name in ("load", "loads", "Unpickler"):
                    problems.append(f"{where}:{node.lineno}: from {node.module} import {alias.name}")
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        keywords = {k.arg: k.value for k in node.keywords if k.arg}
        for name, bad in (("allow_pickle", True), ("weights_only", False)):
            if name in keywords and isinstance(keywords[name], ast.Constant) and keywords[name].value is bad:
                problems.append(f"{where}:{node.lineno}: {name}={bad}")
        func = node.func
        if not isinstance(func, ast.Attribute):
            continue
        owner = func.value.id if isinstance(func.value, ast.Name) else None
        module = aliases.get(owner, owner)
        if func.attr in ("read_pickle", "to_pickle"):
            problems.append(f"{where}:{node.lineno}: {func.attr}")
        elif module in PICKLE_MODULES and func.attr in ("load", "loads", "Unpickler"):
            problems.append(f"{where}:{node.lineno}: {owner}.{func.attr}")
        elif module == "torch" and func.attr == "load":
            value = keywords.get("weights_only")
            if not (isinstance(value, ast.Constant) and value.value is True):
                problems.append(f"{where}:{node.lineno}: torch.load without weights_only=True")
        elif module == "numpy" and func.attr == "load":
            value = keywords.get("allow_pickle")
            if not (isinstance(value, ast.Constant) and value.value is False):
                problems.append(f"{where}:{node.lineno}: np.load without allow_pickle=False")
    return problems


def sources():
    for path in sorted((REPO / "fdpkit").rglob("*.py")):
        yield str(path.relative_to(REPO)), path.read_text(encoding="utf-8")
    for path in sorted((REPO / "notebooks").glob("*.ipynb")):
        cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
        for i, cell in enumerate(cells):
            if cell["cell_type"] == "code":
                code = "".join(cell["source"])
                code = "\n".join("pass" if line.lstrip().startswith(("%", "!")) else line
                                 for line in code.splitlines())
                yield f"{path.relative_to(REPO)} cell {i}", code


def test_the_checker_catches_every_unsafe_form():
    bad = """
import pickle, torch
import numpy as np
import pandas as pd
from pickle import loads
torch.load(p)
torch.load(p, weights_only=False)
np.load(p)
np.load(p, allow_pickle=True)
pickle.load(f)
pd.read_pickle(p)
"""
    flagged = {int(problem.split(":")[1]) for problem in unsafe_loads(bad, "x")}
    assert flagged == set(range(5, 12))             # every line from `from pickle import loads` on
    good = "import torch\nimport numpy as np\ntorch.load(p, weights_only=True)\nnp.load(p, allow_pickle=False)\n"
    assert unsafe_loads(good, "x") == []


def test_no_unpickling_in_the_package_or_the_notebooks():
    problems = [p for where, source in sources() for p in unsafe_loads(source, where)]
    assert not problems, "\n".join(problems)


def test_no_pickled_dataset_files_are_written_or_read():
    for where, source in sources():
        assert not re.search(r"""["'][^"']*\.(pkl|pickle)["']""", source), where


# ------------------------------------------------------------------------------------ no network
@pytest.fixture
def no_network(monkeypatch):
    attempts = []

    def refuse(*args, **kwargs):
        attempts.append(args[1:] if args else kwargs)
        raise RuntimeError(f"network access attempted: {args[1:]}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    return attempts


def test_core_pipeline_runs_without_network(no_network, tmp_path, capsys):
    """synth -> manifest -> preprocess -> a few training steps, through the CLI verbs, in-process."""
    corpus, manifest, cache = tmp_path / "synthme", tmp_path / "manifest.csv", tmp_path / "cache"
    assert cli_main(["synth", "--out", str(corpus), "--subjects", "2", "--clips-per-subject", "1"]) == 0
    assert cli_main(["manifest", "--dataset", "synthme", "--root", str(corpus), "--out", str(manifest)]) == 0
    assert cli_main(["preprocess", "--manifest", str(manifest), "--cache", str(cache), "--frames", "8",
                     "--size", "32"]) == 0
    assert cli_main(["loso", "--manifest", str(manifest), "--cache", str(cache), "--out", str(tmp_path / "run"),
                     "--preset", "tiny", "--steps", "2", "--batch-size", "2", "--jobs", "1"]) == 0
    assert "pooled UF1" in capsys.readouterr().out
    assert no_network == []


# ------------------------------------------------------------------------------------ counts
def test_loso_counts_reconcile_with_the_manifest_and_cache(toy, tmp_path, capsys):
    """A row whose clip failed preprocessing is dropped, and the run says so in its counts."""
    manifest, cache = toy
    broken = tmp_path / "cache"
    shutil.copytree(cache, broken)
    index = pd.read_csv(broken / "index.csv", dtype=str, keep_default_na=False)
    index.loc[0, ["status", "file"]] = ["failed", ""]
    index.to_csv(broken / "index.csv", index=False)
    out = tmp_path / "run"
    assert cli_main(["loso", "--manifest", str(manifest), "--cache", str(broken), "--out", str(out),
                     "--preset", "tiny", "--steps", "1", "--batch-size", "4", "--jobs", "1"]) == 0
    printed = capsys.readouterr().out
    config = json.loads((out / "config.json").read_text())
    summary = json.loads((out / "summary.json").read_text())
    rows = len(pd.read_csv(manifest))
    assert config["cache"]["n_usable"] + config["cache"]["n_dropped"] == rows
    assert config["cache"]["n_dropped"] == 1 == sum(config["cache"]["dropped_reasons"].values())
    assert summary["n"] == config["cache"]["n_usable"] == len(pd.read_csv(out / "predictions.csv"))
    match = re.search(r"manifest rows (\d+) = used (\d+) \+ dropped (\d+)", printed)
    assert match, f"loso prints no row counts:\n{printed}"
    assert tuple(map(int, match.groups())) == (rows, rows - 1, 1)
