"""Builders and helpers of the fault matrix (docs/reliability.md); fixtures are in conftest.py.

Everything is written at test time into pytest's temp folders:

* real-face frames cropped from `skimage.data.astronaut()` (dlib finds the face), written as a
  CASME II-style folder, with one fault injected per clip;
* tiny CASME II / SAMM annotation spreadsheets (4x4 frames: manifests never look inside them);
* a small SynthME (2 subjects x 2 clips), generated once per session, its manifest and a reference
  preprocessing run (the "uninterrupted, single-process" result the kill and concurrency tests
  compare against);
* a toy cache (random clips written straight in the npz format) for the run faults, so training
  tests do not need dlib.

The image, spreadsheet and toy-cache writers shared with the unit tests live in tests/ and are
re-exported here (`encode`, `manifest_row`, `write_manifest_csv`, `make_toy_cache`, ...).
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
from skimage import data as skdata

# tests/ has no package __init__: put it on the path, as the unit tests do, for the shared helpers
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fixtures_vendor import CASME2_HEADER, SAMM_HEADER, TINY_IMAGES, encode  # noqa: E402, F401 - re-exported
from fixtures_vendor import make_casme2 as make_vendor_casme2  # noqa: E402
from fixtures_vendor import write_xlsx as write_workbook  # noqa: E402
from toycache import make_toy_cache, manifest_row, write_manifest_csv  # noqa: E402, F401 - re-exported

REPO = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
ASTRONAUT_BGR = np.ascontiguousarray(skdata.astronaut()[..., ::-1])
PREPROCESS = dict(frames=8, size=32)          # small clips: fast, still aligned by dlib
SYNTH = dict(subjects=2, clips_per_subject=2, seed=0)


# ---------------------------------------------------------------------------------- images
def face(dx: int = 0, dy: int = 0, height: int = 240, width: int = 230) -> np.ndarray:
    """A BGR crop around the astronaut's face (dlib detects it); (dx, dy) shifts the crop."""
    return np.ascontiguousarray(ASTRONAUT_BGR[20 + dy:20 + dy + height, 110 + dx:110 + dx + width])


def blank(height: int = 240, width: int = 230) -> np.ndarray:
    return np.full((height, width, 3), 128, np.uint8)


def write_frames(folder: Path, frames, first: int = 1, name: str = "img{}.jpg") -> list[int]:
    """Frames (arrays, encoded as the name's extension, or raw bytes) as folder/img<n>.jpg."""
    folder.mkdir(parents=True, exist_ok=True)
    numbers = list(range(first, first + len(frames)))
    for number, frame in zip(numbers, frames):
        path = folder / name.format(number)
        path.write_bytes(frame if isinstance(frame, bytes) else encode(frame, path.suffix.lower()))
    return numbers


# ---------------------------------------------------------------------------------- spreadsheets
def write_xlsx(path: Path, rows, title: str = "Sheet1") -> Path:
    """A one-sheet workbook."""
    return write_workbook(path, {title: rows})


TINY = TINY_IMAGES[".jpg"]  # the frames make_casme2 writes
CASME2_ROWS = [  # subject, clip, onset, apex, offset, aus, emotion
    (1, "EP02_01f", 10, 14, 20, "12", "happiness"),
    (1, "EP03_02", 5, 8, 12, "4+9", "disgust"),
    (2, "EP01_11f", 3, 6, 9, "14", "repression"),
    (2, "EP06_01f", 4, 7, 11, "1+2", "surprise"),
    (3, "EP08_04", 2, 5, 8, "4", "others"),
]


# the vendor-test corpus builder with this file's rows (every apex annotated, all in the protocol)
make_casme2 = functools.partial(make_vendor_casme2, rows=CASME2_ROWS)


def make_samm_sheet(path: Path) -> Path:
    rows = [["SAMM: Spontaneous Micro-Facial Movement Dataset"], [], SAMM_HEADER]
    for s, c, on, ap, off, emo in [(6, "006_1_2", 101, 105, 110, "Happiness"), (6, "006_1_3", 201, 204, 208, "Anger"),
                                   (7, "007_3_1", 51, 55, 60, "Contempt"), (7, "007_5_2", 31, 33, 36, "Surprise")]:
        rows.append([s, c, 1, on, ap, off, off - on + 1, "Micro - 1/2", "12", None, emo, 1])
    return write_xlsx(path, rows, "FACS codes")


RUN = dict(preset="tiny", steps=6, batch_size=4, progress=False, verbose=False,
           overrides={"checkpoint_every": 2, "log_every": 1})
CLI_RUN = ["--preset", "tiny", "--steps", "6", "--batch-size", "4", "--set", "checkpoint_every=2",
           "--set", "log_every=1", "--jobs", "1"]  # in this process: the faults are monkeypatched in


# ---------------------------------------------------------------------------------- helpers
def child_env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def run_python(code: str, timeout: float = 240) -> subprocess.CompletedProcess:
    """Run a Python snippet in a fresh interpreter (for kill tests)."""
    return subprocess.run([PYTHON, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=timeout, env=child_env(), cwd=str(REPO))


def fdpkit_cmd(*args: str) -> list[str]:
    return [PYTHON, "-m", "fdpkit", *map(str, args)]


def temp_files(folder: Path) -> list[Path]:
    """fdpkit's in-flight/leftover temp files under folder."""
    return [p for p in Path(folder).rglob(".*") if ".tmp" in p.name]


def cache_state(cache: Path) -> dict:
    """What must be equal between two preprocessing runs: npz bytes by name, index.csv and the
    report without its `cached` column (which says whether this run made or reused a file)."""
    report = pd.read_csv(cache / "preprocess_report.csv", dtype=str, keep_default_na=False)
    return {
        "npz": {p.name: p.read_bytes() for p in sorted(cache.glob("*.npz"))},
        "index": (cache / "index.csv").read_bytes(),
        "report": report.drop(columns=["cached"]).to_csv(index=False),
    }


def read_only(monkeypatch, folder: Path) -> None:
    """Make creating anything in `folder` (or below it) fail with EACCES, as the kernel answers a
    non-root user for a mode-0555 folder. Patched at os.open / os.mkdir rather than by chmod
    because the tests may run as root, whom permissions do not stop."""
    import errno

    top = os.path.realpath(folder)
    real_open, real_mkdir = os.open, os.mkdir
    tmpfile = getattr(os, "O_TMPFILE", 0)

    def inside(path) -> bool:
        real = os.path.realpath(os.fspath(path))
        return real == top or real.startswith(top + os.sep)

    def refuse(path):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), os.fspath(path))

    def fake_open(path, flags, *args, **kwargs):
        creates = flags & os.O_CREAT or (tmpfile and flags & tmpfile == tmpfile)
        if creates and inside(os.path.dirname(os.fspath(path)) if flags & os.O_CREAT else path):
            refuse(path)
        return real_open(path, flags, *args, **kwargs)

    def fake_mkdir(path, *args, **kwargs):
        if inside(os.path.dirname(os.path.abspath(os.fspath(path)))) and not os.path.isdir(path):
            refuse(path)
        return real_mkdir(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", fake_open)
    monkeypatch.setattr(os, "mkdir", fake_mkdir)
