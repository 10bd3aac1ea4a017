"""Fold worker processes start with glibc's heap tuned through the environment (`fdpkit.procs`);
FDPKIT_MALLOC=default opts out; the driver's own environment is left as it was; the benchmark's
case processes get the same variables when FDPKIT_MALLOC=tuned."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from fdpkit.loso.executors import run_tasks
from fdpkit.procs import MALLOC_ENV, TUNED_MALLOC, worker_env
from fdpkit_bench.harness import case_malloc_env

KEYS = sorted(TUNED_MALLOC)

# Allocate and free a 256 MiB block; print the resident set before and after the free (kB).
PROBE = """
def rss_kb():
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("VmRSS:"))
block = bytearray(256 << 20)
block[::4096] = b"x" * len(block[::4096])  # touch every page
held = rss_kb()
del block
print(held, rss_kb())
"""


@pytest.fixture
def clean_env(monkeypatch):
    for key in [MALLOC_ENV, *KEYS]:
        monkeypatch.delenv(key, raising=False)
    return monkeypatch


def _worker_values(executor: str = "local") -> list[str | None]:
    """The allocator variables as fold worker processes (two spawned ones, or Ray tasks) see them
    (`os.getenv` runs there)."""
    seen: list[str | None] = []
    run_tasks(KEYS, os.getenv, seen.append, executor=executor, jobs=2)
    return sorted(seen, key=str)


def test_spawned_fold_workers_start_with_the_tuned_heap_and_the_driver_keeps_its_env(clean_env):
    assert _worker_values() == sorted(TUNED_MALLOC.values())
    assert not any(key in os.environ for key in KEYS), "the driver's environment must be restored"


def test_fdpkit_malloc_default_leaves_the_workers_untuned(clean_env):
    clean_env.setenv(MALLOC_ENV, "default")
    assert worker_env() == {}
    assert _worker_values() == [None, None]


def test_ray_fold_tasks_start_with_the_tuned_heap(clean_env):
    pytest.importorskip("ray")
    assert _worker_values("ray") == sorted(TUNED_MALLOC.values())  # runtime_env env_vars


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc reads MALLOC_*_ at start")
def test_glibc_keeps_a_freed_block_in_a_process_started_with_the_worker_env(clean_env):
    def probe(env: dict[str, str]) -> tuple[int, int]:
        out = subprocess.run([sys.executable, "-c", PROBE], env={**os.environ, **env},
                             capture_output=True, text=True, check=True).stdout.split()
        return int(out[0]), int(out[1])

    held, after = probe(worker_env())
    assert after > held - (64 << 10), "tuned: the freed 256 MiB should stay resident"
    held, after = probe({})
    assert after < held - (192 << 10), "default glibc: a 256 MiB block is unmapped on free"


def test_bench_cases_run_on_the_default_heap_unless_fdpkit_malloc_is_tuned(clean_env):
    assert case_malloc_env() == {MALLOC_ENV: "default"}
    clean_env.setenv(MALLOC_ENV, "tuned")
    assert case_malloc_env() == {MALLOC_ENV: "tuned", **TUNED_MALLOC}
