"""Notebook 09 (XNOR kernel benchmark): config and profiles, GEMM sweeps, the trained BNN, metrics rows, sanity.

The paper (NIPS 2016 §4, Fig. 2; docs/paper.md §1.5) times an 8192³ binary matrix product on a GTX750 (XNOR
kernel 23× its own float baseline kernel, 3.4× cuBLAS) and the MNIST MLP over the 10k test images (7×
faster with the XNOR kernel than with the baseline kernel, same accuracy). We measure the same kinds of
ratio with every baseline timed in the same run, on the hardware at hand:

- GEMM: :func:`qnnlib.bench.gemm.cpu_gemm_sweep` (Numba XOR-popcount vs ``torch.matmul`` fp32) and, with a
  GPU, :func:`qnnlib.bench.gemm.gpu_gemm_sweep` (tiled float baseline, XNOR CUDA cores, b1 tensor cores,
  cuBLAS fp32, torch TF32/bf16).
- MLP: the paper's architecture 784–3×4096–10 with **random** weights and BN statistics (timing does not
  depend on the values), PyTorch float32 vs :class:`qnnlib.runtime.packed_bnn.PackedBNN`; exactness is checked on
  that model *and* on the trained BNN of notebook 01 (identical predictions on its dataset's test set).

CPU ratios are not the paper's GPU ratios and are stored under their own row names (the paper's number
is quoted in the note). Timings are medians of interleaved runs after warm-up (background load hits all
methods alike); there are no timed assertions except "binary beats float at the largest CPU size" at
the ``quick``/``paper`` profiles.
"""

from __future__ import annotations

import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from torch import nn

from qnnlib.bench import gemm
from qnnlib.bench.mlp import PACKED_EQ6, PACKED_F1, float_mlp, random_bnn, time_mlp_cpu, time_mlp_gpu
from qnnlib.data.mnist import load_mnist
from qnnlib.data.root import display_path
from qnnlib.data.splits import Split
from qnnlib.experiments import config, mnist, runner
from qnnlib.experiments.config import as_dict
from qnnlib.runtime.export import compare_with_model, export_bnn
from qnnlib.runtime.hardware import gpu_available
from qnnlib.runtime.packed_bnn import PackedBNN
from qnnlib.runtime.packed_checkpoint import size_report

__all__ = ["KernelsConfig", "Sanity", "PROFILES", "SANITY", "cpu_sweep", "gpu_sweep", "TrainedBNN", "trained_bnn",
           "TrainedCheck", "check_trained", "MlpTiming", "time_mlp", "checkpoint_sizes", "metrics_rows",
           "write_metrics", "findings", "check_sanity"]


