"""What the model looks at, per input pixel and per rank contribution: Captum wrappers and summaries.

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

The attention roll-out is in `fdpkit.explain.rollout`, the scores against ground-truth regions in
`fdpkit.explain.regions`; ``explain_records`` gathers all of them for the notebooks' clip records.
"""

from __future__ import annotations

import numpy as np
import torch

from fdpkit.data.dataset import frames_to_float
from fdpkit.explain.rollout import attention_maps, gra_kernels

METHODS = ("integrated_gradients", "saliency", "occlusion")
# captum is imported inside the functions that use it: a heavy import (10 s cold on the shared 2-core
# machine), and fdpkit.nb.params imports this module for METHODS when it checks a notebook's parameters


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
    from captum.attr import IntegratedGradients  # captum: ~10 s cold import, only when attributing

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
    from captum.attr import Saliency  # lazy, as above

    model = _eval(model)
    x = x.detach().clone().requires_grad_(True)
    return Saliency(model.forward_logits).attribute(x, target=_targets(model, x, target)).detach()


def occlusion(model, x: torch.Tensor, target=None, window: int = 8, stride: int | None = None,
              baseline="onset") -> torch.Tensor:
    """Drop in the target logit when a window x window patch of one frame is replaced by the
    baseline (default: the onset frame's patch) (B, T, 1, H, W)."""
    from captum.attr import Occlusion  # lazy, as above

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


# ------------------------------------------------------------------------ rank scorer
def rank_attribution(model, x: torch.Tensor, target=None, n_steps: int = 32) -> dict[str, np.ndarray]:
    """Attribute the target logit to the rank scorer.

    Returns ``contributions`` (B, K, T): IG of the logit w.r.t. each per-frame contribution c[k, t]
    (summed over its pixels; baseline c = 0: no frame contributes), ``frames`` (B, T): Captum
    ``LayerIntegratedGradients`` on the maps entering ``model.rank`` (baseline: the onset clip),
    and ``delta`` (B,): the IG completeness error of ``contributions``.
    """
    from captum.attr import IntegratedGradients, LayerIntegratedGradients  # lazy, as above

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


def explain_records(model, records: list[dict], methods, ig_steps: int = 32, **extra) -> list[dict]:
    """Add to each clip record (`fdpkit.viz.records.clip_records`, with the model's prediction):
    ``maps`` {method: (T, H, W)}, ``mass`` {method: (T,)}, ``rank`` (K, T) and ``rank_frames``
    (T,) (the predicted logit attributed to the rank scorer; None for a model without one) and
    ``attention`` (T, H, W) (GRA roll-out; None without GRA blocks). All for the predicted class."""
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


__all__ = ["METHODS", "predicted_targets", "integrated_gradients", "saliency", "occlusion", "attribute",
           "spatial_maps", "frame_mass", "normalise_map", "class_average_maps", "rank_attribution", "explain",
           "explain_records"]
