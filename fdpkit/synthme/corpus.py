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

Same seed, parameters and library versions -> byte-identical files.
"""

from __future__ import annotations

import datetime
import io
import math
import os
import re
import shutil
import sys
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from fdpkit.errors import EXIT_BAD_INPUT
from fdpkit.synthme import motion as motion
from fdpkit.synthme.clips import (  # noqa: F401  (re-exported: the public API lives here)
    AMPLITUDE_SPREAD, APEX_POSITION, BLINK_AMPLITUDE_PX, BLINK_HALF_WIDTH, BLINK_PROBABILITY,
    DEFAULT_AMPLITUDE_PX, DEFAULT_CLIPS_PER_SUBJECT, DEFAULT_SUBJECTS, DRIFT_AMPLITUDE_PX, FLICKER_AMPLITUDE,
    FLICKER_JITTER_SD, LEAD_FRAMES, MOVE_FRAMES, ClipSpec, _plan_clip, class_counts, clip_amplitude, clip_motion,
    expression_field, plan_corpus, region_mask, render_clip,
)
from fdpkit.synthme.faces import FRAME_SIZE, Subject, make_subject, render_frames  # noqa: F401
from fdpkit.io import read_json, sha256_bytes, sha256_file, write_bytes, write_json, write_text

GENERATOR_VERSION = "1"
JPEG_QUALITY = 90
SPREADSHEET = "SynthME-coding.xlsx"
SPREADSHEET_COLUMNS = (
    "Subject", "Filename", None, "OnsetFrame", "ApexFrame", "OffsetFrame", None, "Action Units", "Estimated Emotion",
)
_FIXED_TIME = "2014-05-08T00:00:00Z"  # docProps/core.xml created/modified
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)


class SynthMEError(RuntimeError):
    """The output folder cannot be used as asked."""


# --- writing ----------------------------------------------------------------------------------------


def _encode(image: np.ndarray, ext: str) -> bytes:
    import cv2

    params = [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY] if ext == ".jpg" else [cv2.IMWRITE_PNG_COMPRESSION, 9]
    if image.ndim == 3:
        image = image[..., ::-1]  # RGB -> BGR
    ok, buffer = cv2.imencode(ext, np.ascontiguousarray(image), params)
    if not ok:
        raise RuntimeError(f"cv2.imencode({ext}) failed")
    return buffer.tobytes()


def _write_clip(root: Path, subject: Subject, spec: ClipSpec, intensity: float, seed: int) -> dict:
    sums = {}
    rng = np.random.default_rng([seed, 3, spec.subject, spec.index])
    motion_ = clip_motion(subject, spec, intensity)
    for number, frame in enumerate(render_frames(subject, motion_, rng), start=1):
        data = _encode(frame, ".jpg")
        rel = f"{spec.frame_dir}/img{number}.jpg"
        write_bytes(root / rel, data)
        sums[rel] = sha256_bytes(data)
    mask = region_mask(subject, spec)
    rel = f"ground_truth/sub{spec.subject_id}_{spec.clip}_region.png"
    data = _encode(mask.astype(np.uint8) * 255, ".png")
    write_bytes(root / rel, data)
    sums[rel] = sha256_bytes(data)
    x0, y0, x1, y1 = motion.mask_bbox(mask)
    amplitude = clip_amplitude(subject, spec, intensity)
    peak_drift = float(np.hypot(*motion_.drift.T).max())
    scale = subject.face_width / motion.REFERENCE_FACE_WIDTH
    row = {
        "subject": spec.subject_id, "clip": spec.clip, "frame_dir": spec.frame_dir, "emotion": spec.emotion,
        "aus": spec.aus, "amplitude_px": round(amplitude, 4),
        "amplitude_px_at_128": round(intensity * DEFAULT_AMPLITUDE_PX * spec.amplitude_factor, 4),
        "onset": spec.onset, "apex": spec.apex, "offset": spec.offset, "n_frames": spec.n_frames,
        "region": motion.region_name(spec.aus), "bbox_x0": x0, "bbox_y0": y0, "bbox_x1": x1, "bbox_y1": y1,
        "mask": rel, "face_width_px": round(subject.face_width, 2),
        "blink_frame": round(spec.blink[0], 2) if spec.blink else 0,
        "blink_amplitude_px": round(spec.blink[2] * scale, 4) if spec.blink else 0.0,
        "drift_max_px": round(peak_drift, 4), "noise_sd": round(subject.noise_sd, 4),
    }
    return {"sums": sums, "row": row}


def spreadsheet_bytes(rows: list[dict]) -> bytes:
    """CASME II-style coding sheet, byte-deterministic (fixed document times and zip entry times).

    Quirk kept from CASME II: a single action unit is stored as a number (12), several as text ("6+12")."""
    import openpyxl

    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "Sheet1"
    ws.append(list(SPREADSHEET_COLUMNS))
    for r in rows:
        aus = int(r["aus"]) if r["aus"].isdigit() else r["aus"]
        ws.append([int(r["subject"]), r["clip"], None, r["onset"], r["apex"], r["offset"], None, aus, r["emotion"]])
    fixed = datetime.datetime(2014, 5, 8)
    wb.properties.created = fixed
    wb.properties.modified = fixed
    wb.properties.creator = "fdpkit synthme"
    buffer = io.BytesIO()
    wb.save(buffer)
    return _normalise_zip(buffer.getvalue())


def _normalise_zip(data: bytes) -> bytes:
    """Rewrite an xlsx with fixed entry times and fixed core-property times (openpyxl stamps `now`)."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as zin, zipfile.ZipFile(out, "w") as zout:
        for info in zin.infolist():
            content = zin.read(info.filename)
            if info.filename == "docProps/core.xml":
                text = content.decode("utf-8")
                for tag in ("created", "modified"):
                    text = re.sub(rf"(<dcterms:{tag}[^>]*>)[^<]*(</dcterms:{tag}>)", rf"\g<1>{_FIXED_TIME}\g<2>", text)
                content = text.encode("utf-8")
            entry = zipfile.ZipInfo(info.filename, date_time=_ZIP_TIME)
            entry.compress_type = zipfile.ZIP_DEFLATED
            entry.create_system = 0
            entry.external_attr = 0
            zout.writestr(entry, content)
    return out.getvalue()


