"""The benchmark cases. Each case function takes a params dict and returns a list of records; it
runs in a fresh process (`fdpkit_bench.harness.run_case`), so its peak RSS is its own.

* `matmul_case`: dense matmul peak of this machine, fp32 and bf16, in one process.
* `train_step_case`: one optimiser step (forward, loss, backward, Adam) of one (preset, batch);
  the per-frame reference (``frame_loop=True``, fp32, default Adam -- the released code's execution
  strategy) and the candidate modes run on **one shared model and optimiser**, interleaved repeat by
  repeat, so drift hits all equally and every mode's peak RSS has the same resident state.
* `forward_case`: eval-mode inference of one (preset, batch) under `torch.inference_mode`, same
  modes; also checks that every mode's outputs match the reference (`max_abs_diff`).
* `preprocess_case`: clips/s of `preprocess(align="once")` vs ``"per-frame"`` on a small SynthME.
* `loso_case`: wall time of a SynthME LOSO run with the tiny preset.
* `fdpkit_bench.flow_case.flow_case`: clips/s of one optical-flow method (one job, so one fresh
  process, per method) on SynthME's aligned onset/apex faces.

The modes (reference, batched, bf16 and their "+options") and the switches between them are in
`fdpkit_bench.modes`; the names the fast-path tests use are re-exported here.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import torch

from fdpkit_bench.harness import (
    make_record, matmul_peak, release_free_memory, speedup, time_interleaved,
)
from fdpkit_bench.modes import (  # noqa: F401 - MODES and the set_* / *_targets switches re-exported
    FORWARD_MODES, MODES, REFERENCE, TRAIN_MODES, ModeSwitch, checkpoint_targets, mode_label,
    mode_settings, set_channels_last, set_small_map_conv, small_map_targets, train_modes,
)


# ------------------------------------------------------------------------------- model helpers
def make_inputs(batch: int, frames: int, size: int, num_classes: int = 5, seed: int = 0):
    """Random clips in [-1, 1] (B, T, 1, H, W), labels (B,), dynamic-image targets (B, H, W)."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(batch, frames, 1, size, size, generator=gen) * 2 - 1
    y = torch.randint(0, num_classes, (batch,), generator=gen)
    di = torch.rand(batch, size, size, generator=gen)
    return x, y, di


def _flop_counter():
    from torch.utils.flop_counter import FlopCounterMode

    return FlopCounterMode(display=False)


def _build(preset: str, seed: int = 0):
    from fdpkit.model import build_model

    torch.manual_seed(seed)
    return build_model(preset, num_classes=5)


# --------------------------------------------------------------------------------------- cases
def matmul_case(params: dict[str, Any]) -> list[dict[str, Any]]:
    """Measured matmul peak, fp32 and bf16 in the same process."""
    records = []
    n, repeats = int(params.get("n", 2048)), int(params.get("repeats", 5))
    capped = params.get("bf16_capped")  # the reason, when this CPU has no native bf16
    for dtype in params.get("dtypes", ("fp32", "bf16")):
        size, reps, min_s = n, repeats, float(params.get("min_seconds", 0))
        if dtype == "bf16" and capped:  # a few seconds at most, not 15 minutes
            size, reps, min_s = min(n, BF16_CAP_N), 1, 0.0
        peak = matmul_peak(dtype, n=size, repeats=reps, min_seconds=min_s)
        flop = 2.0 * size**3
        notes = "peak = fastest repeat" + (f"; capped at n={size}, 1 call: {capped}" if dtype == "bf16" and capped else "")
        rec = make_record("matmul", f"mm{size}", dtype, times=peak["times"], gflop=flop / 1e9,
                          peak_gflops=round(peak["gflops"], 2), notes=notes,
                          case=params.get("case"))
        rec["gflops"] = round(peak["gflops"], 2)
        rec["frac_of_peak"] = 1.0
        records.append(rec)
    return records


def _model_case(params: dict[str, Any], default_modes) -> tuple:
    """What the train-step and forward cases share: preset, batch, a seeded model, random inputs
    and the parsed modes (in plan order; the first is the reference)."""
    preset, batch = params["preset"], int(params["batch_size"])
    model = _build(preset)
    cfg = model.cfg
    inputs = make_inputs(batch, cfg.frames, cfg.size, cfg.num_classes)
    modes = {name: mode_settings(name) for name in params.get("modes", default_modes)}
    return preset, batch, model, inputs, modes


