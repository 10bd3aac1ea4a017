"""The notebooks: parameter checks, smoke scaling, a papermill run of each notebook with
non-default parameters through the report builder on a tiny SynthME, and a bad parameter failing
in the first cell."""

import json
import re

import nbformat
import numpy as np
import pytest

from fdpkit.io import read_json
from fdpkit.nb import notebook as nb
from fdpkit.nb import params
from fdpkit.nb.index_page import COMPARISON_FILE, write_index
from fdpkit.nb.params import ParameterError, Params, check_parameters
from fdpkit.nb.report import build_report, render_html, report_notebooks
from fdpkit.viz.records import fold_subjects

NOTEBOOKS = ("01_preprocess", "02_train", "03_loso", "04_ablations", "05_attribution")


@pytest.fixture(scope="module")
def tiny_synthme(tmp_path_factory):
    from fdpkit.synthme.corpus import generate_synthme

    root = tmp_path_factory.mktemp("synthme") / "corpus"
    generate_synthme(root, subjects=4, clips_per_subject=4, seed=3)
    return root


@pytest.fixture
def smoke(monkeypatch, tmp_path):
    monkeypatch.setenv("FDPKIT_SMOKE", "1")
    monkeypatch.setenv("FDPKIT_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


def test_notebooks_are_committed_clean():
    names = [path.stem for path in report_notebooks()]
    assert names == list(NOTEBOOKS)
    for path in report_notebooks():
        book = nbformat.read(str(path), as_version=4)
        assert book.metadata["kernelspec"]["name"] == "python3"
        tagged = [c for c in book.cells if "parameters" in c.metadata.get("tags", [])]
        assert len(tagged) == 1, path.name
        code = [c for c in book.cells if c.cell_type == "code"]
        assert code[0] is tagged[0] and "check_parameters" in code[1].source, path.name
        assert all(not c.get("outputs") and c.get("execution_count") is None for c in code), path.name


@pytest.mark.parametrize("bad, name", [
    ({"dataset": "nope"}, "dataset"), ({"preset": "huge"}, "preset"), ({"steps": -1}, "steps"),
    ({"steps": 2.5}, "steps"), ({"lenient": "yes"}, "lenient"), ({"executor": "slurm"}, "executor"),
    ({"ablations": "fdp,bogus"}, "ablations"), ({"root": "/no/such/folder"}, "root"),
    ({"dataset": "casme2", "root": ""}, "root"), ({"colour": 1}, "colour"),
    ({"protocol": "nope"}, "protocol"), ({"protocol": "samm_5class"}, "protocol"),
])
def test_bad_parameter_is_named(bad, name, tiny_synthme, tmp_path):
    args = {"root": str(tiny_synthme), "work_dir": str(tmp_path), **bad}
    with pytest.raises(ParameterError, match=f"'{name}'"):
        check_parameters(quiet=True, **args)


def test_defaults_and_smoke_scaling(smoke, tmp_path, capsys):
    p = check_parameters(steps=60, max_folds=0, jobs=0, ig_steps=32,
                         ablations=params.DEFAULT_ABLATIONS, notebook="t")
    out = capsys.readouterr().out
    assert params.SMOKE_BANNER in out
    assert p.steps == params.SMOKE_LIMITS["steps"] and p.max_folds == 2 and p.jobs == 1 and p.ig_steps == 4
    assert p.ablations == list(params.SMOKE_ABLATIONS)
    home = tmp_path / "home"
    assert p.root == str(home / "synthme-smoke") and (home / "synthme-smoke" / "synthme.json").exists()
    assert p.work_dir == str(home / "work" / "synthme-smoke")
    assert read_json(home / "synthme-smoke" / "synthme.json")["n_clips"] == 16


def test_layout_helpers(tmp_path):
    assert nb.manifest_path(tmp_path) == tmp_path / "manifest.csv"
    assert nb.cache_dir(tmp_path) == tmp_path / "cache"
    assert nb.cache_dir(tmp_path, 4) == tmp_path / "cache-T4"
    assert nb.run_dir(tmp_path, "fdp") == tmp_path / "runs" / "fdp"


def test_bad_parameter_fails_in_the_first_cell(smoke, tiny_synthme, tmp_path):
    import papermill

    out = tmp_path / "02.ipynb"
    with pytest.raises(papermill.PapermillExecutionError) as failure:
        papermill.execute_notebook(str(nb_path("02_train")), str(out), kernel_name="python3",
                                   parameters={"root": str(tiny_synthme), "steps": -3}, progress_bar=False)
    assert failure.value.ename == "ParameterError" and "'steps'" in failure.value.evalue
    cells = nbformat.read(str(out), as_version=4).cells
    failed = [c for c in cells if any(o.output_type == "error" for o in c.get("outputs", []))]
    assert len(failed) == 1 and "check_parameters" in failed[0].source


def nb_path(stem):
    return next(p for p in report_notebooks() if p.stem == stem)


def test_report_runs_every_notebook_with_non_default_parameters(smoke, tiny_synthme, tmp_path):
    out = tmp_path / "report"
    parameters = {"seed": 1, "steps": 3, "n_clips": 1, "baselines": "difference",
                  "ablations": "fdp,frames-4", "ig_steps": 3}
    index = build_report("synthme", out, root=tiny_synthme, parameters=parameters, progress=False)
    text = index.read_text()
    for stem in NOTEBOOKS:
        assert f'href="{stem}.html"' in text and (out / f"{stem}.html").exists()
        assert re.search(rf'{stem}</a></td><td class="ok">ok</td><td class="num">\d+ s</td>', text), stem
        book = nbformat.read(str(out / f"{stem}.ipynb"), as_version=4)
        injected = [c for c in book.cells if "injected-parameters" in c.metadata.get("tags", [])]
        assert injected and f"work_dir = {json.dumps(str(out / 'work'))}" in injected[0].source.replace("'", '"')
        errors = [o for c in book.cells for o in c.get("outputs", []) if o.output_type == "error"]
        assert not errors, (stem, errors[:1])
    assert "Headline" in text and "UF1" in text and "SMOKE MODE" in text
    assert "fdp" in text and "difference" in text and "Selection rule: <b>fixed_steps</b>" in text
    assert "data:image/png;base64," in text and "<style>" in text and "Provenance" in text
    for page in [index, *out.glob("*.html")]:
        assert not re.search(r'<(script|link|img)[^>]+(src|href)="(https?:)?//', page.read_text()), page.name
    summary = read_json(out / "work" / "runs" / "fdp" / "summary.json")
    assert summary["train"]["steps"] == 3 and summary["seeds"]["base"] == 1
    assert summary["n_subjects"] == 2  # smoke: 2 folds
    grid = (out / "work" / "runs" / "ablations" / "grid.csv").read_text()
    assert "frames-4" in grid and (out / "work" / "cache-T4" / "index.csv").exists()
    # 03's paired comparison with FDP reaches the report; 01 cached the optical flow (default tvl1)
    comparison = (out / "work" / "runs" / "comparison.csv").read_text()
    assert comparison.startswith("model,UF1,UF1 - fdp") and "\ndifference," in comparison
    assert "Comparison with FDP" in text
    assert read_json(out / "work" / "cache" / "preprocess.json")["flow"]["method"] == "tvl1"
    assert read_json(out / "work" / "cache-T4" / "preprocess.json")["flow"] is None   # only FDP variants read it


def _fake_run(folder, subjects, finished):
    from fdpkit.loso.folds import fold_dirname
    from fdpkit.io import write_json

    write_json(folder / "config.json", {"folds": subjects})
    for subject in finished:
        write_json(folder / "folds" / fold_dirname(subject) / "metrics.json", {})


def test_05_uses_the_run_that_exists_and_says_which(tmp_path, capsys):
    p = Params(work_dir=str(tmp_path), run="")
    with pytest.raises(ParameterError, match="run 02_train .* or 03_loso"):
        nb.pick_run(p)
    (nb.run_dir(tmp_path, "fdp-one-fold") / "folds").mkdir(parents=True)
    _fake_run(nb.run_dir(tmp_path, "fdp-one-fold"), ["synthme/01"], ["synthme/01"])
    assert nb.pick_run(p) == nb.run_dir(tmp_path, "fdp-one-fold")  # after 01 -> 02 only
    assert "runs/fdp-one-fold (1 finished fold)" in capsys.readouterr().out
    (nb.run_dir(tmp_path, "fdp") / "folds").mkdir(parents=True)
    _fake_run(nb.run_dir(tmp_path, "fdp"), ["synthme/01", "synthme/02"], [])
    assert nb.pick_run(p, quiet=True) == nb.run_dir(tmp_path, "fdp-one-fold")  # 03 has no finished fold yet
    _fake_run(nb.run_dir(tmp_path, "fdp"), ["synthme/01", "synthme/02"], ["synthme/02"])
    assert nb.pick_run(p, quiet=True) == nb.run_dir(tmp_path, "fdp")
    with pytest.raises(ParameterError, match="'run' = 'other'"):
        nb.pick_run(Params(work_dir=str(tmp_path), run="other"))


def test_replacing_a_run_is_a_sentence_without_cli_flags():
    error = ("/w/runs/fdp holds a run made with another config (differs in: train.steps (60 -> 30)); "
             "use another --out, or --force to discard its results and start again")
    text = nb.replacing_message("fdp", error)
    assert "--" not in text and "->" not in text.replace("(60 -> 30)", "")
    assert text.startswith("The run in runs/fdp was made with other parameters (train.steps (60 -> 30)).")


def test_predictions_table_for_the_02_lesson():
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6]])
    predictions = nb.predictions_table(probs, [0, 1], ["a/1", "a/2"], ["x", "y", "z"])
    assert predictions["predicted"].tolist() == ["x", "z"] and predictions["true"].tolist() == ["x", "y"]


