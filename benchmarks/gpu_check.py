"""Paper-scale speed on one GPU, in one bounded run: `benchmarks/gpu_check.sh` (this file's driver).

    benchmarks/gpu_check.sh [--smoke] [--out FILE] [--budget-s S] [--released PATH/fdp.py]

Cases, in priority order, each in a fresh process with its own time limit, cut short or skipped
(with the reason in its record) when the run's budget (default 450 s; the shell wrapper kills at
480 s) runs out:

* `step`: one training step (forward, `fdp_loss`, backward, fused Adam: what `fdpkit loso` runs)
  of the `paper` and `official` presets at B=36 on synthetic clips, fp32 and bf16 autocast, eager
  and (last, as they compile for minutes) `torch.compile`d. Median seconds a step, achieved TFLOP/s
  (FLOPs counted once per case with `torch.utils.flop_counter`), peak GPU memory.
* `released`: the released code's train step (`fdp.py` of github:CYF-cuber/FDP, given by
  `--released` or `$FDP_RELEASED_PY`, never committed; `timm` (and `cgi`, gone in Python 3.13, and
  numpy where missing: imported, unused) replaced by small stand-ins written to a temporary
  folder), fp32, its own loss and `Adam`.
  Skipped with a reason when no file is given or it fails to import.
* `fold`: one paper-scale LOSO fold through `fdpkit.train.loop.train_fold` (CASME II-sized corpus:
  250 synthetic clips of 25 subjects, so a fold trains on 240; 500 steps at B=36, precision auto,
  checkpoints every 50 steps in a temporary folder), then the 10 test clips predicted. Whole if it
  fits its limit, else the first steps measured and the fold extrapolated (marked `extrapolated`).
* `shared`: `--jobs`-style concurrency, J fold processes training on the one GPU at once; the
  aggregate steps/s gives the projected wall time of the 25-fold LOSO (25 x 500 steps).

`--smoke` runs every case on the CPU with the `tiny` preset, B=2, a few steps and
`torch.compile(backend="eager")`, in well under a minute (tests/test_gpu_check.py).

Needs torch and einops; the `fold` and `shared` cases also need numpy and pandas (skipped with the
reason if missing). A missing one is installed offline from `benchmarks/wheels/` (`--wheels`) when
that folder has its wheel: prepare it where pip reaches PyPI with
`pip download einops --no-deps -d benchmarks/wheels` (pure Python, any interpreter) and, for a
machine without them, `pip download numpy pandas --only-binary=:all: --python-version 3.X
--platform manylinux2014_x86_64 -d benchmarks/wheels`. Without an einops wheel the run stops saying
so. No dlib, no JupyterLab, no data files.
Writes the records as JSON (default `benchmarks/results/gpu_check-<device>-<time>.json`) and
prints a table.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RESULT = "GPU_CHECK_RESULT "
BUDGET_S = 450.0
RELEASED_ENV = "FDP_RELEASED_PY"
CASME2 = {"clips": 250, "subjects": 25, "steps": 500, "batch_size": 36}


# ----------------------------------------------------------------------------------- settings
def settings(smoke: bool) -> dict:
    """What the run measures: paper scale on a GPU, or the tiny CPU smoke setting."""
    if smoke:
        return {"device": "cpu", "presets": ["tiny"], "precisions": ["fp32"], "batch_size": 2,
                "warmup": 1, "timed": 2,
                "compile_backend": "eager", "corpus": {"clips": 6, "subjects": 3, "steps": 3,
                                                       "batch_size": 2},
                "shared_jobs": 2, "shared_steps": 2, "limits": {"step": 60, "compile": 60,
                "released": 60, "fold": 60, "shared": 90}}
    return {"device": "cuda", "presets": ["paper", "official"], "precisions": ["bf16", "fp32"],
            "batch_size": 36, "warmup": 3,
            "timed": 10, "compile_backend": "inductor", "corpus": dict(CASME2), "shared_jobs": 4,
            "shared_steps": 60, "limits": {"step": 60, "compile": 110, "released": 60, "fold": 110,
                                           "shared": 100}}


def plan(cfg: dict) -> list[dict]:
    """The cases in priority order (the budget cuts from the end)."""
    base = {"device": cfg["device"], "batch_size": cfg["batch_size"], "warmup": cfg["warmup"],
            "timed": cfg["timed"]}
    cases = [dict(base, kind="step", preset=p, precision=q, compile=None, limit=cfg["limits"]["step"])
             for p in cfg["presets"] for q in cfg["precisions"]]
    cases.append(dict(base, kind="released", precision="fp32", limit=cfg["limits"]["released"]))
    fold = dict(device=cfg["device"], preset=cfg["presets"][0], **cfg["corpus"])
    cases.append(dict(fold, kind="fold", limit=cfg["limits"]["fold"]))
    cases.append(dict(fold, kind="shared", jobs=cfg["shared_jobs"], steps=cfg["shared_steps"],
                      full_steps=cfg["corpus"]["steps"], limit=cfg["limits"]["shared"]))
    cases += [dict(base, kind="step", preset=p, precision=q, compile=cfg["compile_backend"],
                   limit=cfg["limits"]["compile"])
              for q in cfg["precisions"] for p in cfg["presets"]]
    return cases


# ----------------------------------------------------------------------------------- helpers
def _sync(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def _peak_memory_mb(device: str) -> dict:
    import resource

    import torch

    out = {"peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}
    if device == "cuda":
        out["peak_gpu_allocated_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
        out["peak_gpu_reserved_mb"] = round(torch.cuda.max_memory_reserved() / 2**20, 1)
    return out


def _median(values: list[float]) -> float:
    s = sorted(values)
    n = len(s)
    return s[n // 2] if n % 2 else 0.5 * (s[n // 2 - 1] + s[n // 2])


def _timed_steps(step, device: str, warmup: int, timed: int, deadline: float) -> dict:
    """Warm up, then time up to `timed` steps one by one (synchronised), stopping at `deadline`."""
    t0 = time.perf_counter()
    step()
    _sync(device)
    first_s = time.perf_counter() - t0
    for _ in range(warmup - 1):
        step()
    _sync(device)
    times = []
    for _ in range(timed):
        if times and time.perf_counter() + times[-1] > deadline:
            break
        t0 = time.perf_counter()
        step()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return {"first_step_s": round(first_s, 3), "times_s": [round(t, 5) for t in times],
            "median_s": round(_median(times), 5) if times else None}


def _count_flops(step) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        step()
    return float(counter.get_total_flops())


def _environment(device: str) -> dict:
    import torch

    env = {"torch": torch.__version__, "python": sys.version.split()[0],
           "cpu_capability": torch.backends.cpu.get_cpu_capability(), "threads": torch.get_num_threads()}
    if device == "cuda":
        env.update(gpu=torch.cuda.get_device_name(), cuda=torch.version.cuda,
                   capability=".".join(map(str, torch.cuda.get_device_capability())),
                   bf16_supported=torch.cuda.is_bf16_supported(),
                   tf32_matmul=torch.backends.cuda.matmul.allow_tf32, tf32_cudnn=torch.backends.cudnn.allow_tf32)
    return env


def _synthetic_batch(batch: int, device: str, frames: int = 8, size: int = 64, classes: int = 5):
    import torch

    g = torch.Generator().manual_seed(0)
    x = (torch.rand(batch, frames, 1, size, size, generator=g) * 2 - 1).to(device)
    di = torch.rand(batch, size, size, generator=g).to(device)
    y = (torch.arange(batch) % classes).to(device)
    return x, di, y


# ----------------------------------------------------------------------------------- cases
def case_step(c: dict, deadline: float) -> dict:
    """fdpkit's train step (what `fdpkit.train.loop` runs: autocast, fdp_loss, fused Adam)."""
    import torch

    from fdpkit.model import build_model, fdp_loss
    from fdpkit.train.precision import autocast_dtype

    device = c["device"]
    if device == "cuda":  # the trainer's settings
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
    torch.manual_seed(0)
    model = build_model(c["preset"], num_classes=5).to(device).train()
    dtype = autocast_dtype(c["precision"], torch.device(device))
    opt = torch.optim.Adam(model.parameters(), lr=1e-4, weight_decay=1e-3, fused=True)
    x, di, y = _synthetic_batch(c["batch_size"], device)
    net = model
    compile_s = None

    def step():
        with torch.autocast(device, dtype=dtype or torch.float32, enabled=dtype is not None):
            loss, _ = fdp_loss(net(x), y, di)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    flops = _count_flops(step)  # eager, once per case: FLOPs depend on shapes only
    if c.get("compile"):
        net = torch.compile(model, backend=c["compile"])
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    out = _timed_steps(step, device, c["warmup"], c["timed"], deadline)
    if c.get("compile"):
        compile_s = out["first_step_s"]
    med = out["median_s"]
    return dict(out, gflop_per_step=float(f"{flops / 1e9:.4g}"), compile_s=compile_s,
                tflops=float(f"{flops / med / 1e12:.4g}") if med else None,
                clips_per_s=round(c["batch_size"] / med, 2) if med else None,
                **_peak_memory_mb(device))