def _parameters(subjects, clips_per_subject, seed, intensity) -> dict:
    return {"subjects": subjects, "clips_per_subject": clips_per_subject, "seed": seed, "intensity": float(intensity)}


def _settings() -> dict:
    return {
        "source_image": "skimage.data.astronaut", "frame_size": FRAME_SIZE, "face_width_px": 128,
        "default_amplitude_px_at_128": DEFAULT_AMPLITUDE_PX, "amplitude_spread": list(AMPLITUDE_SPREAD),
        "move_frames": list(MOVE_FRAMES), "lead_frames": list(LEAD_FRAMES), "apex_position": list(APEX_POSITION),
        "blink_probability": BLINK_PROBABILITY, "blink_amplitude_px_at_128": list(BLINK_AMPLITUDE_PX),
        "drift_amplitude_px_per_axis": list(DRIFT_AMPLITUDE_PX), "flicker_amplitude": list(FLICKER_AMPLITUDE),
        "flicker_jitter_sd": FLICKER_JITTER_SD, "noise_sd": [1.5, 4.0], "jpeg_quality": JPEG_QUALITY,
        "region_threshold": motion.REGION_THRESHOLD, "class_frequencies": dict(motion.CLASS_FREQUENCIES),
        "class_aus": {c: dict(v) for c, v in motion.CLASS_AUS.items()},
    }


def _library_versions() -> dict:
    """Byte-identity holds for the same versions of these (JPEG/zlib encoders, dlib landmarks)."""
    import cv2
    import dlib
    import openpyxl
    import skimage

    return {"numpy": np.__version__, "opencv": cv2.__version__, "openpyxl": openpyxl.__version__,
            "dlib": dlib.__version__, "scikit-image": skimage.__version__}


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


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_stale_partials(out: Path) -> None:
    """Remove `.NAME.partial-PID` folders left by killed runs (PID no longer running)."""
    prefix = f".{out.name}.partial-"
    for path in out.parent.glob(prefix + "*"):
        pid = path.name[len(prefix):]
        if path.is_dir() and pid.isdigit() and not _pid_alive(int(pid)):
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

    out.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_partials(out)
    tmp = out.parent / f".{out.name}.partial-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    old = None
    try:
        result = _generate_into(tmp, parameters, workers, progress)
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


