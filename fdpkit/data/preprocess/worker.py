"""One clip -> one aligned npz (and its flow file with ``--flow``): the work of
`fdpkit.data.preprocess.cache.preprocess`, one call per clip.

`process_clip` is a top-level function taking and returning plain dicts so that it runs the same in
the main process and in spawned worker processes; its result depends only on its task (never on
the process or the order), which keeps the cache byte-identical for any number of workers. It never
raises: every problem becomes a ``failed`` or ``skipped`` result with a reason.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from fdpkit.data.preprocess.dynamic_image import dynamic_image_uint8
from fdpkit.data.preprocess.faces import NoFaceError, landmarks_68, similarity_transform, warp_face
from fdpkit.data.frames import index_frames, links_outside
from fdpkit.data.preprocess.flow_clip import FlowFailed, flow_frames, write_flow
from fdpkit.data.preprocess.sampling import SamplingError, SamplingSkip, sample_frames
from fdpkit.io import load_npz, write_npz
from fdpkit.procs import watch_parent

UPSAMPLE_RETRIES = 1   # detector upsampling 0, then 1 (finds faces down to ~40 px)


class ClipFailed(Exception):
    """The clip cannot be made; the message is the reason recorded in the report."""


class ClipSkipped(Exception):
    """The sampling rule leaves the clip out; the message is the reason recorded in the report."""


def init_worker(parent_pid: int | None = None) -> None:
    """Worker-process initialiser: one OpenCV thread per process (the processes are the parallelism),
    and, given the driver's pid, exit when the driver is gone (a `kill -9`ed `fdpkit preprocess`
    must not leave workers writing npz files into the cache for minutes), as loso's fold workers do."""
    import cv2  # lazy: cv2 takes ~0.3 s to import; the preprocess verb's argument checks come first

    cv2.setNumThreads(1)
    if parent_pid is not None:
        watch_parent(parent_pid)


def process_clip(task: dict) -> dict:
    """task: clip_uid, folder, onset, offset, path (npz to write), params (frames, size, align,
    sampling, box_enlarge); with flow: apex, apex_estimated, flow {method, size, path}, and
    frames_cached (the clip file exists: make the flow only) with cached_notes. -> {clip_uid,
    status, reason, notes}."""
    result = {"clip_uid": task["clip_uid"], "status": "ok", "reason": "", "notes": ""}
    try:
        notes = make_clip(task)
        result["notes"] = "; ".join(notes)
    except ClipSkipped as skip:
        result.update(status="skipped", reason=str(skip))
    except ClipFailed as failure:
        result.update(status="failed", reason=str(failure))
    except Exception as error:  # a bug or a library error must not stop the other clips
        result.update(status="failed", reason=f"unexpected error: {type(error).__name__}: {error}")
    return result


def frame_inputs(folder, onset: int, offset: int, params: dict,
                 flow_at: tuple[int, int, bool] | None = None) -> tuple[list[list] | None, dict | None]:
    """(key, chosen): `key` is [name, size, mtime_ns] of each distinct frame file `make_clip` reads
    for these arguments (part of the cache key: a frame changed on disk makes a new key); `chosen`
    is that selection (sampled frame numbers, notes and their files), handed to `make_clip` so the
    folder is listed and sampled once and the files read are the files keyed. Both None when the
    folder cannot be listed or sampled (the clip fails or is skipped again; nothing to reuse).
    With ``flow_at`` = (apex, offset, apex_estimated), ``chosen["flow"]`` is the
    flow's selection (`flow_clip.flow_frames`) plus its own ``key`` of the onset and apex files, or
    {"error": reason} when the clip has no flow to take."""
    try:
        files, sampled = _sample(Path(folder), onset, offset, params)
        stats = {number: files[number].stat() for number in dict.fromkeys(sampled.numbers)}
        flow = None if flow_at is None else _flow_selection(files, onset, *flow_at)
    except (ClipFailed, ClipSkipped, OSError):
        return None, None
    chosen = {"files": {n: str(files[n]) for n in stats}, "numbers": list(sampled.numbers),
              "notes": list(sampled.notes), "flow": flow}
    return [[files[n].name, s.st_size, s.st_mtime_ns] for n, s in stats.items()], chosen


def _flow_selection(files: dict, onset: int, apex: int, offset: int, apex_estimated: bool) -> dict:
    try:
        selection = flow_frames(files, onset, apex, offset, apex_estimated)
    except FlowFailed as error:
        return {"error": str(error)}
    stats = [Path(selection["files"][n]).stat() for n in selection["numbers"]]
    return {**selection, "key": [[Path(selection["files"][n]).name, s.st_size, s.st_mtime_ns]
                                 for n, s in zip(selection["numbers"], stats)]}


