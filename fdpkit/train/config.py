"""Training configuration: `TrainConfig` (every training knob) and `TRAIN_PRESETS` (per-preset defaults).

Plain data without torch, so checkpoints (`fdpkit.train.checkpoint`), the runner's config checks and the
notebook parameter checks use it without importing the trainer.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from fdpkit.errors import check_field_types
from fdpkit.registry import PRESETS

SELECTIONS = ("fixed_steps", "inner_val", "test_best")

OPTIMISTIC_WARNING = ("optimistic: the model was selected on the held-out test subject "
                      "(test_best, as the released FDP code); not an unbiased estimate")


@dataclass
class TrainConfig:
    """Every training knob. Defaults = the released code (Adam 1e-4, wd 1e-3, batch 36, 500 steps)."""

    lr: float = 1e-4
    weight_decay: float = 1e-3
    batch_size: int = 36
    steps: int = 500
    optimizer: str = "adam"  # adam (L2 weight decay, as released) | adamw
    schedule: str = "constant"  # constant | cosine (to 0 at the last step)
    grad_clip: float | None = None
    ce_weight: float = 1.0
    di_weight: float = 100.0
    rank_weight: float = 0.0
    sampler: str = "uniform"  # uniform: a permutation per epoch | balanced: class-balanced draws
    selection: str = "fixed_steps"  # fixed_steps | inner_val | test_best
    eval_every: int | None = None  # inner_val / test_best: steps between evaluations (None: 1 epoch)
    select_metric: str | None = None  # None: uf1 for inner_val, accuracy for test_best (as released)
    inner_val_fraction: float = 0.2  # share of the training subjects held out for inner_val
    patience: int | None = None  # inner_val: stop after this many evaluations without improvement
    checkpoint_every: int = 50
    log_every: int = 10  # steps between rewrites of train_log.csv (and host reads of the losses)
    device: str = "auto"  # auto: cuda when present, else cpu
    # auto: bf16 autocast on a GPU that supports it (fp16 + GradScaler on older GPUs), fp32 on a CPU.
    # bf16 on a CPU without native bf16 (AVX512_BF16 / AMX) is refused (fdpkit.train.precision.check_precision).
    precision: str = "auto"  # auto | fp32 | bf16 | fp16
    eval_batch_size: int = 64
    # torch intra-op threads per fold. Part of the fingerprint: on CPU the float results depend on
    # the thread count, so every executor uses exactly this many (0: leave torch's setting alone).
    threads: int = 1

    def __post_init__(self) -> None:
        check_field_types(self)  # `--set lr=abc` is refused here, before a run writes anything
        if self.selection not in SELECTIONS:
            raise ValueError(f"selection must be one of {SELECTIONS}, got {self.selection!r}")
        for name, allowed in (("optimizer", ("adam", "adamw")), ("schedule", ("constant", "cosine")),
                              ("sampler", ("uniform", "balanced")),
                              ("precision", ("auto", "fp32", "bf16", "fp16")),
                              ("select_metric", (None, "uf1", "uar", "accuracy", "weighted_f1"))):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        if self.steps < 1 or self.batch_size < 1 or self.checkpoint_every < 1:
            raise ValueError("steps, batch_size and checkpoint_every must be >= 1")

    @property
    def metric(self) -> str:
        return self.select_metric or ("accuracy" if self.selection == "test_best" else "uf1")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def fingerprint(self) -> dict[str, Any]:
        """The fields that change results (not where or how fast it runs)."""
        skip = {"checkpoint_every", "log_every", "eval_batch_size", "device"}
        return {k: v for k, v in self.to_dict().items() if k not in skip}

    @classmethod
    def from_preset(cls, preset: str = "paper", **overrides: Any) -> "TrainConfig":
        values = dict(TRAIN_PRESETS.get(preset, {}))
        values.update({k: v for k, v in overrides.items() if v is not None})
        unknown = set(values) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise TypeError(f"unknown TrainConfig fields: {sorted(unknown)}")
        return cls(**values)


# The training half of each preset in fdpkit.registry.PRESETS (its one place): data, overridable by
# --steps / --batch-size / --set.
TRAIN_PRESETS: dict[str, dict[str, Any]] = {name: dict(p.train) for name, p in PRESETS.items()}

__all__ = ["TrainConfig", "TRAIN_PRESETS", "SELECTIONS"]
