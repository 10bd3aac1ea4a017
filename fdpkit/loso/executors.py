"""Where fold tasks run: in this process, in `jobs` spawned processes, or as Ray tasks.

Tasks return data and the driver's `done` callback writes every file, so the executor never
changes a result: each task runs with the same fixed torch thread count everywhere. Worker
processes start with `fdpkit.procs.worker_env()` (glibc heap settings) and exit with their driver.

Given `progress` (a `fdpkit.train.progress` sink living in the driver), the folds report their
training steps to it: directly when they run in this process, through a multiprocessing queue
from worker processes, through a Ray queue from Ray tasks. The driver drains the queue between
its waits for results, in its own thread, so bars are only ever drawn there.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import queue as queue_errors
import sys
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from typing import Any, Callable, Iterable

import torch

from fdpkit.errors import BadInput, EnvironmentFault
from fdpkit.procs import spawn_env, watch_parent, worker_env
from fdpkit.train.progress import Sink, report_to, reporting

POLL_S = 0.2  # how often the driver passes queued step progress on while folds run


def worker_init(threads: int) -> None:
    if threads:
        torch.set_num_threads(threads)


def auto_jobs(jobs: int = 0) -> int:
    """0 -> one fold process per CPU core (at most 4; each fold trains on one torch thread), or 1
    when a GPU is present (local folds would share it; Ray gives each fold its own GPU)."""
    if jobs:
        return jobs
    return 1 if torch.cuda.is_available() else max(1, min(4, os.cpu_count() or 1))


def process_worker_init(threads: int, parent_pid: int, events=None) -> None:
    """A killed driver must not leave workers training on and writing checkpoints into RUN_DIR
    (a re-run would then share the fold with them), so each worker exits when its parent goes.
    `events`: the driver's progress queue (never waited on at exit: progress is not worth a hang)."""
    worker_init(threads)
    watch_parent(parent_pid)
    if events is not None:
        events.cancel_join_thread()
        report_to(events.put)


def run_tasks(tasks: Iterable, run: Callable[[Any], Any], done: Callable[[Any], None], *,
              executor: str = "local", jobs: int = 1, ray_address: str | None = None,
              threads: int = 1, progress: Sink | None = None) -> None:
    """Call `done(run(task))` for every task; `run` must be a module-level function (it is pickled).
    `progress`: called in this process with each fold's `StepEvent`s (None: folds report nothing
    here; a fold asked for progress then draws its own bar)."""
    tasks = list(tasks)
    jobs = min(jobs, len(tasks))  # no idle worker processes
    if executor == "local" and jobs <= 1:
        with reporting(progress):
            for task in tasks:
                done(run(task))
    elif executor == "local":
        _run_processes(tasks, run, done, jobs, threads, progress)
    elif executor == "ray":
        _run_ray(tasks, run, done, ray_address, threads, progress)
    else:
        raise BadInput(f"executor must be local or ray, got {executor!r}")


def _run_processes(tasks, run, done, jobs, threads, progress) -> None:
    cores = os.cpu_count() or 1
    if jobs * max(threads, 1) > cores:
        print(f"note: {jobs} jobs x {threads} thread(s) > {cores} cores", file=sys.stderr)
    context = multiprocessing.get_context("spawn")
    events = context.Queue() if progress is not None else None
    errors = []
    try:
        with ProcessPoolExecutor(max_workers=jobs, mp_context=context, initializer=process_worker_init,
                                 initargs=(threads, os.getpid(), events)) as pool:
            with spawn_env(worker_env()):  # the pool starts its workers on submit
                pending = {pool.submit(run, task): task for task in tasks}
            while pending:
                finished, _ = wait(pending, timeout=POLL_S if events else None, return_when=FIRST_COMPLETED)
                _drain(events, progress)
                for future in finished:
                    pending.pop(future)
                    try:
                        done(future.result())
                    except Exception as error:  # noqa: BLE001 - finish the other folds, then raise
                        errors.append(error)
                        for other in pending:
                            other.cancel()
        _drain(events, progress)
    finally:
        if events is not None:
            events.close()
    if errors:
        raise errors[0]