TIMM_STANDIN = {
    "timm/__init__.py": "",
    "timm/models/__init__.py": "",
    "timm/models/registry.py": "def register_model(fn):\n    return fn\n",
    "timm/models/layers.py": textwrap.dedent('''\
        """Stand-in for the two timm helpers the released fdp.py imports."""
        import torch
        from torch import nn

        trunc_normal_ = nn.init.trunc_normal_


        class DropPath(nn.Module):
            """Stochastic depth per sample (as timm's DropPath)."""

            def __init__(self, drop_prob=0.0):
                super().__init__()
                self.drop_prob = float(drop_prob or 0.0)

            def forward(self, x):
                if self.drop_prob == 0.0 or not self.training:
                    return x
                keep = 1.0 - self.drop_prob
                mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
                return x * mask / keep
        '''),
}


def load_released(path: str):
    """Import the released fdp.py with the stand-in timm (and cgi where Python no longer has it)."""
    folder = Path(tempfile.mkdtemp(prefix="fdp_released_"))
    for name, text in TIMM_STANDIN.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)
    try:
        importlib.import_module("cgi")
    except ImportError:
        (folder / "cgi.py").write_text("def print_arguments(*args, **kwargs):\n    pass\n")
    if importlib.util.find_spec("numpy") is None:  # imported by fdp.py, unused by its model
        (folder / "numpy.py").write_text('"""Stand-in: the released fdp.py imports numpy, its model does not use it."""\n')
    (folder / "released_fdp.py").write_text(Path(path).read_text())
    sys.path.insert(0, str(folder))
    return importlib.import_module("released_fdp")