def _sample(folder: Path, onset: int, offset: int, params: dict):
    """(frame number -> file, the sampled frames); ClipFailed / ClipSkipped when that fails."""
    if not folder.is_dir():
        raise ClipFailed(f"frame folder not found: {folder}")
    try:
        files = index_frames(folder)
    except (OSError, ValueError) as error:
        raise ClipFailed(str(error)) from None
    if not files:
        raise ClipFailed(f"no frame files in {folder}")
    try:
        sampled = sample_frames(list(files), int(onset), int(offset), int(params["frames"]),
                                params["sampling"])
    except SamplingSkip as skip:
        raise ClipSkipped(str(skip)) from None
    except SamplingError as error:
        raise ClipFailed(f"{error} in {folder}") from None
    return files, sampled


def make_clip(task: dict) -> list[str]:
    """Sample, read, align and write one clip (unless ``frames_cached``), then its flow file when
    the task asks for one; returns the notes; raises ClipFailed / ClipSkipped."""
    params = task["params"]
    folder = Path(task["folder"])
    chosen = task.get("chosen")
    if chosen:  # sampled by `frame_inputs` when the cache key was made
        files = {int(n): Path(f) for n, f in chosen["files"].items()}
        numbers, notes, selection = chosen["numbers"], list(chosen["notes"]), chosen.get("flow")
    else:
        all_files, sampled = _sample(folder, int(task["onset"]), int(task["offset"]), params)
        files, numbers, notes = all_files, sampled.numbers, list(sampled.notes)
        selection = _flow_selection(all_files, int(task["onset"]), *_flow_at(task)) if task.get("flow") else None
    images, matrices = {}, {}
    if task.get("frames_cached"):
        notes = [task["cached_notes"]] if task.get("cached_notes") else []
    else:
        images, matrices = _write_frames(task, folder, files, numbers, notes)
    if task.get("flow"):
        notes = notes + _write_clip_flow(task, folder, selection or {"error": "no selection"}, images, matrices)
    return notes


def _flow_at(task: dict) -> tuple[int, int, bool]:
    return int(task["apex"]), int(task["offset"]), bool(task.get("apex_estimated", False))


def _check_under_root(task: dict, folder: Path, paths: list[Path]) -> None:
    """Frame files, like their folders, must live under the dataset root."""
    if not task.get("root"):
        return
    outside = links_outside(paths, Path(os.path.realpath(task["root"])))
    if outside:
        name, target = outside[0]
        raise ClipFailed(f"frame file {name} in {folder} resolves to {target}, outside the dataset "
                         f"root {task['root']} (a symlink?); frames must live under the root")


def _write_frames(task: dict, folder: Path, files: dict, numbers, notes: list[str]) -> tuple[dict, dict]:
    """Read, align and write the clip file; (frame number -> grey image, -> transform)."""
    params = task["params"]
    unique = list(dict.fromkeys(numbers))                  # distinct numbers, time order
    _check_under_root(task, folder, [files[n] for n in unique])
    images = {number: read_frame(files[number]) for number in unique}
    size, enlarge = int(params["size"]), float(params["box_enlarge"])
    if params["align"] == "once":
        first = "onset frame" if params["sampling"] == "onset-offset" else "first sampled frame"
        matrices = _align_once(images, files, unique, size, enlarge, first)
    elif params["align"] == "per-frame":
        matrices = _align_per_frame(images, files, unique, size, enlarge, notes)
    else:
        raise ClipFailed(f"unknown alignment {params['align']!r}")

    aligned = {number: warp_face(images[number], matrices[number], size) for number in unique}
    frames = np.stack([aligned[n] for n in numbers]).astype(np.uint8)
    write_npz(
        task["path"],
        frames=frames,
        dynamic_image=dynamic_image_uint8(frames),
        frame_numbers=np.asarray(numbers, dtype=np.int64),
        transforms=np.stack([matrices[n] for n in numbers]).astype(np.float64),
        notes=np.array("; ".join(notes)),
    )
    return images, matrices


