"""The flow baselines (STSTNet, OFF-ApexNet) trained by the same LOSO runner as FDP (issue #15 item 2):
the registry says they read optical flow, the runner opens the cache's flow files, records the flow
method in config.json, and refuses a cache made without ``--flow`` in one line (exit 2)."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from fdpkit.cli import main
from fdpkit.data.manifest import read_manifest

STEPS = ["--set", "steps=3", "--set", "batch_size=4"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """SynthME (3 subjects x 3 clips): manifest, a cache with Farneback flow, and one without flow."""
    base = tmp_path_factory.mktemp("flowruns")
    assert main(["synth", "--out", str(base / "synthme"), "--subjects", "3", "--clips-per-subject", "3"]) == 0
    manifest = base / "m.csv"
    assert main(["manifest", "--dataset", "synthme", "--root", str(base / "synthme"), "--out", str(manifest)]) == 0
    assert main(["preprocess", "--manifest", str(manifest), "--cache", str(base / "flow"), "--flow", "farneback"]) == 0
    assert main(["preprocess", "--manifest", str(manifest), "--cache", str(base / "frames")]) == 0
    return manifest, base


@pytest.mark.parametrize("model", ["ststnet", "off-apexnet"])
def test_flow_models_run_loso_on_the_cached_flow(corpus, tmp_path, model):
    manifest, base = corpus
    out = tmp_path / model
    assert main(["loso", "--manifest", str(manifest), "--cache", str(base / "flow"), "--model", model,
                 "--out", str(out), "--jobs", "1", *STEPS]) == 0
    predictions = pd.read_csv(out / "predictions.csv", dtype=str)
    assert sorted(predictions["clip_uid"]) == sorted(read_manifest(manifest).rows["clip_uid"])
    config = json.loads((out / "config.json").read_text())
    assert config["model_config"] == {"architecture": model, "num_classes": len(config["manifest"]["classes"]),
                                      "size": 28}
    assert config["flow"]["method"] == "farneback" and config["data_shape"]["flow_channels"] == 3
    summary = json.loads((out / "summary.json").read_text())
    assert summary["model"] == model and summary["train"]["steps"] == 3


def test_a_flow_model_on_a_cache_without_flow_is_one_line_exit_2(corpus, tmp_path, capsys):
    manifest, base = corpus
    code = main(["loso", "--manifest", str(manifest), "--cache", str(base / "frames"), "--model", "ststnet",
                 "--out", str(tmp_path / "r"), "--jobs", "1", *STEPS])
    err = capsys.readouterr().err
    assert code == 2 and "--flow" in err and "Traceback" not in err
    assert not (tmp_path / "r").exists()


def test_fdp_fields_are_refused_for_a_flow_model(corpus, tmp_path, capsys):
    manifest, base = corpus
    code = main(["loso", "--manifest", str(manifest), "--cache", str(base / "flow"), "--model", "ststnet",
                 "--out", str(tmp_path / "r"), "--jobs", "1", "--set", "drop_path=0.1", *STEPS])
    assert code == 2 and "takes no ['drop_path']" in capsys.readouterr().err
