"""Paired comparison of two LOSO runs (fdpkit/loso/compare.py): hand-counted cases, scikit-learn on the
pooled predictions, brute-force resampling, refusals, determinism and the CLI table."""

from __future__ import annotations

import argparse
import itertools
import json

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import accuracy_score, f1_score, recall_score

from fdpkit.loso import compare
from fdpkit.errors import BadInput
from fdpkit.io import write_csv, write_json
from fdpkit.metrics import group_confusions
from fdpkit.loso.summary import summarize_predictions
from test_bootstrap import documented_draws

CLASSES = ["neg", "pos"]


def predictions_table(truth: dict[str, list[str]], preds: dict[str, list[str]], classes=CLASSES,
                      dataset: str = "casme2") -> pd.DataFrame:
    """Rows as fdpkit.loso.run writes them: one per test clip, subject by subject."""
    rows = []
    for subject, labels in truth.items():
        for i, (label, pred) in enumerate(zip(labels, preds[subject])):
            row = {"dataset": dataset, "subject": subject, "subject_uid": f"{dataset}/{subject}",
                   "clip": f"EP{i:02d}", "clip_uid": f"{dataset}/{subject}/EP{i:02d}", "label": label,
                   "pred": pred}
            row.update({f"p_{c}": float(c == pred) for c in classes})
            row.update({"fold": f"{dataset}/{subject}", "selected_step": 10, "selection": "fixed_steps"})
            rows.append(row)
    return pd.DataFrame(rows)


def write_run(folder, table: pd.DataFrame, classes=CLASSES, model="fdp", preset="tiny", **meta):
    """A run folder's predictions.csv and summary.json, as fdpkit.loso.outputs.pool_run writes them."""
    folds = sorted(set(table["subject_uid"]))
    summary = {"selection": "fixed_steps", "preset": preset, "model": model, "protocol": "test",
               "manifest_sha256": "ab" * 32, "seeds": {"base": 0, "folds": {f: 1 for f in folds}},
               "shuffle_labels": False, **meta, **summarize_predictions(table, classes, n_boot=50)}
    folder.mkdir(parents=True, exist_ok=True)
    write_csv(folder / "predictions.csv", table)
    write_json(folder / "summary.json", summary)
    return folder


def two_clips_each(n_subjects: int) -> dict[str, list[str]]:
    return {f"s{i + 1}": ["neg", "pos"] for i in range(n_subjects)}


PERFECT = ["neg", "pos"]
MISSES_POS = ["neg", "neg"]


# ----------------------------------------------------------------------------- hand-counted cases
def test_hand_case_b_better_on_every_subject(tmp_path):
    """4 subjects x (neg, pos). A misses every pos clip, B is perfect.

    A: TP_neg 4, FP_neg 4 -> F1_neg 8/12; F1_pos 0 -> UF1 1/3; UAR (1 + 0)/2; accuracy 4/8.
    Flipping k subjects leaves A' with 4-k and B' with k misses; UF1, UAR and accuracy all fall
    strictly with the misses, so |d_S| reaches |d| = |M(0 misses) - M(4 misses)| only for S = {} and
    S = all: p = 2/16 exactly."""
    truth = two_clips_each(4)
    a = write_run(tmp_path / "a", predictions_table(truth, {s: MISSES_POS for s in truth}))
    b = write_run(tmp_path / "b", predictions_table(truth, {s: PERFECT for s in truth}))
    result = compare.compare_runs(a, b, n_boot=200, n_perm=10000, seed=3)
    d = result["difference"]
    assert d["uf1"]["a"] == pytest.approx(1 / 3) and d["uf1"]["diff"] == pytest.approx(2 / 3)
    assert d["uar"]["a"] == pytest.approx(0.5) and d["uar"]["diff"] == pytest.approx(0.5)
    assert d["accuracy"]["diff"] == pytest.approx(0.5)
    assert result["permutation"]["kind"] == "exact" and result["permutation"]["n"] == 16
    assert [d[k]["p"] for k in compare.COMPARED] == [2 / 16] * 3
    # B is better on every subject, so every bootstrap replicate has d > 0 and equal to the full d
    # (each replicate is a multiset of identical subjects)
    assert d["uf1"]["ci"] == pytest.approx([2 / 3, 2 / 3]) and d["uar"]["ci"] == pytest.approx([0.5, 0.5])
    assert result["n_subjects"] == 4 and result["n_clips"] == 8


