"""``python -m qnnlib bench peers``: the MNIST MLP on our packed runtime against what a user would pick instead.

Every contender runs the same 784–3×H–10 MLP (random weights: speed does not depend on them,
:func:`qnnlib.bench.mlp.random_bnn`) on the same images, whole batch at once, timed in interleaved rounds
(:func:`qnnlib.bench.timing.interleaved_medians`); each speed-up is against PyTorch float32 measured in the same run.
Each row also says how many predictions agree with the PyTorch model of the same weights (the float32 MLP for the
float contenders, the PyTorch BNN for ours), so a fast but wrong answer shows.

Contenders (a missing one is skipped and the table says why and how to install it):

* PyTorch float32 — the baseline;
* PyTorch int8 dynamic quantization (``torch.ao.quantization.quantize_dynamic``: int8 weights, activations
  quantized per batch; the ``x86``/``fbgemm`` engine; torch 2.13 marks this API deprecated in favour of torchao,
  which is not installed here);
* ONNX Runtime int8 dynamic quantization (``pip install onnx onnxruntime``);
* Larq Compute Engine — its converter needs TensorFlow and a Keras model, which this benchmark does not build: the
  row is skipped and says so (not measured here);
* ours: ``PackedBNN`` with every layer binary (Eq. 6 bit-planes) and with a float first layer.

``--convnet`` (:func:`time_convnet_peers`) runs the same contenders on the binary CIFAR-10 ConvNet instead
(:mod:`qnnlib.bench.convnet`: width-scaled, briefly trained on a stand-in so its BN statistics are realistic): PyTorch
float32 with the ±1 weights, PyTorch int8 dynamic quantization (it quantizes only the ``nn.Linear`` layers; the convs
stay float32), ONNX Runtime int8 dynamic quantization of the same float graph (convs and fc layers), LCE (skipped,
as above) and our ``PackedConvNet``.
"""

from __future__ import annotations

import importlib.util
import io
import logging
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from qnnlib.bench.mlp import float_mlp, random_bnn
from qnnlib.bench.timing import interleaved_medians
from qnnlib.runtime.bitplanes import inputs_from_pixels
from qnnlib.runtime.export import export_bnn
from qnnlib.runtime.hardware import cpu_model, passive_numba_threads, popcount_isa

__all__ = ["FP32", "INT8", "ORT", "LCE", "OURS_EQ6", "OURS_F1", "torch_int8", "onnxruntime_int8", "time_peers",
           "time_convnet_peers", "run"]

FP32 = "PyTorch float32"
INT8 = "PyTorch int8 dynamic quantization"
ORT = "ONNX Runtime int8 dynamic quantization"
LCE = "Larq Compute Engine"
OURS_EQ6 = "ours: PackedBNN, all layers binary (Eq. 6)"
OURS_F1 = "ours: PackedBNN, float first layer"


def torch_int8(model: nn.Module) -> nn.Module:
    """``model`` with every ``nn.Linear`` dynamically quantized to int8 (PyTorch's ``x86`` engine when present)."""
    engines = torch.backends.quantized.supported_engines
    torch.backends.quantized.engine = "x86" if "x86" in engines else "fbgemm" if "fbgemm" in engines else engines[-1]
    with warnings.catch_warnings():  # torch 2.13 announces the deprecation of torch.ao.quantization (torchao succeeds it)
        warnings.filterwarnings("ignore", message=".*quantize_per_tensor.*deprecated", category=UserWarning)
        warnings.filterwarnings("ignore", message=".*torch.ao.quantization is deprecated", category=DeprecationWarning)
        return torch.ao.quantization.quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8).eval()