@dataclass(frozen=True)
class KernelsConfig:
    """Notebook 09's sizes at one profile: smoke ≤ ~90 s, quick ≤ ~15 min on 2 CPU cores (docs/profiles.md).

    Stand-in policy: the trained BNN checked for exactness is notebook 01's ``theano`` model at the same
    profile; when that file does not exist, a small theano-recipe BNN (``fallback_*``) is trained here.
    """

    profile: str
    cpu_sizes: tuple[int, ...]  # square GEMM sizes n (M = N = K = n) on the CPU
    cpu_repeats: int  # timed rounds (median), after one warm-up
    gpu_sizes: tuple[int, ...]  # square sizes on a GPU (only when one is present)
    gpu_repeats: int
    mlp_hidden: int  # width of the timed MLP (the paper's: 4096)
    mlp_repeats: int
    fallback_hidden: int  # if notebook 01's model is missing: train this small theano-recipe BNN here
    fallback_epochs: int
    fallback_train_size: int | None
    fallback_valid_size: int | None
    mlp_depth: int = 3  # hidden layers of the timed MLP (the paper's: 3)
    mlp_images: int = 10_000  # test images per timed pass (the paper's: the whole 10k test set)

    def __post_init__(self) -> None:
        for name in ("cpu_sizes", "gpu_sizes"):
            sizes = getattr(self, name)
            if not sizes or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in sizes):
                raise ValueError(f"{name} must be a non-empty tuple of positive integers, got {sizes!r}")
        for name in ("cpu_repeats", "gpu_repeats", "mlp_hidden", "mlp_depth", "mlp_images", "mlp_repeats",
                     "fallback_hidden", "fallback_epochs"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("fallback_train_size", "fallback_valid_size"):
            v = getattr(self, name)
            if v is not None and v < 1:
                raise ValueError(f"{name} must be None (the whole split) or >= 1, got {v}")


PROFILES: dict[str, KernelsConfig] = {
    "smoke": KernelsConfig("smoke", cpu_sizes=(128, 256, 512), cpu_repeats=3, gpu_sizes=(256, 1024), gpu_repeats=10,
                           mlp_hidden=256, mlp_repeats=2, fallback_hidden=128, fallback_epochs=1,
                           fallback_train_size=2000, fallback_valid_size=500),
    "quick": KernelsConfig("quick", cpu_sizes=(256, 512, 1024, 2048, 4096), cpu_repeats=5,
                           gpu_sizes=(1024, 2048, 4096, 8192), gpu_repeats=30, mlp_hidden=4096, mlp_repeats=3,
                           fallback_hidden=512, fallback_epochs=2, fallback_train_size=10_000,
                           fallback_valid_size=2000),
    "paper": KernelsConfig("paper", cpu_sizes=(256, 512, 1024, 2048, 4096), cpu_repeats=7,
                           gpu_sizes=(1024, 2048, 4096, 8192), gpu_repeats=50, mlp_hidden=4096, mlp_repeats=5,
                           fallback_hidden=1024, fallback_epochs=5, fallback_train_size=None,
                           fallback_valid_size=None),
}


@dataclass(frozen=True)
class Sanity:
    """What notebook 09 checks at the end (exactness always; no timed assertion except the one below)."""

    cpu_speedup_at_largest: bool  # the binary GEMM beats torch fp32 at the largest CPU size


SANITY: dict[str, Sanity] = {"smoke": Sanity(False), "quick": Sanity(True), "paper": Sanity(True)}


# ---------------------------------------------------------------------------------------------------
# GEMM sweeps
# ---------------------------------------------------------------------------------------------------


def cpu_sweep(kb: KernelsConfig, seed: int = 0) -> pd.DataFrame:
    """:func:`qnnlib.bench.gemm.cpu_gemm_sweep` over ``kb.cpu_sizes``; adds ``size`` (n) and ``bit-op/s``.

    ``Gop/s`` counts 2·M·N·K operations: for the binary kernel these are bit-ops (one XNOR/XOR and one
    popcount-accumulate per connection), for torch fp32 FLOPs.
    """
    df = gemm.cpu_gemm_sweep(kb.cpu_sizes, repeats=kb.cpu_repeats, seed=seed)
    df.insert(0, "size", df["M"])
    df["bit-op/s"] = np.where(df["method"].str.startswith("binary"), df["Gop/s"] * 1e9, np.nan)
    return df


def gpu_sweep(kb: KernelsConfig, seed: int = 0) -> tuple[pd.DataFrame | None, str]:
    """Verify every CUDA kernel bit-exact, then time the GPU GEMMs; ``(None, reason)`` without a GPU."""
    ok, why = gpu_available()
    if not ok:
        return None, why
    from qnnlib.runtime.gemm_cuda import compile_cuda_kernels  # noqa: PLC0415

    compile_cuda_kernels()
    bad = [c for c in gemm.verify_cuda_kernels() if not c["exact"]]
    if any(c["kernel"] != "b1_wgmma_gemm" for c in bad):
        raise AssertionError(f"CUDA kernels differ from the CPU reference: {bad}")
    if bad:  # the Hopper kernel alone failed its check (as bench gpu does: reported, left out, the rest timed)
        warnings.warn(f"the wgmma kernel failed its check and is left out of the GPU table: {bad[0]}",
                      RuntimeWarning, stacklevel=2)
    df = pd.DataFrame(gemm.gpu_gemm_sweep(kb.gpu_sizes, repeats=kb.gpu_repeats, seed=seed,
                                         wgmma=False if bad else None))
    df.insert(0, "size", df["M"])
    return df, ""


# ---------------------------------------------------------------------------------------------------
# The trained BNN of notebook 01 (or a small one trained here)
# ---------------------------------------------------------------------------------------------------


@dataclass
class TrainedBNN:
    """The trained theano-recipe BNN and the full test split of the dataset it was trained on."""

    model: nn.Module
    origin: str  # where the model came from
    dataset: str  # the dataset it was trained on (and is tested on)
    trained_on: dict  # DatasetSplits.describe() of its training data
    test: Split  # that dataset's whole test split
    test_source: str


def _full_test(name: str) -> tuple[Split, str]:
    data = load_mnist(name)
    return data.test, data.source


def trained_bnn(profile: str, kb: KernelsConfig, *, progress: bool = False) -> TrainedBNN:
    """Notebook 01's trained ``theano`` BNN at ``profile`` (:func:`qnnlib.experiments.mnist.load_trained`).

    If that file does not exist, train a small theano-recipe BNN here (``kb.fallback_*`` sizes, the
    profile's dataset choice, checkpoints under experiment ``kernels``; the model is not saved as
    notebook 01's). Either way the returned test split is the full test set of the training dataset.
    """
    try:
        model, saved = mnist.load_trained(profile, "theano")
        described = dict(saved["dataset"])
        origin = f"notebook 01 model {display_path(runner.model_path(profile, 'mnist', 'theano'))}"
    except FileNotFoundError:
        cfg = config.resolve("mnist", profile, recipes=("theano",), epochs=kb.fallback_epochs,
                             hidden=kb.fallback_hidden, train_size=kb.fallback_train_size,
                             valid_size=kb.fallback_valid_size)
        data = mnist.load_data(cfg)
        run = mnist.run_recipes(cfg, data, experiment="kernels", progress=progress, save_models=False)["theano"]
        model, described = run.model.eval(), data.describe()
        origin = (f"trained in notebook 09 (no notebook 01 model at profile {profile!r}): theano recipe, "
                  f"{kb.fallback_hidden}x3, {kb.fallback_epochs} epoch(s)")
    test, source = _full_test(described["name"])
    return TrainedBNN(model=model.eval(), origin=origin, dataset=described["name"], trained_on=described,
                      test=test, test_source=source)


@dataclass
class TrainedCheck:
    """The trained BNN exported to a :class:`~qnnlib.runtime.packed_bnn.PackedBNN` and checked on its test set."""

    packed: PackedBNN
    comparison: dict[str, Any]  # qnnlib.runtime.export.compare_with_model
    test_error: float  # of the packed network's predictions (fraction)


def check_trained(trained: TrainedBNN) -> TrainedCheck:
    """Export ``trained.model``, compare it with the PyTorch model on the whole test split, and score it."""
    packed = export_bnn(trained.model)
    comparison = compare_with_model(trained.model, packed, trained.test.x)
    pred = packed.predict(trained.test.x)
    return TrainedCheck(packed, comparison, float((pred != trained.test.y.numpy()).mean()))


@dataclass
class MlpTiming:
    """The timed MLP (random weights, the profile's width) and its CPU (and GPU) inference timings."""

    bnn: nn.Module
    packed: PackedBNN
    n_images: int
    cpu: pd.DataFrame  # qnnlib.bench.mlp.time_mlp_cpu
    gpu: pd.DataFrame | None  # qnnlib.bench.mlp.time_mlp_gpu (None without a GPU)
    comparison: dict[str, Any]  # the packed network vs the PyTorch BNN on the timed images


def time_mlp(kb: KernelsConfig, images: Any) -> MlpTiming:
    """Time ``784-kb.mlp_depth x kb.mlp_hidden-10`` inference on ``images[:kb.mlp_images]``: float vs packed."""
    bnn = random_bnn(kb.mlp_hidden, kb.mlp_depth)
    packed = export_bnn(bnn)
    images = images[: kb.mlp_images]
    floats = float_mlp(kb.mlp_hidden, kb.mlp_depth)
    return MlpTiming(bnn, packed, len(images), time_mlp_cpu(bnn, packed, floats, images, repeats=kb.mlp_repeats),
                     time_mlp_gpu(bnn, packed, floats, images, repeats=kb.mlp_repeats),
                     compare_with_model(bnn, packed, images))


def checkpoint_sizes(timing: MlpTiming, trained: TrainedBNN, check: TrainedCheck) -> dict[str, dict[str, float]]:
    """:func:`~qnnlib.runtime.packed_checkpoint.size_report` of the timed and the trained network (temporary folder)."""
    with tempfile.TemporaryDirectory() as d:
        return {"timed": size_report(timing.bnn, Path(d) / "timed", timing.packed),
                "trained": size_report(trained.model, Path(d) / "trained", check.packed)}


# ---------------------------------------------------------------------------------------------------
# Metrics rows and sanity
# ---------------------------------------------------------------------------------------------------


def _speedup(df: pd.DataFrame, size: int, method: str, col: str = "speedup_vs_torch") -> float:
    sel = df[(df["size"] == size) & (df["method"] == method)]
    return float(sel[col].iloc[0])


def metrics_rows(kb: KernelsConfig, hw: dict, cpu: pd.DataFrame, mlp: pd.DataFrame, timing_dataset: str,
                 trained: dict, sizes: dict, gpu: pd.DataFrame | None = None,
                 gpu_mlp: pd.DataFrame | None = None) -> list[dict]:
    """Rows for ``metrics["rows"]`` (:mod:`qnnlib.experiments.results`), CPU rows under their own names.

    ``trained``: ``{"dataset", "test_error", "comparison"}`` (``comparison`` from
    :func:`qnnlib.runtime.export.compare_with_model`); ``sizes``: :func:`qnnlib.runtime.packed_checkpoint.size_report`
    of the timed width-``kb.mlp_hidden`` model and its ``PackedBNN``.
    """
    n = max(kb.cpu_sizes)
    cpu_tag = f"CPU {hw['cpu']}, {hw['torch_threads']} threads"
    rows = [
        {"row": f"CPU binary_matmul vs torch.matmul fp32 ({n}^3)", "metric": "speed-up x",
         "value": _speedup(cpu, n, "binary_matmul cpu"), "dataset": f"{n}x{n}x{n} ±1 matmul ({cpu_tag})",
         "note": f"packed operands; popcount: {hw['cpu_popcount']}. Paper: XNOR 3.4x cuBLAS, 23x its baseline "
                 "kernel, on a GTX750 at 8192^3 - different hardware, not comparable"},
        {"row": f"CPU binary_matmul incl. packing vs torch.matmul fp32 ({n}^3)", "metric": "speed-up x",
         "value": _speedup(cpu, n, "binary incl. packing"), "dataset": f"{n}x{n}x{n} ±1 matmul ({cpu_tag})"},
    ]
    arch = f"3x{kb.mlp_hidden}" if kb.mlp_depth == 3 else f"{kb.mlp_depth}x{kb.mlp_hidden}"
    for method, label in ((PACKED_EQ6, "all layers binary, Eq. 6"), (PACKED_F1, "layer 1 float")):
        r = mlp[mlp["method"] == method].iloc[0]
        rows.append({"row": f"MNIST MLP {arch} inference, CPU: PackedBNN ({label}) vs PyTorch float32",
                     "metric": "speed-up x", "value": float(r["speedup_vs_float"]), "dataset": timing_dataset,
                     "note": f"{int(r['images'])} test images, random weights (timing only); predictions identical "
                             f"to the PyTorch BNN: {bool(r['identical_to_torch_bnn'])}. Paper: 7x XNOR vs baseline "
                             "kernel on a GTX750 - different hardware and baseline, not comparable"})
    cmp_ = trained["comparison"]
    rows += [
        {"row": "Trained BNN: PackedBNN vs PyTorch eval-mode predictions", "metric": "identical predictions %",
         "value": 100.0 * (1 - cmp_["prediction_mismatches"] / cmp_["n_images"]), "dataset": trained["dataset"],
         "note": f"{cmp_['n_images']} test images; {trained['origin']}"},
        {"row": "Trained BNN: first layer (Eq. 6, float64 threshold) vs PyTorch float32", "metric": "activation agreement %",
         "value": 100.0 * cmp_["first_layer_agreement"], "dataset": trained["dataset"],
         "note": f"{cmp_['first_layer_mismatches']} of {cmp_['first_layer_activations']} activations differ; "
                 f"hidden layers given the same inputs: {cmp_['hidden_layer_mismatches']} mismatches"},
        {"row": "MNIST MLP run-time (XNOR kernel)", "metric": "test error %", "value": 100.0 * trained["test_error"],
         "dataset": trained["dataset"], "paper_key": "kernels:MNIST MLP run-time (XNOR kernel):test error %",
         "note": f"PackedBNN on the CPU; {trained['origin']} (paper: 3x4096 trained 1000 epochs)"},
        {"row": f"Packed checkpoint vs float state_dict, binary layers ({arch})", "metric": "memory size reduction x",
         "value": float(sizes["binary_weight_ratio"]), "dataset": "-",
         "paper_key": "memory:BNN vs 32-bit DNN:memory size reduction x",
         "note": f"{sizes['binary_weight_float_bytes']:,} B float32 weights vs {sizes['binary_weight_packed_bytes']:,} "
                 "B packed words (64-bit words, padding included)"},
        {"row": f"Packed checkpoint vs float state_dict, whole file on disk ({arch})", "metric": "file size reduction x",
         "value": float(sizes["disk_ratio"]), "dataset": "-",
         "note": f"{sizes['float_state_dict_bytes']:,} B torch.save(state_dict) vs {sizes['packed_bytes']:,} B "
                 "uncompressed .npz (weights, thresholds, output BN)"},
    ]
    if gpu is not None:
        g = int(gpu["size"].max())
        tag = f"{g}x{g}x{g} binary matmul ({hw['gpu']})"
        for method, key in (("XNOR CUDA cores incl. packing", "XNOR kernel vs baseline kernel"),
                            ("b1 tensor cores incl. packing", "XNOR kernel vs baseline kernel")):
            sel = gpu[(gpu["size"] == g) & (gpu["method"] == method)]
            if len(sel):
                rows.append({"row": f"GPU {method} vs baseline kernel ({g}^3)", "metric": "speed-up x",
                             "value": float(sel["vs_baseline"].iloc[0]), "dataset": tag,
                             "paper_key": f"kernels:{key}:speed-up x"})
                rows.append({"row": f"GPU {method} vs cuBLAS fp32 ({g}^3)", "metric": "speed-up x",
                             "value": float(sel["vs_cublas_fp32"].iloc[0]), "dataset": tag,
                             "paper_key": "kernels:XNOR kernel vs cuBLAS:speed-up x"})
    if gpu_mlp is not None:
        for _, r in gpu_mlp[gpu_mlp["method"].str.startswith("PackedBNN")].iterrows():
            rows.append({"row": f"MNIST MLP {arch} inference, GPU: {r['method']} vs float MLP on the baseline kernel",
                         "metric": "speed-up x", "value": float(r["speedup_vs_baseline_kernel"]),
                         "dataset": f"{timing_dataset} ({hw['gpu']})",
                         "paper_key": "kernels:MNIST MLP, XNOR vs baseline kernel:speed-up x",
                         "note": f"random weights; identical to the PyTorch BNN: {r['identical_to_torch_bnn']}; "
                                 f"vs cuBLAS fp32 {r['speedup_vs_cublas']:.2f}x"})
    return rows


def _check_exact(what: str, c: dict[str, Any], passed: list[str]) -> None:
    """Every binary layer exact; the first layer's float32-rounding flips rare; no unexplained difference."""
    assert c["exact_beyond_first_layer"], (
        f"{what}: binary layers differ from PyTorch (hidden {c['hidden_layer_mismatches']}, output "
        f"{c['output_argmax_mismatches']}, unexplained predictions {c['unexplained_prediction_mismatches']})")
    assert c["first_layer_agreement"] >= 0.999, f"{what}: first-layer agreement {c['first_layer_agreement']:.8f}"
    passed.append(f"{what}: binary layers exact; {c['n_images'] - c['prediction_mismatches']}/{c['n_images']} "
                  f"predictions identical, the other {c['prediction_mismatches']} on images where PyTorch's float32 "
                  f"first layer rounds across a threshold ({c['first_layer_mismatches']} of "
                  f"{c['first_layer_activations']} activations)")


def check_sanity(kb: KernelsConfig, *, cpu: pd.DataFrame, timed_comparison: dict[str, Any],
                 trained_comparison: dict[str, Any], metrics_json: Any, gpu_mlp: pd.DataFrame | None = None
                 ) -> list[str]:
    """Assert the notebook's sanity bounds; returns the checks that passed (``AssertionError`` names a failure).

    Always: every CPU GEMM exact; on the timed random model and on the trained model's test set, every
    binary layer of the PackedBNN reproduces PyTorch exactly and the only differences are first-layer
    activations where PyTorch's float32 GEMM rounds across a threshold (at most 1 in 1000, each
    counted; :func:`qnnlib.runtime.export.compare_with_model`); GPU predictions equal the CPU kernels';
    the metrics JSON exists. ``quick``/``paper``: the binary GEMM is faster than torch fp32 at the largest
    CPU size.
    """
    from pathlib import Path  # noqa: PLC0415

    passed: list[str] = []
    assert bool(cpu["exact"].all()), "a binary GEMM result differs from the float product"
    passed.append(f"binary GEMM exact at sizes {sorted(set(cpu['size']))}")
    _check_exact("timed (random) model", timed_comparison, passed)
    _check_exact("trained model", trained_comparison, passed)
    if gpu_mlp is not None:
        rows = gpu_mlp[gpu_mlp["method"].str.startswith("PackedBNN")]
        assert bool(rows["identical_to_packed_cpu"].all()), "GPU PackedBNN predictions differ from the CPU kernels'"
        passed.append("GPU PackedBNN predictions identical to the CPU kernels'")
    if SANITY[kb.profile].cpu_speedup_at_largest:
        n = max(kb.cpu_sizes)
        s = _speedup(cpu, n, "binary_matmul cpu")
        assert s > 1.0, f"binary GEMM is not faster than torch fp32 at {n}^3 ({s:.2f}x)"
        passed.append(f"binary GEMM {s:.1f}x faster than torch fp32 at {n}^3")
    assert Path(metrics_json).is_file(), f"metrics JSON {metrics_json} was not written"
    passed.append(f"{display_path(metrics_json)} written")
    return passed


def write_metrics(kb: KernelsConfig, hw: dict[str, Any], cpu: pd.DataFrame, gpu: pd.DataFrame | None,
                  gpu_skipped: str, trained: TrainedBNN, check: TrainedCheck, timing: MlpTiming,
                  sizes: dict[str, dict[str, float]], wall_time_s: float) -> Path:
    """Write ``results/<profile>/kernels.json`` (rows, every table, the comparisons and sizes)."""
    from qnnlib.experiments import results  # noqa: PLC0415

    rows = metrics_rows(kb, hw, cpu, timing.cpu, trained.dataset,
                        {"dataset": trained.dataset, "test_error": check.test_error, "comparison": check.comparison,
                         "origin": trained.origin}, sizes["timed"], gpu, timing.gpu)
    return results.write_metrics(
        "kernels", kb.profile, config={"kernel_bench": as_dict(kb), "hardware": hw},
        metrics={"rows": rows, "cpu_gemm": cpu.to_dict("records"), "mlp_inference": timing.cpu.to_dict("records"),
                 "gpu_gemm": None if gpu is None else gpu.to_dict("records"),
                 "gpu_mlp_inference": None if timing.gpu is None else timing.gpu.to_dict("records"),
                 "gpu_skipped_reason": gpu_skipped or None, "trained_comparison": check.comparison,
                 "timed_model_comparison": timing.comparison, "sizes_timed_model": sizes["timed"],
                 "sizes_trained_model": sizes["trained"]},
        history=[],
        dataset={"name": trained.dataset, "sizes": {"test": len(trained.test)}, "source": trained.test_source,
                 "trained_on": trained.trained_on, "model": trained.origin},
        wall_time_s=wall_time_s)


def findings(kb: KernelsConfig, hw: dict[str, Any], cpu: pd.DataFrame, timing: MlpTiming, check: TrainedCheck,
             trained: TrainedBNN, sizes: dict[str, dict[str, float]], gpu_skipped: str) -> list[str]:
    """What this run measured, in sentences (every number from the run's tables)."""
    n = max(kb.cpu_sizes)
    by = timing.cpu.set_index("method")
    c, s = check.comparison, sizes["timed"]
    lines = [f"CPU {hw['cpu']} ({hw['cpu_popcount']}): binary GEMM {n}^3 {_speedup(cpu, n, 'binary_matmul cpu'):.1f}x "
             f"torch fp32 ({_speedup(cpu, n, 'binary incl. packing'):.1f}x including packing both operands)."]
    lines += [f"MLP 784-{kb.mlp_depth}x{kb.mlp_hidden}-10, {timing.n_images} images, {m}: "
              f"{by.loc[m, 'speedup_vs_float']:.1f}x PyTorch float32, {by.loc[m, 'speedup_vs_torch_bnn']:.1f}x the "
              "PyTorch BNN." for m in (PACKED_EQ6, PACKED_F1)]
    lines += [f"Trained BNN ({trained.dataset}): {c['n_images'] - c['prediction_mismatches']}/{c['n_images']} "
              f"predictions identical; first-layer agreement {100 * c['first_layer_agreement']:.4f}%; test error via "
              f"PackedBNN {100 * check.test_error:.2f}%.",
              f"Packed checkpoint: binary layers {s['binary_weight_ratio']:.1f}x smaller, whole file "
              f"{s['disk_ratio']:.1f}x ({s['float_state_dict_bytes'] / 2**20:.1f} MiB -> "
              f"{s['packed_bytes'] / 2**20:.2f} MiB).",
              "GPU: " + (f"skipped ({gpu_skipped})" if hw.get("gpu") is None else str(hw["gpu"]))]
    return lines
