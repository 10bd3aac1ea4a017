"""glibc heap settings for training processes.

At paper scale most activation tensors are larger than glibc's mmap threshold, so by default every
step maps fresh pages and unmaps them on free: about a million page faults and seconds of kernel
time per official batch-36 step. `tune_allocator` keeps that memory in the heap instead (same peak
RSS, no faults after the first step; `benchmarks/README.md`, "Allocator"). It changes no result.
fdpkit's own fold worker processes (`--jobs N`, Ray tasks) call it unless ``FDPKIT_MALLOC=default``;
folds trained in the calling process (``--jobs 1``, perhaps a notebook kernel) leave its heap alone.
Elsewhere (macOS, musl) it is a no-op.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import os

MALLOC_ENV = "FDPKIT_MALLOC"  # tuned (default) | default
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt parameters from glibc's malloc.h
_libc_handle = None
_tuned = False


def _libc():
    global _libc_handle
    if _libc_handle is None:
        name = ctypes.util.find_library("c")
        try:
            _libc_handle = ctypes.CDLL(name) if name else False
        except OSError:
            _libc_handle = False
    return _libc_handle


def tune_allocator() -> bool:
    """Serve big blocks from the heap (mmap threshold 1 GiB) and never trim it; process-wide, the
    same as MALLOC_MMAP_THRESHOLD_ / MALLOC_TRIM_THRESHOLD_ in the environment. Returns success."""
    global _tuned
    libc = _libc()
    if not libc or not hasattr(libc, "mallopt"):
        return False
    ok = (libc.mallopt(_M_MMAP_THRESHOLD, ctypes.c_int(1 << 30)) == 1
          and libc.mallopt(_M_TRIM_THRESHOLD, ctypes.c_int(2**31 - 1)) == 1)
    _tuned = _tuned or ok
    return ok


def tune_for_training() -> bool:
    """`tune_allocator` unless the user set FDPKIT_MALLOC=default."""
    return os.environ.get(MALLOC_ENV, "tuned") != "default" and tune_allocator()


def release_free_memory() -> None:
    """gc, then glibc malloc_trim(0): hand freed heap pages back to the OS (skipped once the
    allocator is tuned, whose point is to keep them)."""
    gc.collect()
    libc = _libc()
    if not _tuned and libc and hasattr(libc, "malloc_trim"):
        libc.malloc_trim(0)
