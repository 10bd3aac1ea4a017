"""The released code's train step next to fdpkit's, in one process, interleaved rounds (CPU or GPU).

    python benchmarks/released_side_by_side.py --released /path/to/fdp.py [--batch-size 8]
        [--rounds 3] [--threads 2] [--device cpu] [--modes released,reference,batched] [--json FILE]

Modes, all fp32 on the same random batch:
* `released`: the released `fdp.py` (github:CYF-cuber/FDP, never committed; loaded with the stand-in
  timm of `gpu_check.py`): its model, NLL + 100 MSE, `torch.optim.Adam` defaults.
* `reference`: `build_model("official", frame_loop=True)`, plain convs, default Adam (the
  benchmark's reference: the released execution strategy run by fdpkit's model).
* `batched`: `build_model("official")` + `fdp_loss` + `Adam(fused=True)`: what `fdpkit loso` runs.
* `batched+wgradN`: `batched` with the dense MHCA's GEMM weight gradient on maps of up to N pixels
  (the model's default is 4, the last stage's 2x2 maps; 16 adds stage 3's 4x4 maps).
* `batched+sumrank`: `batched` with the official rank pooling's Conv3d replaced by the sum of the
  per-frame terms the model computes anyway for its rank scores (same sum, other rounding; a lever
  measured here, not a default).

Every round runs each mode once, the order reversed every other round; medians are printed with
`torch.backends.cpu.get_cpu_capability()` and the ratio released / each mode.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent


def _gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", HERE / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def make_modes(names, released_path, batch, device):
    from fdpkit_bench.modes import ModeSwitch, mode_settings
    from fdpkit.model import build_model, fdp_loss

    g = torch.Generator().manual_seed(0)
    x = (torch.rand(batch, 8, 1, 64, 64, generator=g) * 2 - 1).to(device)
    di = torch.rand(batch, 64, 64, generator=g).to(device)
    y = (torch.arange(batch) % 5).to(device)
    fns = {}
    for name in names:
        torch.manual_seed(0)
        if name == "released":
            model = _gpu_check().load_released(released_path).FDP().to(device).train()
            opt = torch.optim.Adam(model.parameters(), lr=1e-4, weight_decay=1e-3)
            xr = x.unsqueeze(1)

            def step(model=model, opt=opt, xr=xr):
                logits, pred = model(xr)
                loss = F.nll_loss(F.log_softmax(logits, dim=1), y) + 100 * F.mse_loss(pred, di)
                opt.zero_grad()
                loss.backward()
                opt.step()
        else:
            base = name.split("+")[0]
            settings = mode_settings("reference" if base == "reference" else "batched")
            model = build_model("official", num_classes=5, frame_loop=base == "reference").to(device).train()
            switch = ModeSwitch(model)
            opt = torch.optim.Adam(model.parameters(), lr=1e-4, weight_decay=1e-3,
                                   fused=bool(settings.get("fused_adam")))
            switch.setup(settings)
            for option in name.split("+")[1:]:
                if option == "sumrank":
                    _sum_rank(model)
                elif option.startswith("wgrad"):
                    _small_map_pixels(model, int(option[len("wgrad"):]))
                else:
                    raise SystemExit(f"unknown mode option +{option}")

            def step(model=model, opt=opt):
                loss, _ = fdp_loss(model(x), y, di)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
        fns[name] = step
    return fns


def _sum_rank(model) -> None:
    """The official rank pooling's Conv3d replaced by the sum of the per-frame terms the model
    already computes for its rank scores (`RankPool.fused = False`): the same sum, no Conv3d."""
    from fdpkit.model.rank import RankPool

    for module in model.modules():
        if isinstance(module, RankPool):
            module.fused = False


def profile(fn, args, rows: int = 25) -> int:
    from torch.profiler import ProfilerActivity, profile as torch_profile

    fn()  # warm-up
    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    print(f"cpu capability {torch.backends.cpu.get_cpu_capability()}, {args.threads} threads, "
          f"B={args.batch_size}, mode {args.profile}")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows))
    return 0


def _small_map_pixels(model, pixels: int) -> None:
    """The dense MHCA's GEMM weight gradient on maps of up to `pixels` pixels (default 4: the
    2x2 maps of the last stage; 16 adds stage 3's 4x4 maps, 64 stage 2's 8x8)."""
    from fdpkit.model.blocks import MHCA

    for module in model.modules():
        if isinstance(module, MHCA):
            module.small_map_pixels = pixels


def sync(device):
    if device == "cuda":
        torch.cuda.synchronize()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--released", required=True)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--modes", default="released,reference,batched")
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                    help="cpu: process CPU seconds (a busy shared machine; use with --threads 1)")
    ap.add_argument("--json")
    ap.add_argument("--profile", metavar="MODE", help="profile one call of MODE (after a warm-up) "
                    "with torch.profiler and print the top ops by self time instead of timing")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    names = args.modes.split(",")
    fns = make_modes(names, args.released, args.batch_size, args.device)
    if args.profile:
        return profile(fns[args.profile], args)
    for name in names:  # warm-up, one call each
        fns[name]()
    sync(args.device)
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    times = {n: [] for n in names}
    for r in range(args.rounds):
        for name in (names if r % 2 == 0 else names[::-1]):
            t0 = clock()
            fns[name]()
            sync(args.device)
            times[name].append(clock() - t0)
            print(f"round {r + 1} {name}: {times[name][-1]:.2f} s", file=sys.stderr, flush=True)
    med = {n: sorted(t)[len(t) // 2] for n, t in times.items()}
    cap = torch.backends.cpu.get_cpu_capability()
    print(f"cpu capability {cap}, torch {torch.__version__}, {args.threads} threads, "
          f"B={args.batch_size}, fp32, {args.rounds} interleaved rounds (medians), {args.clock} clock")
    for n in names:
        ratio = f"  released/this x{med['released'] / med[n]:.2f}" if "released" in med else ""
        print(f"  {n:<22} {med[n]:7.2f} s  (min {min(times[n]):.2f}, max {max(times[n]):.2f}){ratio}")
    if args.json:
        Path(args.json).write_text(json.dumps({"cpu_capability": cap, "torch": torch.__version__,
                                               "threads": args.threads, "batch_size": args.batch_size,
                                               "clock": args.clock,
                                               "times_s": times, "median_s": med}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