def test_hand_case_mixed_subjects(tmp_path):
    """s1-s3: A misses pos, B perfect; s4: A perfect, B misses pos. Observed: A 3 misses, B 1.

    Accuracy differences add over subjects: d_S = (e1 + e2 + e3 - e4)/8 with e = +-1 per flip, and
    |sum of four +-1| >= 2 for 1 + 4 + 4 + 1 = 10 of 16 sign patterns: p = 10/16. UF1 and UAR depend
    on the miss counts only (A' misses m, B' 4 - m) and fall strictly with m, so |d_S| >= |d| unless
    m = 2, which 6 of the 16 flips give (s4 flipped with 1 of s1-s3 unflipped: 3; s4 unflipped with 2
    of s1-s3 unflipped: 3): p = 10/16 too."""
    truth = two_clips_each(4)
    pa = {"s1": MISSES_POS, "s2": MISSES_POS, "s3": MISSES_POS, "s4": PERFECT}
    pb = {"s1": PERFECT, "s2": PERFECT, "s3": PERFECT, "s4": MISSES_POS}
    a = write_run(tmp_path / "a", predictions_table(truth, pa))
    b = write_run(tmp_path / "b", predictions_table(truth, pb))
    d = compare.compare_runs(a, b, n_boot=100)["difference"]
    uf1 = {0: 1.0, 1: (8 / 9 + 6 / 7) / 2, 3: (8 / 11 + 2 / 5) / 2}  # by hand, F1_neg = 8/(8+m), F1_pos = (8-2m)/(8-m)
    assert d["uf1"]["a"] == pytest.approx(uf1[3]) and d["uf1"]["b"] == pytest.approx(uf1[1])
    assert d["accuracy"]["diff"] == pytest.approx(2 / 8)
    assert d["uar"]["diff"] == pytest.approx((1 + 3 / 4) / 2 - (1 + 1 / 4) / 2)
    assert [d[k]["p"] for k in compare.COMPARED] == [10 / 16] * 3


def test_identical_runs_differ_by_zero_with_p_one(tmp_path):
    rng = np.random.default_rng(0)
    truth = {f"s{i}": list(rng.choice(CLASSES, 3)) for i in range(5)}
    table = predictions_table(truth, {s: list(rng.choice(CLASSES, 3)) for s in truth})
    a, b = write_run(tmp_path / "a", table), write_run(tmp_path / "b", table, model="difference")
    for n_perm in (10000, 7):  # exact (32 flips) and Monte Carlo
        result = compare.compare_runs(a, b, n_boot=100, n_perm=n_perm)
        for k in compare.COMPARED:
            assert result["difference"][k]["diff"] == 0
            assert result["difference"][k]["ci"] == [0.0, 0.0]
            assert result["difference"][k]["p"] == 1.0


# ----------------------------------------------------------------------------- against sklearn
def random_pair(tmp_path, n_subjects=5, classes=("happiness", "surprise", "others", "fear"), seed=1):
    """Two runs over the same clips; 'fear' is never true and never predicted by A (zero_division)."""
    rng = np.random.default_rng(seed)
    classes = list(classes)
    truth = {f"{i:02d}": list(rng.choice(classes[:3], rng.integers(2, 6))) for i in range(n_subjects)}
    pa = {s: list(rng.choice(classes[:3], len(v))) for s, v in truth.items()}
    pb = {s: [t if rng.random() < 0.6 else rng.choice(classes) for t in v] for s, v in truth.items()}
    ta, tb = predictions_table(truth, pa, classes), predictions_table(truth, pb, classes)
    tb = tb.sample(frac=1.0, random_state=0)  # B's rows in another order: pairing is by clip_uid
    return write_run(tmp_path / "a", ta, classes), write_run(tmp_path / "b", tb, classes), ta, tb, classes


def sk(table, classes):
    y, p = table["label"], table["pred"]
    return {"uf1": f1_score(y, p, average="macro", labels=classes, zero_division=0),
            "uar": recall_score(y, p, average="macro", labels=classes, zero_division=0),
            "accuracy": accuracy_score(y, p)}


def test_pooled_difference_matches_sklearn(tmp_path):
    a, b, ta, tb, classes = random_pair(tmp_path)
    d = compare.compare_runs(a, b, n_boot=50)["difference"]
    ska, skb = sk(ta, classes), sk(tb, classes)
    for k in compare.COMPARED:
        assert d[k]["a"] == pytest.approx(ska[k], abs=1e-12)
        assert d[k]["b"] == pytest.approx(skb[k], abs=1e-12)
        assert d[k]["diff"] == pytest.approx(skb[k] - ska[k], abs=1e-12)


