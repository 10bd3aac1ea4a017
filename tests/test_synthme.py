"""SynthME: the class signal is there, lives in the right facial region, is subtle, and is reproducible."""

from __future__ import annotations

import dataclasses
import hashlib
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from fdpkit.synthme import clips as C
from fdpkit.synthme import corpus as S
from fdpkit.synthme import faces as FA
from fdpkit.synthme import files as F
from fdpkit.synthme import motion as M
from fdpkit.data.preprocess.faces import detect_face, to_gray_uint8
from fdpkit.cli import main
from fdpkit.errors import BadInput
from fdpkit.io import read_json

SMALL = dict(subjects=3, clips_per_subject=3, seed=7)


def _hashes(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*")) if p.is_file()
    }


def _gray(path: Path) -> np.ndarray:
    return cv2.imread(str(path), cv2.IMREAD_GRAYSCALE).astype(np.float32)


def _mask(root: Path, row) -> np.ndarray:
    return cv2.imread(str(root / row.mask), cv2.IMREAD_GRAYSCALE) > 0


def _gt(root: Path) -> pd.DataFrame:
    return pd.read_csv(root / "ground_truth.csv", dtype={"subject": str})


@pytest.fixture(scope="module")
def corpora(tmp_path_factory):
    base = tmp_path_factory.mktemp("synthme")
    out = {}
    out["a"] = base / "a"
    out["summary"] = S.generate_synthme(out["a"], **SMALL, workers=2)
    out["b"] = base / "b"
    S.generate_synthme(out["b"], **SMALL, workers=1)
    out["zero"] = base / "zero"
    S.generate_synthme(out["zero"], **SMALL, intensity=0.0)
    return out


# --- planning and motion (no files) -------------------------------------------------------------


def test_class_counts_are_casme2_like():
    counts = C.planned_class_counts(192)
    assert sum(counts.values()) == 192
    assert max(counts, key=counts.get) == "others"
    assert counts == {"others": 77, "disgust": 48, "happiness": 25, "repression": 22, "surprise": 20}
    for n in (5, 9, 13, 60):
        small = C.planned_class_counts(n)
        assert sum(small.values()) == n and min(small.values()) >= 1


def test_plan_is_balanced_over_subjects_and_classes():
    specs = C.plan_corpus(16, 12, 0)
    df = pd.DataFrame([dataclasses.asdict(s) for s in specs])
    assert (df.groupby("subject").size() == 12).all()
    assert set(df.emotion) == set(M.CLASSES)
    assert (df.groupby("subject").emotion.nunique() >= 3).mean() > 0.8
    for s in specs:
        assert 1 < s.onset < s.apex < s.offset < s.n_frames
        assert C.MOVE_FRAMES[0] <= s.offset - s.onset + 1 <= C.MOVE_FRAMES[1]


def test_distractors_and_timing_carry_no_class_information():
    """The same clip slot planned as different classes gets identical timing, blink, drift and flicker."""
    plans = [C._plan_clip(np.random.default_rng([3, 2, 1, 4]), 1, 4, c) for c in M.CLASSES]
    keys = ("n_frames", "onset", "apex", "offset", "amplitude_factor", "side_weights", "blink", "drift", "gain")
    for p in plans[1:]:
        assert all(getattr(p, k) == getattr(plans[0], k) for k in keys)


@pytest.fixture(scope="module")
def subject():
    return FA.make_subject(0, 2)


@pytest.mark.parametrize("aus", sorted({a for v in M.CLASS_AUS.values() for a, _ in v}))
def test_displacement_peak_equals_amplitude(subject, aus):
    for amplitude in (0.0, 1.0, 3.5):
        field = M.displacement_field(subject.landmarks, aus, amplitude, subject.base.shape[:2], (0.8, 1.0))
        assert M.magnitude(field).max() == pytest.approx(amplitude, rel=1e-9, abs=1e-12)


