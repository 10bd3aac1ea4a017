"""What a cache file is keyed on: the preprocessing parameters and the content-hashed file names.

A clip file ``<hash>.npz`` hashes the manifest row's pixel-deciding fields, `PreprocessParams`,
`CACHE_FORMAT_VERSION` and the name, size and mtime (ns) of every frame file read. A flow file
``<hash>.flow.npz`` hashes the clip file's name (so everything above), `FlowParams` (method, the
method's every parameter from `fdpkit.data.preprocess.flow.PARAMS`, size), `FLOW_FORMAT_VERSION`
and the name, size and mtime of the onset and apex frame files it reads. Changing the flow method
therefore makes a new flow file and leaves the clip file (and its name) untouched.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from fdpkit.data.preprocess import flow
from fdpkit.data.preprocess.faces import BORDER_VALUE, BOX_ENLARGE
from fdpkit.data.preprocess.sampling import METHODS
from fdpkit.io import stable_hash

CACHE_FORMAT_VERSION = 2   # 2: the file name also hashes the frame files' names, sizes and mtimes
FLOW_FORMAT_VERSION = 1    # 1: (3, S, S) float32 u, v, strain of the onset -> apex flow
FLOW_SIZE = 28             # STSTNet's and OFF-ApexNet's input side
ALIGN_MODES = ("once", "per-frame")
ROW_KEY_FIELDS = ("clip_uid", "root", "frame_dir", "first_frame", "last_frame", "n_frames",
                  "onset", "apex", "offset")
_INT_FIELDS = ("first_frame", "last_frame", "n_frames", "onset", "apex", "offset")


@dataclass(frozen=True)
class PreprocessParams:
    frames: int = 8
    size: int = 64
    align: str = "once"
    sampling: str = "onset-offset"
    box_enlarge: float = BOX_ENLARGE
    border: int = BORDER_VALUE

    def check(self) -> "PreprocessParams":
        if int(self.frames) < 2:
            raise ValueError(f"frames must be >= 2 (a dynamic image needs two), got {self.frames}")
        if int(self.size) < 8:
            raise ValueError(f"size must be >= 8 pixels, got {self.size}")
        if self.align not in ALIGN_MODES:
            raise ValueError(f"unknown align {self.align!r}; choose one of {', '.join(ALIGN_MODES)}")
        if self.sampling not in METHODS:
            raise ValueError(f"unknown sampling {self.sampling!r}; choose one of {', '.join(METHODS)}")
        return self

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class FlowParams:
    """The onset -> apex flow a cache holds beside each clip: `method` (``flow.METHODS``) at
    ``size`` x ``size`` (`fdpkit.data.preprocess.flow.flow_inputs`)."""
    method: str = "tvl1"
    size: int = FLOW_SIZE

    def check(self) -> "FlowParams":
        if self.method not in flow.METHODS:
            raise ValueError(f"unknown --flow method {self.method!r}; choose one of {', '.join(flow.METHODS)}")
        if isinstance(self.size, bool) or int(self.size) != self.size or int(self.size) < 8:
            raise ValueError(f"flow size must be a whole number >= 8 pixels, got {self.size!r}")
        if self.method == "tvl1" and not flow.has_tvl1():   # before any clip is tried
            raise ValueError(f"--flow tvl1 needs OpenCV's contrib module cv2.optflow: install "
                             f"{flow.CONTRIB_REQUIREMENT} instead of opencv-python-headless, or choose "
                             "--flow farneback or dis")
        return self

    def as_dict(self) -> dict:
        """What the flow file name hashes and preprocess.json records: method, its PARAMS, size."""
        return {"method": self.method, "params": dict(flow.PARAMS[self.method]), "size": int(self.size)}


def _row_fields(row) -> dict:
    return {name: int(row[name]) if name in _INT_FIELDS else str(row[name]) for name in ROW_KEY_FIELDS}


def row_key(row) -> str:
    """Hash of the manifest fields that decide a clip's pixels (not the label)."""
    return stable_hash(_row_fields(row))


def clip_file_name(row, params: PreprocessParams, frames: list | None = None) -> str:
    """``<hash>.npz`` of (row fields, parameters, CACHE_FORMAT_VERSION, the frame files read:
    ``worker.frame_inputs``)."""
    key = {"format": CACHE_FORMAT_VERSION, "row": _row_fields(row), "params": params.as_dict(),
           "frames": frames}
    return stable_hash(key) + ".npz"


def flow_file_name(clip_file: str, params: FlowParams, frames: list | None) -> str:
    """``<hash>.flow.npz`` of (the clip file's name, FlowParams.as_dict(), FLOW_FORMAT_VERSION, the
    [name, size, mtime_ns] of the onset and apex frame files: ``flow_clip.flow_frames``)."""
    key = {"format": FLOW_FORMAT_VERSION, "clip": clip_file, "flow": params.as_dict(), "frames": frames}
    return stable_hash(key) + ".flow.npz"