def _time_modes(fns: dict[str, Callable], modes: dict[str, dict[str, Any]], params: dict[str, Any],
                state: dict[str, bool] | None = None) -> tuple[dict[str, dict[str, Any]], float | None]:
    """Time `fns` interleaved; the first warm-up call of `_flop_mode(modes)` is FLOP-counted, with
    state["counting"] True meanwhile. Returns (timings per mode, GFLOP per call; None without
    warm-up)."""
    flop_mode, counter, state = _flop_mode(modes), _flop_counter(), {} if state is None else state
    warmup = int(params.get("warmup", 1))

    @contextlib.contextmanager
    def counting():
        state["counting"] = True
        try:
            with counter:
                yield
        finally:
            state["counting"] = False

    results = time_interleaved(fns, warmup, int(params.get("repeats", 3)),
                               on_warmup=lambda name, i: counting() if name == flop_mode and i == 0 else None,
                               log=_log(params), clock=params.get("clock", "wall"))
    return results, (counter.get_total_flops() / 1e9 if warmup else None)


def train_step_case(params: dict[str, Any]) -> list[dict[str, Any]]:
    """One optimiser step of `preset` at `batch_size`, every mode on one shared model."""
    from fdpkit.model import fdp_loss

    preset, batch, model, (x, y, di), modes = _model_case(params, TRAIN_MODES)
    if any(m.get("pure_bf16") for m in modes.values()):
        raise ValueError("'pure' bf16 (bf16 weights) is an inference mode, not a training mode")
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-4, weight_decay=1e-3)
    switch = ModeSwitch(model, opt)
    state = {"counting": False}

    def step_fn(mode):
        def step():
            # while FLOPs are counted, no checkpointing: count the model's FLOPs, not recomputation
            switch.setup({**mode, "checkpoint": False} if state["counting"] else mode)
            opt.zero_grad(set_to_none=True)
            with switch.autocast(mode):
                out = model(x)
                loss, _ = fdp_loss(out, y, di)
            loss.backward()
            opt.step()
        return step

    results, gflop = _time_modes({name: step_fn(mode) for name, mode in modes.items()}, modes, params, state)
    return _records("train_step", preset, batch, modes, results, gflop, params,
                    notes="forward + fdp_loss + backward + Adam step")


def forward_case(params: dict[str, Any]) -> list[dict[str, Any]]:
    """Eval-mode inference latency/throughput of `preset` at `batch_size`; checks outputs match."""
    preset, batch, model, (x, _, _), modes = _model_case(params, FORWARD_MODES)
    model.eval()
    switch = ModeSwitch(model)
    pure = None
    if any(m.get("pure_bf16") for m in modes.values()):
        import copy

        pure_model = copy.deepcopy(model).to(torch.bfloat16)
        pure = (pure_model, ModeSwitch(pure_model), x.to(torch.bfloat16))

    def run(mode):
        target, sw, inp = pure if mode.get("pure_bf16") else (model, switch, x)
        sw.setup(mode)
        with torch.inference_mode(), (contextlib.nullcontext() if mode.get("pure_bf16")
                                      else sw.autocast(mode)):
            return target(inp)

    fns = {name: (lambda mode=mode: run(mode)) for name, mode in modes.items()}
    results, gflop = _time_modes(fns, modes, params)
    # outputs of every mode vs the first (reference) mode, same weights, same input
    ref_name, *others = modes
    ref_out = run(modes[ref_name])
    diffs = {ref_name: 0.0}
    for name in others:
        out = run(modes[name])
        diffs[name] = max(float((getattr(out, f).float() - getattr(ref_out, f).float()).abs().max())
                          for f in ("logits", "frame_features", "dynamic_image")
                          if getattr(out, f) is not None)
    records = _records("forward", preset, batch, modes, results, gflop, params,
                       notes="eval, inference_mode")
    for rec, name in zip(records, modes):
        rec["max_abs_diff"] = diffs[name]
    return records


