"""fdpkit.loso.allocator: the tuned glibc heap keeps freed blocks; FDPKIT_MALLOC=default opts out."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt")

# Allocate and free a 256 MiB block; print the resident set before and after the free (kB).
PROBE = """
import sys
from fdpkit.loso.allocator import tune_for_training
def rss_kb():
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("VmRSS:"))
tuned = tune_for_training()
block = bytearray(256 << 20)
block[::4096] = b"x" * len(block[::4096])  # touch every page
held = rss_kb()
del block
print(int(tuned), held, rss_kb())
"""


def _probe(env_value: str | None) -> tuple[bool, int, int]:
    env = {k: v for k, v in os.environ.items() if k != "FDPKIT_MALLOC"}
    if env_value is not None:
        env["FDPKIT_MALLOC"] = env_value
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True,
                         check=True).stdout.split()
    return bool(int(out[0])), int(out[1]), int(out[2])


def test_tuned_heap_keeps_a_freed_block_and_the_default_returns_it():
    tuned, held, after = _probe(None)
    assert tuned and after > held - (64 << 10), "tuned: the freed 256 MiB should stay resident"
    tuned, held, after = _probe("default")
    assert not tuned and after < held - (192 << 10), "default glibc: a 256 MiB block is unmapped on free"
