"""Faults of fold worker processes (fdpkit.loso.executors): a killed driver must not leave workers behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

# The driver runs two 300 s tasks (time.sleep: importable in spawned workers) on two worker processes;
# {progress}: the step-progress queue the workers hold when the driver shows bars.
DRIVER = ("import time\n"
          "from fdpkit.loso.executors import run_tasks\n"
          "run_tasks([300, 300], time.sleep, print, executor='local', jobs=2, progress={progress})\n")


def _spawned_workers(driver: psutil.Process) -> list[psutil.Process]:
    return [p for p in driver.children() if "spawn_main" in " ".join(p.cmdline())]


def kill_driver_once_it_has_two_workers(driver: subprocess.Popen, wait_s: float, poll_s: float,
                                        settle_s: float) -> None:
    """Wait for the driver's two spawned workers, SIGKILL the driver, and require both workers to
    exit on their own (within 60 s: a worker still importing torch on a loaded machine exits once
    it gets going)."""
    workers = []
    try:
        proc = psutil.Process(driver.pid)
        deadline = time.monotonic() + wait_s
        while len(workers) < 2 and time.monotonic() < deadline and driver.poll() is None:
            time.sleep(poll_s)
            workers = _spawned_workers(proc)
        assert len(workers) == 2, "the driver never started its two workers"
        time.sleep(settle_s)
        os.kill(driver.pid, signal.SIGKILL)
        driver.wait()
        _, alive = psutil.wait_procs(workers, timeout=60)
        assert not alive, f"workers outlived their killed driver: {[p.pid for p in alive]}"
    finally:
        driver.kill()
        for p in workers:  # orphans are no longer our children
            if p.is_running():
                p.kill()


@pytest.mark.parametrize("progress", ["None", "print"])
def test_sigkilled_driver_takes_its_fold_workers_with_it(progress):
    driver = subprocess.Popen([sys.executable, "-c", DRIVER.format(progress=progress)])
    kill_driver_once_it_has_two_workers(driver, wait_s=60, poll_s=0.2, settle_s=1.0)


def test_sigkilled_preprocess_driver_takes_its_workers_with_it(tmp_path):
    """`kill -9` of `fdpkit preprocess --workers 2`: its pool workers must not live on (PPID 1),
    writing npz files into the cache for minutes."""
    from faultkit import child_env, face, fdpkit_cmd, manifest_row, write_frames, write_manifest_csv

    root = tmp_path / "corpus"
    rows = [manifest_row(root, "01", f"EP0{k}", write_frames(root / "sub01" / f"EP0{k}", [face(dx=d) for d in range(8)]))
            for k in range(6)]
    manifest = write_manifest_csv(tmp_path / "manifest.csv", rows, ["happiness"])
    driver = subprocess.Popen(fdpkit_cmd("preprocess", "--manifest", manifest, "--cache", tmp_path / "cache",
                                         "--workers", "2", "--lenient"),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=child_env())
    kill_driver_once_it_has_two_workers(driver, wait_s=120, poll_s=0.05, settle_s=0.0)