def test_headless_kernels_get_text_progress_bars(monkeypatch):
    import tqdm.auto
    import tqdm.std

    monkeypatch.setenv("FDPKIT_HEADLESS", "1")
    monkeypatch.setattr(tqdm.auto, "tqdm", object)
    assert params.text_progress_when_headless() and tqdm.auto.tqdm is tqdm.std.tqdm


def _fake_work(work):
    """A work folder as the notebooks leave it (the fields fdpkit.loso.run / manifest write)."""
    from fdpkit.io import write_json

    classes = ["happiness", "disgust", "others"]
    for name, uf1 in (("fdp", 0.55), ("difference", 0.41)):
        folder = work / "runs" / name
        folder.mkdir(parents=True)
        write_json(folder / "summary.json", {
            "n": 6, "n_subjects": 2, "classes": classes, "selection": "fixed_steps", "preset": "tiny",
            "protocol": "p3", "train": {"steps": 7}, "seeds": {"base": 5, "folds": {"s/01": 1, "s/02": 2}},
            "pooled": {"uf1": uf1, "uar": 0.5, "accuracy": 0.5, "weighted_f1": 0.5},
            "ci": {"intervals": {m: [0.1, 0.9] for m in ("uf1", "uar", "accuracy", "weighted_f1")}},
            "chance": {"uniform_random": {"uf1": 0.31, "uar": 0.33, "accuracy": 0.33, "weighted_f1": 0.3}},
            "confusion": {"matrix": [[2, 0, 0], [1, 1, 0], [0, 1, 1]], "labels": classes},
            "per_class": {c: {"precision": 0.5, "recall": 0.25, "f1": 0.4, "support": 2, "n_pred": 3} for c in classes}})
    (work / "runs" / "fdp" / "predictions.csv").write_text(
        "dataset,subject_uid,label,pred\nsynthme,s/01,happiness,happiness\nsamm,s/02,others,disgust\n")
    (work / "runs" / "ablations").mkdir()
    (work / "runs" / "ablations" / "grid.csv").write_text(
        "name,n,subjects,uf1,uf1_low,uf1_high,uar,uar_low,uar_high,accuracy,accuracy_low,accuracy_high\n"
        "rank-mean,6,2,0.44,0.2,0.6,0.4,0.2,0.6,0.5,0.3,0.7\n")
    write_json(work / "manifest.csv.meta.json", {"protocol": "p3", "classes": classes,
                                                  "summary": {"clips": 6, "subjects": 2, "per_class": {"happiness": 2}}})


