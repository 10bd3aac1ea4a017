"""Faults of the file layer (fdpkit.io): disk full, a writer killed mid-write, corrupt files."""

from __future__ import annotations

import errno
import os
import stat

import numpy as np
import pytest
import torch

from fdpkit import io
from fdpkit.errors import BadInput

from faultkit import read_only, run_python, temp_files


def disk_full(monkeypatch, after_bytes: int = 0, only: str | None = None):
    """Make fdpkit.io's low-level write fail with ENOSPC (after writing `after_bytes` bytes) for
    temp files whose name contains `only` (all files when None)."""
    real = io._write_all

    def write_all(fd, data):
        target = os.readlink(f"/proc/self/fd/{fd}")
        if only is None or only in os.path.basename(target):
            real(fd, memoryview(data)[:after_bytes])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(fd, data)

    monkeypatch.setattr(io, "_write_all", write_all)


@pytest.mark.parametrize("writer", ["npz", "json", "torch"])
def test_disk_full_keeps_old_file_and_no_temp(tmp_path, monkeypatch, writer):
    target = tmp_path / f"file.{writer}"
    write = {"npz": lambda: io.write_npz(target, x=np.arange(1000)),
             "json": lambda: io.write_json(target, {"x": list(range(1000))}),
             "torch": lambda: io.write_torch(target, {"w": torch.ones(1000)})}[writer]
    write()
    before = target.read_bytes()
    disk_full(monkeypatch, after_bytes=100)
    with pytest.raises(OSError) as info:
        write()
    assert info.value.errno == errno.ENOSPC
    message = str(info.value)
    assert str(target) in message and "No space left on device" in message and "disk full" in message
    assert "previous file is unchanged" in message
    assert target.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == [target.name]


def test_disk_full_on_a_new_file_creates_nothing(tmp_path, monkeypatch):
    disk_full(monkeypatch)
    with pytest.raises(OSError, match="no file was created"):
        io.write_text(tmp_path / "sub" / "new.txt", "x" * 10_000)
    assert os.listdir(tmp_path / "sub") == []


def test_writer_killed_mid_write_leaves_only_a_temp_that_the_next_write_removes(tmp_path):
    target = tmp_path / "clip.npz"
    io.write_npz(target, x=np.zeros(10))
    before = target.read_bytes()
    done = run_python(f"""
        import os, signal
        import numpy as np
        from fdpkit import io
        real = io._write_all
        def write_all(fd, data):
            real(fd, memoryview(data)[:len(data) // 2])
            os.kill(os.getpid(), signal.SIGKILL)
        io._write_all = write_all
        io.write_npz({str(target)!r}, x=np.arange(100_000))
    """)
    assert done.returncode == -9, done.stderr
    assert target.read_bytes() == before             # the old file is intact
    leftovers = temp_files(tmp_path)
    assert len(leftovers) == 1 and leftovers[0].name.startswith(".clip.npz.tmp-")
    # a live writer's temp file (this process, or any running pid) must survive the sweep
    live = tmp_path / f".other.npz.tmp-{io._HOST}-{os.getppid()}-abcdefgh"
    live.write_bytes(b"in progress")
    done = run_python(f"""
        from fdpkit import io
        io.write_text({str(tmp_path / 'other.txt')!r}, "x")
    """)
    assert done.returncode == 0, done.stderr
    assert temp_files(tmp_path) == [live]
    assert io.load_npz(target)["x"].shape == (10,)


