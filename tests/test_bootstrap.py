"""Tests for fdpkit.loso.bootstrap (scipy.stats.bootstrap over subjects): replicates rebuilt by hand and
scored with scikit-learn, determinism, the percentile interval, the degenerate one-subject case."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from fdpkit import metrics as M
from fdpkit.loso.bootstrap import bootstrap_ci, bootstrap_samples, subject_bootstrap
from fdpkit.loso.summary import summarize_predictions
from test_metrics import CLASSES5, _df, _sk


def documented_draws(n_subjects: int, n_boot: int, seed: int) -> np.ndarray:
    """The draws docs/metrics.md states: replicate r pools subjects default_rng(seed).integers(0, G, (n_boot, G))[r]."""
    return np.random.default_rng(seed).integers(0, n_subjects, size=(n_boot, n_subjects))


def test_bootstrap_replicates_equal_naive_recomputation():
    """Replicate r = sklearn's metrics on the clips of the documented draw r (subjects sorted, a subject
    drawn twice counted twice)."""
    df = _df(9, 5, CLASSES5, 0.6, seed=11)
    samples = bootstrap_samples(df, CLASSES5, n_boot=10, seed=5)
    subjects = sorted(df.subject.unique())
    for b, draw in enumerate(documented_draws(9, 10, 5)):
        res = pd.concat([df[df.subject == subjects[i]] for i in draw])
        ref = _sk(res.label.tolist(), res.pred.tolist(), CLASSES5)
        for k in M.METRICS:
            assert samples[k][b] == pytest.approx(ref[k], abs=1e-12)


def test_interval_is_the_percentile_interval_of_the_replicates():
    df = _df(12, 5, CLASSES5, 0.6, seed=2)
    samples = bootstrap_samples(df, CLASSES5, n_boot=250, seed=4)
    ci = bootstrap_ci(df, CLASSES5, n_boot=250, seed=4, level=0.9)
    for k in M.METRICS:
        assert ci[k] == pytest.approx(tuple(np.quantile(samples[k], [0.05, 0.95])), abs=1e-12)


def test_bootstrap_deterministic_seeded_and_contains_point():
    df = _df(20, 8, CLASSES5, 0.6, seed=1)
    a = bootstrap_ci(df, CLASSES5, n_boot=300, seed=0)
    b = bootstrap_ci(df.sample(frac=1, random_state=0), CLASSES5, n_boot=300, seed=0)
    c = bootstrap_ci(df, CLASSES5, n_boot=300, seed=1)
    assert a == b  # deterministic, independent of row order
    assert a != c
    point = M.pooled_metrics(df.label, df.pred, CLASSES5)
    for k in M.METRICS:
        lo, hi = a[k]
        assert lo < point[k] < hi, k
    narrow = bootstrap_ci(df, CLASSES5, ["accuracy"], n_boot=300, seed=0, level=0.5)
    assert a["accuracy"][0] < narrow["accuracy"][0] < narrow["accuracy"][1] < a["accuracy"][1]


def test_bootstrap_width_shrinks_with_more_subjects():
    small = _df(8, 6, CLASSES5, 0.6, seed=2)
    big = _df(128, 6, CLASSES5, 0.6, seed=2)
    for k in M.METRICS:
        ws = np.diff(bootstrap_ci(small, CLASSES5, [k], n_boot=400)[k])[0]
        wb = np.diff(bootstrap_ci(big, CLASSES5, [k], n_boot=400)[k])[0]
        assert wb < 0.6 * ws, k


def test_bootstrap_single_subject_degenerate():
    df = _df(1, 6, CLASSES5, 0.5, seed=4)
    ci = bootstrap_ci(df, CLASSES5, n_boot=100)
    point = M.pooled_metrics(df.label, df.pred, CLASSES5)
    for k in M.METRICS:
        assert ci[k] == pytest.approx((point[k], point[k]))
    s = summarize_predictions(df, CLASSES5, n_boot=100)
    json.dumps(s, allow_nan=False)
    assert s["n_subjects"] == 1 and s["per_fold"]["per_fold_sd"]["uf1"] is None


def test_runs_are_pooled_over_the_same_draws():
    """Two runs' replicates come from one draw per replicate: a run scored against itself differs by
    exactly 0 in every replicate, and a run against a copy with one subject changed differs only in
    the replicates that drew that subject."""
    df = _df(7, 4, CLASSES5, 0.6, seed=3)
    cms, keys, _ = M.group_confusions(df, CLASSES5, "subject", None)
    other = cms.copy()
    other[2] = np.diag(cms[2].sum(axis=1))  # subject 2 all correct in the other run
    assert not np.array_equal(other[2], cms[2])

    def diff(a, b):
        return np.stack([M.from_confusion(b)["uf1"] - M.from_confusion(a)["uf1"]])

    same, low, high = subject_bootstrap([cms, cms], diff, n_boot=60, seed=9)
    assert np.all(same == 0) and low[0] == high[0] == 0
    changed, _, _ = subject_bootstrap([cms, other], diff, n_boot=60, seed=9)
    drew_two = (documented_draws(len(keys), 60, 9) == 2).any(axis=1)
    assert np.all(changed[0][~drew_two] == 0) and np.all(changed[0][drew_two] != 0)


def test_bootstrap_refuses_bad_arguments():
    df = _df(3, 3, CLASSES5, 0.5, 0)
    with pytest.raises(ValueError, match="unknown metrics"):
        bootstrap_ci(df, CLASSES5, ["auc"])
    with pytest.raises(ValueError, match="level"):
        bootstrap_ci(df, CLASSES5, level=1.0)
    with pytest.raises(ValueError, match="n_boot"):
        bootstrap_ci(df, CLASSES5, n_boot=0)
