"""Step progress of folds (`fdpkit.train.progress`): folds in worker processes report their training
steps to the driver, which draws one bar per running fold; progress never changes a result and the
bars close after an error or an interrupt.

Runs are the 3-subject toy cache of test_runner.py (tiny preset, 12 steps per fold); the driver's
events are captured with `progress.listen`, never by parsing terminal output.
"""

from __future__ import annotations

import sys
from pathlib import Path

import psutil
import pytest
import tqdm.auto

import fdpkit.loso.run as runner
from fdpkit.train import progress
from fdpkit.train.progress import FoldBars, SentBar, StepEvent

sys.path.insert(0, str(Path(__file__).parent))
from toycache import make_toy_cache  # noqa: E402

SUBJECTS = ["s01", "s02", "s03"]
STEPS = 12
RUN = dict(preset="tiny", steps=STEPS, batch_size=4, verbose=False, overrides={"checkpoint_every": 3})


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_toy_cache(tmp_path_factory.mktemp("progress"), SUBJECTS, clips_per_subject=6)


class FakeBar:
    """Stands in for `tqdm.auto.tqdm`: records what the bars were asked to show."""

    made: list["FakeBar"] = []

    def __init__(self, total=None, initial=0, desc="", position=None, **_):
        self.total, self.n, self.desc, self.position = total, initial, desc, position
        self.closed, self.postfix = False, {}
        FakeBar.made.append(self)

    def update(self, n=1):
        self.n += n

    def set_postfix(self, values=None, refresh=True, **kw):
        self.postfix = dict(values or {}, **kw)

    def close(self):
        self.closed = True


@pytest.fixture
def fake_bars(monkeypatch):
    FakeBar.made = []
    monkeypatch.setattr(tqdm.auto, "tqdm", FakeBar)
    return FakeBar.made


def _by_fold(events: list[StepEvent]) -> dict[str, list[StepEvent]]:
    folds: dict[str, list[StepEvent]] = {}
    for event in events:
        folds.setdefault(event.fold, []).append(event)
    return folds


def _assert_whole_folds(events: list[StepEvent]) -> None:
    """Each fold: a start at step 0, step updates that never go back, the last one at STEPS, an end."""
    folds = _by_fold(events)
    assert sorted(folds) == [f"synthme/{s}" for s in SUBJECTS]
    for fold, seen in folds.items():
        kinds = [e.kind for e in seen]
        assert kinds[0] == "start" and kinds[-1] == "end" and "step" in kinds, (fold, kinds)
        steps = [e.step for e in seen if e.kind == "step"]
        assert steps == sorted(steps) and steps[-1] == STEPS and seen[0].step == 0, (fold, steps)
        assert all(e.total == STEPS for e in seen)


def _workers_left() -> list[str]:
    """Child processes still alive (multiprocessing's resource tracker lives as long as the driver)."""
    children = [p for p in psutil.Process().children(recursive=True)
                if "resource_tracker" not in " ".join(p.cmdline())]
    _, alive = psutil.wait_procs(children, timeout=30)
    return [" ".join(p.cmdline()) for p in alive]


def test_folds_in_worker_processes_report_steps_and_give_the_same_predictions(corpus, tmp_path, fake_bars):
    reference = tmp_path / "one"
    runner.run_loso(*corpus, reference, **RUN, jobs=1, progress=False)
    events: list[StepEvent] = []
    with progress.listen(events.append):
        runner.run_loso(*corpus, tmp_path / "two", **RUN, jobs=2, progress=True)
    _assert_whole_folds(events)
    assert (reference / "predictions.csv").read_bytes() == (tmp_path / "two" / "predictions.csv").read_bytes()
    # the folds bar and one step bar per fold, all closed at the end
    folds_bar = [b for b in fake_bars if b.desc == "folds"]
    step_bars = [b for b in fake_bars if b.desc.startswith("fold ")]
    assert len(folds_bar) == 1 and folds_bar[0].n == len(SUBJECTS)
    assert sorted(b.desc for b in step_bars) == [f"fold synthme/{s}" for s in SUBJECTS]
    assert all(b.n == STEPS for b in step_bars)
    assert all(b.closed for b in fake_bars)
    assert not _workers_left(), "worker processes outlived the run"


