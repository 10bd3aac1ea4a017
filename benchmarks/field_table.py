"""FDP against the field's baselines on one corpus: the table of issue #15 item 5.

Every model of `fdpkit.registry.MODELS` (FDP first) is trained by the same LOSO runner with the same
preset, step budget, seeds and selection rule, each as its own `fdpkit loso` process (its wall time
is that process's), then compared with FDP by `fdpkit compare` (difference in pooled UF1 / UAR,
bootstrap-over-subjects interval, sign-flip permutation p). Writes ``<work>/field_table.md`` and
``<work>/field_table.json`` and prints the table.

    python benchmarks/field_table.py --root .fdpkit/synthme --work runs/field --jobs 2

The manifest, the cache (frames, dynamic images and ``--flow`` optical flow) and finished runs are
reused when present (re-running resumes), so the wall times are those of the runs made in this call.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path

import torch

from fdpkit.io import read_json, write_json, write_text
from fdpkit.loso.compare import compare_many
from fdpkit.registry import MODELS


def _run(cmd: list[str]) -> float:
    """Run one fdpkit command (its output streams through); its wall time in seconds."""
    print("$ " + shlex.join(cmd), flush=True)
    started = time.perf_counter()
    subprocess.run(cmd, check=True)
    return time.perf_counter() - started


def fdpkit(*args: str) -> list[str]:
    return [sys.executable, "-m", "fdpkit", *args]


def build_table(work: Path, dataset: str, root: str, preset: str, jobs: int, flow: str,
                models: list[str], extra: list[str]) -> dict:
    manifest, cache, runs = work / "manifest.csv", work / "cache", work / "runs"
    times: dict[str, float | None] = {}
    if not manifest.exists():
        times["manifest"] = _run(fdpkit("manifest", "--dataset", dataset, "--root", root, "--out", str(manifest)))
    times["preprocess"] = _run(fdpkit("preprocess", "--manifest", str(manifest), "--cache", str(cache),
                                      "--workers", str(max(jobs, 1)), "--flow", flow))
    commands = {}
    for name in models:
        out = runs / name
        cmd = fdpkit("loso", "--manifest", str(manifest), "--cache", str(cache), "--preset", preset,
                     "--model", name, "--out", str(out), "--jobs", str(jobs), *extra)
        commands[name] = shlex.join(["fdpkit", *cmd[3:]])
        finished = (out / "summary.json").exists()
        seconds = _run(cmd)
        times[name] = None if finished else seconds   # a resumed, already finished run only reads
    result = compare_many(runs / models[0], [runs / m for m in models[1:]])
    rows = []
    for name in models:
        summary = read_json(runs / name / "summary.json")
        ci = summary["ci"]["intervals"]
        row = {"model": name, "uf1": summary["pooled"]["uf1"], "uf1_ci": ci["uf1"],
               "uar": summary["pooled"]["uar"], "uar_ci": ci["uar"], "n": summary["n"],
               "n_subjects": summary["n_subjects"], "steps": summary["train"]["steps"],
               "constant_predictor_folds": len(summary.get("constant_predictor", {}).get("folds", [])),
               "wall_s": times.get(name), "command": commands[name]}
        for c in result["comparisons"]:
            if Path(c["b"]["run"]).name == name:
                row["vs_" + models[0]] = {k: c["difference"][k] for k in ("uf1", "uar")}
        rows.append(row)
    return {"rows": rows, "times": times, "reference": models[0], "preset": preset, "flow": flow,
            "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                        "torch": torch.__version__,
                        "capability": torch.backends.cpu.get_cpu_capability()},
            "comparison_notes": {"bootstrap": result["comparisons"][0]["bootstrap"],
                                 "permutation": result["comparisons"][0]["permutation"]}}


def _p(p: float) -> str:
    """A permutation p-value to 3 decimals; below 0.001 as such (it is never 0: the identity flip counts)."""
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def markdown(table: dict) -> str:
    ref = table["reference"]
    lines = [f"| model | UF1 [95% CI] | UAR [95% CI] | UF1 - {ref} [95% CI], p | UAR - {ref} [95% CI], p | wall |",
             "|---|---|---|---|---|---|"]
    for r in table["rows"]:
        diff = r.get("vs_" + ref)
        cells = ["-", "-"] if diff is None else [
            f"{d['diff']:+.3f} [{d['ci'][0]:+.3f}, {d['ci'][1]:+.3f}], p {_p(d['p'])}" for d in (diff["uf1"], diff["uar"])]
        wall = "resumed" if r["wall_s"] is None else f"{r['wall_s'] / 60:.1f} min"
        flag = f" ({r['constant_predictor_folds']} constant folds)" if r["constant_predictor_folds"] else ""
        lines.append(f"| {r['model']}{flag} | {r['uf1']:.3f} [{r['uf1_ci'][0]:.3f}, {r['uf1_ci'][1]:.3f}] | "
                     f"{r['uar']:.3f} [{r['uar_ci'][0]:.3f}, {r['uar_ci'][1]:.3f}] | {cells[0]} | {cells[1]} | {wall} |")
    m = table["machine"]
    first = table["rows"][0]
    lines.append("")
    lines.append(f"{first['n']} clips, {first['n_subjects']} subjects, preset `{table['preset']}` "
                 f"({first['steps']} steps a fold), flow `{table['flow']}`; preprocessing "
                 f"{table['times']['preprocess'] / 60:.1f} min; {m['cpu']}, {m['cores']} cores, torch "
                 f"{m['torch']} ({m['capability']}).")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset", default="synthme")
    p.add_argument("--root", required=True)
    p.add_argument("--work", required=True, help="folder for the manifest, cache and runs")
    p.add_argument("--preset", default="tiny")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--flow", default="tvl1", choices=("tvl1", "farneback", "dis"))
    p.add_argument("--models", default=",".join(MODELS), help="comma-separated; the first is the reference")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="passed to every fdpkit loso")
    args = p.parse_args(argv)
    models = [m for m in args.models.split(",") if m]
    extra = [x for kv in args.set for x in ("--set", kv)]
    work = Path(args.work)
    table = build_table(work, args.dataset, args.root, args.preset, args.jobs, args.flow, models, extra)
    write_json(work / "field_table.json", table)
    text = markdown(table)
    write_text(work / "field_table.md", text + "\n")
    print(text)
    print(json.dumps(table["times"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