def case_released(c: dict, deadline: float) -> dict:
    """The released code's train step: its model (frame loop, fp32), NLL + 100 MSE, default Adam."""
    import torch
    import torch.nn.functional as F

    path = c.get("released")
    if not path:
        return {"skipped": f"no released fdp.py given (--released PATH or ${RELEASED_ENV})"}
    if not Path(path).is_file():
        return {"skipped": f"released fdp.py not found: {path}"}
    try:
        released = load_released(path)
    except Exception as error:  # noqa: BLE001 - report and let the other cases run
        return {"skipped": f"released fdp.py does not import: {type(error).__name__}: {error}"}
    device = c["device"]
    torch.manual_seed(0)
    model = released.FDP().to(device).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-4, weight_decay=1e-3)
    x, di, y = _synthetic_batch(c["batch_size"], device)
    x = x.unsqueeze(1)  # the released input: (B, 1, T, 1, H, W)

    def step():
        logits, pred_di = model(x)
        loss = F.nll_loss(F.log_softmax(logits, dim=1), y) + 100 * F.mse_loss(pred_di, di)
        opt.zero_grad()
        loss.backward()
        opt.step()

    flops = _count_flops(step)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    out = _timed_steps(step, device, c["warmup"], c["timed"], deadline)
    med = out["median_s"]
    return dict(out, gflop_per_step=float(f"{flops / 1e9:.4g}"),
                tflops=float(f"{flops / med / 1e12:.4g}") if med else None, **_peak_memory_mb(device))


def _needs_tables() -> str | None:
    missing = [m for m in ("numpy", "pandas") if importlib.util.find_spec(m) is None]
    return f"needs {' and '.join(missing)} (pip install {' '.join(missing)})" if missing else None