def _write_clip_flow(task: dict, folder: Path, selection: dict, images: dict, matrices: dict) -> list[str]:
    """Write the clip's flow file (`flow_clip`); its notes. The same inputs give the same file
    whether the clip file was made in this call or reused (the once transform is read back from it)."""
    if "error" in selection:
        raise ClipFailed(f"optical flow: {selection['error']}")
    params, flow = task["params"], task["flow"]
    onset, apex = selection["numbers"]
    paths = {int(n): Path(f) for n, f in selection["files"].items()}
    _check_under_root(task, folder, list(paths.values()))
    for number in (onset, apex):
        if number not in images:
            images[number] = read_frame(paths[number])
    size, enlarge = int(params["size"]), float(params["box_enlarge"])
    if params["align"] == "once":
        matrix = next(iter(matrices.values())) if matrices else load_npz(task["path"])["transforms"][0]
    else:
        try:
            matrix = _fit(images[onset], size, enlarge)
        except NoFaceError as error:
            raise ClipFailed(f"optical flow: no face in the onset frame {paths[onset]} ({error})") from None
    try:
        write_flow(flow["path"], images[onset], images[apex], matrix, size, flow["method"], int(flow["size"]),
                   [onset, apex], list(selection["notes"]))
    except FlowFailed as error:
        raise ClipFailed(f"optical flow: {error}") from None
    return list(selection["notes"])


def read_frame(path: Path) -> np.ndarray:
    """A frame file as grey uint8 (H, W); colour and grey files both work. The bytes are read with
    numpy and decoded from memory (any path, non-ASCII included, on every platform); an empty,
    truncated or corrupt file is a ClipFailed naming it (libjpeg would decode a truncated JPEG with
    a grey lower half and only a warning on stderr)."""
    import cv2  # lazy, as above

    try:
        data = np.fromfile(str(path), dtype=np.uint8)
    except OSError as error:
        raise ClipFailed(f"unreadable frame {path}: {error}") from None
    if data.size == 0:
        raise ClipFailed(f"unreadable frame {path} (empty file, 0 bytes)")
    problem = _truncation(data)
    if problem:
        raise ClipFailed(f"unreadable frame {path} ({problem})")
    try:
        image = cv2.imdecode(data, cv2.IMREAD_GRAYSCALE)
    except cv2.error as error:
        raise ClipFailed(f"unreadable frame {path}: {error}") from None
    if image is None or image.size == 0:
        raise ClipFailed(f"unreadable frame {path} (not an image or corrupt)")
    return image


def _truncation(data: np.ndarray) -> str | None:
    """Why an encoded JPEG or PNG is cut short (no end marker near its end), else None."""
    head = data[:8].tobytes()
    tail = data[-1024:].tobytes()
    if head[:3] == b"\xff\xd8\xff" and b"\xff\xd9" not in tail:
        return "truncated JPEG: no end-of-image marker"
    if head == b"\x89PNG\r\n\x1a\n" and b"IEND" not in tail:
        return "truncated PNG: no IEND chunk"
    return None


def _fit(image: np.ndarray, size: int, enlarge: float) -> np.ndarray:
    """The alignment matrix of the face in `image`; NoFaceError's message is the detail for a reason."""
    try:
        landmarks = landmarks_68(image, upsample_retries=UPSAMPLE_RETRIES)
    except NoFaceError:
        raise NoFaceError(f"dlib, detector upsampling 0..{UPSAMPLE_RETRIES}") from None
    try:
        return similarity_transform(landmarks, size=size, box_enlarge=enlarge)
    except ValueError as error:   # degenerate landmarks: as good as no face
        raise NoFaceError(str(error)) from None


def _size(image: np.ndarray) -> str:
    return f"{image.shape[1]}x{image.shape[0]}"


def _align_once(images, files, unique, size, enlarge, first: str = "onset frame") -> dict:
    """One transform, fitted on the first sampled frame (the onset under onset-offset sampling),
    for every frame."""
    reference = unique[0]
    for number in unique[1:]:
        if images[number].shape != images[reference].shape:
            raise ClipFailed(
                f"mixed frame sizes: {files[reference].name} is {_size(images[reference])}, "
                f"{files[number].name} is {_size(images[number])}"
            )
    try:
        matrix = _fit(images[reference], size, enlarge)
    except NoFaceError as error:
        raise ClipFailed(f"no face in the {first} {files[reference]} ({error})") from None
    return {number: matrix for number in unique}


def _align_per_frame(images, files, unique, size, enlarge, notes: list[str]) -> dict:
    """A transform per frame (the released code); a frame without a face reuses the previous one."""
    matrices: dict = {}
    previous = None
    for number in unique:
        try:
            matrices[number] = _fit(images[number], size, enlarge)
        except NoFaceError as error:
            if previous is None:
                raise ClipFailed(f"no face in the first sampled frame {files[number]} ({error})") from None
            if images[number].shape != images[previous].shape:
                raise ClipFailed(
                    f"mixed frame sizes: no face in {files[number].name} ({_size(images[number])}) "
                    f"and the previous frame {files[previous].name} is {_size(images[previous])}"
                )
            matrices[number] = matrices[previous]
            notes.append(f"fallback transform on frame {number} (no face; used frame {previous}'s)")
        previous = number
    return matrices