def test_index_is_offline_and_shows_every_part(tmp_path):
    from fdpkit import __version__

    work = tmp_path / "work"
    _fake_work(work)
    pages = [{"stem": "03_loso", "href": "03_loso.html", "status": "ok", "time": "12 s"}]
    text = write_index(tmp_path, "synthme", pages, work, command="fdpkit report --dataset synthme").read_text()
    assert not re.search(r'(src|href)="(https?:)?//', text) and "<style>" in text  # nothing fetched
    assert text.count("data:image/png;base64,") == 3  # headline + two confusion matrices
    assert "0.550 <span class=\"ci\">[0.100, 0.900]</span>" in text and "chance (uniform)" in text
    assert "rank-mean" in text and "0.440 [0.200, 0.600]" in text  # ablation table
    assert "<td>samm</td>" in text and "<td>synthme</td>" in text  # per-dataset table
    assert "recall" in text and "predicted" in text  # per-class table
    assert f"fdpkit {__version__}" in text and "fdpkit report --dataset synthme" in text and "torch" in text
    assert "base seed 5" in text and "logical CPUs" in text and 'href="03_loso.html"' in text
    assert "Comparison with FDP" not in text  # only once a comparison file exists
    (work / "runs" / COMPARISON_FILE).write_text("model,delta_uf1\nfdp-paper,0.03\n")
    text = write_index(tmp_path, "synthme", pages, work).read_text()
    assert "Comparison with FDP" in text and "fdp-paper" in text