def test_bootstrap_uses_the_same_subject_draws_for_both_runs(tmp_path):
    """Replicate r, rebuilt by hand from the documented draw r (subjects sorted) and scored with sklearn
    on both runs' resampled clips, equals bootstrap_difference's replicate r."""
    a, b, ta, tb, classes = random_pair(tmp_path, seed=4)
    pa = compare.load_run(a)[0]
    pb = compare.load_run(b)[0].set_index("clip_uid").loc[pa["clip_uid"]].reset_index()
    cms_a = group_confusions(pa, classes, "subject", "dataset")[0]
    cms_b = group_confusions(pb, classes, "subject", "dataset")[0]
    boot, ci = compare.bootstrap_difference(cms_a, cms_b, n_boot=40, seed=11, level=0.9)
    subjects = sorted(set(pa["subject"]))
    for r, draw in enumerate(documented_draws(len(subjects), 40, 11)):
        pick = [subjects[i] for i in draw]
        ra = pd.concat([pa[pa["subject"] == s] for s in pick])
        rb = pd.concat([pb[pb["subject"] == s] for s in pick])
        ska, skb = sk(ra, classes), sk(rb, classes)
        for k in compare.COMPARED:
            assert boot[k][r] == pytest.approx(skb[k] - ska[k], abs=1e-12)
    result = compare.compare_runs(a, b, n_boot=40, seed=11, level=0.9)
    assert result["difference"]["uf1"]["ci"] == ci["uf1"]
    assert ci["uf1"] == pytest.approx(list(np.quantile(boot["uf1"], [0.05, 0.95])), abs=1e-12)


def test_exact_permutation_matches_brute_force_swaps(tmp_path):
    """p = share of the 2^5 subject subsets whose swapped predictions give |d_S| >= |d| (sklearn)."""
    a, b, ta, tb, classes = random_pair(tmp_path, seed=7)
    tb = tb.set_index("clip_uid").loc[ta["clip_uid"]].reset_index()
    subjects = sorted(set(ta["subject"]))
    observed = {k: sk(tb, classes)[k] - sk(ta, classes)[k] for k in compare.COMPARED}
    extreme = dict.fromkeys(compare.COMPARED, 0)
    flips = list(itertools.product([False, True], repeat=len(subjects)))
    for flip in flips:
        swapped = ta["subject"].isin([s for s, f in zip(subjects, flip) if f]).to_numpy()
        sa, sb = ta.copy(), tb.copy()
        sa.loc[swapped, "pred"], sb.loc[swapped, "pred"] = tb.loc[swapped, "pred"], ta.loc[swapped, "pred"]
        for k in compare.COMPARED:
            extreme[k] += abs(sk(sb, classes)[k] - sk(sa, classes)[k]) >= abs(observed[k]) - 1e-12
    result = compare.compare_runs(a, b, n_boot=20, n_perm=32)
    assert result["permutation"]["kind"] == "exact"
    for k in compare.COMPARED:
        assert result["difference"][k]["p"] == extreme[k] / len(flips)


def test_monte_carlo_p_has_the_plus_one_correction(tmp_path):
    """With more subjects than n_perm allows, p = (1 + hits)/(n_perm + 1) from seeded random flips;
    B perfect and A missing every pos clip: only all-or-nothing flips reach |d|, so hits are rare."""
    truth = two_clips_each(12)  # 4096 > n_perm
    a = write_run(tmp_path / "a", predictions_table(truth, {s: MISSES_POS for s in truth}))
    b = write_run(tmp_path / "b", predictions_table(truth, {s: PERFECT for s in truth}))
    result = compare.compare_runs(a, b, n_boot=20, n_perm=999, seed=5)
    assert result["permutation"] == {**result["permutation"], "kind": "monte_carlo", "n": 999}
    flips, _ = compare.flip_matrix(12, 999, 5)
    hits = int(((flips.sum(axis=1) == 0) | (flips.sum(axis=1) == 12)).sum())
    assert result["difference"]["uf1"]["p"] == (1 + hits) / 1000
    assert result["difference"]["uf1"]["p"] >= 1 / 1000