def test_clip_amplitude_is_intensity_times_default(subject):
    specs = C.plan_corpus(2, 6, 0)
    for spec in specs:
        for intensity in (0.0, 0.5, 1.0, 2.0):
            field = C.expression_field(subject, spec, intensity)
            peak = M.magnitude(field).max()
            at_128 = peak * M.REFERENCE_FACE_WIDTH / subject.face_width
            lo, hi = C.AMPLITUDE_SPREAD
            default = intensity * C.DEFAULT_AMPLITUDE_PX
            assert default * lo - 1e-9 <= at_128 <= default * hi + 1e-9
        assert M.magnitude(C.expression_field(subject, spec, 0.0)).max() == 0.0


def test_global_drift_is_subpixel():
    for spec in C.plan_corpus(4, 6, 1):
        amplitude, fx, fy, px, py = spec.drift
        drift = M.drift_path(spec.n_frames, amplitude, (fx, fy), (px, py))
        assert np.hypot(*drift.T).max() < 0.5


def test_rendered_motion_matches_the_field(subject):
    """Noise-, drift- and blink-free rendering: optical flow onset -> apex ~ the displacement field."""
    quiet = dataclasses.replace(subject, noise_sd=0.0)
    for spec in C.plan_corpus(1, 4, 3)[:3]:
        spec = dataclasses.replace(spec, blink=None, drift=(0.0, 0.0, 0.0, 0.0, 0.0), gain=(1.0,) * spec.n_frames)
        frames = C.render_clip(quiet, spec, 1.0)
        a, b = to_gray_uint8(frames[spec.onset - 1]), to_gray_uint8(frames[spec.apex - 1])
        flow = cv2.calcOpticalFlowFarneback(a, b, None, 0.5, 3, 9, 5, 5, 1.1, 0).transpose(2, 0, 1)
        field = C.expression_field(quiet, spec)
        mag = M.magnitude(field)
        core = mag > 0.5 * mag.max()
        assert M.magnitude(flow)[core].mean() == pytest.approx(mag[core].mean(), rel=0.3)
        assert M.magnitude(flow)[mag < 0.05 * mag.max()].mean() < 0.1
        assert np.abs(frames[0].astype(int) - frames[-1].astype(int)).max() <= 1  # neutral lead-in == lead-out


def test_classes_move_different_regions(subject):
    shape = subject.base.shape[:2]
    main_au = {c: v[0][0] for c, v in M.CLASS_AUS.items()}
    fields = {c: M.displacement_field(subject.landmarks, a, 1.0, shape) for c, a in main_au.items()}
    for c1 in fields:
        for c2 in fields:
            if c1 < c2:
                f1, f2 = fields[c1], fields[c2]
                corr = (f1 * f2).sum() / np.sqrt((f1 * f1).sum() * (f2 * f2).sum())
                assert corr < 0.5, (c1, c2, corr)
    masks = {c: M.region_mask(subject.landmarks, a, shape) for c, a in main_au.items()}
    assert not (masks["happiness"] & masks["surprise"]).any()
    eyes_y = subject.landmarks[36:48, 1].mean()
    assert np.nonzero(masks["surprise"])[0].mean() < eyes_y < np.nonzero(masks["happiness"])[0].mean()


# --- the written corpus ------------------------------------------------------------------------


def test_layout_and_annotations(corpora):
    root = corpora["a"]
    gt = _gt(root)
    assert len(gt) == 9 and set(gt.emotion) == set(M.CLASSES)
    for row in gt.itertuples():
        folder = root / row.frame_dir
        assert folder.parent.name == f"sub{row.subject}"
        names = {p.name for p in folder.iterdir()}
        assert names == {f"img{k}.jpg" for k in range(1, row.n_frames + 1)}
        assert 1 < row.onset < row.apex < row.offset < row.n_frames
        mask = _mask(root, row)
        ys, xs = np.nonzero(mask)
        assert (row.bbox_x0, row.bbox_y0, row.bbox_x1, row.bbox_y1) == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
        image = cv2.imread(str(folder / "img1.jpg"))
        assert image.shape == (FA.FRAME_SIZE, FA.FRAME_SIZE, 3)
    meta = read_json(root / "synthme.json")
    assert meta["parameters"] == {"subjects": 3, "clips_per_subject": 3, "seed": 7, "intensity": 1.0}
    assert meta["class_counts"] == gt.emotion.value_counts().to_dict()
    assert meta["n_frames"] == gt.n_frames.sum()


