"""LOSO folds: one fold per subject, composite protocols included, per-fold seeds, inner validation;
and the cross-dataset protocol (one fold per held-out corpus, MEGC 2019's holdout-database evaluation).

A fold is keyed by `subject_uid` (`<dataset>/<subject>`), so subjects of different corpora in a
composite protocol never merge. Everything here is a pure function of its inputs: the folds, the
per-fold seeds and the inner-validation split never depend on fold order, executor or `--jobs`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from fdpkit.io import derive_seed


HOLDOUTS = ("subject", "dataset")  # what a fold holds out: LOSO, or cross-dataset


@dataclass(frozen=True)
class Fold:
    subject_uid: str  # the held-out key: a subject_uid (LOSO) or a dataset name (cross-dataset)
    seed: int  # the fold's seed, derived from (base seed, subject_uid)
    test_index: tuple[int, ...]  # row positions (in the rows given to `loso_folds`) of the test clips
    train_index: tuple[int, ...]  # row positions of every other subject's clips

    @property
    def name(self) -> str:
        return fold_dirname(self.subject_uid)


def fold_dirname(subject_uid: str) -> str:
    """Folder name of a fold: the subject_uid with path separators replaced (`casme2/01` -> `casme2_01`)."""
    return str(subject_uid).replace("/", "_").replace("\\", "_")


def fold_seed(base_seed: int, subject_uid: str) -> int:
    """The seed of the fold that holds out `subject_uid` (independent of the other folds)."""
    return derive_seed(base_seed, "fold", subject_uid)


def subjects(rows: pd.DataFrame) -> list[str]:
    """Subjects that have at least one clip in `rows`, sorted."""
    return sorted(rows["subject_uid"].astype(str).unique().tolist())


def resolve_subjects(rows: pd.DataFrame, wanted: str | list[str] | None) -> list[str]:
    """Turn `--folds` (comma-separated, or a list) into subject_uids.

    Each item may be a full `subject_uid` (`casme2/01`), a fold folder name (`casme2_01`) or a bare
    subject id (`01`) when that id is unambiguous across the datasets in `rows`.
    """
    all_subjects = subjects(rows)
    if wanted is None:
        return all_subjects
    if isinstance(wanted, str):
        wanted = [w for w in (p.strip() for p in wanted.split(",")) if w]
    by_name = {fold_dirname(s): s for s in all_subjects}
    bare: dict[str, list[str]] = {}
    for uid in all_subjects:
        bare.setdefault(uid.split("/", 1)[-1], []).append(uid)
    out: list[str] = []
    for item in wanted:
        item = str(item)
        if item in all_subjects:
            uid = item
        elif item in by_name:
            uid = by_name[item]
        elif len(bare.get(item, [])) == 1:
            uid = bare[item][0]
        elif item in bare:
            raise ValueError(f"subject {item!r} is ambiguous: {bare[item]}; give dataset/subject")
        else:
            raise ValueError(f"no clips for subject {item!r}; subjects are {all_subjects}")
        if uid not in out:
            out.append(uid)
    return sorted(out)


def loso_folds(rows: pd.DataFrame, base_seed: int = 0, only: str | list[str] | None = None) -> list[Fold]:
    """One fold per subject_uid with clips in `rows` (restricted to `only` if given), sorted by subject.

    Training always uses all other subjects in `rows`, also when `only` selects a few folds.
    """
    uids = rows["subject_uid"].astype(str).to_numpy()
    folds = []
    for uid in resolve_subjects(rows, only):
        test = np.flatnonzero(uids == uid)
        train = np.flatnonzero(uids != uid)
        if len(train) == 0:
            raise ValueError(f"fold {uid}: no training clips (only one subject in the manifest)")
        folds.append(Fold(uid, fold_seed(base_seed, uid), tuple(int(i) for i in test),
                          tuple(int(i) for i in train)))
    return folds


def dataset_folds(rows: pd.DataFrame, base_seed: int = 0, only: str | list[str] | None = None) -> list[Fold]:
    """Cross-dataset: one fold per corpus (``dataset``), trained on every other corpus in `rows` and
    tested on all of the held-out corpus's clips; sorted by dataset. Needs at least 2 corpora."""
    names = rows["dataset"].astype(str).to_numpy()
    present = sorted(set(names))
    if len(present) < 2:
        raise ValueError(f"the cross-dataset protocol needs clips of at least 2 datasets; the manifest has {present}")
    wanted = present if only is None else [w.strip() for w in (only.split(",") if isinstance(only, str) else only)
                                           if str(w).strip()]
    unknown = [w for w in wanted if w not in present]
    if unknown:
        raise ValueError(f"no clips for dataset(s) {unknown}; datasets are {present}")
    return [Fold(name, fold_seed(base_seed, name), tuple(int(i) for i in np.flatnonzero(names == name)),
                 tuple(int(i) for i in np.flatnonzero(names != name))) for name in sorted(set(wanted))]


def make_folds(rows: pd.DataFrame, holdout: str = "subject", base_seed: int = 0,
               only: str | list[str] | None = None) -> list[Fold]:
    """The folds of a protocol: ``holdout="subject"`` (LOSO) or ``"dataset"`` (cross-dataset)."""
    if holdout not in HOLDOUTS:
        raise ValueError(f"holdout must be one of {HOLDOUTS}, got {holdout!r}")
    return loso_folds(rows, base_seed, only) if holdout == "subject" else dataset_folds(rows, base_seed, only)


def inner_val_split(train_rows: pd.DataFrame, seed: int, fraction: float = 0.2,
                    min_subjects: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Split a fold's *training* rows by subject: (fit positions, inner-validation positions).

    `max(min_subjects, round(fraction * n_subjects))` training subjects (at most n - 1) are drawn with
    a seeded generator from the sorted subject list; the split never sees the held-out subject.
    """
    uids = train_rows["subject_uid"].astype(str).to_numpy()
    pool = sorted(set(uids))
    if len(pool) < 2:
        raise ValueError("inner validation needs at least 2 training subjects")
    k = min(len(pool) - 1, max(min_subjects, int(round(fraction * len(pool)))))
    rng = np.random.default_rng(derive_seed(seed, "inner_val"))
    chosen = {pool[i] for i in rng.choice(len(pool), size=k, replace=False)}
    is_val = np.array([u in chosen for u in uids], dtype=bool)
    return np.flatnonzero(~is_val), np.flatnonzero(is_val)


def shuffled_labels(labels: np.ndarray, seed: int) -> np.ndarray:
    """The label-shuffled control: a seeded permutation of the training labels (class counts kept)."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(derive_seed(seed, "shuffle_labels"))
    return labels[rng.permutation(len(labels))]


__all__ = ["HOLDOUTS", "dataset_folds", "make_folds", "Fold", "fold_dirname", "fold_seed", "subjects", "resolve_subjects",
           "loso_folds", "inner_val_split", "shuffled_labels"]