def synthetic_corpus(clips: int, subjects: int, size: int = 64, frames: int = 8, classes: int = 5):
    """A CASME II-sized corpus of random clips: (Tensors of all clips, subject of each clip)."""
    import torch

    from fdpkit.train.data import Tensors

    g = torch.Generator().manual_seed(1)
    data = Tensors(torch.rand(clips, frames, 1, size, size, generator=g) * 2 - 1,
                   torch.rand(clips, size, size, generator=g),
                   torch.randint(0, classes, (clips,), generator=g), [f"s{i % subjects}/c{i}" for i in range(clips)])
    return data, torch.arange(clips) % subjects


def _subset(data, mask):
    from fdpkit.train.data import Tensors

    keep = mask.nonzero().flatten()
    return Tensors(data.frames[keep], data.dynamic_images[keep], data.labels[keep],
                   [data.clip_uids[i] for i in keep.tolist()])


def run_fold(c: dict, steps: int, workdir: str) -> dict:
    """One LOSO fold (subject 0 held out) through the real trainer; times of each phase."""
    import torch

    from fdpkit.model import build_model
    from fdpkit.train.config import TrainConfig
    from fdpkit.train.evaluate import predict_proba
    from fdpkit.train.loop import train_fold

    t0 = time.time()
    data, subject = synthetic_corpus(c["clips"], c["subjects"])
    train, test = _subset(data, subject != 0), _subset(data, subject == 0)
    config = TrainConfig.from_preset(c["preset"], steps=steps, batch_size=c["batch_size"],
                                     device=c["device"], threads=0)
    torch.manual_seed(0)
    model = build_model(c["preset"], num_classes=5)
    t1 = time.time()
    result = train_fold(model, train, config, fold="s0", workdir=workdir, progress=False)
    _sync(c["device"])
    t2 = time.time()
    predict_proba(result.model, test, precision=config.precision)
    t3 = time.time()
    return {"setup_s": t1 - t0, "train_start": t1, "train_end": t2, "train_s": t2 - t1,
            "predict_s": t3 - t2, "steps": steps, "n_train": len(train), "n_test": len(test)}


def case_fold(c: dict, deadline: float) -> dict:
    reason = _needs_tables()
    if reason:
        return {"skipped": reason}
    full = c["steps"]
    with tempfile.TemporaryDirectory(prefix="gpu_check_fold_") as tmp:
        fold = run_fold(c, min(full, 10), tmp + "/probe")  # includes one-off start-up costs
        if fold["steps"] < full:
            per_step = fold["train_s"] / fold["steps"]
            room = deadline - time.time() - fold["predict_s"] - 5
            steps = full if per_step * full <= room else max(10, int(room / per_step))
            fold = run_fold(c, min(steps, full), tmp + "/fold")
        mem = _peak_memory_mb(c["device"])
    measured = fold["setup_s"] + fold["train_s"] + fold["predict_s"]
    fold_s = fold["setup_s"] + fold["train_s"] / fold["steps"] * full + fold["predict_s"]
    return dict(fold, **mem, full_steps=full, extrapolated=fold["steps"] < full,
                measured_s=round(measured, 2), fold_s=round(fold_s, 2),
                step_s=round(fold["train_s"] / fold["steps"], 5),
                loso_sequential_s=round(fold_s * c["subjects"], 2))


def case_shared(c: dict, deadline: float) -> dict:
    """J fold processes on one device at once (`--jobs J`): aggregate steps/s."""
    reason = _needs_tables()
    if reason:
        return {"skipped": reason}
    jobs = c["jobs"]
    spec = dict(c, kind="fold_worker")
    procs = [subprocess.Popen([sys.executable, __file__, "--case", json.dumps(spec)],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                              start_new_session=True) for _ in range(jobs)]
    results = []
    try:
        for p in procs:
            out, _ = p.communicate(timeout=max(1.0, deadline - time.time()))
            results.append(_parse(out))
    except subprocess.TimeoutExpired:
        return {"skipped": f"{jobs} concurrent folds did not finish in the case's time limit"}
    finally:
        for p in procs:
            _kill(p)
    bad = [r for r in results if r.get("error")]
    if bad:
        return {"error": bad[0]["error"]}
    start, end = min(r["train_start"] for r in results), max(r["train_end"] for r in results)
    steps = sum(r["steps"] for r in results)
    rate = steps / (end - start)
    total = c["subjects"] * c["full_steps"]
    return {"jobs": jobs, "steps_each": c["steps"], "train_wall_s": round(end - start, 2),
            "aggregate_steps_per_s": round(rate, 3), "aggregate_step_s": round(1 / rate, 5),
            "loso_train_s_projected": round(total / rate, 1),
            "train_s_each": [round(r["train_s"], 2) for r in results]}


