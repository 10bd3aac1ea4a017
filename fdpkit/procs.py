"""Process helpers for fdpkit's worker processes (preprocessing workers, LOSO fold workers).

* `watch_parent`: a worker exits once its driver is gone, so a `kill -9`ed driver leaves no orphan
  writing into its folders.
* `worker_env` / `spawn_env`: the environment fold worker processes start with. glibc reads
  `MALLOC_MMAP_THRESHOLD_` / `MALLOC_TRIM_THRESHOLD_` when a process starts (the same settings as
  `mallopt`): blocks up to 1 GiB come from the heap and freed memory is kept, so a paper-scale
  training step maps no fresh pages (without them about a million page faults and seconds of kernel
  time per official batch-36 step; same peak RSS, same results: `benchmarks/README.md`,
  "Allocator"). ``FDPKIT_MALLOC=default`` opts out; folds trained in the calling process (``--jobs
  1``, a notebook kernel) keep its heap as it is. Elsewhere than glibc the variables do nothing.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from typing import Iterator

MALLOC_ENV = "FDPKIT_MALLOC"  # tuned (default) | default
TUNED_MALLOC = {"MALLOC_MMAP_THRESHOLD_": str(1 << 30), "MALLOC_TRIM_THRESHOLD_": str(2**31 - 1)}


def worker_env() -> dict[str, str]:
    """The variables fold worker processes start with: `TUNED_MALLOC` unless FDPKIT_MALLOC=default."""
    return {} if os.environ.get(MALLOC_ENV, "tuned") == "default" else dict(TUNED_MALLOC)


@contextlib.contextmanager
def spawn_env(env: dict[str, str]) -> Iterator[None]:
    """Within: os.environ also holds `env`, so processes started here inherit it; afterwards every
    variable is as it was. (multiprocessing's spawn takes no env argument; glibc of the process that
    sets them has read its own settings long before, so only the children see a difference.)"""
    before = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for key, value in before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _exit_with_parent(parent_pid: int, poll_s: float = 0.5) -> None:
    while os.getppid() == parent_pid:
        time.sleep(poll_s)
    os._exit(1)


def watch_parent(parent_pid: int) -> None:
    """In a worker process: exit (within ~0.5 s) once the process `parent_pid` is gone, so a
    `kill -9`ed driver leaves no orphan writing into its folders (fold and preprocessing workers)."""
    threading.Thread(target=_exit_with_parent, args=(parent_pid,), daemon=True).start()
