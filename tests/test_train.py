"""The one-fold trainer: determinism, exact resume, divergence errors, selection rules, baselines.

Real `tiny` FDP model on small in-memory clips (8 frames of 32x32) and a few steps.
"""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch

import fdpkit.train.loop as train_module
import fdpkit.train.precision as precision
from fdpkit.model import build
from fdpkit.model.baselines import build_baseline
from fdpkit.errors import BadInput
from fdpkit.io import load_torch
from fdpkit.model import build_model, fdp_loss
from fdpkit.train.config import TRAIN_PRESETS, TrainConfig
from fdpkit.train.data import DataOrder, materialise
from fdpkit.train.evaluate import predict_proba
from fdpkit.train.log import TrainingDiverged
from fdpkit.train.loop import train_fold


class ToyClips:
    """Items (frames (8, 1, 32, 32) in [-1, 1], dynamic image (32, 32) in [0, 1], label, clip_uid)."""

    def __init__(self, n: int = 12, seed: int = 0, prefix: str = "toy/s1", poison: int | None = None):
        g = torch.Generator().manual_seed(seed)
        self.labels = torch.arange(n) % 3
        self.frames = torch.rand(n, 8, 1, 32, 32, generator=g) * 2 - 1
        for i, label in enumerate(self.labels):  # a class-dependent brightening over time
            self.frames[i, :, 0, 8 * int(label):8 * int(label) + 8] += torch.linspace(0, 0.8, 8)[:, None, None]
        self.frames.clamp_(-1, 1)
        self.images = torch.rand(n, 32, 32, generator=g)
        if poison is not None:
            self.frames[poison] = float("nan")
        self.uids = [f"{prefix}/c{i}" for i in range(n)]

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return self.frames[i], self.images[i], int(self.labels[i]), self.uids[i]


def config(**kw) -> TrainConfig:
    base = dict(TRAIN_PRESETS["tiny"], batch_size=4, steps=8, checkpoint_every=4, log_every=2)
    return TrainConfig(**{**base, **kw})


def new_model(seed: int = 0, **overrides):
    torch.manual_seed(seed)
    return build_model("tiny", num_classes=3, size=32, **overrides)


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def without_seconds(log: pd.DataFrame) -> pd.DataFrame:
    return log.drop(columns=["seconds"]).reset_index(drop=True)


def test_defaults_are_the_released_code_and_presets_are_data():
    c = TrainConfig()
    assert (c.lr, c.weight_decay, c.batch_size, c.steps, c.ce_weight, c.di_weight) == (1e-4, 1e-3, 36, 500, 1, 100)
    assert c.selection == "fixed_steps"
    t = TrainConfig.from_preset("tiny", steps=20)
    assert (t.lr, t.batch_size, t.steps) == (1e-3, 16, 20)
    with pytest.raises(TypeError):
        TrainConfig.from_preset("tiny", nonsense=1)
    with pytest.raises(ValueError):
        TrainConfig(selection="best_guess")


def test_data_order_is_a_function_of_seed_and_step():
    labels = torch.arange(10) % 3
    a, b = DataOrder(labels, 4, seed=3), DataOrder(labels, 4, seed=3)
    steps = [a.batch(s) for s in range(5)]  # 20 positions = 2 epochs of 10
    assert torch.equal(b.batch(4), steps[4])  # fresh object, straight to step 4
    first_epoch = torch.cat(steps)[:10]
    assert sorted(first_epoch.tolist()) == list(range(10))
    assert not torch.equal(DataOrder(labels, 4, seed=4).batch(0), steps[0])
    balanced = DataOrder(labels, 4, seed=3, sampler="balanced")
    assert torch.equal(balanced.batch(2), DataOrder(labels, 4, seed=3, sampler="balanced").batch(2))


