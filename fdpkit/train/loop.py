"""Train one fold: optimiser steps, model selection, checkpoints, exact resume.

`train_fold` sees one fold's training data (and, for `inner_val`, validation clips drawn from the
training subjects). The held-out subject reaches it only under the opt-in `test_best` selection,
which reproduces the released code's test-fold model selection and is stamped optimistic.

Data order is a pure function of (seed, step): sample position p = step * batch + j lies in epoch
p // n at offset p % n of that epoch's permutation, drawn from a generator seeded by (seed, epoch).
A checkpoint (`fdpkit.train.checkpoint`) therefore needs no sampler state; it holds the model, optimiser,
AMP scaler, step, every global RNG state (as tensors / plain types: it loads with weights_only=True),
the log rows, the best-so-far weights and the config. Resuming from it gives bit-identical weights
and log rows (except the wall-clock `seconds` column) to an uninterrupted run. The knobs are
`TrainConfig` (`fdpkit.train.config`, re-exported here).
"""

from __future__ import annotations

import functools
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from fdpkit.errors import BadInput
from fdpkit.loso.folds import derive_seed
from fdpkit.io import write_csv
from fdpkit.model import fdp_loss
from fdpkit.train.config import OPTIMISTIC_WARNING, SELECTIONS, TRAIN_PRESETS, TrainConfig  # noqa: F401 - re-exported
from fdpkit.train.checkpoint import (CHECKPOINT, checkpoint_step, load_checkpoint, load_selected,
                                restore_training_state, rng_state, save_checkpoint, seed_everything,
                                set_rng_state)

TRAIN_LOG = "train_log.csv"
LOG_COLUMNS = ("step", "loss", "ce", "di", "rank", "lr", "seconds", "val")


class TrainingDiverged(RuntimeError):
    def __init__(self, fold: str, step: int, message: str):
        super().__init__(message)
        self.fold, self.step = fold, step


@dataclass
class TrainResult:
    model: torch.nn.Module  # holds the selected weights
    selected_step: int
    steps_done: int
    complete: bool  # False when stopped early by `stop_after`
    log: pd.DataFrame
    selection: str
    best_score: float | None = None
    history: list = field(default_factory=list)  # [(step, score)] of the evaluations
    train_seconds: float = 0.0

    @property
    def optimistic(self) -> bool:
        return self.selection == "test_best"


# ---------------------------------------------------------------------------------- helpers
def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def autocast_dtype(precision: str, device: torch.device):
    """The autocast dtype, or None for plain fp32. `auto`: bf16 on a GPU that supports it, fp16
    (with a GradScaler in training) on an older GPU, fp32 on a CPU."""
    if precision == "auto":
        if device.type != "cuda":
            return None
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


# A CPU runs bf16 natively only with AVX512_BF16 or AMX; elsewhere oneDNN emulates it, measured
# 44x slower than fp32 on an AVX2-only AMD EPYC (0.7 vs 30.8 GFLOP/s) and 3.5x on an AVX-512 Xeon
# without avx512_bf16. Training refuses bf16 there unless this variable is set to 1.
ALLOW_SLOW_BF16 = "FDPKIT_ALLOW_SLOW_BF16"
SLOW_BF16_RATIO = 2.0  # bf16 matmul this many times slower than fp32: not native
_NO_BF16_CAPABILITIES = ("DEFAULT", "NO AVX", "AVX", "AVX2")


