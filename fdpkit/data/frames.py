"""Map a clip folder's frame files to frame numbers: the ASCII digits at the end of each file name."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Iterable

FRAME_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")
_TRAILING_DIGITS = re.compile(r"([0-9]+)$")   # ASCII only: `\d` would also take Arabic-Indic digits


def frame_number(path: str | Path) -> int | None:
    """`img46.jpg` -> 46, `reg_img46.jpg` -> 46, `img046.jpg` -> 46, `006_05562.jpg` -> 5562,
    `12.png` -> 12; None without trailing ASCII digits."""
    match = _TRAILING_DIGITS.search(Path(path).stem)
    return int(match.group(1)) if match else None


def index_frames(folder: str | Path) -> dict[int, Path]:
    """Frame number -> file for every image file in `folder`, sorted by number.

    Raises ValueError when two files claim the same number (e.g. img46.jpg and reg_img46.jpg mixed
    in one folder), because picking one silently would change the data. Hidden files (names starting
    with '.', e.g. macOS `._img46.jpg` resource forks copied along with the frames) are not frames.
    """
    folder = Path(folder)
    found: dict[int, Path] = {}
    for path in folder.iterdir():
        if (path.name.startswith(".") or path.suffix.lower() not in FRAME_EXTENSIONS
                or not path.is_file()):
            continue
        number = frame_number(path)
        if number is None:
            continue
        if number in found:
            raise ValueError(
                f"{folder}: frames {found[number].name} and {path.name} both have number {number}"
            )
        found[number] = path
    return dict(sorted(found.items()))


def unindexed_files(folder: str | Path) -> dict[int, Path]:
    """Frame number -> file for the numbered files `index_frames` leaves out because of their
    extension (`img5.gif`, `img5.jpg.part`): used to explain a frame that seems to be missing."""
    out: dict[int, Path] = {}
    for path in Path(folder).iterdir():
        if path.name.startswith(".") or path.suffix.lower() in FRAME_EXTENSIONS or not path.is_file():
            continue
        number = frame_number(Path(path.name.split(".")[0]))
        if number is not None:
            out.setdefault(number, path)
    return dict(sorted(out.items()))


def links_outside(files: Iterable[Path], root: Path) -> list[tuple[str, Path]]:
    """(name, resolved target) of each file that is a symlink resolving outside `root` (already
    resolved): frame files must live under the dataset root like their folders."""
    out = []
    for path in files:
        if os.path.islink(path):
            target = Path(os.path.realpath(path))
            if root not in target.parents:
                out.append((Path(path).name, target))
    return out
