"""Atomic file writes and content hashes: every file fdpkit writes goes through here.

A write goes to a hidden ``tempfile.NamedTemporaryFile`` in the target's folder
(``.<name>.tmp-<host>-<pid>-<random>``), is fsynced, then renamed over the target (``os.replace``)
and the folder is fsynced: readers see the old file or the new one, never half of one, whatever
happens (disk full, SIGKILL, power cut). The host and pid in the name are what lets a later write
tell a dead writer's leftover from a live writer's file (below).

* A failed write (e.g. ``ENOSPC``, disk full) raises ``OSError`` with the original ``errno`` and a
  message naming the file; the temp file is removed and the previous file (if any) is unchanged.
* A process killed mid-write leaves its temp file behind. The next write into that folder by any
  fdpkit process on the same host removes temp files whose writer process is gone (once per folder
  per process); temp files of live writers (another process writing the same cache) are kept.
* Files get the usual permissions (0666 minus the umask), not the 0600 of a bare temp file.
* Paths that cannot hold the file are refused in one line naming them: a target that is a folder,
  or a folder path running through a file, is a ``PathConflict`` (``BadInput``, exit 2); a folder
  that cannot be written (permission denied, read-only file system) is an ``OSError`` with its
  ``errno`` whose message names the folder and says what to do (exit 7 through ``fdpkit.cli``).
  ``ensure_folder`` / ``check_writable_folder`` give the same messages for a folder a command is
  about to fill.
* ``_write_all(fd, data)`` is the one low-level write: tests simulate a full disk by patching it.
* Reading a truncated or corrupt npz / torch file raises ``CorruptFileError`` (a ValueError) naming
  the file; ``load_npz`` never unpickles (``allow_pickle=False``), ``load_torch`` loads weights only.
"""

from __future__ import annotations

import contextlib
import errno as _errno
import functools
import hashlib
import io
import json
import os
import platform
import re
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from fdpkit.errors import BadInput

_UMASK = os.umask(0o022)
os.umask(_UMASK)
_HOST = re.sub(r"[^A-Za-z0-9.]", "_", platform.node())[:40] or "host"
_TEMP = re.compile(r"^\..*\.tmp-(?P<host>[A-Za-z0-9._]+)-(?P<pid>\d+)-[A-Za-z0-9_]+$")
_NOT_WRITABLE = (_errno.EACCES, _errno.EPERM, _errno.EROFS)


class CorruptFileError(ValueError):
    """A file fdpkit reads is truncated, corrupt or not what it should be; the message names it."""


class PathConflict(BadInput):
    """A path cannot be used as given: a file target that is a folder, or a folder path that runs
    through a file. Exit code 2; the message names the path."""


class _WriteError(OSError):
    """An OSError raised by `_atomic_write` (keeps the original errno; the message names the file)."""

    def __str__(self) -> str:
        return self.strerror or super().__str__()


def _file_on_the_way(folder: Path) -> Path | None:
    """The first existing non-folder on the way from the root to `folder`, if any."""
    return next((p for p in reversed((folder, *folder.parents)) if p.exists() and not p.is_dir()), None)


def _not_writable(folder: Path, error: OSError, doing: str) -> OSError:
    """The OSError (same errno) to raise when `folder` cannot be written: it names the nearest
    existing folder, the one whose permissions or file system refuse."""
    nearest = next((p for p in (folder, *folder.parents) if p.exists()), folder)
    why = "read-only file system" if error.errno == _errno.EROFS else "permission denied"
    return _WriteError(error.errno, f"cannot {doing}: {nearest} is not writable ({why}); "
                       "make it writable or choose another output folder", str(folder))


