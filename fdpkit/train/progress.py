"""Step progress of fold training: a `tqdm.auto` bar of its own, or `StepEvent`s sent to a driver.

`train_fold` draws its own bar unless a *sink* is set. fdpkit's executors set one around folds run
in the driver (`reporting`) and for the life of a fold worker process (`report_to`: a queue's put);
the train loop then sends `StepEvent`s, and the driver's `FoldBars` draws the `folds` bar and one
step bar per running fold from them. Progress reads only the step counter and loss values already
on the host, so it changes no result; a sink that fails is dropped, never the fold. `listen` hands
the driver's events to a callback as well (tests, monitoring).

`tqdm.auto.tqdm` is looked up at each call, not imported by name: a notebook nobody watches
(papermill) swaps it for the plain text bar at run time (`fdpkit.nb.params.text_progress_when_headless`).
"""

from __future__ import annotations

import contextlib
import sys
import time
from dataclasses import dataclass, field
from typing import Callable, Iterator

import tqdm.auto

SEND_EVERY_S = 0.25  # a fold sends at most ~4 step updates a second (and always its last step)


@dataclass(frozen=True)
class StepEvent:
    """One fold's progress: kind `start` (step = initial step), `step` or `end`."""

    fold: str
    kind: str
    step: int
    total: int
    postfix: dict = field(default_factory=dict)


Sink = Callable[[StepEvent], None]
_sink: Sink | None = None
_listeners: list[Sink] = []


def report_to(sink: Sink | None) -> None:
    """Send this process's step progress to `sink` from now on (a worker process's initialiser)."""
    global _sink
    _sink = sink


@contextlib.contextmanager
def reporting(sink: Sink | None) -> Iterator[None]:
    """Within: step progress goes to `sink` (None: each fold draws its own bar)."""
    before = _sink
    report_to(sink)
    try:
        yield
    finally:
        report_to(before)


@contextlib.contextmanager
def listen(callback: Sink) -> Iterator[None]:
    """Within: every `StepEvent` that reaches a `FoldBars` in this process is also passed to `callback`."""
    _listeners.append(callback)
    try:
        yield
    finally:
        _listeners.remove(callback)


def step_bar(fold: str, total: int, initial: int):
    """The bar `train_fold` updates (`update`, `set_postfix`, `close`): sent to the sink when one is
    set, else a `tqdm.auto` bar here."""
    if _sink is None:
        return tqdm.auto.tqdm(total=total, initial=initial, desc=f"fold {fold}", leave=False, unit="step")
    return SentBar(_sink, fold, total, initial)


class SentBar:
    """The part of tqdm's interface the train loop uses, as `StepEvent`s sent to a sink (throttled)."""

    def __init__(self, sink: Sink, fold: str, total: int, initial: int):
        self.sink: Sink | None = sink
        self.fold, self.total, self.n = fold, total, initial
        self.postfix: dict[str, str] = {}
        self.sent = time.monotonic()
        self._send("start")

    def update(self, n: int = 1) -> None:
        self.n += n
        if self.n >= self.total or time.monotonic() - self.sent >= SEND_EVERY_S:
            self._send("step")

    def set_postfix(self, refresh: bool = False, **values) -> None:
        self.postfix = {key: str(value) for key, value in values.items()}

    def close(self) -> None:
        self._send("end")

    def _send(self, kind: str) -> None:
        self.sent = time.monotonic()
        if self.sink is None:
            return
        try:
            self.sink(StepEvent(self.fold, kind, self.n, self.total, dict(self.postfix)))
        except Exception as error:  # noqa: BLE001 - progress must never stop a fold
            print(f"note: fold {self.fold}: step progress no longer reported ({error})", file=sys.stderr)
            self.sink = None


class FoldBars:
    """In the driver: the `folds` bar (when `folds_bar`) and one step bar per running fold.

    Call it with each `StepEvent` (it is the executors' `progress` sink), `fold_done()` when a
    fold's result is written, and `close()` at the end, also after an error or an interrupt. Step
    bars vanish when their fold ends (leave=False). `lines` (default: stderr is a terminal): each
    step bar keeps its own terminal line while its fold runs; elsewhere (papermill, a log file, a
    notebook's widgets) no cursor movement is written."""

    def __init__(self, n_folds: int, folds_bar: bool = True, lines: bool | None = None):
        self.folds = tqdm.auto.tqdm(total=n_folds, desc="folds", unit="fold") if folds_bar else None
        self.first_line = 1 if folds_bar else 0
        self.lines = sys.stderr.isatty() if lines is None else lines
        self.bars: dict[str, tuple[int, object]] = {}  # fold -> (line, bar)

    def __call__(self, event: StepEvent) -> None:
        for listener in list(_listeners):
            listener(event)
        if event.kind == "end":
            self._close(event.fold)
            return
        if event.kind == "start" or event.fold not in self.bars:
            self._close(event.fold)
            line = self._free_line()
            bar = tqdm.auto.tqdm(total=event.total, initial=event.step, desc=f"fold {event.fold}",
                                 leave=False, unit="step", position=line if self.lines else None)
            self.bars[event.fold] = (line, bar)
        _, bar = self.bars[event.fold]
        if event.postfix:
            bar.set_postfix(event.postfix, refresh=False)
        bar.update(event.step - bar.n)

    def fold_done(self) -> None:
        if self.folds is not None:
            self.folds.update(1)

    def close(self) -> None:
        for fold in list(self.bars):
            self._close(fold)
        if self.folds is not None:
            self.folds.close()

    def _free_line(self) -> int:
        taken = {line for line, _ in self.bars.values()}
        return next(line for line in range(self.first_line, self.first_line + len(taken) + 1)
                    if line not in taken)

    def _close(self, fold: str) -> None:
        _, bar = self.bars.pop(fold, (None, None))
        if bar is not None:
            bar.close()