def _flop_mode(modes: dict[str, dict[str, Any]]) -> str:
    """The mode whose first warm-up call counts the FLOPs: preferably fp32, batched, without
    checkpointing (FLOPs depend on shapes only, so the count holds for every mode; the train step
    switches checkpointing off for the counted call, so recomputation is never counted)."""
    names = list(modes)
    for ok in (lambda m: m["precision"] == "fp32" and not m.get("frame_loop") and not m.get("checkpoint"),
               lambda m: not m.get("checkpoint")):
        for name in names:
            if ok(modes[name]):
                return name
    return names[0]


def _records(benchmark, preset, batch, modes, results, gflop, params, notes=""):
    records = []
    ref_name = next(iter(modes))
    ref_median = results[ref_name].get("median_s") if modes[ref_name].get("frame_loop") else None
    for name, mode in modes.items():
        res = results[name]
        rec = make_record(benchmark, mode_label(name), mode["precision"], preset, batch,
                          times=res["times"], peak_rss_mb=res["peak_rss_mb"], gflop=gflop,
                          warmup=int(params.get("warmup", 1)), case=params.get("case"), notes=notes,
                          clock=params.get("clock", "wall"))
        if params.get("isolated"):
            rec["isolated"] = True
            rec["notes"] = notes + "; alone in its process (no reference: see the interleaved case)"
        median = rec["median_s"]
        rec["per_item_s"] = median / batch
        rec["items_per_s"] = batch / median
        if ref_median is not None:
            rec["speedup"] = speedup(ref_median, median)
            rec["reference_mode"] = REFERENCE
        records.append(rec)
    return records


def _log(params):
    if params.get("verbose", True):
        return lambda text: print(text, flush=True)
    return None


# ---------------------------------------------------------------------------- data-side cases
def _synthme(root: Path, subjects: int, clips: int):
    from fdpkit.data.adapters import build_manifest
    from fdpkit.synthme.corpus import generate_synthme

    generate_synthme(root, subjects=subjects, clips_per_subject=clips, seed=0)
    manifest, _, _ = build_manifest("synthme", root)
    return manifest


def preprocess_case(params: dict[str, Any]) -> list[dict[str, Any]]:
    """clips/s of preprocess(align="once") vs "per-frame" on a small SynthME (a fresh cache folder
    per call, so nothing is reused); interleaved like the model cases."""
    from fdpkit.data.preprocess.cache import preprocess

    subjects, clips = int(params.get("subjects", 2)), int(params.get("clips_per_subject", 3))
    warmup, repeats = int(params.get("warmup", 1)), int(params.get("repeats", 3))
    workers = int(params.get("workers", 1))
    tmp = Path(tempfile.mkdtemp(prefix="fdpkit-bench-pre-"))
    try:
        t0 = time.perf_counter()
        manifest = _synthme(tmp / "synthme", subjects, clips)
        synth_s = time.perf_counter() - t0
        n = len(manifest.rows)
        counter = {"i": 0}
        statuses: dict[str, set] = {}

        def run(align):
            def call():
                counter["i"] += 1
                cache = tmp / f"cache{counter['i']}"
                report = preprocess(manifest, cache, frames=8, size=64, align=align, workers=workers,
                                    lenient=True, progress=False)
                statuses.setdefault(align, set()).update(report["status"])
                shutil.rmtree(cache, ignore_errors=True)
            return call

        aligns = ("per-frame", "once")
        results = time_interleaved({a: run(a) for a in aligns}, warmup, repeats, log=_log(params))
        records = []
        ref = results["per-frame"]["median_s"]
        for align in aligns:
            res = results[align]
            rec = make_record("preprocess", align, "fp32", None, None, times=res["times"],
                              peak_rss_mb=res["peak_rss_mb"], warmup=warmup, case=params.get("case"),
                              items_per_s=n / res["median_s"], per_item_s=res["median_s"] / n,
                              n_items=n, workers=workers, statuses=sorted(statuses.get(align, ())),
                              notes=f"SynthME {subjects} subjects x {clips} clips (generated in "
                                    f"{synth_s:.1f} s, untimed), 8 frames, 64 px")
            if align != "per-frame":
                rec["speedup"] = speedup(ref, res["median_s"])
                rec["reference_mode"] = "per-frame"
            records.append(rec)
        return records
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def loso_case(params: dict[str, Any]) -> list[dict[str, Any]]:
    """Wall time of one SynthME LOSO run with the tiny preset (SynthME + cache untimed)."""
    from fdpkit_bench.harness import PeakRSS
    from fdpkit.data.preprocess.cache import preprocess
    from fdpkit.loso.run import run_loso

    subjects, clips = int(params.get("subjects", 3)), int(params.get("clips_per_subject", 4))
    steps, jobs = params.get("steps"), int(params.get("jobs", 1))
    preset = params.get("preset", "tiny")
    tmp = Path(tempfile.mkdtemp(prefix="fdpkit-bench-loso-"))
    try:
        manifest = _synthme(tmp / "synthme", subjects, clips)
        preprocess(manifest, tmp / "cache", frames=8, size=64, align="once", lenient=True,
                   progress=False)
        release_free_memory()
        tracker = PeakRSS().start()
        t0 = time.perf_counter()
        summary = run_loso(manifest, tmp / "cache", tmp / "run", preset=preset, steps=steps,
                           jobs=jobs, progress=False, verbose=False)
        elapsed = time.perf_counter() - t0
        peak = tracker.stop()
        import resource

        children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        n, folds = summary["n"], summary["n_subjects"]
        return [make_record("loso", f"local-jobs{jobs}", "fp32", preset, None, times=[elapsed],
                            peak_rss_mb=peak, warmup=0, case=params.get("case"),
                            items_per_s=folds / elapsed, per_item_s=elapsed / folds, n_items=folds,
                            steps=steps, jobs=jobs, children_peak_rss_mb=round(children, 1),
                            notes=f"SynthME {subjects} subjects x {clips} clips = {n} clips; "
                                  f"{folds} folds x {steps or 'default'} steps; items = folds; "
                                  "peak_rss_mb: this process (folds run in it when jobs=1), "
                                  "children_peak_rss_mb: the largest fold worker (jobs>1)")]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# ------------------------------------------------------------------------------------ the plan
