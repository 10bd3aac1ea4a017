"""Session fixtures of the fault matrix (docs/reliability.md); builders are in faultkit.py.

* `toy` / `toy_reference`: a toy cache (random clips in the real npz format, no dlib needed) and an
  uninterrupted LOSO run over it, for the run faults;
* `synthme_root` / `synthme_manifest` / `synthme_reference`: a small SynthME (2 subjects x 2 clips),
  generated once per session, its manifest and an uninterrupted single-process preprocessing run,
  for the kill and concurrency faults.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from faultkit import PREPROCESS, RUN, SYNTH, make_toy_cache


@pytest.fixture(scope="session")
def toy(tmp_path_factory):
    """(manifest, cache) of the toy corpus: 2 subjects x 4 clips."""
    return make_toy_cache(tmp_path_factory.mktemp("toy"))


@pytest.fixture(scope="session")
def toy_reference(toy, tmp_path_factory):
    """An uninterrupted LOSO run over the toy corpus (the comparison for killed/resumed runs)."""
    from fdpkit.loso.run import run_loso

    out = tmp_path_factory.mktemp("toy_ref") / "run"
    run_loso(*toy, out, **RUN)
    return out


# ---------------------------------------------------------------------------------- SynthME
@pytest.fixture(scope="session")
def synthme_root(tmp_path_factory) -> Path:
    from fdpkit.synthme.corpus import generate_synthme

    root = tmp_path_factory.mktemp("synthme") / "synthme"
    generate_synthme(root, **SYNTH)
    return root


@pytest.fixture(scope="session")
def synthme_manifest(synthme_root, tmp_path_factory) -> Path:
    from fdpkit.data.adapters import build_manifest
    from fdpkit.data.manifest import write_manifest

    manifest, _, _ = build_manifest("synthme", synthme_root)
    return write_manifest(manifest, tmp_path_factory.mktemp("synthme_manifest") / "manifest.csv")


@pytest.fixture(scope="session")
def synthme_reference(synthme_manifest, tmp_path_factory) -> Path:
    """An uninterrupted single-process preprocessing of the SynthME manifest."""
    from fdpkit.data.preprocess.cache import preprocess

    cache = tmp_path_factory.mktemp("synthme_ref") / "cache"
    preprocess(synthme_manifest, cache, progress=False, **PREPROCESS)
    return cache
