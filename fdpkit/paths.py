"""Where the kit's own folders are: the repo's data_manifests/ and notebooks/, and the work folder."""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
REPO_DIR = PACKAGE_DIR.parent


def repo_folder(name: str) -> Path:
    """A top-level folder of the fdpkit checkout (the kit is installed editable from it)."""
    path = REPO_DIR / name
    if not path.is_dir():
        raise FileNotFoundError(
            f"{path} not found: fdpkit must be installed from its checkout (pip install -e .)"
        )
    return path


def data_manifests_dir() -> Path:
    return repo_folder("data_manifests")


def notebooks_dir() -> Path:
    return repo_folder("notebooks")


def fdpkit_home() -> Path:
    """Generated corpora and caches: $FDPKIT_HOME, else .fdpkit/ in the checkout."""
    return Path(os.environ.get("FDPKIT_HOME", REPO_DIR / ".fdpkit")).resolve()
