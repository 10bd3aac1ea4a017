"""What the figures and widgets draw, read from the work folder: a run's fold models and logs,
and clip records (model outputs and attributions for some clips).

A clip record is a dict: clip_uid, frame_dir, frames uint8 (T, H, W), frame_numbers (T,),
transforms (T, 2, 3) (the cache's alignment matrices), onset/apex/offset, dynamic_image (target,
[0, 1]), label, label_name, classes; with a model also probs (C,), pred, rank_scores (K, T) and
pred_dynamic_image; after `attribution_records` also maps, mass, rank, rank_frames, attention.
The notebooks import these functions from here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from fdpkit.data.preprocess.lookup import load_clip, lookup
from fdpkit.explain.attribution import explain_records
from fdpkit.explain.regions import region_score_table, synthme_regions
from fdpkit.io import read_json
from fdpkit.loso.folds import fold_dirname
from fdpkit.metrics import METRICS
from fdpkit.model import build
from fdpkit.train.checkpoint import load_selected


def fold_subjects(run_folder) -> list[str]:
    """subject_uids of the finished folds of a run."""
    if not (Path(run_folder) / "config.json").exists():
        raise FileNotFoundError(f"There is no run in {run_folder} yet: run 02_train (one fold) or 03_loso "
                                "(every fold) with the same work_dir first.")
    folder = Path(run_folder)
    # config.json keeps the folds of the first call into the folder (a later call with more folds
    # and the same configuration resumes into it), so the pooled summary and results add theirs
    candidates = list(read_json(folder / "config.json").get("folds", []))
    if (folder / "summary.json").exists():
        candidates += list(read_json(folder / "summary.json").get("seeds", {}).get("folds", {}))
    if (folder / "results.csv").exists():
        candidates += results_table(folder)["subject_uid"].tolist()
    return [s for s in dict.fromkeys(candidates) if (folder / "folds" / fold_dirname(s) / "metrics.json").exists()]


def load_fold_model(run_folder, subject_uid: str):
    """The trained model of one fold (eval mode), rebuilt from the run's config."""
    config = read_json(Path(run_folder) / "config.json")
    model = build(config["model"], config["preset"], num_classes=len(config["manifest"]["classes"]),
                  **config["model_overrides"])
    load_selected(Path(run_folder) / "folds" / fold_dirname(subject_uid) / "checkpoint.pt", model)
    return model.eval()


def clip_records(model, data, rows: pd.DataFrame) -> list[dict]:
    """Model outputs for some clips, as the records `fdpkit.viz` draws (see figures.py)."""
    dataset = data.dataset(rows)
    found = lookup(data.cache_dir, dataset.rows)
    x = torch.stack([dataset[i][0] for i in range(len(dataset))])
    with torch.no_grad():
        out = model.eval()(x) if model is not None else None
    records = []
    for i, (_, row) in enumerate(dataset.rows.iterrows()):
        npz = load_clip(found["path"].iloc[i])
        record = {"clip_uid": row["clip_uid"], "frames": npz["frames"], "frame_numbers": npz["frame_numbers"],
                  "transforms": npz.get("transforms"), "onset": int(row["onset"]), "apex": int(row["apex"]),
                  "offset": int(row["offset"]), "dynamic_image": npz["dynamic_image"] / 255.0,
                  "label": int(dataset.labels[i]), "label_name": row["label"], "classes": data.classes,
                  "frame_dir": row["frame_dir"]}
        if out is not None:
            probs = torch.softmax(out.logits[i], dim=0).numpy()
            di = out.dynamic_image
            record.update(probs=probs, pred=int(probs.argmax()), rank_scores=out.rank_scores[i].numpy(),
                          pred_dynamic_image=None if di is None else di[i].numpy())
        records.append(record)
    return records


