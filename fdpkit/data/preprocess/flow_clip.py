"""One clip's onset -> apex optical flow file, ``<hash>.flow.npz`` (`fdpkit preprocess --flow`).

Which frames: the annotated onset and the annotated apex of the manifest row, each the nearest frame
file on disk inside onset..offset when its own file is missing (as sampling treats a dropped frame),
with a note naming the substitute; an estimated apex (manifest ``apex_estimated``) is used and noted.
The clip fails, with the reason in the report, when onset..offset holds no frame file or onset and
apex are the same frame (a zero flow would be a silent non-sample).

Alignment: both frames are warped with one transform, at the cache's ``--size``, so the flow
measures the face's motion, never alignment jitter: ``align=once`` uses the clip's own transform
(the one stored in the clip file); ``align=per-frame`` fits one on the onset frame. The flow is then
`fdpkit.data.preprocess.flow.flow_inputs` (u, v, optical strain resized to the flow size, 28 for
STSTNet and OFF-ApexNet).

File arrays: ``flow`` float32 (3, S, S) (u, v, strain; u and v in pixels of the S x S grid),
``frame_numbers`` int64 [onset, apex] (the frames used), ``transform`` float64 (2, 3), ``method``
and ``notes`` (0-d unicode arrays). Apex -> offset flow is not made (no model here uses it).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fdpkit.data.preprocess.faces import warp_face
from fdpkit.data.preprocess.flow import flow_inputs
from fdpkit.data.preprocess.sampling import nearest
from fdpkit.io import write_npz


class FlowFailed(Exception):
    """The clip's flow cannot be made; the message is the reason (the report prefixes 'optical flow: ')."""


def flow_frames(files: dict[int, Path], onset: int, apex: int, offset: int,
                apex_estimated: bool = False) -> dict:
    """{"numbers": [onset frame, apex frame], "notes": [...], "files": {number: path}} of a clip
    folder's frame files (number -> path); FlowFailed when there is nothing to take a flow between."""
    window = sorted(n for n in files if onset <= n <= offset)
    if not window:
        raise FlowFailed(f"no frame files between onset {onset} and offset {offset}")
    first, peak = nearest(window, onset), nearest(window, apex)
    notes = []
    if apex_estimated:
        notes.append(f"flow apex {apex} is estimated (not annotated in the corpus)")
    for name, wanted, used in (("onset", onset, first), ("apex", apex, peak)):
        if used != wanted:
            notes.append(f"flow {name} frame {wanted} missing; used frame {used}")
    if first == peak:
        raise FlowFailed(f"onset and apex are the same frame ({first}): no motion to measure")
    return {"numbers": [first, peak], "notes": notes, "files": {n: str(files[n]) for n in (first, peak)}}


def write_flow(path, onset_image: np.ndarray, apex_image: np.ndarray, matrix: np.ndarray, face_size: int,
               method: str, flow_size: int, numbers: list[int], notes: list[str]) -> None:
    """Warp both grey frames with `matrix` to `face_size`, take their flow inputs and write the file;
    FlowFailed when the flow is not finite everywhere."""
    onset = warp_face(onset_image, matrix, face_size)
    apex = warp_face(apex_image, matrix, face_size)
    inputs = flow_inputs(onset, apex, size=int(flow_size), method=method)
    if not np.isfinite(inputs).all():
        raise FlowFailed(f"{method} gave {int((~np.isfinite(inputs)).sum())} non-finite value(s)")
    write_npz(path, flow=inputs, frame_numbers=np.asarray(numbers, dtype=np.int64),
              transform=np.asarray(matrix, dtype=np.float64), method=np.array(method),
              notes=np.array("; ".join(notes)))