BENCHMARKS = ("train_step", "forward", "preprocess", "loso", "flow")
FLOW_METHODS = ("tvl1", "farneback", "dis")   # fdpkit.data.preprocess.flow.METHODS (not imported: cv2)
DEFAULT_PRESETS = ("official", "paper", "tiny")
TRAIN_BATCHES = (8, 36)
FORWARD_BATCHES = (1, 32)
LOSO_STEPS = 100  # per fold (the tiny preset's default is 300: ~70 s a fold on one core)
BF16_CAP_N = 512  # bf16 matmul size on a CPU without native bf16 (0.4 s at 0.7 GFLOP/s)
# Time limit of each job, seconds (quick runs: QUICK_TIMEOUT_S): a stalled case ends as an error
# record and the run goes on. Measured full-run jobs take 10-250 s on a 2-core CPU.
TIMEOUT_S = {"matmul": 300, "train_step": 900, "train_step_large": 1800, "forward": 900,
             "preprocess": 600, "loso": 900, "flow": 600}
QUICK_TIMEOUT_S = 300


def _without_bf16(modes) -> list[str]:
    return [m for m in modes if mode_settings(m)["precision"] != "bf16"]


def plan(only: list[str] | None = None, presets: list[str] | None = None,
         batch_sizes: list[int] | None = None, quick: bool = False,
         bf16_skipped: str | None = None) -> list[dict[str, Any]]:
    """The jobs of a run, in order: [{"fn": "module:function", "params": {...}, "label": str,
    "timeout_s": float}].

    The matmul peak job always comes first (its peaks turn GFLOP/s into fractions of peak).
    quick: 1 warm-up + 2 repeats, the tiny preset and batch 8 only (unless presets / batch sizes are
    given), a smaller SynthME and a few LOSO steps.
    bf16_skipped: the reason this CPU has no native bf16, or None: then the bf16 train-step and
    forward modes are left out and the bf16 matmul is one n=512 call (seconds, not minutes).
    """
    jobs = _plan(only, presets, batch_sizes, quick)
    for job in jobs:
        kind = job["fn"].split(":")[1].replace("_case", "")
        large = kind == "train_step" and job["params"].get("batch_size", 0) >= 32 \
            and job["params"].get("preset") != "tiny"
        job["timeout_s"] = QUICK_TIMEOUT_S if quick else TIMEOUT_S[kind + ("_large" if large else "")]
    if bf16_skipped:
        jobs[0]["params"]["bf16_capped"] = bf16_skipped
        jobs[0]["label"] += " (bf16 capped)"
        for job in jobs:
            if "modes" in job["params"]:
                job["params"]["modes"] = _without_bf16(job["params"]["modes"])
        jobs = [j for j in jobs if j is jobs[0] or j["params"].get("modes", True)]
    return jobs