def test_flip_matrix_enumerates_every_subset_once():
    flips, kind = compare.flip_matrix(4, 16, 0)
    assert kind == "exact" and flips.shape == (16, 4)
    assert len({tuple(f) for f in flips}) == 16
    assert compare.flip_matrix(5, 16, 0)[1] == "monte_carlo"


def test_scoring_flips_in_chunks_changes_nothing(tmp_path, monkeypatch):
    a, b, *_ = random_pair(tmp_path, n_subjects=6, seed=9)
    exact = compare.compare_runs(a, b, n_boot=20, n_perm=64)  # 64 flips in one chunk
    monte_carlo = compare.compare_runs(a, b, n_boot=20, n_perm=50)
    assert (exact["permutation"]["kind"], monte_carlo["permutation"]["kind"]) == ("exact", "monte_carlo")
    monkeypatch.setattr(compare, "PERMUTATION_CHUNK", 5)  # 13 and 10 chunks
    assert compare.compare_runs(a, b, n_boot=20, n_perm=64) == exact
    assert compare.compare_runs(a, b, n_boot=20, n_perm=50) == monte_carlo


# ----------------------------------------------------------------------------- determinism
def test_same_seed_same_result_other_seed_other_draws(tmp_path):
    rng = np.random.default_rng(2)
    truth = {f"s{i:02d}": list(rng.choice(CLASSES, 4)) for i in range(16)}
    a = write_run(tmp_path / "a", predictions_table(truth, {s: list(rng.choice(CLASSES, 4)) for s in truth}))
    b = write_run(tmp_path / "b", predictions_table(truth, {s: list(rng.choice(CLASSES, 4)) for s in truth}))
    kw = dict(n_boot=300, n_perm=500)
    first, again = compare.compare_runs(a, b, seed=1, **kw), compare.compare_runs(a, b, seed=1, **kw)
    assert json.dumps(first) == json.dumps(again)
    other = compare.compare_runs(a, b, seed=2, **kw)
    assert other["difference"]["uf1"]["diff"] == first["difference"]["uf1"]["diff"]
    assert (other["difference"]["uf1"]["ci"], other["difference"]["uf1"]["p"]) != (
        first["difference"]["uf1"]["ci"], first["difference"]["uf1"]["p"])


# ----------------------------------------------------------------------------- refusals
@pytest.fixture
def base(tmp_path):
    truth = two_clips_each(3)
    table = predictions_table(truth, {s: PERFECT for s in truth})
    return tmp_path, truth, table, write_run(tmp_path / "a", table)


@pytest.mark.parametrize("change, message", [
    ({"protocol": "composite_3class"}, "different protocol"),
    ({"manifest_sha256": "cd" * 32}, "different manifest_sha256"),
])
def test_runs_of_another_manifest_or_protocol_are_refused(base, change, message):
    tmp_path, _, table, a = base
    b = write_run(tmp_path / "b", table, **change)
    with pytest.raises(BadInput, match=message):
        compare.compare_runs(a, b)


def test_runs_with_other_classes_are_refused(base):
    tmp_path, truth, _, a = base
    b = write_run(tmp_path / "b", predictions_table(truth, {s: PERFECT for s in truth}, ["neg", "pos", "x"]),
                  ["neg", "pos", "x"])
    with pytest.raises(BadInput, match="different classes"):
        compare.compare_runs(a, b)


def test_runs_on_other_clips_or_folds_are_refused(base):
    tmp_path, truth, table, a = base
    fewer = write_run(tmp_path / "fewer", table[table["subject"] != "s3"])
    with pytest.raises(BadInput, match="different folds .*only in .*a: casme2/s3"):
        compare.compare_runs(a, fewer)
    dropped = table.drop(index=0)
    b = write_run(tmp_path / "b", dropped)
    with pytest.raises(BadInput, match=r"different clips \(1 only in .*casme2/s1/EP00"):
        compare.compare_runs(a, b)


def test_a_clip_with_another_label_is_refused(base):
    tmp_path, _, table, a = base
    relabelled = table.copy()
    relabelled.loc[1, "label"] = "neg"
    b = write_run(tmp_path / "b", relabelled)
    with pytest.raises(BadInput, match="clip casme2/s1/EP01 has"):
        compare.compare_runs(a, b)


