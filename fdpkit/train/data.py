"""A fold's clips as tensors (`Tensors`, `materialise`) and their order of use (`DataOrder`).

Data order is a pure function of (seed, step): sample position p = step * batch + j lies in epoch
p // n at offset p % n of that epoch's permutation, drawn from a generator seeded by (seed, epoch),
so a resumed run needs no sampler state.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from fdpkit.io import derive_seed


@dataclass
class Tensors:
    """A dataset materialised once: frames (N, T, 1, H, W), dynamic images (N, H, W), labels (N,)."""

    frames: torch.Tensor
    dynamic_images: torch.Tensor
    labels: torch.Tensor
    clip_uids: list[str]

    def __len__(self) -> int:
        return len(self.labels)

    def to(self, device) -> "Tensors":
        """The same clips with every tensor on `device` (no copy when already there)."""
        return Tensors(self.frames.to(device), self.dynamic_images.to(device), self.labels.to(device),
                       self.clip_uids)


def materialise(dataset) -> Tensors:
    """Read every item of a dataset yielding (frames, dynamic_image, label, clip_uid) once."""
    if isinstance(dataset, Tensors):
        return dataset
    items = [dataset[i] for i in range(len(dataset))]
    if not items:
        raise ValueError("empty dataset")
    return Tensors(torch.stack([torch.as_tensor(it[0], dtype=torch.float32) for it in items]),
                   torch.stack([torch.as_tensor(it[1], dtype=torch.float32) for it in items]),
                   torch.tensor([int(it[2]) for it in items], dtype=torch.long),
                   [str(it[3]) for it in items])


class DataOrder:
    """Sample indices for any step, from (seed, epoch) alone: resumable at any step."""

    def __init__(self, labels: torch.Tensor, batch_size: int, seed: int, sampler: str = "uniform"):
        self.n, self.batch_size, self.seed, self.sampler = len(labels), batch_size, seed, sampler
        counts = torch.bincount(labels)
        self.weights = (1.0 / counts.double())[labels]
        self._cache: dict[int, torch.Tensor] = {}

    def epoch(self, e: int) -> torch.Tensor:
        if e not in self._cache:
            if len(self._cache) > 4:
                self._cache.clear()
            g = torch.Generator().manual_seed(derive_seed(self.seed, "data_order", e))
            if self.sampler == "balanced":
                self._cache[e] = torch.multinomial(self.weights, self.n, replacement=True, generator=g)
            else:
                self._cache[e] = torch.randperm(self.n, generator=g)
        return self._cache[e]

    def batch(self, step: int) -> torch.Tensor:
        """Indices of 0-based step `step`."""
        positions = range(step * self.batch_size, (step + 1) * self.batch_size)
        return torch.stack([self.epoch(p // self.n)[p % self.n] for p in positions])

    def indices(self, first: int, last: int) -> torch.Tensor:
        """Indices of steps first..last-1 as one (last - first, batch) tensor; row i equals
        `batch(first + i)` (vectorised, so a whole fold's order is made once and moved once)."""
        positions = torch.arange(first * self.batch_size, last * self.batch_size)
        epochs, offsets = positions // self.n, positions % self.n
        out = torch.empty_like(positions)
        for e in epochs.unique().tolist():
            mask = epochs == e
            out[mask] = self.epoch(e)[offsets[mask]]
        return out.reshape(last - first, self.batch_size)

    @property
    def steps_per_epoch(self) -> int:
        return max(1, math.ceil(self.n / self.batch_size))