def _cpu_flags() -> set[str] | None:
    """The x86 feature flags of /proc/cpuinfo, or None where there is no such file (not Linux)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    line = next((ln for ln in text.splitlines() if ln.startswith("flags")), None)
    return set(line.split(":", 1)[1].split()) if line else None


def _matmul_gflops(dtype: torch.dtype, n: int = 192, budget_s: float = 0.15) -> float:
    """Best GFLOP/s of an n x n matmul over repeats within `budget_s` (after one warm-up call)."""
    g = torch.Generator().manual_seed(0)  # the global RNG stays untouched
    a, b = torch.randn(n, n, generator=g).to(dtype), torch.randn(n, n, generator=g).to(dtype)
    torch.mm(a, b)
    best, spent = math.inf, 0.0
    for _ in range(5):
        t0 = time.perf_counter()
        torch.mm(a, b)
        dt = time.perf_counter() - t0
        best, spent = min(best, dt), spent + dt
        if spent > budget_s:
            break
    return 2 * n ** 3 / max(best, 1e-9) / 1e9


@functools.lru_cache(maxsize=1)
def cpu_bf16_probe() -> dict[str, Any]:
    """Does this CPU run bf16 natively? Decided from torch's CPU capability, the x86 flags
    (avx512_bf16 / amx_bf16) and a short (< 0.5 s) fp32 vs bf16 matmul probe.

    Returns {"capability", "native", "reason", "fp32_gflops", "bf16_gflops", "slowdown"}."""
    capability = torch.backends.cpu.get_cpu_capability()
    flags = _cpu_flags()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one thread: the kernels' ratio, not a busy machine's thread waits
    try:
        fp32, bf16 = _matmul_gflops(torch.float32), _matmul_gflops(torch.bfloat16)
    finally:
        torch.set_num_threads(threads)
    slowdown = fp32 / bf16
    if capability in _NO_BF16_CAPABILITIES:
        native, reason = False, f"torch CPU capability {capability} (bf16 needs AVX512_BF16 or AMX)"
    elif flags is not None and "avx2" in flags and not flags & {"avx512_bf16", "amx_bf16"}:
        native, reason = False, f"torch CPU capability {capability}, but no avx512_bf16 or amx_bf16 flag"
    elif slowdown >= SLOW_BF16_RATIO:
        native, reason = False, f"torch CPU capability {capability}, bf16 matmul slower than fp32"
    else:
        native, reason = True, f"torch CPU capability {capability}"
    return {"capability": capability, "native": native, "reason": reason,
            "fp32_gflops": fp32, "bf16_gflops": bf16, "slowdown": slowdown}


def slowdown_text(slowdown: float) -> str:
    """'44.0x slower' (or '1.3x faster' when bf16 won the probe)."""
    return f"{slowdown:.1f}x slower" if slowdown >= 1 else f"{1 / slowdown:.1f}x faster"


def check_precision(precision: str, device: torch.device) -> None:
    """BadInput for bf16 training on a CPU without native bf16 (unless FDPKIT_ALLOW_SLOW_BF16=1)."""
    if precision != "bf16" or device.type != "cpu" or os.environ.get(ALLOW_SLOW_BF16) == "1":
        return
    probe = cpu_bf16_probe()
    if probe["native"]:
        return
    raise BadInput(
        f"precision=bf16: this CPU has no native bf16 ({probe['reason']}); a bf16 matmul measured "
        f"{probe['bf16_gflops']:.1f} GFLOP/s vs {probe['fp32_gflops']:.1f} in fp32 here (1 thread), "
        f"{slowdown_text(probe['slowdown'])}. Use precision=fp32 (or auto), train on a GPU "
        f"(--device cuda), or set {ALLOW_SLOW_BF16}=1 to run bf16 anyway")


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


def lr_at(config: TrainConfig, step: int) -> float:
    """Learning rate of 0-based step `step` (stateless, so resuming needs no scheduler state)."""
    if config.schedule == "cosine":
        return config.lr * 0.5 * (1 + math.cos(math.pi * step / config.steps))
    return config.lr


@torch.no_grad()
def predict_proba(model: torch.nn.Module, data, batch_size: int = 64, device=None,
                  precision: str = "fp32") -> tuple[np.ndarray, Tensors]:
    """Class probabilities (N, C) float64 of every clip of `data`, in eval mode."""
    data = materialise(data)
    device = device or next(model.parameters()).device
    dtype = autocast_dtype(precision, torch.device(device))
    was_training = model.training
    model.eval()
    out = []
    for start in range(0, len(data), batch_size):
        x = data.frames[start:start + batch_size].to(device)
        with torch.autocast(torch.device(device).type, dtype=dtype or torch.float32,
                            enabled=dtype is not None):
            logits = model(x).logits
        out.append(torch.softmax(logits.float(), dim=1).double().cpu())
    model.train(was_training)
    return torch.cat(out).numpy(), data


def _score(model, data: Tensors, config: TrainConfig, device) -> float:
    from fdpkit.loso.metrics import pooled_metrics

    probs, _ = predict_proba(model, data, config.eval_batch_size, device, config.precision)
    classes = list(range(probs.shape[1]))
    return float(pooled_metrics(data.labels.numpy(), probs.argmax(1), classes)[config.metric])


def _state_copy(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}




# ---------------------------------------------------------------------------------- training
def train_fold(model: torch.nn.Module, train_data, config: TrainConfig, *, val_data=None,
               fold: str = "fold", seed: int = 0, workdir: str | Path | None = None,
               progress: bool = True, stop_after: int | None = None) -> TrainResult:
    """Train `model` on `train_data` for `config.steps` optimiser steps; return the selected weights.

    * `train_data`: items (frames (T,1,H,W), dynamic_image (H,W), label, clip_uid); the fold's
      training subjects only.
    * `val_data`: inner_val -> clips of held-out *training* subjects; test_best -> the test subject
      (optimistic); fixed_steps -> must be None.
    * `workdir`: checkpoint.pt and train_log.csv go here; an existing checkpoint is resumed (a
      complete one is returned without training).
    * `stop_after`: stop (with a checkpoint) after this many steps, as if interrupted.
    """
    if config.selection == "fixed_steps" and val_data is not None:
        raise ValueError("fixed_steps selection takes no validation data")
    if config.selection != "fixed_steps" and val_data is None:
        raise ValueError(f"{config.selection} selection needs validation data")
    threads = torch.get_num_threads()
    if config.threads:
        torch.set_num_threads(config.threads)
    try:
        return _train(model, train_data, config, val_data, fold, seed, workdir, progress, stop_after)
    finally:
        torch.set_num_threads(threads)


def _train(model, train_data, config, val_data, fold, seed, workdir, progress, stop_after):
    device = resolve_device(config.device)
    check_precision(config.precision, device)
    dtype = autocast_dtype(config.precision, device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
    ckpt_path = Path(workdir) / CHECKPOINT if workdir is not None else None
    log_path = Path(workdir) / TRAIN_LOG if workdir is not None else None

    data = materialise(train_data)
    val = materialise(val_data) if val_data is not None else None
    if val is not None and config.selection == "inner_val" and set(val.clip_uids) & set(data.clip_uids):
        raise ValueError("inner validation clips overlap the training clips")
    order = DataOrder(data.labels, config.batch_size, seed, config.sampler)
    eval_every = config.eval_every or order.steps_per_epoch
    # Model, clips and the fold's sample indices live on the device for the whole run: a step
    # copies nothing between host and device.
    data = data.to(device)
    val = val.to(device) if val is not None else None
    model.to(device).train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt_cls = torch.optim.AdamW if config.optimizer == "adamw" else torch.optim.Adam
    # fused: one kernel for all parameters (same update rule; ~5x faster on the official preset)
    optimizer = opt_cls(params, lr=config.lr, weight_decay=config.weight_decay,
                        fused=device.type in ("cpu", "cuda"))
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    loss_fn = functools.partial(fdp_loss, detached_parts=True)  # parts stay on the device

    log: dict[str, list] = {c: [] for c in LOG_COLUMNS}
    best: dict[str, Any] | None = None
    history: list[list] = []
    step, seconds_before, finished = 0, 0.0, False
    if ckpt_path is not None and ckpt_path.exists():
        ckpt = load_checkpoint(ckpt_path, config, fold, seed)
        restore_training_state(ckpt, model, optimizer, scaler)
        step, log, best, history = ckpt["step"], ckpt["log"], ckpt["best"], ckpt["history"]
        seconds_before = log["seconds"][-1] if log["seconds"] else 0.0
        finished = bool(ckpt["complete"])
    else:
        seed_everything(derive_seed(seed, "train"))
    first_step = step
    indices = order.indices(step, max(step, config.steps)).to(device)
    pending = _PendingRows(fold, ckpt_path)

    def checkpoint(complete: bool = False) -> None:
        flush()
        if ckpt_path is None:
            return
        bad = [name for name, p in model.named_parameters() if not torch.isfinite(p).all()]
        if bad:  # a non-finite gradient with a finite loss: never overwrite the last good checkpoint
            write_log()
            raise TrainingDiverged(fold, step, (
                f"fold {fold}: non-finite weights ({', '.join(bad[:3])}) after step {step}; training "
                f"stopped, the last good checkpoint {ckpt_path} (step {checkpoint_step(ckpt_path)}) is kept"))
        save_checkpoint(ckpt_path, fold=fold, seed=seed, step=step, complete=complete, config=config,
                        model=model, optimizer=optimizer, scaler=scaler, log=log, best=best,
                        history=history)
        write_log()

    def write_log() -> None:
        if log_path is not None:
            write_csv(log_path, pd.DataFrame(log, columns=list(LOG_COLUMNS)))

    def flush() -> None:
        """Move the pending rows into the log (one device sync); TrainingDiverged at the first
        non-finite loss, with the log written up to the step before it."""
        try:
            last = pending.drain(log)
        except TrainingDiverged:
            write_log()
            raise
        if bar is not None and last is not None:
            bar.set_postfix(loss=f"{last[1]:.4f}", ce=f"{last[2]:.4f}", di=f"{last[3]:.4f}", refresh=False)

    bar = None
    if progress and not finished and step < config.steps:
        from tqdm.auto import tqdm

        bar = tqdm(total=config.steps, initial=step, desc=f"fold {fold}", leave=False, unit="step")
    start_time = time.perf_counter()
    try:
        while step < config.steps and not finished:
            if stop_after is not None and step >= stop_after:
                checkpoint()
                return _result(model, step, False, log, best, history, config)
            idx = indices[step - first_step]
            x, di, y = data.frames[idx], data.dynamic_images[idx], data.labels[idx]
            lr = lr_at(config, step)
            for group in optimizer.param_groups:
                group["lr"] = lr
            with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
                output = model(x)
                loss, parts = loss_fn(output, y, di, ce_weight=config.ce_weight,
                                      di_weight=config.di_weight, rank_weight=config.rank_weight)
            pending.add(step + 1, loss, parts, lr)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if config.grad_clip:
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
            scaler.step(optimizer)
            scaler.update()
            step += 1
            score = None
            if val is not None and (step % eval_every == 0 or step == config.steps):
                flush()  # never select weights trained past a non-finite loss
                score = _score(model, val, config, device)
                history.append([step, score])
                if best is None or score > best["score"]:  # ties keep the earlier step
                    best = {"step": step, "score": score, "state": _state_copy(model)}
            stop_early = (config.patience is not None and config.selection == "inner_val"
                          and best is not None and len(history) - _index_of(history, best["step"]) - 1
                          >= config.patience)
            pending.finish_row(seconds_before + time.perf_counter() - start_time,
                               float("nan") if score is None else score)
            if bar is not None:
                bar.update(1)
            if step == config.steps or stop_early:
                checkpoint(complete=True)
                break
            elif step % config.checkpoint_every == 0:
                checkpoint()
            elif step % config.log_every == 0:
                flush()
                write_log()
    finally:
        if bar is not None:
            bar.close()
    return _result(model, step, True, log, best, history, config)


class _PendingRows:
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


def _index_of(history: list, step: int) -> int:
    return next(i for i, (s, _) in enumerate(history) if s == step)


def _result(model, step, complete, log, best, history, config) -> TrainResult:
    selected_step, best_score = step, None
    if complete and config.selection != "fixed_steps" and best is not None:
        model.load_state_dict(best["state"])
        selected_step, best_score = best["step"], best["score"]
    frame = pd.DataFrame(log, columns=list(LOG_COLUMNS))
    seconds = float(frame["seconds"].iloc[-1]) if len(frame) else 0.0
    return TrainResult(model, selected_step, step, complete, frame, config.selection, best_score,
                       [tuple(h) for h in history], seconds)


__all__ = ["TrainConfig", "TRAIN_PRESETS", "SELECTIONS", "OPTIMISTIC_WARNING", "TrainResult",
           "TrainingDiverged", "train_fold", "predict_proba", "materialise", "Tensors", "DataOrder",
           "seed_everything", "rng_state", "set_rng_state", "resolve_device", "load_selected", "lr_at"]