def _drain(events, progress) -> None:
    """Pass every step event queued so far on to `progress` (without waiting)."""
    while events is not None:
        try:
            event = events.get_nowait()
        except queue_errors.Empty:
            return
        progress(event)


def import_ray():
    try:
        import ray  # optional (the `ray` extra): imported only for the ray executor
    except ImportError as error:
        raise BadInput("the ray executor needs Ray: pip install -e '.[ray]' (or use --executor local)") from error
    return ray


# Ray's local node start waits 30 s for the raylet to register (hard-coded in Ray's Python side,
# `RAY_raylet_start_wait_time_s` on the GCS/raylet side); a busy 2-core machine misses that. So the
# C++ side gets a longer allowance, worker pre-starting (which competes with the start-up) is off,
# and a timed-out start is tried again; only then is it a fault.
RAY_ENV = {"RAY_raylet_start_wait_time_s": "300", "RAY_enable_worker_prestart": "0",
           "RAY_prestart_worker_first_driver": "0", "RAY_USAGE_STATS_ENABLED": "0"}
RAY_START_ATTEMPTS = 3


def start_ray(address: str | None = None):
    """-> (ray, started_here). Joins `address` (or $RAY_ADDRESS), else starts one local node for
    the whole run. A failure is an `EnvironmentFault` in one line (exit code 7)."""
    ray = import_ray()
    if ray.is_initialized():
        return ray, False
    address = address or os.environ.get("RAY_ADDRESS")
    for key, value in RAY_ENV.items():
        os.environ.setdefault(key, value)
    attempts = 1 if address else RAY_START_ATTEMPTS
    for attempt in range(1, attempts + 1):
        try:
            if address:
                ray.init(address=address, log_to_driver=False)
            else:
                ray.init(include_dashboard=False, log_to_driver=False)
            return ray, True
        except Exception as error:  # noqa: BLE001 - Ray raises plain Exceptions on start-up
            with contextlib.suppress(Exception):
                ray.shutdown()
            failure, first_line = error, (str(error).strip().splitlines() or [type(error).__name__])[0]
            if attempt < attempts:
                print(f"note: Ray start-up attempt {attempt} failed ({first_line}); trying again",
                      file=sys.stderr)
    where = f"join the Ray cluster at {address}" if address else "start a local Ray node"
    raise EnvironmentFault(f"could not {where} ({first_line}; tried {attempts} time(s)); use --executor "
                           "local (same results), or check the machine's load and Ray's logs under /tmp/ray"
                           ) from failure


def _ray_task(run, threads: int, task, events=None):
    worker_init(threads)
    with reporting(events.put if events is not None else None):
        return run(task)


def _run_ray(tasks, run, done, address, threads, progress) -> None:
    ray, started = start_ray(address)
    events = None
    try:
        # One GPU per fold when the cluster has GPUs, else `threads` CPUs.
        gpus = ray.cluster_resources().get("GPU", 0)
        options = {"num_cpus": max(threads, 1), "num_gpus": 1 if gpus else 0, "max_retries": 0}
        if worker_env():  # Ray starts the task's worker process with these variables
            options["runtime_env"] = {"env_vars": worker_env()}
        remote = ray.remote(_ray_task).options(**options)
        if progress is not None:
            from ray.util.queue import Queue  # Ray is optional: imported with it

            events = Queue(actor_options={"num_cpus": 0})
        refs = [remote.remote(run, threads, task, events) for task in tasks]
        while refs:
            ready, refs = ray.wait(refs, num_returns=1, timeout=POLL_S if events else None)
            _drain_ray(events, progress)
            for ref in ready:
                done(_ray_result(ray, ref))
        _drain_ray(events, progress)
    finally:
        if events is not None:
            with contextlib.suppress(Exception):
                events.shutdown()
        if started:
            ray.shutdown()


def _drain_ray(events, progress) -> None:
    if events is not None and events.qsize():
        for event in events.get_nowait_batch(events.qsize()):
            progress(event)


def _ray_result(ray, ref):
    """The task's result; a task's own exception is re-raised as itself (not as Ray's wrapper with
    the worker's traceback in its message), so the CLI reports it like the local executor does."""
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as error:
        cause = getattr(error, "cause", None)
        if isinstance(cause, Exception):
            raise cause from None
        raise