def case_fold_worker(c: dict, deadline: float) -> dict:
    with tempfile.TemporaryDirectory(prefix="gpu_check_shared_") as tmp:
        return run_fold(c, c["steps"], tmp)


CASES = {"step": case_step, "released": case_released, "fold": case_fold, "shared": case_shared,
         "fold_worker": case_fold_worker}


def child_main(spec: dict) -> None:
    import torch

    if spec["device"] == "cpu":
        torch.set_num_threads(int(os.environ.get("GPU_CHECK_THREADS", "1")))
    deadline = time.time() + spec.get("limit", 60) * 0.8
    t0 = time.perf_counter()
    try:
        record = CASES[spec["kind"]](spec, deadline)
        record.update(env=_environment(spec["device"]))
    except Exception as error:  # noqa: BLE001 - one line in the record, the run goes on
        record = {"error": f"{type(error).__name__}: {error}"}
    record["case_s"] = round(time.perf_counter() - t0, 2)
    print(RESULT + json.dumps(record), flush=True)


# ----------------------------------------------------------------------------------- driver
def _parse(stdout: str) -> dict:
    lines = [ln for ln in (stdout or "").splitlines() if ln.startswith(RESULT)]
    return json.loads(lines[-1][len(RESULT):]) if lines else {"error": "the case printed no result"}


