"""What the model looks at: Captum wrappers, attention roll-out and region scores.

Input attributions (w.r.t. the frames x (B, T, 1, H, W) in [-1, 1]):

* ``integrated_gradients`` (Captum IG; completeness: the attributions of a clip sum to
  logit(x) - logit(baseline) up to the integration error), ``saliency`` and ``occlusion``.
  Baselines: ``"zeros"`` (a mid-grey clip), ``"onset"`` (every frame replaced by the first one:
  the same face with no motion, so the attributions explain the *motion*), or a tensor.
* ``frame_mass``: share of the absolute attribution in each frame (sums to 1 over time).
* ``spatial_maps``: absolute attribution per pixel and frame (B, T, H, W).

Rank attributions: ``rank_attribution`` attributes the target logit to the rank scorer's
per-frame contributions c[k, t] (R = sum_t c[k, t] + b, see ``fdpkit.model.rank``) with IG on
the head alone (baseline c = 0), and to the per-frame maps entering the rank scorer with Captum's
``LayerIntegratedGradients`` (input of ``model.rank``).

Attention roll-out (Abnar & Zuidema 2020) over the GRA blocks of the ``paper`` variant: each
block's head-averaged attention A (L_q, L_kv) is first expanded to (L_q, L_q) -- a key/value token
is the average of ``kernel = min(sr_ratio**2, L_q)`` consecutive query tokens (E-MHSA spatial
reduction), so its weight is shared equally among them -- then mixed with the residual path
(``residual * I + (1 - residual) * A``). Between stages the grid halves: a token of the coarser
grid averages its 2x2 children. Products of these row-stochastic matrices give, for every token
of the last GRA block, a distribution over the tokens of the first GRA block; its mean over the
last block's tokens, upsampled to the input size, is the per-frame attention map (sums to 1). The
convolutional (LRA) blocks between GRA blocks are treated as identity, the usual roll-out
approximation.

Region scores: ``region_share`` = share of the absolute attribution inside a mask, compared with
``area_share`` = the share of pixels the mask covers (what a uniform map would score).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

METHODS = ("integrated_gradients", "saliency", "occlusion")


def _eval(model):
    model.eval()
    return model


def _baseline(x: torch.Tensor, baseline) -> torch.Tensor:
    if isinstance(baseline, torch.Tensor):
        return baseline.to(x.dtype).expand_as(x)
    if baseline == "zeros":
        return torch.zeros_like(x)
    if baseline == "onset":
        return x[:, :1].expand_as(x).clone()
    raise ValueError(f"unknown baseline {baseline!r}; use 'zeros', 'onset' or a tensor")


def predicted_targets(model, x: torch.Tensor) -> torch.Tensor:
    """The predicted class of each clip (B,)."""
    with torch.no_grad():
        return _eval(model)(x).logits.argmax(dim=1)


def _targets(model, x, target):
    if target is None:
        return predicted_targets(model, x)
    if isinstance(target, int):
        return torch.full((x.shape[0],), target, dtype=torch.long)
    return torch.as_tensor(target, dtype=torch.long)


def integrated_gradients(model, x: torch.Tensor, target=None, baseline="onset", n_steps: int = 32,
                         internal_batch_size: int | None = None, return_delta: bool = False):
    """IG attributions (B, T, 1, H, W) of the target logit (default: the predicted class).

    ``return_delta=True`` also returns Captum's convergence delta per clip
    (sum of attributions - (logit(x) - logit(baseline))).
    """
    from captum.attr import IntegratedGradients

    model = _eval(model)
    ig = IntegratedGradients(model.forward_logits)
    result = ig.attribute(x, baselines=_baseline(x, baseline), target=_targets(model, x, target),
                          n_steps=n_steps, internal_batch_size=internal_batch_size or x.shape[0] * 8,
                          return_convergence_delta=return_delta)
    if return_delta:
        attributions, delta = result
        return attributions.detach(), delta.detach()
    return result.detach()


def saliency(model, x: torch.Tensor, target=None) -> torch.Tensor:
    """|d logit / d x| (B, T, 1, H, W)."""
    from captum.attr import Saliency

    model = _eval(model)
    x = x.detach().clone().requires_grad_(True)
    return Saliency(model.forward_logits).attribute(x, target=_targets(model, x, target)).detach()


def occlusion(model, x: torch.Tensor, target=None, window: int = 8, stride: int | None = None,
              baseline="onset") -> torch.Tensor:
    """Drop in the target logit when a window x window patch of one frame is replaced by the
    baseline (default: the onset frame's patch) (B, T, 1, H, W)."""
    from captum.attr import Occlusion

    model = _eval(model)
    stride = stride or window
    return Occlusion(model.forward_logits).attribute(
        x, sliding_window_shapes=(1, 1, window, window), strides=(1, 1, stride, stride),
        baselines=_baseline(x, baseline), target=_targets(model, x, target)).detach()


def attribute(model, x: torch.Tensor, method: str = "integrated_gradients", target=None, **kwargs):
    """Dispatch by name to one of ``METHODS``."""
    functions = {"integrated_gradients": integrated_gradients, "saliency": saliency,
                 "occlusion": occlusion}
    if method not in functions:
        raise ValueError(f"unknown attribution method {method!r}; choose from {METHODS}")
    return functions[method](model, x, target=target, **kwargs)


# ------------------------------------------------------------------------ summaries
def _np(a) -> np.ndarray:
    return a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)