def attribution_records(p, data, run_folder, methods, max_folds: int = 2,
                        n_clips: int = 8, progress: bool = True) -> list[dict]:
    """Held-out clips of up to ``max_folds`` finished folds (spread over the subjects), each
    explained by its own fold's model (`fdpkit.explain.attribution.explain_records`); a tqdm bar over
    the clips when ``progress``."""
    subjects = fold_subjects(run_folder)
    if not subjects:
        raise RuntimeError(f"There is no finished fold in {run_folder} yet: run 02_train (one fold) or "
                           "03_loso (every fold) with the same work_dir first.")
    picks = dict.fromkeys(np.linspace(0, len(subjects) - 1, max_folds).round().astype(int).tolist())
    subjects = [subjects[i] for i in picks]
    plan = []
    for i, subject in enumerate(subjects):
        n = max(1, n_clips // len(subjects) + (i < n_clips % len(subjects)))
        plan.append((subject, sample_rows(data.rows[data.rows["subject_uid"] == subject], n, p.seed)))
    out = []
    with tqdm(total=sum(len(rows) for _, rows in plan), desc="attribution", unit="clip",
              disable=not progress) as bar:
        for subject, rows in plan:
            model = load_fold_model(run_folder, subject)
            out.extend(explain_records(model, clip_records(model, data, rows), methods, p.ig_steps,
                                       fold=subject))
            bar.update(len(rows))
    return out


def train_log(run_folder, subject_uid: str) -> pd.DataFrame:
    return pd.read_csv(Path(run_folder) / "folds" / fold_dirname(subject_uid) / "train_log.csv")


def results_table(run_folder) -> pd.DataFrame:
    """The run's per-fold table (results.csv), ids as strings."""
    return pd.read_csv(Path(run_folder) / "results.csv", dtype={"subject": str, "subject_uid": str})


def rank_profiles(records: list[dict]) -> dict[str, list]:
    """Per clip: logit attribution per frame to the rank contributions (summed over channels) and
    to the maps entering the rank scorer."""
    return {"rank contributions (IG)": [r["rank"].sum(axis=0) for r in records if r.get("rank") is not None],
            "maps into the rank scorer (LayerIG)": [r["rank_frames"] for r in records
                                                    if r.get("rank_frames") is not None]}


def mean_face(records: list[dict]) -> np.ndarray:
    """Mean aligned onset frame of the records (a background for class maps)."""
    return np.mean([r["frames"][0] for r in records], axis=0)


def region_table(p, records: list[dict], methods) -> pd.DataFrame:
    """SynthME only: `fdpkit.explain.regions.region_score_table` with the ground truth of ``p.root`` (an
    empty table, and a printed note, for other corpora)."""
    if p.dataset != "synthme" or not (Path(p.root) / "ground_truth.csv").exists():
        print("no ground-truth regions for this dataset (SynthME only)")
        return pd.DataFrame()
    size = records[0]["frames"].shape[-1]
    regions = synthme_regions(p.root, [r["frame_dir"] for r in records], [r["transforms"] for r in records], size)
    return region_score_table(records, regions, [m for m in methods if m != "attention_rollout"])


def sample_rows(rows: pd.DataFrame, n: int, seed: int = 0, by_class: bool = True) -> pd.DataFrame:
    """Up to n rows, one class after another when ``by_class`` (a varied grid), deterministic."""
    if len(rows) <= n:
        return rows
    if not by_class:
        return rows.sample(n, random_state=seed).sort_index()
    shuffled = rows.sample(frac=1.0, random_state=seed)
    order = shuffled.groupby("label", sort=True).cumcount()
    return shuffled.assign(_o=order.to_numpy()).sort_values(["_o", "label"]).head(n).drop(columns="_o")


def comparison_table(p, names) -> pd.DataFrame:
    """Pooled metrics with intervals of finished runs ``work_dir/runs/<name>``."""
    rows = []
    for name in names:
        path = Path(p.work_dir) / "runs" / name / "summary.json"
        if not path.exists():
            continue
        summary = read_json(path)
        row = {"name": name, "model": summary.get("model"), "n": summary["n"], "subjects": summary["n_subjects"]}
        for metric in METRICS:
            low, high = summary["ci"]["intervals"][metric]
            row.update({metric: summary["pooled"][metric], f"{metric}_low": low, f"{metric}_high": high})
        rows.append(row)
    return pd.DataFrame(rows)


def pooled_table(summary: dict) -> pd.DataFrame:
    """Pooled metrics of a run summary with their intervals and chance levels, one row per metric."""
    chance = summary.get("chance", {})
    return pd.DataFrame([{"metric": m, "pooled": summary["pooled"][m], "ci_low": summary["ci"]["intervals"][m][0],
                          "ci_high": summary["ci"]["intervals"][m][1],
                          "chance (uniform)": chance.get("uniform_random", {}).get(m),
                          "chance (majority)": chance.get("majority", {}).get(m)} for m in METRICS])
