"""Where the kit's own folders are: the repo's data_manifests/ and notebooks/, and the work folder."""

from __future__ import annotations

import os
from pathlib import Path

from fdpkit.errors import BadInput

PACKAGE_DIR = Path(__file__).resolve().parent
REPO_DIR = PACKAGE_DIR.parent
DATA_MANIFESTS_ENV = "FDPKIT_DATA_MANIFESTS"


def repo_folder(name: str) -> Path:
    """A top-level folder of the fdpkit checkout (the kit is installed editable from it)."""
    path = REPO_DIR / name
    if not path.is_dir():
        raise FileNotFoundError(
            f"{path} not found: fdpkit must be installed from its checkout (pip install -e .)"
        )
    return path


def data_manifests_dir() -> Path:
    """The folder of class maps and annotation fixes: $FDPKIT_DATA_MANIFESTS when set, else the
    checkout's top-level `data_manifests/`. It must hold `protocols/`; otherwise `BadInput`
    (exit 2) naming the folder and what to do."""
    override = os.environ.get(DATA_MANIFESTS_ENV)
    path = Path(override) if override else REPO_DIR / "data_manifests"
    if not (path / "protocols").is_dir():
        raise BadInput(
            f"data_manifests folder not found at {path} (it must hold protocols/ and fixes/). fdpkit "
            f"reads class maps and annotation fixes from the repository's top-level data_manifests/: "
            f"install fdpkit in editable mode from the repository (pip install -e .) or set {DATA_MANIFESTS_ENV}"
        )
    return path


def notebooks_dir() -> Path:
    return repo_folder("notebooks")


def fdpkit_home() -> Path:
    """Generated corpora and caches: $FDPKIT_HOME, else .fdpkit/ in the checkout."""
    return Path(os.environ.get("FDPKIT_HOME", REPO_DIR / ".fdpkit")).resolve()
