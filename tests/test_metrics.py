"""Tests for fdpkit.metrics and fdpkit.loso.summary: checked against scikit-learn and hand-computed
cases (the bootstrap intervals: tests/test_bootstrap.py)."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import (accuracy_score, confusion_matrix, f1_score,
                             precision_recall_fscore_support, recall_score)

from fdpkit import metrics as M
from fdpkit.loso.summary import summarize_predictions

CLASSES5 = ["negative", "positive", "surprise", "others", "fear"]


def _sk(y, p, classes):
    """Reference values from scikit-learn, definitions of docs/metrics.md."""
    prec, rec, f1, sup = precision_recall_fscore_support(
        y, p, labels=classes, zero_division=0)
    return {
        "accuracy": accuracy_score(y, p),
        "uf1": f1_score(y, p, average="macro", labels=classes, zero_division=0),
        "uar": recall_score(y, p, average="macro", labels=classes, zero_division=0),
        "weighted_f1": f1_score(y, p, average="weighted", zero_division=0),
        "precision": prec, "recall": rec, "f1": f1, "support": sup,
        "confusion": confusion_matrix(y, p, labels=classes),
    }


def _assert_matches_sklearn(y, p, classes):
    got = M.pooled_metrics(y, p, classes)
    ref = _sk(y, p, classes)
    for k in M.METRICS:
        assert got[k] == pytest.approx(ref[k], abs=1e-12), k
    for i, c in enumerate(classes):
        pc = got["per_class"][str(c)]
        assert pc["precision"] == pytest.approx(ref["precision"][i], abs=1e-12)
        assert pc["recall"] == pytest.approx(ref["recall"][i], abs=1e-12)
        assert pc["f1"] == pytest.approx(ref["f1"][i], abs=1e-12)
        assert pc["support"] == ref["support"][i]
    assert got["confusion"] == ref["confusion"].tolist()
    return got


def _df(n_subjects, per_subject, classes, acc, seed, dataset=None):
    """Random predictions: each clip correct with probability ``acc``."""
    rng = np.random.default_rng(seed)
    rows = []
    for s in range(n_subjects):
        for j in range(per_subject):
            y = classes[rng.integers(len(classes))]
            p = y if rng.random() < acc else classes[rng.integers(len(classes))]
            rows.append({"subject": f"s{s:03d}", "clip": f"c{j}", "label": y, "pred": p})
    df = pd.DataFrame(rows)
    if dataset is not None:
        df["dataset"] = dataset
    return df


# ------------------------------------------------------------------ pooled vs sklearn
@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("k", [2, 3, 5, 7])
def test_pooled_matches_sklearn_random(seed, k):
    rng = np.random.default_rng(100 * seed + k)
    classes = [f"c{i}" for i in range(k)]
    n = int(rng.integers(5, 60))
    probs = rng.dirichlet(np.ones(k))  # skewed, so some classes may be rare or missing
    y = list(rng.choice(classes, size=n, p=probs))
    p = list(rng.choice(classes, size=n, p=rng.dirichlet(np.ones(k))))
    got = _assert_matches_sklearn(y, p, classes)
    # indices give identical results
    yi = [classes.index(v) for v in y]
    pi = np.array([classes.index(v) for v in p])
    assert M.pooled_metrics(yi, pi, classes) == got
    assert got["n"] == n


def test_never_predicted_class():
    classes = ["a", "b", "c"]
    y = ["a", "a", "b", "b", "c", "c"]
    p = ["a", "b", "b", "a", "a", "b"]  # "c" never predicted
    got = _assert_matches_sklearn(y, p, classes)
    assert got["per_class"]["c"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0,
                                     "support": 2, "n_pred": 0}
    # a: TP1 FP2 FN1 -> 2/5; b: TP1 FP2 FN1 -> 2/5; c: 0 (still in the mean)
    assert got["uf1"] == pytest.approx((0.4 + 0.4 + 0) / 3)
    assert got["uar"] == pytest.approx((0.5 + 0.5 + 0) / 3)


def test_class_absent_from_truth_counts_as_zero():
    classes = ["a", "b", "c"]
    y = ["a", "a", "b", "b"]
    p = ["a", "a", "b", "b"]  # perfect on present classes, "c" absent & never predicted
    got = _assert_matches_sklearn(y, p, classes)
    assert got["accuracy"] == 1.0
    assert got["weighted_f1"] == 1.0
    assert got["uf1"] == pytest.approx(2 / 3)  # zero_division=0: c contributes 0
    assert got["uar"] == pytest.approx(2 / 3)
    # absent from truth but predicted
    got = _assert_matches_sklearn(["a", "a", "b", "b"], ["a", "c", "b", "b"], classes)
    assert got["per_class"]["c"]["n_pred"] == 1
    assert got["per_class"]["c"]["f1"] == 0.0


def test_perfect_and_all_wrong():
    classes = ["a", "b", "c"]
    y = ["a", "b", "c", "a", "c"]
    got = _assert_matches_sklearn(y, y, classes)
    assert all(got[k] == 1.0 for k in M.METRICS)
    wrong = ["b", "c", "a", "c", "a"]
    got = _assert_matches_sklearn(y, wrong, classes)
    assert all(got[k] == 0.0 for k in M.METRICS)


def test_encoding_errors():
    with pytest.raises(ValueError):
        M.pooled_metrics(["a", "z"], ["a", "a"], ["a", "b"])
    with pytest.raises(ValueError):
        M.pooled_metrics([0, 2], [0, 1], ["a", "b"])
    with pytest.raises(ValueError):
        M.pooled_metrics(["a"], ["a", "b"], ["a", "b"])
    with pytest.raises(ValueError):
        M.pooled_metrics([], [], ["a", "b"])


# ------------------------------------------------------------------ per-fold
def test_per_subject_table_matches_sklearn_per_fold():
    df = _df(12, 7, CLASSES5, 0.5, seed=3)
    df = pd.concat([df, pd.DataFrame([  # one-sample folds, one right, one wrong
        {"subject": "one_ok", "clip": "x", "label": "fear", "pred": "fear"},
        {"subject": "one_bad", "clip": "x", "label": "fear", "pred": "others"},
    ])], ignore_index=True)
    tab = M.per_subject_table(df, CLASSES5).set_index("subject")
    assert len(tab) == 14
    for s, g in df.groupby("subject"):
        y, p = g["label"].tolist(), g["pred"].tolist()
        row = tab.loc[s]
        assert row["n"] == len(g)
        assert row["accuracy"] == pytest.approx(accuracy_score(y, p))
        assert row["uf1"] == pytest.approx(f1_score(y, p, average="macro", zero_division=0))
        assert row["uar"] == pytest.approx(recall_score(y, p, average="macro", zero_division=0))
        assert row["weighted_f1"] == pytest.approx(f1_score(y, p, average="weighted"))
    assert tab.loc["one_ok", ["accuracy", "uf1", "uar", "weighted_f1"]].tolist() == [1, 1, 1, 1]
    assert tab.loc["one_bad", ["accuracy", "uf1", "uar", "weighted_f1"]].tolist() == [0, 0, 0, 0]
    # macro over all protocol classes
    tab_all = M.per_subject_table(df, CLASSES5, macro_labels="all").set_index("subject")
    assert tab_all.loc["one_ok", "uf1"] == pytest.approx(1 / 5)
    g = df[df.subject == "s000"]
    assert tab_all.loc["s000", "uar"] == pytest.approx(recall_score(
        g.label, g.pred, average="macro", labels=CLASSES5, zero_division=0))


def test_per_fold_differs_from_pooled_and_is_labelled():
    df = pd.DataFrame({
        "subject": ["A", "B", "B", "B"], "clip": ["1", "1", "2", "3"],
        "label": ["a", "a", "b", "a"], "pred": ["b", "a", "b", "a"]})
    s = summarize_predictions(df, ["a", "b"], n_boot=50)
    assert s["pooled"]["accuracy"] == pytest.approx(0.75)
    assert s["per_fold"]["per_fold_mean"]["accuracy"] == pytest.approx(0.5)
    assert s["per_fold"]["per_fold_sd"]["accuracy"] == pytest.approx(np.std([0, 1], ddof=1))
    assert s["per_fold"]["kind"] == "per_fold"
    assert "per_fold_mean" not in s["pooled"] and "accuracy" not in s["per_fold"]
    one = M.per_fold_summary(df[df.subject == "B"], ["a", "b"])
    assert one["n_folds"] == 1 and one["per_fold_sd"]["accuracy"] is None


# ------------------------------------------------------------------ summary / composite
def test_summarize_composite_per_dataset_equals_subset():
    a = _df(10, 6, CLASSES5, 0.7, seed=7, dataset="casme2")
    b = _df(6, 5, CLASSES5, 0.4, seed=8, dataset="samm")  # same subject ids s000.. as casme2
    df = pd.concat([a, b], ignore_index=True)
    s = summarize_predictions(df, CLASSES5, n_boot=200, seed=3)
    json.dumps(s, allow_nan=False)
    assert s["n"] == len(df) and s["n_subjects"] == 16  # (dataset, subject) is the unit
    assert s["per_fold"]["n_folds"] == 16
    ref = _sk(df.label.tolist(), df.pred.tolist(), CLASSES5)
    for k in M.METRICS:
        assert s["pooled"][k] == pytest.approx(ref[k])
    assert s["confusion"]["matrix"] == ref["confusion"].tolist()
    assert set(s["per_dataset"]) == {"casme2", "samm"}
    for name, sub in (("casme2", a), ("samm", b)):
        d = s["per_dataset"][name]
        alone = summarize_predictions(sub, CLASSES5, n_boot=200, seed=3)
        assert "per_dataset" not in alone
        assert d["n"] == len(sub) and d["n_subjects"] == sub.subject.nunique()
        for k in M.METRICS:
            assert d[k] == pytest.approx(alone["pooled"][k])
            assert d["ci"][k] == pytest.approx(alone["ci"]["intervals"][k])
    # pooled composite is not the mean of the per-dataset numbers
    assert s["pooled"]["uf1"] != pytest.approx(
        np.mean([s["per_dataset"][d]["uf1"] for d in ("casme2", "samm")]))


def test_summarize_blocks():
    df = _df(5, 4, CLASSES5, 0.5, seed=9)
    s = summarize_predictions(df, CLASSES5, n_boot=100, seed=0)
    for key in ("pooled", "ci", "per_class", "confusion", "per_fold", "chance"):
        assert key in s
    assert list(s["per_class"]) == CLASSES5
    assert len(s["per_fold"]["table"]) == 5
    assert s["ci"]["seed"] == 0 and s["ci"]["n_boot"] == 100
    assert s == summarize_predictions(df, CLASSES5, n_boot=100, seed=0)
    with pytest.raises(KeyError):
        summarize_predictions(df.drop(columns="pred"), CLASSES5)


# ------------------------------------------------------------------ chance
def test_chance_majority():
    classes = ["a", "b", "c"]
    y = ["b", "b", "b", "a", "c"]
    ch = M.chance_levels(y, classes)["majority"]
    assert ch["class"] == "b"
    ref = _sk(y, ["b"] * 5, classes)
    for k in M.METRICS:
        assert ch[k] == pytest.approx(ref[k])
    assert ch["uar"] == pytest.approx(1 / 3)


@pytest.mark.parametrize("y", [["a", "a", "b", "c", "a"], ["a", "b", "b", "b"], ["c"]])
def test_chance_uniform_random_exact_expectation(y):
    classes = ["a", "b", "c"]
    ch = M.chance_levels(y, classes)["uniform_random"]
    # brute force over all equally likely prediction vectors
    tot = {k: 0.0 for k in M.METRICS}
    preds = list(itertools.product(classes, repeat=len(y)))
    for p in preds:
        r = M.pooled_metrics(y, list(p), classes)
        for k in M.METRICS:
            tot[k] += r[k] / len(preds)
    for k in M.METRICS:
        assert ch[k] == pytest.approx(tot[k], abs=1e-12), k