def onnxruntime_int8(model: nn.Module, example: torch.Tensor, threads: int) -> Callable[[np.ndarray], np.ndarray]:
    """``model`` exported to ONNX, dynamically quantized to int8 by ONNX Runtime; returns ``x -> scores``.
    Raises ``ImportError`` naming the packages when ``onnx``/``onnxruntime`` are missing."""
    missing = [m for m in ("onnx", "onnxruntime") if importlib.util.find_spec(m) is None]
    if missing:
        raise ImportError(f"{', '.join(missing)} not installed (pip install onnx onnxruntime)")
    import onnxruntime as ort  # noqa: PLC0415
    from onnxruntime.quantization import QuantType, quantize_dynamic  # noqa: PLC0415

    buf = io.BytesIO()
    with warnings.catch_warnings():  # the TorchScript exporter: the default dynamo one needs onnxscript too
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(model, (example,), buf, input_names=["x"], output_names=["y"],
                          dynamic_axes={"x": {0: "n"}, "y": {0: "n"}}, dynamo=False)
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "m.onnx", Path(tmp) / "m.int8.onnx"
        src.write_bytes(buf.getvalue())
        root = logging.getLogger()
        level, root.level = root.level, logging.ERROR  # ORT logs a pre-processing hint on the root logger
        try:
            quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8)
        finally:
            root.setLevel(level)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        sess = ort.InferenceSession(str(dst), opts, providers=["CPUExecutionProvider"])
    return lambda x: sess.run(None, {"x": x})[0]


def time_peers(hidden: int = 4096, images: int = 10_000, repeats: int = 3, seed: int = 0) -> pd.DataFrame:
    """One row per contender: seconds, images/s, ``speedup_vs_fp32``, ``agreement_pct`` (predictions equal to the
    PyTorch model of the same weights), ``status`` (``"ran"`` or why it was skipped)."""
    g = torch.Generator().manual_seed(seed)
    pixels = torch.randint(0, 256, (images, 784), generator=g, dtype=torch.uint8).numpy()
    x = inputs_from_pixels(pixels)
    xt = torch.as_tensor(x, dtype=torch.float32)
    fmodel, bnn = float_mlp(hidden, seed=seed), random_bnn(hidden, seed=seed)
    packed = export_bnn(bnn)
    threads = torch.get_num_threads()

    def torch_fn(m: nn.Module) -> Callable[[], np.ndarray]:
        def f() -> np.ndarray:
            with torch.inference_mode():
                return torch.argmax(m(xt), dim=1).numpy()
        return f

    fns: dict[str, Callable[[], Any]] = {FP32: torch_fn(fmodel), INT8: torch_fn(torch_int8(float_mlp(hidden, seed=seed)))}
    skipped: dict[str, str] = {}
    try:
        ort_run = onnxruntime_int8(float_mlp(hidden, seed=seed), xt[:2], threads)
        xn = xt.numpy()  # inputs_from_pixels returns a float32 tensor
        fns[ORT] = lambda: np.argmax(ort_run(xn), axis=1)
    except ImportError as exc:
        skipped[ORT] = f"skipped: {exc}"
    skipped[LCE] = _lce_status()
    fns[OURS_EQ6] = lambda: packed.predict(pixels, "cpu")
    fns[OURS_F1] = lambda: packed.predict(pixels, "cpu", first_layer="float")
    med, last = interleaved_medians(fns, repeats)
    with torch.inference_mode():
        ref_float = torch.argmax(fmodel(xt), dim=1).numpy()
        ref_bnn = torch.argmax(bnn(xt), dim=1).numpy()
    rows = []
    for name, sec in med.items():
        ref = ref_bnn if name.startswith("ours") else ref_float
        rows.append({"method": name, "seconds": sec, "images/s": images / sec, "speedup_vs_fp32": med[FP32] / sec,
                     "agreement_pct": 100.0 * float(np.mean(np.asarray(last[name]) == ref)), "status": "ran"})
    rows += [{"method": k, "seconds": np.nan, "images/s": np.nan, "speedup_vs_fp32": np.nan, "agreement_pct": np.nan,
              "status": v} for k, v in skipped.items()]
    return pd.DataFrame(rows)