@pytest.mark.equivalence  # one computation run twice: bit-identical under any CPU's kernels (.ci/run)
def test_training_is_deterministic_and_logs_every_step(tmp_path):
    data = ToyClips()
    r1 = train_fold(new_model(), data, config(), fold="toy/s9", seed=11, workdir=tmp_path / "a", progress=False)
    r2 = train_fold(new_model(), data, config(), fold="toy/s9", seed=11, workdir=tmp_path / "b", progress=False)
    assert same_weights(r1.model, r2.model)
    assert r1.log.equals(r2.log.assign(seconds=r1.log["seconds"]))
    log = pd.read_csv(tmp_path / "a" / "train_log.csv")
    assert list(log.columns[:7]) == ["step", "loss", "ce", "di", "rank", "lr", "seconds"]
    assert list(log["step"]) == list(range(1, 9)) and log["loss"].notna().all()
    ckpt = load_torch(tmp_path / "a" / "checkpoint.pt")  # weights_only=True
    assert ckpt["complete"] and ckpt["step"] == 8 and ckpt["config"]["lr"] == 1e-3
    r3 = train_fold(new_model(), data, config(), fold="toy/s9", seed=12, progress=False)
    assert not same_weights(r1.model, r3.model)  # another seed, another data order


@pytest.mark.equivalence  # resumed vs uninterrupted: bit-identical under any CPU's kernels (.ci/run)
def test_exact_resume_after_interruption(tmp_path):
    """Stopped after 7 of 12 steps (last checkpoint at 7), resumed in a fresh model: identical."""
    data, val = ToyClips(12, seed=0), ToyClips(6, seed=1, prefix="toy/s2")
    cfg = config(steps=12, checkpoint_every=5, selection="inner_val", eval_every=3)
    kw = dict(val_data=val, fold="toy/s9", seed=5, progress=False)
    # drop_path > 0 makes training consume the global RNG, so its state must be restored too
    full = train_fold(new_model(drop_path=0.2), data, cfg, workdir=tmp_path / "full", **kw)
    part = train_fold(new_model(drop_path=0.2), data, cfg, workdir=tmp_path / "cut", stop_after=7, **kw)
    assert not part.complete and part.steps_done == 7
    assert load_torch(tmp_path / "cut" / "checkpoint.pt")["step"] == 7
    resumed = train_fold(new_model(99, drop_path=0.2), data, cfg, workdir=tmp_path / "cut", **kw)
    assert resumed.complete and resumed.steps_done == 12
    assert same_weights(full.model, resumed.model)
    assert resumed.selected_step == full.selected_step and resumed.history == full.history
    assert without_seconds(full.log).equals(without_seconds(resumed.log))
    last_full = load_torch(tmp_path / "full" / "checkpoint.pt")["model"]
    last_resumed = load_torch(tmp_path / "cut" / "checkpoint.pt")["model"]
    assert all(torch.equal(last_full[k], last_resumed[k]) for k in last_full)
    p_full, _ = predict_proba(full.model, ToyClips(5, seed=7))
    p_resumed, _ = predict_proba(resumed.model, ToyClips(5, seed=7))
    assert (p_full == p_resumed).all()
    # a finished checkpoint is returned without training; another config is refused
    again = train_fold(new_model(3, drop_path=0.2), data, cfg, workdir=tmp_path / "cut", **kw)
    assert same_weights(again.model, full.model)
    with pytest.raises(ValueError, match="another fold, seed or config"):
        train_fold(new_model(drop_path=0.2), data, config(steps=12, lr=0.5, selection="inner_val"),
                   workdir=tmp_path / "cut", **kw)


def test_nan_loss_names_fold_and_step_and_keeps_last_checkpoint(tmp_path):
    data = ToyClips(12, poison=5)
    order = DataOrder(data.labels, 4, seed=3)
    first_bad = next(s for s in range(50) if 5 in order.batch(s).tolist()) + 1
    cfg = config(steps=first_bad + 3, checkpoint_every=1)
    with pytest.raises(TrainingDiverged, match=rf"fold casme2/07: loss is nan at step {first_bad}\b") as info:
        train_fold(new_model(), data, cfg, fold="casme2/07", seed=3, workdir=tmp_path, progress=False)
    assert info.value.step == first_bad and info.value.fold == "casme2/07"
    if first_bad > 1:
        ckpt = load_torch(tmp_path / "checkpoint.pt")
        assert ckpt["step"] == first_bad - 1 and not ckpt["complete"]
        assert all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point())
        assert len(pd.read_csv(tmp_path / "train_log.csv")) == first_bad - 1


