"""Attribution against ground truth: the share of |attribution| inside a region, next to the share of the
area the region covers (what a uniform map would score), and SynthME's regions in the aligned frames.

``region_share`` = share of the absolute attribution inside a mask; ``area_share`` = the share of
pixels the mask covers; ``region_scores`` both, in the whole frame and within the face;
``region_score_table`` the per-method means over clips with a verdict (`region_verdict`).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import torch


def _np(a) -> np.ndarray:
    return a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)


def region_share(attribution_map, mask) -> float:
    """Share of the absolute attribution inside ``mask`` (same trailing (H, W) shape), in [0, 1]."""
    a = np.abs(_np(attribution_map)).astype(np.float64)
    mask = np.broadcast_to(np.asarray(mask, dtype=bool), a.shape)
    total = a.sum()
    return float(a[mask].sum() / total) if total > 0 else float("nan")


def area_share(mask, face=None) -> float:
    """Share of the pixels (or of the ``face`` pixels) that ``mask`` covers: a uniform map's score."""
    mask = np.asarray(mask, dtype=bool)
    face = np.ones_like(mask) if face is None else np.asarray(face, dtype=bool)
    return float((mask & face).sum() / max(1, face.sum()))


def warp_mask(mask, matrix, size: int = 64) -> np.ndarray:
    """A mask in original image pixels -> the aligned (size, size) face, with the same affine
    matrix the cache stored for the frame (``transforms`` in the npz). Bilinear, threshold 0.5;
    pixels outside the source image are outside the mask."""
    source = np.asarray(mask, dtype=np.float32)
    warped = cv2.warpAffine(source, np.asarray(matrix, dtype=np.float64), (size, size),
                            flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return warped >= 0.5


def synthme_regions(root, frame_dirs, transforms, size: int = 64) -> list[tuple[np.ndarray, np.ndarray]]:
    """SynthME ground truth in the aligned frames: per clip (region (T, size, size), face (T, size,
    size)) boolean masks.

    The region is SynthME's ``ground_truth/<sub>_<clip>_region.png`` (where the expression moves);
    the face is the convex hull of the subject's 68 neutral landmarks (``landmarks.csv``) joined
    with the region (the brows' region reaches above the landmarks). Both are drawn in the
    original frame's pixels and warped with the cache's stored per-frame alignment matrices
    (``transforms``, the exact matrices that produced the aligned frames).
    """
    root = Path(root)
    truth = pd.read_csv(root / "ground_truth.csv", dtype=str, keep_default_na=False).set_index("frame_dir")
    points = pd.read_csv(root / "ground_truth" / "landmarks.csv", dtype={"subject": str})
    out = []
    for frame_dir, matrices in zip(frame_dirs, transforms):
        if matrices is None:
            raise ValueError("the cache holds no alignment transforms: cannot map the ground truth")
        row = truth.loc[frame_dir]
        region = cv2.imread(str(root / row["mask"]), cv2.IMREAD_GRAYSCALE) > 127
        hull = points.loc[points["subject"] == row["subject"], ["x", "y"]].to_numpy(np.float32)
        face = np.zeros(region.shape, np.uint8)
        cv2.fillConvexPoly(face, cv2.convexHull(hull).round().astype(np.int32), 1)
        face = face.astype(bool) | region
        matrices = np.asarray(matrices).reshape(-1, 2, 3)
        out.append((np.stack([warp_mask(region, m, size) for m in matrices]),
                    np.stack([warp_mask(face, m, size) for m in matrices])))
    return out


def region_scores(maps, region, face) -> dict[str, float]:
    """For one clip's maps (T, H, W) and masks: the share of |attribution| inside the region, in the
    whole frame and within the face, next to the region's share of the frame and face area."""
    maps = np.abs(np.asarray(maps, dtype=np.float64))
    region, face = np.broadcast_to(region, maps.shape), np.broadcast_to(face, maps.shape)
    inside_face = maps * face
    return {"attribution_share": region_share(maps, region), "area_share": area_share(region),
            "attribution_share_face": region_share(inside_face, region),
            "area_share_face": area_share(region, face)}


def region_verdict(share: float, chance: float, above: int, clips: int) -> str:
    """'better than chance' when the mean share inside the region exceeds the region's area share
    and more than half of the clips do; else 'FAILS: ...'."""
    if not np.isfinite(share):
        return "FAILS: no attribution at all"
    if share > chance and above * 2 > clips:
        return "better than chance"
    return "FAILS: no better than a uniform map"


def region_score_table(records: list[dict], regions, methods) -> pd.DataFrame:
    """Per method (+ the GRA roll-out when present): the mean `region_scores` over clips, the
    number of clips whose share inside the region (within the face) beats the region's area share
    (chance: what a uniform map scores), the ratio of the two means (``lift``) and a verdict
    (`region_verdict`)."""
    rows = []
    for method in list(methods) + ["attention_rollout"]:
        scores = [region_scores(r["attention"] if method == "attention_rollout" else r["maps"][method], *masks)
                  for r, masks in zip(records, regions)
                  if method != "attention_rollout" or r.get("attention") is not None]
        if scores:
            frame = pd.DataFrame(scores)
            mean = frame.mean().to_dict()
            above = int((frame["attribution_share_face"] > frame["area_share_face"]).sum())
            rows.append({"method": method, "clips": len(scores), **mean, "clips_above_chance": above,
                         "lift": mean["attribution_share_face"] / max(mean["area_share_face"], 1e-12),
                         "verdict": region_verdict(mean["attribution_share_face"], mean["area_share_face"],
                                                   above, len(scores))})
    return pd.DataFrame(rows)


__all__ = ["region_share", "area_share", "warp_mask", "synthme_regions", "region_scores", "region_verdict",
           "region_score_table"]
