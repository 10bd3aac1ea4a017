"""Interrupted and concurrent preprocessing of one SynthME (2 subjects x 2 clips) into one cache:
the result must equal an uninterrupted single-process run (`synthme_reference`)."""

from __future__ import annotations

import subprocess

from fdpkit import io

from faultkit import PREPROCESS, cache_state, child_env, fdpkit_cmd, run_python, temp_files

CLI_PREPROCESS = ("--frames", str(PREPROCESS["frames"]), "--size", str(PREPROCESS["size"]))


def test_sigkill_during_preprocessing_then_rerun_gives_the_uninterrupted_result(synthme_manifest,
                                                                                 synthme_reference, tmp_path):
    cache = tmp_path / "cache"
    done = run_python(f"""
        import os, signal
        from fdpkit import io
        real, count = io._write_all, [0]
        def write_all(fd, data):
            if ".npz.tmp-" in os.readlink(f"/proc/self/fd/{{fd}}"):
                count[0] += 1
                if count[0] == 2:                      # half-way through the second clip's file
                    real(fd, memoryview(data)[:len(data) // 2])
                    os.kill(os.getpid(), signal.SIGKILL)
            real(fd, data)
        io._write_all = write_all
        from fdpkit.data.preprocess.cache import preprocess
        preprocess({str(synthme_manifest)!r}, {str(cache)!r}, progress=False, **{PREPROCESS!r})
    """)
    assert done.returncode == -9, done.stderr
    npz = list(cache.glob("*.npz"))
    assert len(npz) == 1 and len(temp_files(cache)) == 1        # one clip done, one temp left behind
    io.load_npz(npz[0])                                         # no corrupt file under a final name
    rerun = subprocess.run(fdpkit_cmd("preprocess", "--manifest", synthme_manifest, "--cache", cache,
                                      *CLI_PREPROCESS),
                           capture_output=True, text=True, env=child_env(), timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert "4 clips: 4 ok (1 from cache), 0 skipped, 0 failed" in rerun.stdout
    assert cache_state(cache) == cache_state(synthme_reference)
    assert not temp_files(cache)


def test_two_processes_preprocessing_into_one_cache_do_not_corrupt_it(synthme_manifest, synthme_reference,
                                                                     tmp_path):
    cache = tmp_path / "cache"
    command = fdpkit_cmd("preprocess", "--manifest", synthme_manifest, "--cache", cache, *CLI_PREPROCESS)
    procs = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=child_env())
             for _ in range(2)]
    outputs = [p.communicate(timeout=300) for p in procs]
    for proc, (out, err) in zip(procs, outputs):
        assert proc.returncode == 0, err
        assert "4 clips: 4 ok" in out
    for path in cache.glob("*.npz"):
        io.load_npz(path)
    assert cache_state(cache) == cache_state(synthme_reference)
    assert not temp_files(cache)
    meta = io.read_json(cache / "preprocess.json")
    assert meta["counts"] == {"ok": 4, "skipped": 0, "failed": 0}
