"""The training log (`train_log.csv`: one row per step) and where a non-finite loss is caught.

`PendingRows` keeps each step's loss values on the device and moves them into the log in one
transfer at a flush (log, checkpoint, evaluation, end), so a step never waits for the device; a
non-finite loss met there raises `TrainingDiverged` naming the fold and the step.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from fdpkit.errors import EXIT_DIVERGED, FdpkitError
from fdpkit.train.checkpoint import checkpoint_step

TRAIN_LOG = "train_log.csv"
LOG_COLUMNS = ("step", "loss", "ce", "di", "rank", "lr", "seconds", "val")


class TrainingDiverged(FdpkitError, RuntimeError):
    """A non-finite loss; the message names the fold and step (exit code 6)."""

    exit_code = EXIT_DIVERGED

    def __init__(self, fold: str, step: int, message: str):
        super().__init__(message)
        self.fold, self.step = fold, step

    def __reduce__(self):   # raised in a fold worker process, re-raised in the driver: pickled whole
        return type(self), (self.fold, self.step, str(self))


class PendingRows:
    """Log rows whose loss values are still on the device: collected without a host sync per step,
    moved into the log in one transfer at a flush (log, checkpoint, evaluation, end)."""

    def __init__(self, fold: str, ckpt_path: Path | None):
        self.fold, self.ckpt_path = fold, ckpt_path
        self.losses: list[torch.Tensor] = []  # per step: (loss, ce, di, rank), float32, on device
        self.rows: list[list] = []  # per step: [step, lr, seconds, val]

    def add(self, step: int, loss: torch.Tensor, parts: dict, lr: float) -> None:
        values = [loss.detach()] + [torch.as_tensor(parts[k], device=loss.device) for k in ("ce", "di", "rank")]
        self.losses.append(torch.stack([v.float() for v in values]))
        self.rows.append([step, lr])

    def finish_row(self, seconds: float, val: float) -> None:
        self.rows[-1] += [seconds, val]

    def drain(self, log: dict[str, list]) -> tuple | None:
        """Append the complete pending rows to `log`; return the last one (or None)."""
        if not self.losses:
            return None
        values = torch.stack(self.losses).tolist()  # one transfer: every pending step
        for (step, *_), (loss, ce, di, _rank) in zip(self.rows, values):
            if not math.isfinite(loss):  # also the step still being finished (a flush before
                self._diverged(step, loss, ce, di)  # evaluation): never score weights past it
        n = sum(len(r) == 4 for r in self.rows)  # the complete rows: all but perhaps the last
        rows, values = self.rows[:n], values[:n]
        self.losses, self.rows = self.losses[n:], self.rows[n:]
        last = None
        for (step, lr, seconds, val), (loss, ce, di, rank) in zip(rows, values):
            last = (step, loss, ce, di, rank, lr, seconds, val)
            for column, v in zip(LOG_COLUMNS, last):
                log[column].append(v)
        return last

    def _diverged(self, step: int, loss: float, ce: float, di: float):
        path = self.ckpt_path
        kept = (f"the last good checkpoint {path} (step {checkpoint_step(path)}) is kept"
                if path is not None and path.exists() else "no checkpoint was written")
        self.losses, self.rows = [], []
        raise TrainingDiverged(self.fold, step, (
            f"fold {self.fold}: loss is {loss} at step {step} (ce={ce}, di={di}); training stopped, {kept}"))