def test_missing_files_and_stale_summary_are_refused(base):
    tmp_path, truth, table, a = base
    (tmp_path / "empty").mkdir()
    with pytest.raises(BadInput, match="predictions.csv not found"):
        compare.compare_runs(a, tmp_path / "empty")
    stale = write_run(tmp_path / "stale", table)
    write_csv(stale / "predictions.csv", predictions_table(truth, {s: MISSES_POS for s in truth}))
    with pytest.raises(BadInput, match="summary.json says pooled uf1"):
        compare.compare_runs(a, stale)


# ----------------------------------------------------------------------------- CLI
def parse(argv):
    parser = argparse.ArgumentParser()
    compare.add_arguments(parser)
    return parser.parse_args(argv)


def test_cli_prints_one_row_per_run_writes_json_and_leaves_summaries(tmp_path, capsys):
    truth = two_clips_each(4)
    a = write_run(tmp_path / "a", predictions_table(truth, {s: MISSES_POS for s in truth}))
    b = write_run(tmp_path / "b", predictions_table(truth, {s: PERFECT for s in truth}), model="apex-frame")
    c = write_run(tmp_path / "c", predictions_table(truth, {s: MISSES_POS for s in truth}), model="difference",
                  selection="test_best")
    before = {r: (r / "summary.json").read_bytes() for r in (a, b, c)}
    out = tmp_path / "cmp.json"
    assert compare.run_cli(parse([str(a), str(b), str(c), "--json", str(out), "--n-boot", "50"])) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"reference: {a} (fdp/tiny): UF1 0.333")
    rows = [line for line in lines if line.startswith(str(tmp_path))]
    assert len(rows) == 2
    assert "apex-frame/tiny" in rows[0] and "+0.667" in rows[0] and "0.1250" in rows[0]
    assert "difference/tiny" in rows[1] and "+0.000" in rows[1] and "1.0000" in rows[1]
    assert any("test_best" in line for line in lines)
    written = json.loads(out.read_text())
    assert [c_["b"]["model"] for c_ in written["comparisons"]] == ["apex-frame", "difference"]
    assert written["comparisons"][0]["difference"]["uf1"]["p"] == 0.125
    assert {r: (r / "summary.json").read_bytes() for r in (a, b, c)} == before


def test_cli_needs_two_runs(tmp_path):
    with pytest.raises(BadInput, match="at least two run folders"):
        compare.run_cli(parse([str(tmp_path)]))


# ----------------------------------------------------------------------------- end to end
def test_two_real_loso_runs_compare_like_sklearn_and_stay_untouched(tmp_path):
    """fdpkit.loso.run.run_loso writes two runs (FDP and the difference baseline) on a toy cache; the
    comparison pairs their predictions.csv, agrees with sklearn and leaves summary.json as it was;
    a run on a subset of the folds is refused."""
    import sys
    from pathlib import Path

    from fdpkit.loso.run import run_loso

    sys.path.insert(0, str(Path(__file__).parent))
    from toycache import TOY_CLASSES, make_toy_cache

    manifest, cache = make_toy_cache(tmp_path / "toy", ["s01", "s02", "s03"], clips_per_subject=4)
    kw = dict(preset="tiny", steps=3, batch_size=4, progress=False, verbose=False, jobs=1)
    a, b = tmp_path / "fdp", tmp_path / "difference"
    run_loso(manifest, cache, a, **kw)
    run_loso(manifest, cache, b, model="difference", **kw)
    before = [(r / "summary.json").read_bytes() for r in (a, b)]
    result = compare.compare_runs(a, b, n_boot=50)
    assert (result["a"]["model"], result["b"]["model"]) == ("fdp", "difference")
    assert result["n_subjects"] == 3 and result["permutation"] == {**result["permutation"], "kind": "exact", "n": 8}
    ta, tb = pd.read_csv(a / "predictions.csv", dtype=str), pd.read_csv(b / "predictions.csv", dtype=str)
    tb = tb.set_index("clip_uid").loc[ta["clip_uid"]].reset_index()
    for k in compare.COMPARED:
        assert result["difference"][k]["diff"] == pytest.approx(sk(tb, TOY_CLASSES)[k] - sk(ta, TOY_CLASSES)[k],
                                                                abs=1e-12)
        assert result["difference"][k]["p"] in {i / 8 for i in range(1, 9)}
    assert [(r / "summary.json").read_bytes() for r in (a, b)] == before
    subset = tmp_path / "subset"
    run_loso(manifest, cache, subset, folds="s01,s02", **kw)
    with pytest.raises(BadInput, match="different folds"):
        compare.compare_runs(a, subset)
