"""Approximate rank pooling (Bilen et al., "Dynamic Image Networks"): a clip -> one image.

DI = sum_t alpha_t I_t with alpha_t = sum_{i=t..T} (2i - T - 1) / i, t = 1..T.
"""

from __future__ import annotations

import numpy as np


def arp_coefficients(num_frames: int) -> np.ndarray:
    """Approximate rank pooling weights alpha_1..alpha_T as float64 (numpy; the model's torch twin
    is `fdpkit.model.rank.rank_pooling_coefficients`); for T = 8:
    [-8.461, -1.461, 1.039, 2.039, 2.289, 2.089, 1.589, 0.875]."""
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    i = np.arange(1, num_frames + 1, dtype=np.float64)
    terms = (2 * i - num_frames - 1) / i
    # alpha_t sums terms t..T: a reversed cumulative sum.
    return np.cumsum(terms[::-1])[::-1].copy()


def approximate_rank_pooling(frames, normalize: bool = False):
    """Dynamic image over the first axis of a (T, H, W) or (T, H, W, C) array or tensor.

    Returns float64 (numpy) / the input's float dtype (torch) of shape frames.shape[1:].
    `normalize=True` applies the released code's per-sample min-max to 0..255 (a constant image
    maps to zeros rather than dividing by zero).
    """
    if frames.ndim not in (3, 4):
        raise ValueError(f"expected (T, H, W) or (T, H, W, C), got shape {tuple(frames.shape)}")
    alpha = arp_coefficients(frames.shape[0])
    if isinstance(frames, np.ndarray):
        image = np.tensordot(alpha, frames.astype(np.float64), axes=(0, 0))
        if normalize:
            low, high = image.min(), image.max()
            image = (image - low) / (high - low) * 255.0 if high > low else np.zeros_like(image)
        return image

    import torch  # lazy: the torch path is optional (tensors in, tensors out); the cache uses numpy

    dtype = frames.dtype if frames.is_floating_point() else torch.float32
    weights = torch.as_tensor(alpha, dtype=dtype, device=frames.device)
    image = torch.tensordot(weights, frames.to(dtype), dims=([0], [0]))
    if normalize:
        low, high = image.min(), image.max()
        image = (image - low) / (high - low) * 255.0 if high > low else torch.zeros_like(image)
    return image


def dynamic_image_uint8(frames: np.ndarray) -> np.ndarray:
    """The cached training target: frames (T, H, W) uint8 -> min-max normalised uint8 (H, W)."""
    image = approximate_rank_pooling(frames.astype(np.float64) / 255.0, normalize=True)
    return np.rint(image).astype(np.uint8)