def test_selection_rules_take_the_right_data():
    data, val = ToyClips(), ToyClips(6, seed=1, prefix="toy/s2")
    with pytest.raises(ValueError, match="fixed_steps"):
        train_fold(new_model(), data, config(), val_data=val, progress=False)
    with pytest.raises(ValueError, match="needs validation data"):
        train_fold(new_model(), data, config(selection="inner_val"), progress=False)
    with pytest.raises(ValueError, match="overlap"):
        train_fold(new_model(), data, config(selection="inner_val"), val_data=data, progress=False)
    r = train_fold(new_model(), data, config(steps=6, selection="test_best", eval_every=2), val_data=val,
                   progress=False)
    assert r.optimistic and r.selection == "test_best" and config().metric == "uf1"
    assert [h[0] for h in r.history] == [2, 4, 6] and r.selected_step in (2, 4, 6)
    assert config(selection="test_best").metric == "accuracy"  # as the released code


def fake_probe(native: bool, slowdown: float = 44.0):
    return lambda: {"capability": "AVX2", "native": native, "reason": "test probe",
                    "fp32_gflops": 30.8, "bf16_gflops": 30.8 / slowdown, "slowdown": slowdown}


def test_bf16_autocast_runs_on_a_cpu_with_native_bf16(monkeypatch):
    monkeypatch.setattr(precision, "cpu_bf16_probe", fake_probe(native=True, slowdown=0.5))
    r = train_fold(new_model(), ToyClips(8), config(steps=2, precision="bf16"), progress=False)
    assert math.isfinite(r.log["loss"].iloc[-1])


def test_bf16_on_a_cpu_without_native_bf16_stops_naming_the_slowdown(monkeypatch):
    monkeypatch.setattr(precision, "cpu_bf16_probe", fake_probe(native=False, slowdown=44.0))
    monkeypatch.delenv(precision.ALLOW_SLOW_BF16, raising=False)
    with pytest.raises(BadInput, match=r"precision=bf16: .*0\.7 GFLOP/s vs 30\.8 in fp32.*44\.0x slower"):
        train_fold(new_model(), ToyClips(8), config(steps=2, precision="bf16"), progress=False)
    # fp32 / auto on the same CPU train; the variable lets bf16 through on purpose
    assert len(train_fold(new_model(), ToyClips(8), config(steps=1), progress=False).log) == 1
    monkeypatch.setenv(precision.ALLOW_SLOW_BF16, "1")
    assert len(train_fold(new_model(), ToyClips(8), config(steps=1, precision="bf16"), progress=False).log) == 1


def test_cpu_bf16_probe_decides_from_capability_and_flags(monkeypatch):
    precision.cpu_bf16_probe.cache_clear()
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX2")
    threads = torch.get_num_threads()
    probe = precision.cpu_bf16_probe()
    assert torch.get_num_threads() == threads  # probed on one thread, then restored
    assert not probe["native"] and "AVX2" in probe["reason"]
    assert (precision.slowdown_text(44.0), precision.slowdown_text(0.5)) == ("44.0x slower", "2.0x faster")
    assert probe["fp32_gflops"] > 0 and probe["bf16_gflops"] > 0
    assert probe["slowdown"] == pytest.approx(probe["fp32_gflops"] / probe["bf16_gflops"])
    precision.cpu_bf16_probe.cache_clear()
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX512")
    monkeypatch.setattr(precision, "_cpu_flags", lambda: {"avx2", "avx512f"})
    assert "no avx512_bf16" in precision.cpu_bf16_probe()["reason"]
    precision.cpu_bf16_probe.cache_clear()
    monkeypatch.setattr(precision, "_cpu_flags", lambda: {"avx2", "avx512f", "amx_bf16"})
    monkeypatch.setattr(precision, "_matmul_gflops", lambda dtype: 100.0 if dtype == torch.float32 else 250.0)
    assert precision.cpu_bf16_probe()["native"]
    precision.cpu_bf16_probe.cache_clear()
    monkeypatch.setattr(precision, "_matmul_gflops", lambda dtype: 100.0 if dtype == torch.float32 else 20.0)
    assert not precision.cpu_bf16_probe()["native"]  # flags say yes, the measurement says no
    precision.cpu_bf16_probe.cache_clear()