def test_spreadsheet_matches_casme2_columns(corpora):
    root = corpora["a"]
    sheet = pd.read_excel(root / F.SPREADSHEET)
    assert list(sheet.columns) == [
        "Subject", "Filename", "Unnamed: 2", "OnsetFrame", "ApexFrame", "OffsetFrame", "Unnamed: 6",
        "Action Units", "Estimated Emotion",
    ]
    assert sheet["Unnamed: 2"].isna().all() and sheet["Unnamed: 6"].isna().all()
    assert pd.api.types.is_integer_dtype(sheet["Subject"])
    gt = _gt(root)
    assert [f"sub{s:02d}/{f}" for s, f in zip(sheet.Subject, sheet.Filename)] == list(gt.frame_dir)
    assert list(sheet.OnsetFrame) == list(gt.onset) and list(sheet.ApexFrame) == list(gt.apex)
    assert list(sheet.OffsetFrame) == list(gt.offset)
    assert [str(a) for a in sheet["Action Units"]] == list(gt.aus.astype(str))
    assert set(sheet["Estimated Emotion"]) <= set(M.CLASSES)
    with zipfile.ZipFile(root / F.SPREADSHEET) as z:
        assert {i.date_time for i in z.infolist()} == {(1980, 1, 1, 0, 0, 0)}
        core = z.read("docProps/core.xml").decode()
    assert core.count(F._FIXED_TIME) == 2


def test_deterministic_byte_identical(corpora):
    a, b = _hashes(corpora["a"]), _hashes(corpora["b"])
    assert a == b and len(a) > 9 * 12


def test_apex_difference_concentrates_in_the_class_region(corpora):
    root = corpora["a"]
    ratios = []
    for row in _gt(root).itertuples():
        folder, mask = root / row.frame_dir, _mask(root, row)
        diff = np.abs(_gray(folder / f"img{row.apex}.jpg") - _gray(folder / f"img{row.onset}.jpg"))
        ratios.append(diff[mask].mean() / diff[~mask].mean())
    assert min(ratios) > 1.3 and np.mean(ratios) > 2.5, ratios


def test_intensity_zero_has_no_class_motion(corpora):
    one, zero = corpora["a"], corpora["zero"]
    gt0 = _gt(zero)
    assert (gt0.amplitude_px == 0).all()
    assert gt0.drop(columns=["amplitude_px", "amplitude_px_at_128"]).equals(
        _gt(one).drop(columns=["amplitude_px", "amplitude_px_at_128"]))
    ratio0, ratio1 = [], []
    for row in gt0.itertuples():
        mask = _mask(zero, row)
        apex0, apex1 = (_gray(r / row.frame_dir / f"img{row.apex}.jpg") for r in (zero, one))
        change = np.abs(apex1 - apex0)  # same subject, same distractors and noise: only the class motion differs
        assert change[mask].mean() > 5 * change[~mask].mean()
        onset0, onset1 = (_gray(r / row.frame_dir / f"img{row.onset}.jpg") for r in (zero, one))
        for onset, apex, out in ((onset0, apex0, ratio0), (onset1, apex1, ratio1)):
            diff = np.abs(apex - onset)
            out.append(diff[mask].mean() / diff[~mask].mean())
        # Distractors alone: no region-specific difference. Textured regions (eyes, lips) pick up a
        # little more drift/noise difference than flat skin; a blink can touch eyelid and brow regions.
        if row.blink_frame == 0:
            assert ratio0[-1] < 2.2
            assert ratio1[-1] > 1.3 * ratio0[-1]
    assert np.mean(ratio0) < 1.8 and np.mean(ratio1) > 1.5 * np.mean(ratio0)


