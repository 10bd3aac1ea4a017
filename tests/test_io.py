import os

import numpy as np
import pandas as pd
import pytest
import torch

from fdpkit import io


def test_atomic_write_leaves_no_temp_and_replaces(tmp_path):
    target = tmp_path / "sub" / "a.json"
    io.write_json(target, {"x": 1})
    io.write_json(target, {"x": 2})
    assert io.read_json(target) == {"x": 2}
    assert [p.name for p in target.parent.iterdir()] == ["a.json"]


def test_failed_write_keeps_old_file_and_no_temp(tmp_path, monkeypatch):
    target = tmp_path / "a.txt"
    io.write_text(target, "old")
    real = io._write_all

    def boom(fd, data):
        real(fd, b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(io, "_write_all", boom)
    with pytest.raises(OSError, match="disk full"):
        io.write_text(target, "new")
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["a.txt"]


def test_npz_round_trip_without_pickle(tmp_path):
    path = io.write_npz(tmp_path / "c.npz", frames=np.arange(6, dtype=np.uint8).reshape(2, 3))
    data = io.load_npz(path)
    np.testing.assert_array_equal(data["frames"], np.arange(6).reshape(2, 3))
    io.write_npz(tmp_path / "obj.npz", bad=np.array([{"a": 1}], dtype=object))
    with pytest.raises(ValueError):
        io.load_npz(tmp_path / "obj.npz")


class Opaque:
    """A class weights_only loading must refuse to unpickle."""


def test_torch_round_trip_is_weights_only(tmp_path):
    path = io.write_torch(tmp_path / "w.pt", {"w": torch.ones(2), "step": 3})
    assert io.load_torch(path)["step"] == 3

    io.write_torch(tmp_path / "evil.pt", {"x": Opaque()})
    with pytest.raises(Exception):
        io.load_torch(tmp_path / "evil.pt")


def test_stable_hash_ignores_key_order_but_not_values():
    assert io.stable_hash({"a": 1, "b": 2}) == io.stable_hash({"b": 2, "a": 1})
    assert io.stable_hash({"a": 1}) != io.stable_hash({"a": 2})


def test_write_csv(tmp_path):
    io.write_csv(tmp_path / "t.csv", pd.DataFrame({"a": [1, 2]}))
    assert (tmp_path / "t.csv").read_text() == "a\n1\n2\n"
