"""Where and in which precision a fold trains: the device, the autocast dtype, and the bf16 check.

bf16 on a CPU without native bf16 (AVX512_BF16 / AMX) is refused (`check_precision`) unless
FDPKIT_ALLOW_SLOW_BF16=1: `cpu_bf16_probe` decides from torch's CPU capability, the x86 flags and a
short matmul probe.
"""

from __future__ import annotations

import functools
import math
import os
import time
from pathlib import Path
from typing import Any

import torch

from fdpkit.errors import BadInput


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
