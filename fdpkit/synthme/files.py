"""The files of one SynthME, written into a folder: JPEG frames, region masks, ground truth, the
CASME II-style coding spreadsheet, checksums and `synthme.json` (the layout: `fdpkit.synthme.corpus`).

Same seed, parameters and library versions -> byte-identical files: the encoders' settings are fixed
and the spreadsheet's zip entries and document times are normalised.
"""

from __future__ import annotations

import datetime
import io
import re
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import dlib
import numpy as np
import openpyxl
import pandas as pd
import skimage
from tqdm.auto import tqdm

from fdpkit import __version__
from fdpkit.io import sha256_bytes, write_bytes, write_json, write_text
from fdpkit.synthme import motion
from fdpkit.synthme.clips import (AMPLITUDE_SPREAD, APEX_POSITION, BLINK_AMPLITUDE_PX, BLINK_PROBABILITY,
                                  DEFAULT_AMPLITUDE_PX, DRIFT_AMPLITUDE_PX, FLICKER_AMPLITUDE, FLICKER_JITTER_SD,
                                  LEAD_FRAMES, MOVE_FRAMES, ClipSpec, clip_amplitude, clip_motion, plan_corpus,
                                  clip_region_mask)
from fdpkit.synthme.faces import FRAME_SIZE, Subject, make_subject, render_frames

GENERATOR_VERSION = "1"
JPEG_QUALITY = 90
SPREADSHEET = "SynthME-coding.xlsx"
SPREADSHEET_COLUMNS = (
    "Subject", "Filename", None, "OnsetFrame", "ApexFrame", "OffsetFrame", None, "Action Units", "Estimated Emotion",
)
_FIXED_TIME = "2014-05-08T00:00:00Z"  # docProps/core.xml created/modified
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)


def write_corpus(root: Path, parameters: dict, workers: int | None, progress: bool = False) -> dict:
    """Every file of one SynthME into the empty folder `root`; synthme.json last. Returns the counts."""
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
    write_json(root / "synthme.json", {
        "generator": "fdpkit.synthme.corpus", "generator_version": GENERATOR_VERSION, "fdpkit_version": __version__,
        "parameters": parameters, "settings": _settings(), "library_versions": _library_versions(),
        "class_counts": counts, "n_subjects": len(subjects), "n_clips": len(specs), "n_frames": n_frames,
        "n_files": len(sums) + 2, "checksums_sha256": sha256_bytes(checksums.encode("utf-8")),
        "spreadsheet": SPREADSHEET, "ground_truth": "ground_truth.csv",
        "note": "synthetic check of motion sensitivity; not a substitute for real micro-expression data",
    })
    return {"class_counts": counts, "n_subjects": len(subjects), "n_clips": len(specs), "n_frames": n_frames}


def _encode(image: np.ndarray, ext: str) -> bytes:
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
    mask = clip_region_mask(subject, spec)
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
    return {"numpy": np.__version__, "opencv": cv2.__version__, "openpyxl": openpyxl.__version__,
            "dlib": dlib.__version__, "scikit-image": skimage.__version__}