def test_a_single_fold_in_the_driver_reports_through_the_same_path(corpus, tmp_path, fake_bars):
    events: list[StepEvent] = []
    with progress.listen(events.append):
        runner.run_loso(*corpus, tmp_path / "one", **RUN, jobs=1, folds="s02", progress=True)
    assert [e.fold for e in events] == ["synthme/s02"] * len(events)
    assert events[0].kind == "start" and events[-1] == StepEvent("synthme/s02", "end", STEPS, STEPS,
                                                                   events[-1].postfix)
    assert [b.desc for b in fake_bars] == ["fold synthme/s02"]  # no folds bar for one fold


def test_ray_folds_report_steps_too(corpus, tmp_path, fake_bars):
    ray = pytest.importorskip("ray")
    events: list[StepEvent] = []
    with progress.listen(events.append):
        runner.run_loso(*corpus, tmp_path / "ray", **RUN, executor="ray", progress=True)
    assert not ray.is_initialized()
    _assert_whole_folds(events)


def test_bars_close_when_the_run_is_interrupted(corpus, tmp_path, fake_bars, monkeypatch):
    def interrupted(tasks, run, done, *, progress=None, **kwargs):
        progress(StepEvent("synthme/s01", "start", 0, STEPS))
        progress(StepEvent("synthme/s01", "step", 5, STEPS, {"loss": "1.0"}))
        raise KeyboardInterrupt

    monkeypatch.setattr(runner, "run_tasks", interrupted)
    with pytest.raises(KeyboardInterrupt):
        runner.run_loso(*corpus, tmp_path / "run", **RUN, jobs=2, progress=True)
    assert [b.desc for b in fake_bars] == ["folds", "fold synthme/s01"]
    assert fake_bars[1].n == 5 and fake_bars[1].postfix == {"loss": "1.0"}
    assert all(b.closed for b in fake_bars)


def test_fold_bars_reuse_the_line_of_a_finished_fold(fake_bars):
    bars = FoldBars(4, lines=True)
    for fold in ("a", "b"):
        bars(StepEvent(fold, "start", 0, 10))
    bars(StepEvent("a", "end", 10, 10))
    bars(StepEvent("c", "start", 3, 10))  # a resumed fold starts at its checkpoint's step
    bars(StepEvent("b", "step", 4, 10))
    lines = {b.desc: b.position for b in fake_bars}
    assert lines == {"folds": None, "fold a": 1, "fold b": 2, "fold c": 1}
    assert fake_bars[3].n == 3 and fake_bars[2].n == 4 and fake_bars[1].closed
    bars.close()
    assert all(b.closed for b in fake_bars)
    FoldBars(1, folds_bar=False, lines=False)(StepEvent("d", "start", 0, 10))
    assert fake_bars[-1].position is None  # no cursor movement outside a terminal


def test_a_sent_bar_throttles_but_always_sends_start_last_step_and_end(monkeypatch):
    clock = iter(range(1000))
    monkeypatch.setattr(progress.time, "monotonic", lambda: next(clock) * 0.01)  # 10 ms a step
    sent: list[StepEvent] = []
    bar = SentBar(sent.append, "f", total=100, initial=0)
    for _ in range(100):
        bar.update(1)
    bar.close()
    steps = [e.step for e in sent if e.kind == "step"]
    assert sent[0].kind == "start" and sent[-1].kind == "end" and steps[-1] == 100
    assert 3 <= len(steps) <= 6  # about one per SEND_EVERY_S (0.25 s), not one per step


def test_a_failing_sink_never_stops_the_fold(capsys):
    def broken(event):
        raise OSError("queue gone")

    bar = SentBar(broken, "f", total=3, initial=0)
    bar.update(3)
    bar.close()
    assert capsys.readouterr().err.count("no longer reported") == 1
