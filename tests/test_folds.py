"""LOSO folds, per-fold seeds, the inner-validation split and the label-shuffle permutation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fdpkit.io import derive_seed
from fdpkit.loso.folds import (fold_dirname, fold_seed, inner_val_split, loso_folds,
                          resolve_subjects, shuffled_labels)


def rows_of(subjects: dict[str, int]) -> pd.DataFrame:
    out = []
    for uid, n in subjects.items():
        dataset, subject = uid.split("/")
        for k in range(n):
            out.append({"dataset": dataset, "subject": subject, "subject_uid": uid,
                        "clip_uid": f"{uid}/c{k}", "label": "abc"[k % 3]})
    return pd.DataFrame(out)


def test_one_fold_per_subject_composite_subjects_kept_apart():
    rows = rows_of({"casme2/01": 3, "samm/01": 2, "samm/006": 4})
    folds = loso_folds(rows, base_seed=0)
    assert [f.subject_uid for f in folds] == ["casme2/01", "samm/006", "samm/01"]
    for fold in folds:
        test = set(rows.iloc[list(fold.test_index)]["subject_uid"])
        train = set(rows.iloc[list(fold.train_index)]["subject_uid"])
        assert test == {fold.subject_uid} and fold.subject_uid not in train
        assert len(fold.test_index) + len(fold.train_index) == len(rows)
    assert folds[0].name == "casme2_01" == fold_dirname("casme2/01")


def test_fold_seed_depends_only_on_base_seed_and_subject():
    rows = rows_of({"d/1": 2, "d/2": 2, "d/3": 2})
    shuffled = rows.sample(frac=1, random_state=3).reset_index(drop=True)
    a = {f.subject_uid: f.seed for f in loso_folds(rows, 7)}
    b = {f.subject_uid: f.seed for f in loso_folds(shuffled, 7, only="d/3,d/1")}
    assert b == {k: a[k] for k in ("d/1", "d/3")}
    assert a["d/1"] == fold_seed(7, "d/1") != fold_seed(8, "d/1")
    assert len(set(a.values())) == 3
    assert 0 <= derive_seed(123, "x") < 2**31


def test_resolve_subjects_accepts_uid_folder_name_and_unambiguous_id():
    rows = rows_of({"casme2/01": 1, "samm/01": 1, "samm/006": 1})
    assert resolve_subjects(rows, "samm/01, casme2_01,006") == ["casme2/01", "samm/006", "samm/01"]
    with pytest.raises(ValueError, match="ambiguous"):
        resolve_subjects(rows, "01")
    with pytest.raises(ValueError, match="no clips"):
        resolve_subjects(rows, "999")


def test_inner_val_split_holds_out_whole_training_subjects():
    rows = rows_of({f"d/{i}": 3 for i in range(10)})
    fit, val = inner_val_split(rows, seed=5, fraction=0.2)
    fit_s, val_s = set(rows.iloc[fit]["subject_uid"]), set(rows.iloc[val]["subject_uid"])
    assert len(val_s) == 2 and not fit_s & val_s and len(fit) + len(val) == len(rows)
    again = inner_val_split(rows.sample(frac=1, random_state=0), seed=5, fraction=0.2)
    assert set(rows.sample(frac=1, random_state=0).iloc[again[1]]["subject_uid"]) == val_s
    with pytest.raises(ValueError):
        inner_val_split(rows_of({"d/1": 3}), seed=0)


def test_shuffled_labels_is_a_seeded_permutation():
    labels = np.array([0, 0, 1, 1, 2, 2, 2, 1, 0, 2])
    a, b = shuffled_labels(labels, 1), shuffled_labels(labels, 1)
    assert (a == b).all() and sorted(a) == sorted(labels) and (a != labels).any()
    assert (shuffled_labels(labels, 2) != a).any()