def test_dlib_finds_the_face_in_onset_and_apex_frames(corpora):
    root = corpora["a"]
    landmarks = pd.read_csv(root / "ground_truth" / "landmarks.csv", dtype={"subject": str})
    for row in _gt(root).itertuples():
        for frame in (row.onset, row.apex):
            gray = to_gray_uint8(cv2.imread(str(root / row.frame_dir / f"img{frame}.jpg"))[..., ::-1])
            rect = detect_face(gray, 0)
            assert rect is not None, (row.frame_dir, frame)
            lm = landmarks[landmarks.subject == row.subject]
            cx, cy = lm.x.mean(), lm.y.mean()
            assert rect.left() < cx < rect.right() and rect.top() < cy < rect.bottom()
            assert 0.7 * row.face_width_px < rect.width() < 1.3 * row.face_width_px


# --- output folder handling --------------------------------------------------------------------


def test_existing_folder_rules(tmp_path, capsys):
    out = tmp_path / "corpus"
    tiny = ["--subjects", "1", "--clips-per-subject", "2", "--seed", "5"]
    assert main(["synth", "--out", str(out), *tiny]) == 0
    before = _hashes(out)
    assert main(["synth", "--out", str(out), *tiny]) == 0
    assert "already present" in capsys.readouterr().out
    assert _hashes(out) == before
    assert main(["synth", "--out", str(out), "--subjects", "1", "--clips-per-subject", "2", "--seed", "6"]) == 2
    assert "--force" in capsys.readouterr().err
    victim = next(out.rglob("img3.jpg"))
    victim.write_bytes(b"not a jpeg")
    assert main(["synth", "--out", str(out), *tiny]) == 2  # modified -> not "already present"
    assert main(["synth", "--out", str(out), *tiny, "--force"]) == 0
    assert _hashes(out) == before
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    assert main(["synth", "--out", str(foreign), *tiny, "--force"]) == 2
    assert (foreign / "notes.txt").read_text() == "keep me"
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["synth", "--out", str(empty), *tiny]) == 0 and (empty / "synthme.json").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_killed_run_leaves_no_corpus(tmp_path, monkeypatch):
    calls = []

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) > 1:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    original = F._write_clip
    monkeypatch.setattr(F, "_write_clip", failing)
    with pytest.raises(KeyboardInterrupt):
        S.generate_synthme(tmp_path / "c", subjects=1, clips_per_subject=3, workers=1)
    assert list(tmp_path.iterdir()) == []


def test_rejects_bad_parameters(tmp_path):
    for kwargs in ({"subjects": 0}, {"clips_per_subject": -1}, {"intensity": -1.0}, {"intensity": float("nan")},
                   {"seed": -3}):
        with pytest.raises(S.SynthMEError):
            S.generate_synthme(tmp_path / "x", **kwargs)


def test_bad_out_and_bad_parameters_are_one_line_and_exit_2(tmp_path, capsys):
    """Every bad input of `fdpkit synth` is exit 2 (fdpkit.errors) in one line naming what to change;
    an --out below a file was an OSError (exit 7) before."""
    (tmp_path / "notes.txt").write_text("keep")
    cases = [(["--out", str(tmp_path / "notes.txt" / "corpus")], f"{tmp_path / 'notes.txt'} is a file, not a folder"),
             (["--out", str(tmp_path / "notes.txt")], "exists and is not a folder"),
             (["--out", str(tmp_path / "c"), "--subjects", "0"], "subjects must be an integer in 1..999, got 0"),
             (["--out", str(tmp_path / "c"), "--intensity", "nan"], "intensity must be a finite number >= 0, got nan")]
    for args, message in cases:
        assert main(["synth", *args]) == 2, args
        err = capsys.readouterr().err
        assert err.startswith("fdpkit synth: ") and message in err and err.count("\n") == 1, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]
    assert issubclass(S.SynthMEError, BadInput)
