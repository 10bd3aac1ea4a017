"""Faults of fold worker processes (fdpkit.executors): a killed driver must not leave workers behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import psutil

# The driver runs two 300 s tasks (time.sleep: importable in spawned workers) on two worker processes.
DRIVER = ("import time\n"
          "from fdpkit.executors import run_tasks\n"
          "run_tasks([300, 300], time.sleep, print, executor='local', jobs=2)\n")


def _spawned_workers(driver: psutil.Process) -> list[psutil.Process]:
    return [p for p in driver.children() if "spawn_main" in " ".join(p.cmdline())]


def test_sigkilled_driver_takes_its_fold_workers_with_it():
    driver = subprocess.Popen([sys.executable, "-c", DRIVER])
    workers = []
    try:
        proc = psutil.Process(driver.pid)
        deadline = time.monotonic() + 60
        while len(workers) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
            workers = _spawned_workers(proc)
        assert len(workers) == 2, "the driver never started its two workers"
        time.sleep(1.0)
        os.kill(driver.pid, signal.SIGKILL)
        driver.wait()
        # generous: a worker still importing torch on a loaded machine exits once it gets going
        _, alive = psutil.wait_procs(workers, timeout=60)
        assert not alive, f"workers outlived their killed driver: {[p.pid for p in alive]}"
    finally:
        driver.kill()
        for p in workers:  # orphans are no longer our children
            if p.is_running():
                p.kill()