def _generate_into(root: Path, parameters: dict, workers: int | None, progress: bool = False) -> dict:
    from tqdm.auto import tqdm

    seed, intensity = parameters["seed"], parameters["intensity"]
    specs = plan_corpus(parameters["subjects"], parameters["clips_per_subject"], seed)
    subjects = [make_subject(seed, s) for s in range(parameters["subjects"])]
    workers = 2 if workers is None else max(1, int(workers))
    with tqdm(total=len(specs), desc="SynthME", unit="clip", disable=not progress) as bar:
        if workers == 1:
            results = []
            for sp in specs:
                results.append(_write_clip(root, subjects[sp.subject], sp, intensity, seed))
                bar.update(1)
        else:  # clips are independent (own random streams), so threads change speed only
            pool = ThreadPoolExecutor(max_workers=workers)
            try:
                futures = [pool.submit(_write_clip, root, subjects[sp.subject], sp, intensity, seed) for sp in specs]
                for future in futures:
                    future.add_done_callback(lambda _f: bar.update(1))
                results = [future.result() for future in futures]
            finally:  # on an error or Ctrl-C, drop the queued clips instead of rendering them all
                pool.shutdown(wait=True, cancel_futures=True)
    import pandas as pd

    sums: dict[str, str] = {}
    for r in results:
        sums.update(r["sums"])
    rows = [r["row"] for r in results]

    def put(rel: str, data: bytes) -> None:
        write_bytes(root / rel, data)
        sums[rel] = sha256_bytes(data)

    put("ground_truth.csv", pd.DataFrame(rows).to_csv(index=False, lineterminator="\n").encode("utf-8"))
    subject_rows = [{"subject": f"{s.index + 1:02d}", "face_width_px": round(s.face_width, 2),
                     "noise_sd": round(s.noise_sd, 4), **s.params} for s in subjects]
    put("ground_truth/subjects.csv", pd.DataFrame(subject_rows).to_csv(index=False, lineterminator="\n").encode())
    landmark_rows = [{"subject": f"{s.index + 1:02d}", "point": k, "x": round(float(x), 3), "y": round(float(y), 3)}
                     for s in subjects for k, (x, y) in enumerate(s.landmarks)]
    put("ground_truth/landmarks.csv", pd.DataFrame(landmark_rows).to_csv(index=False, lineterminator="\n").encode())
    put(SPREADSHEET, spreadsheet_bytes(rows))
    checksums = "".join(f"{sums[rel]}  {rel}\n" for rel in sorted(sums))
    write_text(root / "checksums.sha256", checksums)
    counts = {c: sum(sp.emotion == c for sp in specs) for c in motion.CLASSES}
    n_frames = sum(sp.n_frames for sp in specs)
    from fdpkit import __version__

    write_json(root / "synthme.json", {
        "generator": "fdpkit.synthme.corpus", "generator_version": GENERATOR_VERSION, "fdpkit_version": __version__,
        "parameters": parameters, "settings": _settings(), "library_versions": _library_versions(),
        "class_counts": counts, "n_subjects": len(subjects), "n_clips": len(specs), "n_frames": n_frames,
        "n_files": len(sums) + 2, "checksums_sha256": sha256_bytes(checksums.encode("utf-8")),
        "spreadsheet": SPREADSHEET, "ground_truth": "ground_truth.csv",
        "note": "synthetic check of motion sensitivity; not a substitute for real micro-expression data",
    })
    return {"class_counts": counts, "n_subjects": len(subjects), "n_clips": len(specs), "n_frames": n_frames}


def run_cli(args) -> int:
    try:
        summary = generate_synthme(
            args.out, subjects=args.subjects, clips_per_subject=args.clips_per_subject, seed=args.seed,
            intensity=args.intensity, force=args.force, progress=True,
        )
    except SynthMEError as error:  # an --out that holds something else: bad input
        print(f"fdpkit synth: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    counts = ", ".join(f"{c} {summary['class_counts'][c]}" for c in motion.CLASSES if c in summary["class_counts"])
    print(
        f"SynthME {summary['status']}: {summary['out_dir']} ({summary['n_clips']} clips, {summary['n_frames']} frames; "
        f"{counts}) in {summary['seconds']:.1f} s"
    )
    return 0
