"""Tests for qnnlib.experiments.kernels: profiles, sweeps and MLP timing on tiny sizes, trained-model lookup,
metrics rows (valid for results.write_metrics / comparison_table) and the sanity checks. No timed assertions."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch

from qnnlib.bench.mlp import PACKED_EQ6, PACKED_F1, float_mlp, random_bnn, time_mlp_cpu, time_mlp_gpu
from qnnlib.data.idx import DatasetError
from qnnlib.data.mnist import load_mnist
from qnnlib.experiments import config, mnist, results
from qnnlib.experiments.kernels import (
    PROFILES,
    SANITY,
    KernelsConfig,
    check_sanity,
    cpu_sweep,
    gpu_sweep,
    metrics_rows,
    trained_bnn,
)
from qnnlib.experiments.paper import PAPER_BY_KEY
from qnnlib.runtime.export import compare_with_model, export_bnn
from qnnlib.runtime.hardware import describe as hardware_info
from qnnlib.runtime.hardware import gpu_available
from qnnlib.runtime.packed_checkpoint import size_report

GPU, _WHY = gpu_available()


def tiny(profile: str = "smoke", **kw) -> KernelsConfig:
    base = dict(cpu_sizes=(64, 96), cpu_repeats=1, mlp_hidden=64, mlp_images=300, mlp_repeats=1,
                fallback_hidden=32, fallback_epochs=1, fallback_train_size=300, fallback_valid_size=100)
    return dataclasses.replace(PROFILES[profile], **{**base, **kw})


def pixels(n: int = 300, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 784), dtype=np.uint8)


# ---------------------------------------------------------------------------------------- profiles
def test_profiles_sizes(monkeypatch):
    monkeypatch.delenv("QNNLIB_PROFILE", raising=False)
    assert set(PROFILES) == set(SANITY) == {"smoke", "quick", "paper"}
    smoke, quick, paper = (config.resolve("kernels", p) for p in ("smoke", "quick", "paper"))
    assert max(smoke.cpu_sizes) <= 512 and smoke.mlp_hidden <= 256 and not SANITY["smoke"].cpu_speedup_at_largest
    assert max(quick.cpu_sizes) == 4096 and quick.mlp_hidden == 4096 and SANITY["quick"].cpu_speedup_at_largest
    assert max(quick.gpu_sizes) == 8192 and max(paper.gpu_sizes) == 8192
    assert all(p.mlp_images == 10_000 and p.mlp_depth == 3 for p in (smoke, quick, paper))
    with pytest.raises(dataclasses.FrozenInstanceError):
        smoke.cpu_repeats = 9  # type: ignore[misc]


def test_profile_env_var_and_overrides(monkeypatch):
    monkeypatch.setenv("QNNLIB_PROFILE", "smoke")
    assert config.resolve("kernels", "quick").profile == "smoke"
    p = config.resolve("kernels", "quick", cpu_sizes=[32, 64], mlp_hidden=None)
    assert p.cpu_sizes == (32, 64) and p.mlp_hidden == PROFILES["smoke"].mlp_hidden
    with pytest.raises(ValueError, match=r"unknown parameter\(s\) \['widths'\]"):
        config.resolve("kernels", "quick", widths=3)
    with pytest.raises(ValueError, match="cpu_sizes"):
        config.resolve("kernels", "quick", cpu_sizes=())
    with pytest.raises(ValueError, match="mlp_repeats"):
        config.resolve("kernels", "quick", mlp_repeats=0)
    with pytest.raises(TypeError, match="cpu_sizes"):
        config.resolve("kernels", "quick", cpu_sizes=[1.5])
    monkeypatch.setenv("QNNLIB_PROFILE", "huge")
    with pytest.raises(ValueError, match="unknown profile"):
        config.resolve("kernels")


def test_hardware_info_names_cpu_and_gpu_state():
    hw = hardware_info()
    assert hw["cpu"] and hw["llvm_target"] and hw["cpu_popcount"] and hw["torch_threads"] >= 1
    if GPU:
        assert hw["gpu"] and hw["gpu_skipped_reason"] is None
    else:
        assert hw["gpu"] is None and hw["gpu_skipped_reason"]


# ------------------------------------------------------------------------------------------- sweeps
def test_cpu_sweep_tiny():
    df = cpu_sweep(tiny())
    assert set(df["size"]) == {64, 96} and bool(df["exact"].all())
    binary = df["method"].str.startswith("binary")
    assert df.loc[binary, "bit-op/s"].gt(0).all() and df.loc[~binary, "bit-op/s"].isna().all()


@pytest.mark.skipif(GPU, reason="checks the no-GPU path")
def test_gpu_parts_skip_cleanly_without_a_gpu():
    df, why = gpu_sweep(tiny())
    assert df is None and why
    assert time_mlp_gpu(random_bnn(16, 1), export_bnn(random_bnn(16, 1)), float_mlp(16, 1), pixels(10)) is None


@pytest.mark.gpu
@pytest.mark.skipif(not GPU, reason=f"no GPU: {_WHY}")
def test_gpu_sweep_and_mlp_timing_small():
    df, why = gpu_sweep(tiny(gpu_sizes=(256,), gpu_repeats=2))
    assert df is not None and not why and set(df["size"]) == {256}
    bnn = random_bnn(128, 3)
    out = time_mlp_gpu(bnn, export_bnn(bnn), float_mlp(128, 3), pixels(500), repeats=1)
    assert out["identical_to_torch_bnn"].dropna().all()


# ---------------------------------------------------------------------------------------- MLP timing
def test_random_bnn_thresholds_in_range_and_timing_rows():
    bnn = random_bnn(64, 3, seed=1)
    assert not bnn.training
    packed = export_bnn(bnn)
    for a in packed.forward_hidden(pixels(200)):
        assert 0.15 < float((a == 1).mean()) < 0.85
    df = time_mlp_cpu(bnn, packed, float_mlp(64, 3), pixels(), repeats=1)
    assert list(df["method"])[2:] == [PACKED_EQ6, PACKED_F1]
    assert df["seconds"].gt(0).all() and df["speedup_vs_float"].gt(0).all()
    assert df.loc[df["method"].str.startswith("PackedBNN"), "identical_to_torch_bnn"].all()
    assert (df["images"] == 300).all()


# ------------------------------------------------------------------------------------ trained model
def test_trained_bnn_loads_notebook_01_model(monkeypatch):
    model = random_bnn(32, 3)
    ck = {"dataset": {"name": "fashion-mnist", "sizes": {"train": 1, "valid": 1, "test": 1}}}
    monkeypatch.setattr(mnist, "load_trained", lambda profile, recipe: (model, ck))
    try:
        t = trained_bnn("smoke", tiny())
    except DatasetError as exc:
        pytest.skip(f"Fashion-MNIST not available: {exc}")
    assert t.model is model and t.dataset == "fashion-mnist" and "notebook 01" in t.origin
    assert len(t.test) == 10_000


def test_trained_bnn_falls_back_to_training_a_small_model(monkeypatch, tmp_path):
    try:
        load_mnist("fashion-mnist", train_size=10, valid_size=10, test_size=10, download=False)
    except DatasetError as exc:
        pytest.skip(f"Fashion-MNIST not available: {exc}")
    monkeypatch.setenv("QNNLIB_DATA", str(tmp_path))  # checkpoints go here; no notebook 01 model exists
    t = trained_bnn("smoke", tiny())
    assert "trained in notebook 09" in t.origin and t.dataset == "fashion-mnist"
    assert t.trained_on["sizes"]["train"] == 300 and len(t.test) == 10_000
    assert not any((tmp_path / "models").rglob("*.pt"))  # not saved as notebook 01's model
    packed = export_bnn(t.model)
    r = compare_with_model(t.model, packed, t.test.x[:2000])
    assert r["predictions_identical"]


# ---------------------------------------------------------------------------------- rows and sanity
@pytest.fixture(scope="module")
def bench_outputs(tmp_path_factory):
    kb = tiny()
    bnn = random_bnn(64, 3)
    packed = export_bnn(bnn)
    cpu = cpu_sweep(kb)
    mlp = time_mlp_cpu(bnn, packed, float_mlp(64, 3), pixels(), repeats=1)
    cmp_ = compare_with_model(bnn, packed, pixels(200, seed=3))
    sizes = size_report(bnn, tmp_path_factory.mktemp("sizes"), packed)
    trained = {"dataset": "fashion-mnist", "test_error": 0.2, "comparison": cmp_, "origin": "test"}
    return kb, cpu, mlp, cmp_, sizes, trained


def test_metrics_rows_are_valid_and_honest(bench_outputs, tmp_path):
    kb, cpu, mlp, _cmp, sizes, trained = bench_outputs
    hw = hardware_info()
    rows = metrics_rows(kb, hw, cpu, mlp, "fashion-mnist", trained, sizes)
    names = [r["row"] for r in rows]
    assert "CPU binary_matmul vs torch.matmul fp32 (96^3)" in names
    assert all(not r.get("paper_key", "").startswith("kernels:XNOR") for r in rows)  # CPU rows: own names
    assert any("not comparable" in r.get("note", "") for r in rows)
    path = results.write_metrics("kernels", "smoke", config={}, metrics={"rows": rows}, history=[],
                                 dataset={"name": "fashion-mnist", "sizes": {"test": 10_000}}, wall_time_s=1.0,
                                 results_dir=tmp_path)
    table = results.comparison_table("smoke", tmp_path)
    assert len(table) == len(rows) and path.is_file()
    mem = table[table["metric"] == "memory size reduction x"].iloc[0]
    assert mem["comparable"] and 25 < mem["ours"] < 32 and mem["paper"] == 32.0
    err = table[table["metric"] == "test error %"].iloc[0]
    assert not err["comparable"] and "DIFFERENT DATASET" in err["note"]  # fashion-mnist vs the paper's mnist


def test_metrics_rows_with_gpu_frames(bench_outputs):
    kb, cpu, mlp, _cmp, sizes, trained = bench_outputs
    hw = {**hardware_info(), "gpu": "Fake GPU (sm_90)"}
    gpu = pd.DataFrame([{"size": 8192, "M": 8192, "method": m, "vs_baseline": 30.0, "vs_cublas_fp32": 3.0}
                        for m in ("XNOR CUDA cores incl. packing", "b1 tensor cores incl. packing")])
    gpu_mlp = pd.DataFrame([{"method": "PackedBNN cuda-xnor (Eq. 6)", "speedup_vs_baseline_kernel": 9.0,
                             "speedup_vs_cublas": 2.0, "identical_to_torch_bnn": True}])
    rows = metrics_rows(kb, hw, cpu, mlp, "mnist", trained, sizes, gpu, gpu_mlp)
    gpu_rows = [r for r in rows if r["row"].startswith(("GPU", "MNIST MLP 3x64 inference, GPU"))]
    assert len(gpu_rows) == 5
    assert all(r["paper_key"] in PAPER_BY_KEY and "Fake GPU" in r["dataset"] for r in gpu_rows)


def test_check_sanity_passes_and_fails(bench_outputs, tmp_path):
    kb, cpu, _mlp, cmp_, _sizes, _trained = bench_outputs
    js = tmp_path / "kernels.json"
    js.write_text("{}")
    ok = dict(kb=kb, cpu=cpu, timed_comparison=cmp_, trained_comparison=cmp_, metrics_json=js)
    assert cmp_["exact_beyond_first_layer"] and len(check_sanity(**ok)) == 4
    # a first-layer rounding flip that changes one prediction is counted, not a failure
    flip = {**cmp_, "predictions_identical": False, "prediction_mismatches": 1, "first_layer_mismatches": 1,
            "first_layer_agreement": 1 - 1 / cmp_["first_layer_activations"], "images_with_first_layer_mismatch": 1}
    assert "the other 1 on images" in check_sanity(**{**ok, "timed_comparison": flip})[1]
    with pytest.raises(AssertionError, match="binary layers differ"):
        check_sanity(**{**ok, "trained_comparison": {**cmp_, "exact_beyond_first_layer": False,
                                                     "unexplained_prediction_mismatches": 1}})
    with pytest.raises(AssertionError, match="first-layer agreement"):
        check_sanity(**{**ok, "timed_comparison": {**cmp_, "first_layer_agreement": 0.99}})
    with pytest.raises(AssertionError, match="was not written"):
        check_sanity(**{**ok, "metrics_json": tmp_path / "missing.json"})
    gpu = pd.DataFrame([{"method": "PackedBNN cuda-xnor (Eq. 6)", "identical_to_packed_cpu": False}])
    with pytest.raises(AssertionError, match="CPU kernels"):
        check_sanity(**ok, gpu_mlp=gpu)
    slow = cpu.copy()
    slow["speedup_vs_torch"] = 0.5
    with pytest.raises(AssertionError, match="not faster"):
        check_sanity(**{**ok, "kb": dataclasses.replace(kb, profile="quick"), "cpu": slow})
    torch.manual_seed(0)  # keep global RNG state tidy for later tests