def spatial_maps(attributions) -> np.ndarray:
    """|attribution| per pixel: (B, T, 1, H, W) or (T, 1, H, W) -> (B, T, H, W) or (T, H, W)."""
    a = np.abs(_np(attributions))
    return a[..., 0, :, :] if a.ndim in (4, 5) and a.shape[-3] == 1 else a


def frame_mass(attributions) -> np.ndarray:
    """Share of the absolute attribution in each frame: (..., T, [1,] H, W) -> (..., T), sums to 1."""
    maps = spatial_maps(attributions)
    mass = maps.sum(axis=(-2, -1))
    total = mass.sum(axis=-1, keepdims=True)
    return np.divide(mass, total, out=np.full_like(mass, 1.0 / mass.shape[-1]), where=total > 0)


def normalise_map(image) -> np.ndarray:
    """Scale a non-negative map to sum 1 (a uniform map if it is all zero)."""
    image = np.abs(_np(image)).astype(np.float64)
    total = image.sum()
    return image / total if total > 0 else np.full_like(image, 1.0 / image.size)


def class_average_maps(maps, labels, classes) -> dict[str, np.ndarray]:
    """Mean of each clip's normalised time-summed map (N, [T,] H, W), grouped by class index."""
    maps = _np(maps)
    if maps.ndim == 4:
        maps = maps.sum(axis=1)
    labels = np.asarray(labels)
    out = {}
    for index, name in enumerate(classes):
        chosen = [normalise_map(m) for m, y in zip(maps, labels) if y == index]
        if chosen:
            out[str(name)] = np.mean(chosen, axis=0)
    return out


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
    import cv2

    source = np.asarray(mask, dtype=np.float32)
    warped = cv2.warpAffine(source, np.asarray(matrix, dtype=np.float64), (size, size),
                            flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return warped >= 0.5


# ------------------------------------------------------------------------ rank scorer
def rank_attribution(model, x: torch.Tensor, target=None, n_steps: int = 32) -> dict[str, np.ndarray]:
    """Attribute the target logit to the rank scorer.

    Returns ``contributions`` (B, K, T): IG of the logit w.r.t. each per-frame contribution c[k, t]
    (summed over its pixels; baseline c = 0: no frame contributes), ``frames`` (B, T): Captum
    ``LayerIntegratedGradients`` on the maps entering ``model.rank`` (baseline: the onset clip),
    and ``delta`` (B,): the IG completeness error of ``contributions``.
    """
    from captum.attr import IntegratedGradients, LayerIntegratedGradients

    model = _eval(model)
    targets = _targets(model, x, target)
    with torch.no_grad():
        _, _, contrib = model.representation(x, return_contributions=True)
    bias = getattr(model.rank, "bias", None)

    def head(c):
        pooled = c.sum(dim=2)
        if bias is not None:
            pooled = pooled + bias[:, None, None]
        return model.mer_head(pooled)

    ig = IntegratedGradients(head)
    attr, delta = ig.attribute(contrib, baselines=torch.zeros_like(contrib), target=targets,
                               n_steps=n_steps, return_convergence_delta=True)
    layer = LayerIntegratedGradients(model.forward_logits, model.rank)
    frames_attr = layer.attribute(x, baselines=_baseline(x, "onset"), target=targets,
                                  n_steps=n_steps, attribute_to_layer_input=True)
    if isinstance(frames_attr, (tuple, list)):
        frames_attr = frames_attr[0]
    return {"contributions": _np(attr.sum(dim=(-2, -1))), "frames": _np(frames_attr.sum(dim=(-2, -1))),
            "delta": _np(delta)}


# ------------------------------------------------------------------------ attention roll-out
def gra_kernels(model) -> list[int]:
    """Spatial-reduction pool size (sr_ratio**2) of each GRA block, in order."""
    from fdpkit.model.blocks import GRA

    return [block.attn.sr_ratio ** 2 for block in model.encoder.blocks if isinstance(block, GRA)]


def _expand_kv(attention: torch.Tensor, kernel: int) -> torch.Tensor:
    """(N, L_q, L_kv) -> (N, L_q, L_q): each key/value token's weight shared by its pooled tokens."""
    l_q, l_kv = attention.shape[-2:]
    if l_kv == l_q:
        return attention
    kernel = min(kernel, l_q)
    pool = torch.zeros(l_kv, l_q, dtype=attention.dtype)
    for j in range(l_kv):
        pool[j, j * kernel:(j + 1) * kernel] = 1.0 / kernel
    return attention @ pool


def _downsample(l_fine: int, l_coarse: int, dtype) -> torch.Tensor:
    """(L_coarse, L_fine): a coarse token = mean of its children on square raster grids."""
    fine, coarse = math.isqrt(l_fine), math.isqrt(l_coarse)
    if fine * fine != l_fine or coarse * coarse != l_coarse or fine % coarse:
        raise ValueError(f"cannot map a {l_fine}-token grid onto {l_coarse} tokens (not square grids)")
    f = fine // coarse
    matrix = torch.zeros(l_coarse, l_fine, dtype=dtype)
    for r in range(fine):
        for c in range(fine):
            matrix[(r // f) * coarse + c // f, r * fine + c] = 1.0 / (f * f)
    return matrix


def rollout_matrix(attentions, kernels=None, residual: float = 0.5) -> torch.Tensor:
    """(N, L_last, L_first) row-stochastic roll-out from the GRA attentions [(N, heads, L_q, L_kv)]."""
    if not attentions:
        raise ValueError("no attention maps: the model has no GRA block "
                         "(encoder='cnn' or variant='official'); use variant='paper', encoder lgfat/vit")
    kernels = kernels or [a.shape[-2] // a.shape[-1] for a in attentions]
    joint = None
    for attention, kernel in zip(attentions, kernels):
        a = _expand_kv(attention.detach().double().mean(dim=1), kernel)
        a = residual * torch.eye(a.shape[-1], dtype=a.dtype) + (1 - residual) * a
        a = a / a.sum(dim=-1, keepdim=True)
        if joint is None:
            joint = a
            continue
        if joint.shape[-2] != a.shape[-1]:
            joint = _downsample(joint.shape[-2], a.shape[-1], a.dtype) @ joint
        joint = a @ joint
    return joint.float()


def attention_maps(model, x: torch.Tensor, residual: float = 0.5) -> np.ndarray:
    """Rolled-out attention per frame on the input grid: x (B, T, 1, H, W) -> (B, T, H, W), each
    frame's map summing to 1."""
    model = _eval(model)
    with torch.no_grad():
        attentions = model(x, return_attention=True).attentions
    joint = rollout_matrix(attentions, gra_kernels(model), residual)
    tokens = joint.mean(dim=1)  # (B*T, L_first)
    side = math.isqrt(tokens.shape[-1])
    grid = tokens.reshape(-1, 1, side, side)
    b, t, _, h, w = x.shape
    up = F.interpolate(grid, size=(h, w), mode="bilinear", align_corners=False).clamp_min(0)
    up = up / up.sum(dim=(-2, -1), keepdim=True)
    return _np(up.reshape(b, t, h, w))


# ------------------------------------------------------------------------ notebook helpers
def explain(model, x: torch.Tensor, methods=("integrated_gradients", "saliency"), ig_steps: int = 32,
            target=None) -> dict[str, np.ndarray]:
    """|attribution| maps (B, T, H, W) per method, all for the same target (default: predicted)."""
    targets = _targets(model, x, target)
    out = {}
    for method in methods:
        kwargs = {"n_steps": ig_steps} if method == "integrated_gradients" else {}
        out[method] = spatial_maps(attribute(model, x, method, target=targets, **kwargs))
    return out


def synthme_regions(root, frame_dirs, transforms, size: int = 64) -> list[tuple[np.ndarray, np.ndarray]]:
    """SynthME ground truth in the aligned frames: per clip (region (T, size, size), face (T, size,
    size)) boolean masks.

    The region is SynthME's ``ground_truth/<sub>_<clip>_region.png`` (where the expression moves);
    the face is the convex hull of the subject's 68 neutral landmarks (``landmarks.csv``) joined
    with the region (the brows' region reaches above the landmarks). Both are drawn in the
    original frame's pixels and warped with the cache's stored per-frame alignment matrices
    (``transforms``, the exact matrices that produced the aligned frames).
    """
    import cv2
    import pandas as pd
    from pathlib import Path

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


def explain_records(model, records: list[dict], methods, ig_steps: int = 32, **extra) -> list[dict]:
    """Add to each clip record (`fdpkit.nb.notebook.clip_records`, with the model's prediction):
    ``maps`` {method: (T, H, W)}, ``mass`` {method: (T,)}, ``rank`` (K, T) and ``rank_frames``
    (T,) (the predicted logit attributed to the rank scorer; None for a model without one) and
    ``attention`` (T, H, W) (GRA roll-out; None without GRA blocks). All for the predicted class."""
    from fdpkit.data.dataset import frames_to_float

    x = torch.stack([frames_to_float(r["frames"]) for r in records])
    targets = [r["pred"] for r in records]
    maps = explain(model, x, methods, ig_steps, target=targets)
    rank = rank_attribution(model, x, targets, ig_steps) if hasattr(model, "rank") else None
    attention = attention_maps(model, x) if gra_kernels(model) else None
    for i, record in enumerate(records):
        record.update(extra, maps={m: maps[m][i] for m in methods}, mass={m: frame_mass(maps[m][i]) for m in methods},
                      rank=None if rank is None else rank["contributions"][i],
                      rank_frames=None if rank is None else rank["frames"][i],
                      attention=None if attention is None else attention[i])
    return records


def region_verdict(share: float, chance: float, above: int, clips: int) -> str:
    """'better than chance' when the mean share inside the region exceeds the region's area share
    and more than half of the clips do; else 'FAILS: ...'."""
    if not np.isfinite(share):
        return "FAILS: no attribution at all"
    if share > chance and above * 2 > clips:
        return "better than chance"
    return "FAILS: no better than a uniform map"


def region_table(records: list[dict], regions, methods) -> "pd.DataFrame":
    """Per method (+ the GRA roll-out when present): the mean `region_scores` over clips, the
    number of clips whose share inside the region (within the face) beats the region's area share
    (chance: what a uniform map scores), the ratio of the two means (``lift``) and a verdict
    (`region_verdict`)."""
    import pandas as pd

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