def _lce_status() -> str:
    return ("skipped: not installed" if importlib.util.find_spec("larq_compute_engine") is None else
            "skipped: installed, but its converter needs TensorFlow and a Keras model, which this benchmark "
            "does not build")


def time_convnet_peers(width: float = 0.5, fc: int = 1024, images: int = 500, repeats: int = 3, batch: int = 100,
                       train_steps: int = 20, seed: int = 0) -> tuple[pd.DataFrame, str]:
    """The ConvNet table: :func:`qnnlib.bench.convnet.time_convnet`'s rows (PyTorch float32 and int8, ours) plus
    ONNX Runtime int8 (or why it was skipped) and LCE (skipped); agreement with the PyTorch float32 model of the
    same ±1 weights. Returns (table, note on the weights and data)."""
    from qnnlib.bench import convnet  # noqa: PLC0415 - bench.convnet imports this module's torch_int8

    model, x, _y, note = convnet.prepare(width, fc, images, None, train_steps, seed)
    extra, skipped = {}, {}
    try:
        ort_run = onnxruntime_int8(convnet.float_copy(model), x[:2], torch.get_num_threads())
        extra[ORT + " (convs and fc layers)"] = lambda xb: np.argmax(ort_run(xb.numpy()), axis=1)
    except ImportError as exc:
        skipped[ORT] = f"skipped: {exc}"
    skipped[LCE] = _lce_status()
    return convnet.time_convnet(model, x, repeats, batch, extra=extra, skipped=skipped), note


def run(hidden: int = 4096, images: int = 10_000, repeats: int = 3, *, convnet: bool = False, width: float = 0.5,
        fc: int = 1024, train_steps: int = 20) -> int:
    """Print :func:`time_peers`'s table with the machine (CPU, popcount ISA, threads); exit code 1 if our packed
    network disagrees with the PyTorch BNN on any image. ``convnet=True``: :func:`time_convnet_peers`'s table
    instead (``width`` scales the convs, ``fc`` units per hidden fc layer, ``train_steps`` of training; ``images``
    images in batches of 100)."""
    if convnet:

        spin = passive_numba_threads()
        print(f"CIFAR-10 ConvNet (conv width {width}) inference on {images} images in batches of 100, {cpu_model()}, "
              f"popcount: {popcount_isa()}, torch {torch.__version__} with {torch.get_num_threads()} threads; "
              f"interleaved medians of {repeats} rounds; agreement: with the PyTorch float32 model of the same ±1 "
              f"weights; GOMP_SPINCOUNT={spin} for Numba's OpenMP threads")
        df, note = time_convnet_peers(width, fc, images=images, repeats=repeats, train_steps=train_steps)
        print(f"weights: {note}")
        with pd.option_context("display.width", 200, "display.max_colwidth", 120):
            print(df.to_string(index=False, float_format="%.3f"))
        ok = bool((df[df["method"].str.startswith("ours")]["agreement_pct"] == 100.0).all())
        print("our packed ConvNet predicts exactly what the PyTorch model predicts" if ok else
              "MISMATCH: our packed ConvNet disagrees with the PyTorch model")
        return 0 if ok else 1
    print(f"MLP 784-3x{hidden}-10 inference on {images} images (whole batch), {cpu_model()}, popcount: "
          f"{popcount_isa()}, torch {torch.__version__} with {torch.get_num_threads()} threads; interleaved medians "
          f"of {repeats} rounds; agreement: with the PyTorch model of the same weights (float32 MLP / PyTorch BNN)")
    df = time_peers(hidden, images, repeats)
    with pd.option_context("display.width", 200, "display.max_colwidth", 120):
        print(df.to_string(index=False, float_format="%.3f"))
    ours = df[df["method"].str.startswith("ours")]
    ok = bool((ours["agreement_pct"] == 100.0).all())
    print("our packed network predicts exactly what the PyTorch BNN predicts" if ok else
          "MISMATCH: our packed network disagrees with the PyTorch BNN")
    return 0 if ok else 1