def _plan(only, presets, batch_sizes, quick) -> list[dict[str, Any]]:
    only = list(only or BENCHMARKS)
    unknown = sorted(set(only) - set(BENCHMARKS) - {"matmul"})
    if unknown:
        raise ValueError(f"unknown benchmark(s) {unknown}; choose from {', '.join(BENCHMARKS)}")
    presets = list(presets or (("tiny",) if quick else DEFAULT_PRESETS))
    warm, reps = (1, 2) if quick else (1, 3)
    mod = "fdpkit_bench.cases"
    jobs = [{"fn": f"{mod}:matmul_case", "label": "matmul peak fp32 + bf16",
             "params": {"case": "matmul", "n": 1024 if quick else 4096,
                        "repeats": 3 if quick else 5, "min_seconds": 0 if quick else 2.0}}]
    if "train_step" in only:
        for preset in presets:
            for b in batch_sizes or ((8,) if quick else TRAIN_BATCHES):
                jobs.append({"fn": f"{mod}:train_step_case", "label": f"train_step {preset} B={b}",
                             "params": {"case": f"train_step/{preset}/B{b}", "preset": preset,
                                        "batch_size": b, "warmup": warm,
                                        "modes": list(train_modes(preset, b)),
                                        "repeats": reps if preset != "tiny" or quick else 5}})
                if "bf16+checkpoint" in train_modes(preset, b) and not quick:
                    # the memory option alone in its process: its peak RSS without the heap
                    # left over by the other modes (interleaved windows overstate it ~10 %)
                    jobs.append({"fn": f"{mod}:train_step_case",
                                 "label": f"train_step {preset} B={b} bf16+checkpoint alone",
                                 "params": {"case": f"train_step/{preset}/B{b}/isolated",
                                            "preset": preset, "batch_size": b, "warmup": 1,
                                            "repeats": 1, "modes": ["bf16+checkpoint"],
                                            "isolated": True}})
    if "forward" in only:
        for preset in presets:
            for b in batch_sizes or ((1, 8) if quick else FORWARD_BATCHES):
                jobs.append({"fn": f"{mod}:forward_case", "label": f"forward {preset} B={b}",
                             "params": {"case": f"forward/{preset}/B{b}", "preset": preset,
                                        "batch_size": b, "warmup": warm if b > 1 or quick else 2,
                                        "modes": list(FORWARD_MODES),
                                        "repeats": reps if b > 1 or quick else 7}})
    if "preprocess" in only:
        jobs.append({"fn": f"{mod}:preprocess_case", "label": "preprocess once vs per-frame",
                     "params": {"case": "preprocess", "subjects": 2 if quick else 3,
                                "clips_per_subject": 2 if quick else 8, "warmup": 1, "repeats": reps}})
    if "loso" in only:
        jobs.append({"fn": f"{mod}:loso_case", "label": "loso tiny SynthME",
                     "params": {"case": "loso", "preset": "tiny", "subjects": 2 if quick else 3,
                                "clips_per_subject": 3 if quick else 6,
                                "steps": 4 if quick else LOSO_STEPS, "jobs": 1 if quick else 2}})
    if "flow" in only:
        for method in FLOW_METHODS:   # one job each: a fresh process per method
            jobs.append({"fn": "fdpkit_bench.flow_case:flow_case", "label": f"flow {method}",
                         "params": {"case": f"flow/{method}", "method": method, "subjects": 2 if quick else 3,
                                    "clips_per_subject": 2 if quick else 4, "warmup": 1, "repeats": reps}})
    return jobs