def test_auto_precision_is_bf16_on_gpus_that_support_it_else_fp16_and_fp32_on_cpu(monkeypatch):
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert precision.autocast_dtype("auto", cuda) == torch.bfloat16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert precision.autocast_dtype("auto", cuda) == torch.float16
    assert precision.autocast_dtype("auto", cpu) is None
    assert precision.autocast_dtype("fp32", cuda) is None


def test_data_order_indices_equal_the_per_step_batches():
    labels = torch.arange(10) % 3
    for sampler in ("uniform", "balanced"):
        order = DataOrder(labels, 4, seed=3, sampler=sampler)
        rows = order.indices(3, 11)  # 32 positions across 4 epochs
        assert rows.shape == (8, 4)
        assert all(torch.equal(rows[i], DataOrder(labels, 4, seed=3, sampler=sampler).batch(3 + i))
                   for i in range(8))


def test_log_rows_do_not_depend_on_how_often_the_log_is_flushed(tmp_path):
    data = ToyClips()
    often = train_fold(new_model(), data, config(steps=9, log_every=1, checkpoint_every=1), seed=4,
                       workdir=tmp_path / "often", progress=False)
    rarely = train_fold(new_model(), data, config(steps=9, log_every=7, checkpoint_every=50), seed=4,
                        workdir=tmp_path / "rarely", progress=False)
    assert without_seconds(often.log).equals(without_seconds(rarely.log))
    assert list(rarely.log["step"]) == list(range(1, 10))
    on_disk = pd.read_csv(tmp_path / "rarely" / "train_log.csv")
    assert list(on_disk["step"]) == list(range(1, 10))


def test_nan_between_log_points_still_names_the_exact_step(tmp_path):
    data = ToyClips(12, poison=5)
    order = DataOrder(data.labels, 4, seed=3)
    first_bad = next(s for s in range(50) if 5 in order.batch(s).tolist()) + 1
    cfg = config(steps=first_bad + 20, checkpoint_every=100, log_every=first_bad + 9)
    with pytest.raises(TrainingDiverged, match=rf"loss is nan at step {first_bad}\b") as info:
        train_fold(new_model(), data, cfg, fold="casme2/07", seed=3, workdir=tmp_path, progress=False)
    assert info.value.step == first_bad
    assert "no checkpoint was written" in str(info.value) and not (tmp_path / "checkpoint.pt").exists()
    log = pd.read_csv(tmp_path / "train_log.csv")
    assert list(log["step"]) == list(range(1, first_bad)) and log["loss"].map(math.isfinite).all()


def test_nan_at_an_evaluation_step_stops_before_that_step_is_scored(tmp_path, monkeypatch):
    """The flush before an evaluation also checks the step being finished: weights trained past a
    non-finite loss are never scored (and so never selected)."""
    data = ToyClips(12, poison=5)
    order = DataOrder(data.labels, 4, seed=3)
    first_bad = next(s for s in range(50) if 5 in order.batch(s).tolist()) + 1
    scored = []
    real = train_module.selection_score
    monkeypatch.setattr(train_module, "selection_score", lambda model, val, *a: scored.append(1) or real(model, val, *a))
    cfg = config(steps=first_bad + 20, checkpoint_every=100, log_every=100, selection="inner_val",
                 eval_every=first_bad)
    val = ToyClips(6, seed=1, prefix="toy/s2")
    with pytest.raises(TrainingDiverged, match=rf"loss is nan at step {first_bad}\b"):
        train_fold(new_model(), data, cfg, val_data=val, fold="casme2/07", seed=3, workdir=tmp_path,
                   progress=False)
    assert scored == []  # the first evaluation was due at the bad step itself


