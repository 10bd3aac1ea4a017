"""The common manifest: one row per clip, the same columns for every corpus (docs/architecture.md)."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import pandas as pd

from fdpkit import __version__
from fdpkit.errors import BadInput
from fdpkit.io import CorruptFileError, read_json, sha256_bytes, write_json, write_text

COLUMNS = (
    "dataset", "subject", "subject_uid", "clip", "clip_uid", "root", "frame_dir",
    "first_frame", "last_frame", "n_frames", "onset", "apex", "offset", "apex_estimated",
    "emotion", "label", "aus", "fixes", "notes",
)
OPTIONAL_COLUMNS = ("notes",)   # absent from manifests written before it existed: read as empty
INT_COLUMNS = ("first_frame", "last_frame", "n_frames", "onset", "apex", "offset")
STR_COLUMNS = tuple(c for c in COLUMNS if c not in INT_COLUMNS and c != "apex_estimated")


class ManifestError(BadInput):
    """A manifest (or the rows that would make one) breaks the schema; the message names the rows (exit 2)."""


@dataclass
class Manifest:
    rows: pd.DataFrame
    protocol: str
    classes: list[str]
    summary: dict = field(default_factory=dict)

    @property
    def sha256(self) -> str:
        return manifest_hash(self.rows)

    def class_index(self) -> dict[str, int]:
        return {name: i for i, name in enumerate(self.classes)}


def row_name(row) -> str:
    """How errors name a row: subject and clip, as the annotation spreadsheet has them."""
    return f"{row.get('dataset', '?')} subject {row.get('subject', '?')} clip {row.get('clip', '?')}"


def normalise(rows: pd.DataFrame) -> pd.DataFrame:
    """Columns in schema order with schema types; raises ManifestError on missing columns or bad values."""
    missing = [c for c in COLUMNS if c not in rows.columns and c not in OPTIONAL_COLUMNS]
    if missing:
        raise ManifestError(f"manifest is missing columns: {', '.join(missing)}")
    rows = rows.assign(**{c: "" for c in OPTIONAL_COLUMNS if c not in rows.columns})
    out = rows.loc[:, list(COLUMNS)].copy()
    for column in INT_COLUMNS:
        numeric = pd.to_numeric(out[column], errors="coerce")
        bad = numeric.isna() | (numeric != numeric.round())
        if bad.any():
            i = int(bad.to_numpy().nonzero()[0][0])
            raise ManifestError(
                f"{row_name(out.iloc[i])}: column {column} must be a whole number, got {out[column].iloc[i]!r}"
            )
        out[column] = numeric.astype("int64")
    for column in STR_COLUMNS:
        out[column] = out[column].astype(object).fillna("").astype(str)
    out["apex_estimated"] = out["apex_estimated"].map(_as_bool)
    return out.reset_index(drop=True)


def _as_bool(value) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes")
    return bool(value) if pd.notna(value) else False


def row_problems(row, classes: list[str] | None = None) -> list[str]:
    """Schema problems of one normalised row (no file system access)."""
    problems = frame_dir_problems(row["frame_dir"])
    if not Path(str(row["root"])).is_absolute():
        problems.append(f"root {row['root']!r} is not an absolute path")
    if row["first_frame"] > row["last_frame"]:
        problems.append(f"first_frame {row['first_frame']} is after last_frame {row['last_frame']}")
    elif row["n_frames"] > row["last_frame"] - row["first_frame"] + 1:
        problems.append(f"n_frames {row['n_frames']} is more than the frame numbers "
                        f"{row['first_frame']}..{row['last_frame']} allow")
    if not (row["onset"] <= row["apex"] <= row["offset"]):
        problems.append(
            f"onset/apex/offset out of order: {row['onset']}/{row['apex']}/{row['offset']}"
        )
    if row["onset"] < row["first_frame"] or row["offset"] > row["last_frame"]:
        problems.append(
            f"onset..offset {row['onset']}..{row['offset']} outside the frames on disk "
            f"{row['first_frame']}..{row['last_frame']}"
        )
    if row["n_frames"] < 1:
        problems.append("no frames on disk")
    if classes is not None and row["label"] not in classes:
        problems.append(f"label {row['label']!r} is not a class of the protocol {classes}")
    if row["clip_uid"] != f"{row['dataset']}/{row['subject']}/{row['clip']}":
        problems.append(f"clip_uid {row['clip_uid']!r} does not match dataset/subject/clip")
    if row["subject_uid"] != f"{row['dataset']}/{row['subject']}":
        problems.append(f"subject_uid {row['subject_uid']!r} does not match dataset/subject")
    return problems


_DRIVE = re.compile(r"^[A-Za-z]:")


def frame_dir_problems(frame_dir) -> list[str]:
    """Why a frame_dir is not a plain path under the dataset root (absolute, `..`, a drive)."""
    text = str(frame_dir)
    posix = PurePosixPath(text.replace("\\", "/"))
    if posix.is_absolute() or Path(text).is_absolute() or _DRIVE.match(text):
        return [f"frame_dir {text!r} is absolute; it must be relative to root"]
    if ".." in posix.parts:
        return [f"frame_dir {text!r} escapes the dataset root"]
    return []


def frame_folder(row) -> Path:
    """The clip's frame folder, `root / frame_dir`, after checking that it stays under root once
    resolved (`..`, absolute paths and symlinks pointing out of the root are refused).
    Raises ManifestError naming the row; does not require the folder to exist."""
    problems = frame_dir_problems(row["frame_dir"])
    root = Path(str(row["root"]))
    if not problems and not root.is_absolute():
        problems = [f"root {str(root)!r} is not an absolute path"]
    if problems:
        raise ManifestError(f"{row_name(row)}: {problems[0]}")
    folder = root / str(row["frame_dir"]).replace("\\", "/")
    real_root, real = Path(os.path.realpath(root)), Path(os.path.realpath(folder))
    if real != real_root and real_root not in real.parents:
        raise ManifestError(f"{row_name(row)}: frame folder {folder} resolves to {real}, outside the "
                            f"dataset root {real_root} (a symlink?); frames must live under the root")
    return folder


def validate(rows: pd.DataFrame, classes: list[str] | None = None) -> pd.DataFrame:
    """Normalise and check every row; raise ManifestError listing every bad row by name."""
    rows = normalise(rows)
    errors = []
    for _, row in rows.iterrows():
        errors += [f"{row_name(row)}: {p}" for p in row_problems(row, classes)]
    folded = rows["clip_uid"].str.casefold()        # 'EP01_01' and 'ep01_01' are one clip
    duplicated = folded.duplicated(keep=False)
    for key in sorted(set(folded[duplicated])):
        uids = sorted(set(rows.loc[folded == key, "clip_uid"]))
        case = "; ids are compared ignoring case" if len(uids) > 1 else ""
        errors.append(f"duplicate clip id {' / '.join(uids)} ({int((folded == key).sum())} rows{case})")
    if errors:
        shown = "\n  ".join(errors[:50])
        more = f"\n  ... and {len(errors) - 50} more" if len(errors) > 50 else ""
        raise ManifestError(f"manifest has {len(errors)} problem(s):\n  {shown}{more}")
    return rows


def manifest_hash(rows: pd.DataFrame) -> str:
    """Content hash of the rows in schema form: editing any cell changes it."""
    text = normalise(rows).to_csv(index=False, lineterminator="\n")
    return sha256_bytes(text.encode("utf-8"))


def manifest_summary(rows: pd.DataFrame) -> dict:
    """Counts of a manifest for its meta file: clips, subjects, clips per class and per dataset, rows
    with an estimated apex, with fixes and with notes."""
    rows = normalise(rows)
    return {
        "clips": int(len(rows)),
        "subjects": int(rows["subject_uid"].nunique()),
        "per_class": {k: int(v) for k, v in rows["label"].value_counts().sort_index().items()},
        "per_dataset": {k: int(v) for k, v in rows["dataset"].value_counts().sort_index().items()},
        "apex_estimated": int(rows["apex_estimated"].sum()),
        "rows_with_fixes": int((rows["fixes"] != "").sum()),
        "rows_with_notes": int((rows["notes"] != "").sum()),
    }


def meta_path(path) -> Path:
    path = Path(path)
    return path.with_name(path.name + ".meta.json")


def write_manifest(manifest: Manifest, path) -> Path:
    rows = validate(manifest.rows, manifest.classes)
    text = rows.to_csv(index=False, lineterminator="\n")
    meta = {
        "protocol": manifest.protocol,
        "protocol_source": manifest.summary.get("protocol_source", ""),
        "protocol_sha256": manifest.summary.get("protocol_sha256", ""),
        "sheets": {d: s.get("sheet", "") for d, s in manifest.summary.get("sources", {}).items()},
        "classes": list(manifest.classes),
        "datasets": sorted(rows["dataset"].unique().tolist()),
        "summary": {**manifest_summary(rows), **manifest.summary},
        "fdpkit_version": __version__,
        "manifest_sha256": sha256_bytes(text.encode("utf-8")),
    }
    write_text(path, text)
    write_json(meta_path(path), meta)
    return Path(path)


def read_manifest(path, check_hash: bool = True) -> Manifest:
    """Read and validate a manifest and its sidecar; a CSV edited after writing is reported."""
    path = Path(path)
    if not path.exists():
        raise ManifestError(f"{path}: no such manifest")
    if not meta_path(path).exists():
        raise ManifestError(f"{path}: sidecar {meta_path(path).name} is missing")
    try:
        meta = read_json(meta_path(path))
    except (OSError, CorruptFileError) as error:
        raise ManifestError(f"{path}: cannot read its sidecar: {error}; re-run `fdpkit manifest`") from None
    absent = [k for k in ("protocol", "classes", "manifest_sha256") if k not in meta] if isinstance(meta, dict) else []
    if not isinstance(meta, dict) or absent:
        raise ManifestError(f"{path}: sidecar {meta_path(path).name} lacks {', '.join(absent) or 'a JSON object'}; "
                            "re-run `fdpkit manifest`")
    raw = path.read_bytes()
    if check_hash and sha256_bytes(raw) != meta.get("manifest_sha256"):
        raise ManifestError(
            f"{path}: content differs from the hash recorded in {meta_path(path).name} "
            "(edited after it was written?); re-run `fdpkit manifest`"
        )
    try:
        rows = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8")
    except (ValueError, pd.errors.ParserError) as error:  # UnicodeDecodeError is a ValueError
        raise ManifestError(f"{path}: not a readable manifest CSV: {error}") from None
    try:
        rows = validate(rows, meta["classes"])
    except ManifestError as error:
        raise ManifestError(f"{path}: {error}") from None
    return Manifest(rows=rows, protocol=meta["protocol"], classes=list(meta["classes"]),
                    summary=meta.get("summary", {}))