def test_notebook_pages_fetch_nothing(tmp_path):
    book = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("$x^2$"), nbformat.v4.new_code_cell(
        "1", outputs=[nbformat.v4.new_output("display_data", data={
            "application/vnd.jupyter.widget-view+json": {"model_id": "a", "version_major": 2, "version_minor": 0},
            "text/plain": "training: 100%|##| 4/4"}),
        nbformat.v4.new_output("stream", name="stderr", text="\rfolds:   0%| 0/2\rfolds:  50%| 1/2"),
        nbformat.v4.new_output("stream", name="stderr", text="\rfolds: 100%| 2/2\n")])])
    book.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {}}}
    path = tmp_path / "n.ipynb"
    nbformat.write(book, str(path))
    text = render_html(path).read_text()
    assert not re.search(r'(src|href)="(https?:)?//', text)
    assert "require" not in text.split("<body")[0] and "mathjax" not in text.lower() and "unpkg" not in text
    assert "training: 100%" in text
    assert "folds: 100%| 2/2" in text and "folds:  50%" not in text  # a text bar's final state only


def _cells(stem, kind):
    return [c.source for c in nbformat.read(str(nb_path(stem)), as_version=4).cells if c.cell_type == kind]


def test_02_builds_every_piece_in_view_and_states_no_hard_coded_numbers():
    code = "\n".join(_cells("02_train", "code"))
    for piece in ("data.dataset(", "build_model(", "format_model_info(p.preset", "fdp_loss(", "loso_folds(data.rows", "optimiser.step()",
                  "loss.backward()", "for step in tqdm(", "predict_proba(", "pooled_metrics(",
                  "widgets.ClipInspector", "figures.apex_position", 'nb.run(p, data, "fdp-one-fold"'):
        assert piece in code, piece
    assert "config.di_weight" in code and "TrainConfig.from_preset(p.preset" in code  # weights from the preset
    text = "\n".join(_cells("02_train", "markdown"))
    assert "The same at scale: `run_loso(...)`" in text
    assert not re.search(r"\d+\s*[x×]", text)  # no "100 x" written into the text


@pytest.mark.parametrize("stem", NOTEBOOKS)
def test_notebooks_speak_to_a_notebook_user(stem):
    for source in _cells(stem, "markdown") + _cells(stem, "code"):
        assert not re.search(r"--(force|out|set)\b", source), stem  # no command-line flags as advice
    assert not any(re.search(r"^\s*class\s+\w+", s, re.M) for s in _cells(stem, "code")), stem  # no model classes


def test_synthme_generation_shows_a_progress_bar(tmp_path, capsys):
    from fdpkit.synthme.corpus import generate_synthme

    generate_synthme(tmp_path / "quiet", subjects=1, clips_per_subject=2, workers=1)
    assert "SynthME" not in capsys.readouterr().err  # the library is quiet by default
    generate_synthme(tmp_path / "shown", subjects=1, clips_per_subject=2, progress=True)
    err = capsys.readouterr().err
    assert "SynthME: 100%" in err and "2/2" in err


def test_finished_folds_include_those_added_after_the_first_call(tmp_path):
    """03 resumes into runs/fdp whose config.json came from 02's one fold: 05 must see all folds."""
    from fdpkit.io import write_json

    folder = nb.run_dir(tmp_path, "fdp")
    (folder / "folds").mkdir(parents=True)
    _fake_run(folder, ["synthme/01"], ["synthme/01", "synthme/02", "synthme/03"])
    assert fold_subjects(folder) == ["synthme/01"]
    write_json(folder / "summary.json", {"seeds": {"folds": {"synthme/01": 1, "synthme/02": 2}}})
    (folder / "results.csv").write_text("subject_uid,uf1\nsynthme/03,0.5\nsynthme/04,0.1\n")
    assert fold_subjects(folder) == ["synthme/01", "synthme/02", "synthme/03"]  # 04 has no metrics.json


def test_the_ablation_grid_speaks_to_a_notebook_user(monkeypatch, capsys):
    """04 on a CPU: the skipped released layout is explained in a sentence naming the parameter to set."""
    import torch

    from fdpkit.nb.ablations import ablation_grid

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    grid = ablation_grid(["fdp", "variant-official", "rank-mean"], preset="tiny")
    assert [name for name, _ in grid] == ["fdp", "rank-mean"] and grid[1][1] == {"rank_scorer": "mean"}
    out = capsys.readouterr().out
    assert "include_official = True in the first cell" in out and "SKIPPED" not in out
    assert "The fdp entry is preset tiny" in out and out.rstrip().endswith(".")
    assert [name for name, _ in ablation_grid(["variant-official"], include_official=True, quiet=True)] == [
        "variant-official"]