@pytest.mark.parametrize("kind", ["apex-frame", "difference"])
def test_baselines_use_fdps_frame_encoder(kind):
    torch.manual_seed(0)
    fdp = build_model("tiny", num_classes=3, dynamic_image=False, size=32)
    torch.manual_seed(0)
    base = build_baseline(kind, "tiny", num_classes=3, size=32)
    assert type(base.encoder) is type(fdp.encoder)
    assert all(torch.equal(a, b) for a, b in zip(base.encoder.state_dict().values(),
                                                 fdp.encoder.state_dict().values()))
    x = ToyClips(2).frames
    out = base(x)
    assert out.logits.shape == (2, 3) and out.dynamic_image is None
    loss, parts = fdp_loss(out, torch.tensor([0, 1]), torch.rand(2, 32, 32))
    assert parts["di"] == 0.0 and torch.isfinite(loss)
    # apex-frame sees only the middle frame; difference sees middle - first
    y = x.clone()
    y[:, 1:4] = 0  # frames other than 0 and 4 do not matter
    assert torch.equal(base.select_frame(x), base.select_frame(y))
    expected = x[:, 4] if kind == "apex-frame" else x[:, 4] - x[:, 0]
    assert torch.equal(base.select_frame(x), expected)
    r = train_fold(build(kind, "tiny", 3, size=32), ToyClips(8), config(steps=2), progress=False)
    assert r.complete


def test_inner_val_patience_stops_early_and_resumes_as_finished(tmp_path):
    data, val = ToyClips(12), ToyClips(6, seed=1, prefix="toy/s2")
    cfg = config(steps=40, selection="inner_val", eval_every=1, patience=2, checkpoint_every=100)
    r = train_fold(new_model(), data, cfg, val_data=val, seed=1, workdir=tmp_path, progress=False)
    assert r.complete and r.steps_done < 40 and len(r.history) == r.steps_done
    assert r.steps_done - r.selected_step == 2 and r.best_score == max(s for _, s in r.history)
    again = train_fold(new_model(5), data, cfg, val_data=val, seed=1, workdir=tmp_path, progress=False)
    assert again.steps_done == r.steps_done and same_weights(again.model, r.model)


def test_the_training_loop_reads_no_loss_back_per_step(monkeypatch):
    """The loop, model and loss (`fdp_loss(detached_parts=True)`) call no .item() / float(tensor):
    the losses reach the host once per log point (a GPU never waits for the host each step)."""
    model, data = new_model(), materialise(ToyClips())  # their set-up reads values
    reads = {"item": 0, "float": 0, "tolist": 0}
    for name, key in (("item", "item"), ("__float__", "float"), ("tolist", "tolist")):
        real = getattr(torch.Tensor, name)

        def counted(self, *a, _real=real, _key=key, **k):
            reads[_key] += 1
            return _real(self, *a, **k)
        monkeypatch.setattr(torch.Tensor, name, counted)
    r = train_fold(model, data, config(steps=12, log_every=6, checkpoint_every=100), progress=False)
    assert list(r.log["step"]) == list(range(1, 13))
    assert reads["item"] == 0 and reads["float"] == 0
    assert reads["tolist"] <= 2 + 1  # the two log points (+ the epochs of the data order once)


def test_training_diverged_crosses_process_boundaries_whole():
    """Raised in a fold worker process and re-raised in the driver, it must unpickle with its fold and
    step (it used to fail to unpickle, so `--jobs 2` turned exit code 6 into a traceback)."""
    import pickle

    from fdpkit.errors import EXIT_DIVERGED
    from fdpkit.train.log import TrainingDiverged

    error = pickle.loads(pickle.dumps(TrainingDiverged("synthme/s01", 7, "fold synthme/s01, step 7: loss nan")))
    assert (error.fold, error.step, str(error)) == ("synthme/s01", 7, "fold synthme/s01, step 7: loss nan")
    assert error.exit_code == EXIT_DIVERGED


def _diverge(task):   # a fold task that diverges (module level: pickled to the worker processes)
    from fdpkit.train.log import TrainingDiverged

    raise TrainingDiverged(f"s0{task}", 3, f"fold s0{task}, step 3: loss nan")


def test_a_fold_diverging_in_a_worker_process_reaches_the_driver_as_training_diverged():
    """Without pickling it whole the driver got BrokenProcessPool (a traceback, exit 1, not 6)."""
    from fdpkit.loso.executors import run_tasks
    from fdpkit.train.log import TrainingDiverged

    with pytest.raises(TrainingDiverged, match="step 3: loss nan") as caught:
        run_tasks([1, 2], _diverge, lambda result: None, executor="local", jobs=2, threads=1)
    assert caught.value.step == 3