def test_files_get_umask_permissions_not_0600(tmp_path):
    path = io.write_text(tmp_path / "m.csv", "a\n")
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o666 & ~mask


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty"])
def test_corrupt_npz_and_checkpoint_give_a_clear_error(tmp_path, damage):
    npz = io.write_npz(tmp_path / "c.npz", frames=np.zeros((8, 32, 32), np.uint8))
    pt = io.write_torch(tmp_path / "checkpoint.pt", {"w": torch.ones(100), "step": 3})
    for path in (npz, pt):
        data = path.read_bytes()
        path.write_bytes({"truncated": data[:len(data) // 2], "garbage": b"\x00junk" * 50, "empty": b""}[damage])
    with pytest.raises(io.CorruptFileError, match=r"c\.npz: not a readable npz file"):
        io.load_npz(npz)
    with pytest.raises(io.CorruptFileError, match=r"checkpoint\.pt: not a loadable weights-only torch file"):
        io.load_torch(pt)


class Opaque:
    """An arbitrary class: weights-only loading must refuse to unpickle it."""


def test_pickled_objects_are_refused_on_load(tmp_path):
    io.write_npz(tmp_path / "obj.npz", bad=np.array([{"a": 1}], dtype=object))
    with pytest.raises(io.CorruptFileError, match="pickled"):
        io.load_npz(tmp_path / "obj.npz")

    io.write_torch(tmp_path / "evil.pt", {"x": Opaque()})
    with pytest.raises(io.CorruptFileError, match="weights-only"):
        io.load_torch(tmp_path / "evil.pt")


def test_corrupt_json_names_the_file(tmp_path):
    (tmp_path / "x.json").write_text("{not json")
    with pytest.raises(io.CorruptFileError, match=r"x\.json: not valid JSON"):
        io.read_json(tmp_path / "x.json")


def test_read_only_folder_is_one_oserror_naming_it_with_what_to_do(tmp_path, monkeypatch):
    folder = tmp_path / "results"
    io.write_json(folder / "a.json", {"x": 1})
    read_only(monkeypatch, folder)
    with pytest.raises(OSError) as info:
        io.write_json(folder / "a.json", {"x": 2})
    assert info.value.errno == errno.EACCES
    assert str(info.value) == (f"cannot write {folder / 'a.json'}: {folder} is not writable (permission "
                               "denied); make it writable or choose another output folder")
    with pytest.raises(OSError, match=rf"cannot create the folder {folder / 'run'}: {folder} is not writable"):
        io.write_json(folder / "run" / "b.json", {})
    with pytest.raises(OSError, match=rf"cannot write into {folder}: {folder} is not writable"):
        io.check_writable_folder(folder)
    assert io.read_json(folder / "a.json") == {"x": 1} and os.listdir(folder) == ["a.json"]


def test_target_that_is_a_folder_or_under_a_file_is_bad_input_naming_it(tmp_path):
    (tmp_path / "out.csv").mkdir()
    with pytest.raises(BadInput, match=rf"^{tmp_path / 'out.csv'} is a folder; give a file path"):
        io.write_text(tmp_path / "out.csv", "a\n")
    (tmp_path / "notes.txt").write_text("keep")
    for target in (tmp_path / "notes.txt" / "m.csv", tmp_path / "notes.txt" / "sub" / "m.csv"):
        with pytest.raises(BadInput, match=rf"^cannot write {target}: {tmp_path / 'notes.txt'} is a file, not a folder"):
            io.write_text(target, "a\n")
    with pytest.raises(BadInput, match=rf"^{tmp_path / 'notes.txt'} is a file, not a folder"):
        io.ensure_folder(tmp_path / "notes.txt")
    assert (tmp_path / "notes.txt").read_text() == "keep" and sorted(os.listdir(tmp_path)) == ["notes.txt", "out.csv"]


def test_loso_into_a_read_only_folder_is_one_line_and_exit_7(toy, tmp_path, monkeypatch, capsys):
    from fdpkit.cli import main as cli_main

    from faultkit import CLI_RUN

    manifest, cache = toy
    out = tmp_path / "runs"
    out.mkdir()
    read_only(monkeypatch, out)
    assert cli_main(["loso", "--manifest", str(manifest), "--cache", str(cache), "--out", str(out / "run"),
                     *CLI_RUN]) == 7
    err = capsys.readouterr().err.strip()
    assert err == (f"fdpkit loso: cannot create the folder {out / 'run'}: {out} is not writable (permission "
                   "denied); make it writable or choose another output folder"), err
    assert os.listdir(out) == []


def test_synth_into_a_read_only_folder_is_one_line_and_exit_7(tmp_path, monkeypatch, capsys):
    from fdpkit.cli import main as cli_main

    out = tmp_path / "corpora"
    out.mkdir()
    read_only(monkeypatch, out)
    assert cli_main(["synth", "--out", str(out / "synthme"), "--subjects", "1", "--clips-per-subject", "1"]) == 7
    err = capsys.readouterr().err.strip()
    assert err == (f"fdpkit synth: cannot write into {out}: {out} is not writable (permission denied); make it "
                   "writable or choose another output folder"), err
    assert os.listdir(out) == []
