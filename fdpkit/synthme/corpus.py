"""SynthME: a synthetic micro-expression corpus in CASME II's distributed layout.

A controlled check of motion sensitivity (does a pipeline see a 3-4 px facial movement and ignore
blinks, flicker, noise and sub-pixel drift?), not a substitute for real data. See docs/synthme.md.

    DIR/sub01/EP01_01/img1.jpg ...         frames (JPEG, fixed quality), numbered from 1 per clip
    DIR/SynthME-coding.xlsx                 CASME II-style coding spreadsheet
    DIR/ground_truth.csv                    one row per clip: class, AUs, amplitude, timing, region box
    DIR/ground_truth/<sub>_<clip>_region.png  where the expression moves (|d| > 10 % of its peak)
    DIR/ground_truth/subjects.csv, landmarks.csv  per-subject parameters and neutral landmarks
    DIR/checksums.sha256                    sha256 of every file above
    DIR/synthme.json                        generator version, parameters, class counts (written last)

Same seed, parameters and library versions -> byte-identical files (`fdpkit.synthme.files` writes
them; `clips` plans and renders each clip, `faces` the subjects, `motion` the expression fields).
"""

from __future__ import annotations

import math
import os
import shutil
import time
from pathlib import Path

from fdpkit.errors import BadInput
from fdpkit.io import check_writable_folder, pid_alive, read_json, sha256_file
from fdpkit.synthme import motion
from fdpkit.synthme.clips import DEFAULT_CLIPS_PER_SUBJECT, DEFAULT_SUBJECTS
from fdpkit.synthme.files import GENERATOR_VERSION, write_corpus


class SynthMEError(BadInput):
    """The parameters or the output folder cannot be used as asked (exit 2)."""


def _parameters(subjects, clips_per_subject, seed, intensity) -> dict:
    return {"subjects": subjects, "clips_per_subject": clips_per_subject, "seed": seed, "intensity": float(intensity)}


def _check_existing(out: Path, parameters: dict) -> str:
    """'same' (complete SynthME, same version and parameters), 'different' or 'foreign' (not a SynthME)."""
    meta_path = out / "synthme.json"
    if not meta_path.is_file():
        return "foreign"
    try:
        meta = read_json(meta_path)
    except (OSError, ValueError):
        return "different"
    if meta.get("generator_version") != GENERATOR_VERSION or meta.get("parameters") != parameters:
        return "different"
    sums_path = out / "checksums.sha256"
    if not sums_path.is_file() or sha256_file(sums_path) != meta.get("checksums_sha256"):
        return "different"
    for line in sums_path.read_text(encoding="utf-8").splitlines():
        digest, rel = line.split("  ", 1)
        path = out / rel
        if not path.is_file() or sha256_file(path) != digest:
            return "different"
    return "same"


def _remove_stale_partials(out: Path) -> None:
    """Remove `.NAME.partial-PID` folders left by killed runs (PID no longer running)."""
    prefix = f".{out.name}.partial-"
    for path in out.parent.glob(prefix + "*"):
        pid = path.name[len(prefix):]
        if path.is_dir() and pid.isdigit() and not pid_alive(int(pid)):
            shutil.rmtree(path, ignore_errors=True)


def generate_synthme(
    out_dir, subjects: int = DEFAULT_SUBJECTS, clips_per_subject: int | None = None, seed: int = 0,
    intensity: float = 1.0, force: bool = False, workers: int | None = None, progress: bool = False,
) -> dict:
    """Write SynthME into out_dir and return a summary dict (`status` = 'generated' | 'already present').

    An existing complete SynthME with the same version and parameters is left as is unless `force`;
    a different or incomplete one is an error without `force`. A non-empty folder that is not a
    SynthME is never deleted, even with `force`. Generation goes to `.NAME.partial-PID` beside out_dir
    and is renamed into place at the end, so a killed run never leaves a corpus that looks complete.
    `workers` (threads, default 2) changes speed only, never the output. `progress`: a tqdm bar
    over the clips (text in a terminal, a widget in Jupyter).
    """
    started = time.perf_counter()
    clips_per_subject = DEFAULT_CLIPS_PER_SUBJECT if clips_per_subject is None else clips_per_subject
    for name, value in (("subjects", subjects), ("clips_per_subject", clips_per_subject)):
        if int(value) != value or not 1 <= value <= 999:
            raise SynthMEError(f"{name} must be an integer in 1..999, got {value}")
    if int(seed) != seed or seed < 0:
        raise SynthMEError(f"seed must be a non-negative integer, got {seed}")
    if not (math.isfinite(intensity) and intensity >= 0):
        raise SynthMEError(f"intensity must be a finite number >= 0, got {intensity}")
    subjects, clips_per_subject, seed = int(subjects), int(clips_per_subject), int(seed)
    parameters = _parameters(subjects, clips_per_subject, seed, intensity)
    out = Path(out_dir).expanduser().resolve()
    summary = {"out_dir": str(out), "parameters": parameters}

    if out.exists() and not out.is_dir():
        raise SynthMEError(f"{out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        state = _check_existing(out, parameters)
        if state == "foreign":
            raise SynthMEError(
                f"{out} is not empty and is not a SynthME corpus (no synthme.json); not touching it"
                + (" even with --force" if force else "") + ": choose an empty or new folder"
            )
        if not force:
            if state == "same":
                meta = read_json(out / "synthme.json")
                return {**summary, "status": "already present", "class_counts": meta["class_counts"],
                        "n_subjects": meta["n_subjects"], "n_clips": meta["n_clips"], "n_frames": meta["n_frames"],
                        "seconds": time.perf_counter() - started}
            raise SynthMEError(
                f"{out} holds a SynthME corpus with other parameters or version, or an incomplete/modified one; "
                "use --force to regenerate it"
            )

    check_writable_folder(out.parent)   # before any work: a parent that is a file is exit 2, read-only 7
    _remove_stale_partials(out)
    tmp = out.parent / f".{out.name}.partial-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    old = None
    try:
        result = write_corpus(tmp, parameters, workers, progress)
        if out.exists():
            if any(out.iterdir()):
                old = out.parent / f".{out.name}.old-{os.getpid()}"
                os.rename(out, old)
            else:
                out.rmdir()
        os.rename(tmp, out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None and old.exists() and not out.exists():
            os.rename(old, out)  # put the previous corpus back
        raise
    return {**summary, "status": "generated", **result, "seconds": time.perf_counter() - started}


def run_cli(args) -> int:
    """`fdpkit synth`. Bad parameters or an --out that holds something else raise SynthMEError
    (BadInput: `fdpkit.cli.main` prints one line and exits 2)."""
    summary = generate_synthme(
        args.out, subjects=args.subjects, clips_per_subject=args.clips_per_subject, seed=args.seed,
        intensity=args.intensity, force=args.force, progress=True,
    )
    counts = ", ".join(f"{c} {summary['class_counts'][c]}" for c in motion.CLASSES if c in summary["class_counts"])
    print(
        f"SynthME {summary['status']}: {summary['out_dir']} ({summary['n_clips']} clips, {summary['n_frames']} frames; "
        f"{counts}) in {summary['seconds']:.1f} s"
    )
    return 0