def ensure_folder(folder) -> Path:
    """`folder` created with its parents (like ``mkdir -p``), with one-line errors naming the path:
    PathConflict when `folder` or a parent is a file, an OSError (EACCES/EROFS kept) when it
    cannot be created."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        blocker = _file_on_the_way(folder)
        if blocker is None:   # a race: something made it a folder meanwhile
            return ensure_folder(folder)
        way = "" if blocker == folder else f" (on the way to {folder})"
        raise PathConflict(f"{blocker} is a file, not a folder{way}; choose another path or move the file away") from None
    except OSError as error:
        if error.errno in _NOT_WRITABLE:
            raise _not_writable(folder, error, f"create the folder {folder}") from None
        raise
    return folder


def check_writable_folder(folder) -> Path:
    """`folder` created if needed, then proved writable with a nameless temp file (nothing is left
    behind), so that a command fails before its work, not after it."""
    folder = ensure_folder(folder)
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as error:
        if error.errno in _NOT_WRITABLE:
            raise _not_writable(folder, error, f"write into {folder}") from None
        raise
    return folder


def _write_all(fd: int, data) -> None:
    """Write every byte of `data` to `fd`: the one low-level write (tests patch it to fill the disk)."""
    view = memoryview(data).cast("B")
    while view:
        view = view[os.write(fd, view):]


def pid_alive(pid: int) -> bool:
    """Is process `pid` running on this host (another user's live process counts)?"""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:   # e.g. another user's live process
        pass
    return True


# Kept (tested: test_writer_killed_mid_write..., a SIGKILLed preprocess then rerun): tempfile deletes
# its file on an exception, not when the writer is killed; the host and pid in the temp name let the
# next writer remove a dead writer's leftover while keeping a live one's (two processes, one cache).
def remove_stale_temp_files(folder) -> list[Path]:
    """Remove the temp files in `folder` left by killed fdpkit writers on this host; return them."""
    removed = []
    with contextlib.suppress(OSError), os.scandir(folder) as entries:
        for entry in entries:
            match = _TEMP.match(entry.name)
            if not match or match["host"] != _HOST or pid_alive(int(match["pid"])):
                continue
            with contextlib.suppress(OSError):
                os.unlink(entry.path)
                removed.append(Path(entry.path))
    return removed


@functools.cache   # once per folder per process: a cache folder holds thousands of files
def _sweep_once(folder: str) -> None:
    remove_stale_temp_files(folder)


def _fsync_dir(folder: Path) -> None:
    """Make the rename durable (best effort: some file systems refuse to fsync a folder)."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _atomic_write(path: str | os.PathLike, data) -> Path:
    """Write `data` (bytes) via a temp file in the same folder, fsync, then rename: readers never
    see half a file."""
    path = Path(path)
    if path.is_dir():
        raise PathConflict(f"{path} is a folder; give a file path (or move the folder away)")
    try:
        ensure_folder(path.parent)
    except PathConflict as error:
        raise PathConflict(f"cannot write {path}: {error}") from None
    _sweep_once(str(path.parent.resolve()))
    prefix = f".{path.name[:80]}.tmp-{_HOST}-{os.getpid()}-"
    try:
        temp = tempfile.NamedTemporaryFile(dir=path.parent, prefix=prefix, delete=False)
    except OSError as error:
        if error.errno in _NOT_WRITABLE:
            raise _not_writable(path.parent, error, f"write {path}") from None
        raise
    try:
        with temp:
            with contextlib.suppress(OSError):   # some file systems (FAT, CIFS) refuse modes
                os.fchmod(temp.fileno(), 0o666 & ~_UMASK)   # kept (tested): not the 0600 of a temp file
            _write_all(temp.fileno(), data)
            os.fsync(temp.fileno())   # kept: the rename must not land before the bytes (power cut)
        os.replace(temp.name, path)
    except BaseException as error:
        # Disk full, Ctrl-C or a bug: leave the old file (if any) and no temp file behind.
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp.name)
        if isinstance(error, OSError) and error.errno is not None:
            kept = "the previous file is unchanged" if path.exists() else "no file was created"
            hint = " (disk full?)" if error.errno in (_errno.ENOSPC, _errno.EDQUOT) else ""
            raise _WriteError(error.errno, f"{error.strerror or error}{hint}: writing {path} failed; "
                              f"nothing was written, {kept}", str(path)) from error
        raise
    _fsync_dir(path.parent)
    return path


def write_bytes(path, data: bytes) -> Path:
    return _atomic_write(path, data)


def write_text(path, text: str) -> Path:
    return _atomic_write(path, text.encode("utf-8"))


def write_json(path, obj: Any) -> Path:
    return write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def write_csv(path, frame) -> Path:
    """Write a pandas DataFrame as CSV atomically (no index column)."""
    return write_text(path, frame.to_csv(index=False, lineterminator="\n"))


def write_npz(path, **arrays: np.ndarray) -> Path:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return write_bytes(path, buffer.getvalue())


def write_torch(path, obj: Any) -> Path:
    import torch   # not at module top: every CLI verb imports this module, most need no torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return write_bytes(path, buffer.getvalue())


def read_json(path) -> Any:
    with open(path, encoding="utf-8") as handle:
        try:
            return json.load(handle)
        except json.JSONDecodeError as error:
            raise CorruptFileError(f"{path}: not valid JSON ({error})") from None


def load_npz(path) -> dict[str, np.ndarray]:
    """The arrays of an npz file, never unpickling (allow_pickle=False); CorruptFileError when the
    file is truncated, corrupt or holds object arrays."""
    try:
        with np.load(path, allow_pickle=False) as data:
            return {key: data[key] for key in data.files}
    except (FileNotFoundError, IsADirectoryError, PermissionError):
        raise
    except Exception as error:  # BadZipFile, EOFError, ValueError (pickled objects), zlib.error...
        raise CorruptFileError(f"{path}: not a readable npz file (truncated, corrupt or pickled "
                               f"objects): {type(error).__name__}: {error}") from error


def load_torch(path, map_location="cpu") -> Any:
    """torch.load(weights_only=True): tensors and plain types only; CorruptFileError otherwise."""
    import torch   # not at module top: every CLI verb imports this module, most need no torch

    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except (FileNotFoundError, IsADirectoryError, PermissionError):
        raise
    except Exception as error:
        raise CorruptFileError(f"{path}: not a loadable weights-only torch file (truncated, corrupt or "
                               f"holding arbitrary objects): {type(error).__name__}: {error}") from error


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path) -> str:
    digest = hashlib.sha256()   # not hashlib.file_digest: that is Python 3.11+, pyproject allows 3.10
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def derive_seed(base_seed: int, *parts: object) -> int:
    """A 31-bit seed from the base seed and any labels, by hashing (stable across runs and machines)."""
    text = ":".join(["fdpkit", str(int(base_seed)), *map(str, parts)])
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:4], "big") & 0x7FFFFFFF


def stable_hash(obj: Any, length: int = 16) -> str:
    """Hash of a JSON-able object with sorted keys: the same content always gives the same key."""
    text = json.dumps(obj, sort_keys=True, default=_json_default, separators=(",", ":"))
    return sha256_bytes(text.encode("utf-8"))[:length]


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