def _kill(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()


def run_case(spec: dict, limit: float) -> dict:
    """Run one case in a fresh process (its own session, killed whole at `limit` seconds)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    proc = subprocess.Popen([sys.executable, __file__, "--case", json.dumps(dict(spec, limit=limit))],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=limit)
    except subprocess.TimeoutExpired:
        _kill(proc)
        return {"skipped": f"time limit: killed after {limit:.0f} s"}
    record = _parse(out)
    if "error" in record and proc.returncode:
        record["stderr_tail"] = (err or "")[-800:]
    return record


def label(spec: dict) -> str:
    kind = spec["kind"]
    if kind == "step":
        return f"step {spec['preset']} B={spec['batch_size']} {spec['precision']}" + (
            f" compile({spec['compile']})" if spec.get("compile") else " eager")
    if kind == "released":
        return f"released fdp.py B={spec['batch_size']} {spec['precision']}"
    if kind == "fold":
        return f"fold {spec['preset']} {spec['clips']} clips/{spec['subjects']} subjects, {spec['steps']} steps"
    return f"shared: {spec['jobs']} folds at once on one device"


def summary_lines(records: list[dict]) -> list[str]:
    lines = []
    for r in records:
        head = f"{r['label']:<58}"
        if r.get("skipped") or r.get("error"):
            lines.append(f"{head} {'skipped' if r.get('skipped') else 'ERROR'}: {r.get('skipped') or r.get('error')}")
        elif r["kind"] in ("step", "released"):
            mem = r.get("peak_gpu_allocated_mb", r.get("peak_rss_mb"))
            comp = f", compile {r['compile_s']:.0f} s" if r.get("compile_s") else ""
            lines.append(f"{head} {r['median_s'] * 1000:9.1f} ms/step  {r['tflops']:8.3f} TFLOP/s  "
                         f"peak {mem:.0f} MB{comp}")
        elif r["kind"] == "fold":
            how = "extrapolated from " + str(r["steps"]) + " steps" if r["extrapolated"] else "measured whole"
            lines.append(f"{head} fold {r['fold_s']:.1f} s ({how}); {r['subjects']} folds one after another "
                         f"{r['loso_sequential_s'] / 60:.1f} min")
        elif r["kind"] == "shared":
            lines.append(f"{head} {r['aggregate_step_s'] * 1000:.1f} ms per step in aggregate; "
                         f"{r['subjects']}-fold LOSO training ~{r['loso_train_s_projected'] / 60:.1f} min")
    ratios = released_ratios(records)
    for name, value in ratios.items():
        lines.append(f"{name}: {value:.2f}x")
    return lines


def released_ratios(records: list[dict]) -> dict:
    """Released step time / fdpkit step time, same device, same B (official and paper, eager)."""
    rel = next((r for r in records if r["kind"] == "released" and r.get("median_s")), None)
    if rel is None:
        return {}
    out = {}
    for r in records:
        if r["kind"] == "step" and r.get("median_s") and r["batch_size"] == rel["batch_size"]:
            mode = f"compile({r['compile']})" if r.get("compile") else "eager"
            out[f"speed-up over the released step: {r['preset']} {r['precision']} {mode}"] = (
                rel["median_s"] / r["median_s"])
    return out


def ensure_dependencies(wheels: Path) -> None:
    """torch must be there. einops (needed), numpy and pandas (the fold cases) are installed from
    the wheels in `wheels` when missing (pip picks the ones that fit this Python); a missing einops
    without a wheel stops the run with what to do, missing numpy / pandas skip the fold cases."""
    if importlib.util.find_spec("torch") is None:
        raise SystemExit("gpu_check: PyTorch is not installed in this Python "
                         f"({sys.executable}); install the CUDA build of torch first")
    for name in ("einops", "numpy", "pandas"):
        if importlib.util.find_spec(name) is not None:
            continue
        if wheels.is_dir() and sorted(wheels.glob(f"{name}-*.whl")):
            subprocess.run([sys.executable, "-m", "pip", "install", "--no-index", "--find-links",
                            str(wheels), name], check=False)
            importlib.invalidate_caches()
        if name == "einops" and importlib.util.find_spec(name) is None:
            raise SystemExit(f"gpu_check: einops is missing and {wheels} holds no einops wheel that "
                             f"installs; run `pip download einops --no-deps -d {wheels}` where pip "
                             "reaches PyPI (a pure-Python wheel) and bring the folder, or pip install einops")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--smoke", action="store_true", help="tiny CPU setting (tests)")
    ap.add_argument("--out", help="JSON file for the records")
    ap.add_argument("--budget-s", type=float, default=BUDGET_S)
    ap.add_argument("--released", default=os.environ.get(RELEASED_ENV), help="path of the released fdp.py")
    ap.add_argument("--wheels", default=str(REPO / "benchmarks" / "wheels"))
    ap.add_argument("--case", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.case:
        child_main(json.loads(args.case))
        return 0
    ensure_dependencies(Path(args.wheels))
    cfg = settings(args.smoke)
    if cfg["device"] == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise SystemExit("gpu_check: torch sees no CUDA device (use --smoke for the CPU check)")
    started = time.time()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = Path(args.out or REPO / "benchmarks" / "results" / f"gpu_check-{cfg['device']}-{stamp}.json")
    records = []
    for spec in plan(cfg):
        spec = dict(spec, released=args.released) if spec["kind"] == "released" else spec
        left = args.budget_s - (time.time() - started)
        limit = min(spec["limit"], left - 5)
        rec = {"label": label(spec), **{k: v for k, v in spec.items() if k != "released"}}
        if limit < min(20.0, spec["limit"]):
            rec["skipped"] = f"run budget ({args.budget_s:.0f} s) spent"
        else:
            print(f"[{time.time() - started:5.0f} s] {rec['label']} (limit {limit:.0f} s) ...", flush=True)
            rec.update(run_case(spec, limit))
        records.append(rec)
        _write(out, records, cfg, started)
    report = _write(out, records, cfg, started)
    print("\n".join(summary_lines(records)))
    print(f"wrote {out} ({report['wall_s']:.0f} s)")
    return 0


def _write(out: Path, records: list[dict], cfg: dict, started: float) -> dict:
    report = {"settings": cfg, "wall_s": round(time.time() - started, 1), "records": records,
              "released_ratios": released_ratios(records)}
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(out.suffix + ".tmp")
    tmp.write_text(json.dumps(report, indent=1))
    os.replace(tmp, out)
    return report


if __name__ == "__main__":
    sys.exit(main())
