"""``python -m qnnlib bench convnet``: the binary CIFAR-10 ConvNet on our packed runtime against PyTorch on the CPU.

The same network (:func:`qnnlib.models.convnet.cifar10_convnet`, conv widths scaled by ``width``) runs

* in PyTorch float32, eval mode, with its ±1 weights as plain ``nn.Conv2d``/``nn.Linear`` weights
  (:func:`float_copy`: the binary model's arithmetic without re-binarizing W on every call) — the baseline;
* in PyTorch with int8 dynamic quantization (``torch.ao.quantization.quantize_dynamic``): it quantizes only the
  ``nn.Linear`` layers, the convs stay float32 (the row name says so);
* on our :class:`qnnlib.runtime.packed_convnet.PackedConvNet` (float first conv, then im2col on packed words and
  the XNOR-popcount GEMM of Eq. 7 per binary conv, Alg. 4),

on the same images in batches of ``batch``, timed in interleaved rounds
(:func:`qnnlib.bench.timing.interleaved_medians`). Every row says how many predictions agree with the PyTorch
float32 model; :func:`qnnlib.runtime.export_convnet.compare_convnet` also checks every hidden activation of ours.
A per-layer breakdown splits our time into im2col (the gather of packed words), the GEMM and pool + threshold.

**Which weights.** ``checkpoint``: a ``state_dict`` of the model or a qnnlib training checkpoint
(:func:`qnnlib.train.fit`'s, key ``"model"``). Otherwise the model is trained for ``train_steps`` steps (Adam,
cross-entropy) on Fashion-MNIST padded to 32×32 with its grey channel copied to RGB
(:func:`qnnlib.data.standin.padded_stand_in`; random pixels and labels when it is not available), so that its BN
statistics are those of a trained network; the output says which. Speed does not depend on the weights; these
are **not** CIFAR-10 numbers (no CIFAR-10 accuracy is claimed).
"""

from __future__ import annotations

import copy
import os
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import numba
import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from qnnlib.bench.peers import torch_int8
from qnnlib.bench.timing import interleaved_medians
from qnnlib.gradquant import GradQuant
from qnnlib.layers import QuantAct, QuantConv2d, QuantLinear
from qnnlib.models.convnet import cifar10_convnet
from qnnlib.runtime.export_convnet import compare_convnet, export_convnet
from qnnlib.runtime.hardware import cpu_cores, cpu_model, passive_numba_threads, popcount_isa
from qnnlib.runtime.packed_convnet import PackedConvNet

__all__ = ["FP32", "INT8", "OURS", "SignAct", "float_copy", "load_weights", "training_data", "train_briefly",
           "recalibrate_bn", "prepare", "time_convnet", "layer_breakdown", "run"]

FP32 = "PyTorch float32 (same ±1 weights, eval)"
INT8 = "PyTorch int8 dynamic quantization (Linear layers only; convs stay float32)"
OURS = "ours: PackedConvNet (float conv1, im2col + XNOR-popcount GEMM)"


class SignAct(nn.Module):
    """``sign(x)`` with ``sign(0) = +1`` (Eq. 1) as plain tensor ops: what ``QuantAct(bits=1)`` computes at
    inference, exportable and quantizable."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.where(x >= 0, 1.0, -1.0).to(x.dtype)


@torch.no_grad()
def float_copy(model: nn.Module) -> nn.Sequential:
    """The binary ConvNet as a plain float32 ``nn.Sequential`` (eval): ``nn.Conv2d``/``nn.Linear`` holding
    ``W_b = sign(W)``, the same BN modules, :class:`SignAct` for the binary activations, GradQuant dropped.
    Its forward pass is the binary model's arithmetic, op for op."""
    layers: dict[str, nn.Module] = {}
    for name, m in model.named_children():
        if isinstance(m, GradQuant):
            continue
        if isinstance(m, QuantConv2d):
            c = nn.Conv2d(m.in_channels, m.out_channels, m.kernel_size, m.stride, m.padding, m.dilation, m.groups,
                          bias=m.bias is not None, padding_mode=m.padding_mode)
            c.weight.copy_(m.quantized_weight())
            if m.bias is not None:
                c.bias.copy_(m.bias)
            layers[name] = c
        elif isinstance(m, QuantLinear):
            lin = nn.Linear(m.in_features, m.out_features, bias=m.bias is not None)
            lin.weight.copy_(m.quantized_weight())
            if m.bias is not None:
                lin.bias.copy_(m.bias)
            layers[name] = lin
        elif isinstance(m, QuantAct) and m.bits == 1:
            layers[name] = SignAct()
        else:
            layers[name] = copy.deepcopy(m)
    return nn.Sequential(OrderedDict(layers)).eval()


def load_weights(model: nn.Module, path: str | os.PathLike) -> str:
    """Load a ``state_dict`` or a qnnlib training checkpoint (key ``"model"``) into ``model``; returns a note.
    Raises ``ValueError`` saying which ``--width``/``--fc`` to pass when the shapes do not fit."""
    obj = torch.load(path, map_location="cpu", weights_only=False)
    state = obj.get("model", obj) if isinstance(obj, dict) else obj
    if not isinstance(state, dict):
        raise TypeError(f"{path} holds a {type(state).__name__}, not a state_dict or a qnnlib checkpoint")
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise ValueError(f"{path} does not fit this ConvNet ({exc}); pass the --width and --fc the checkpoint was "
                         f"trained with") from exc
    return f"weights from {path}"


def training_data(n_train: int, n_eval: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor,
                                                                       torch.Tensor | None, str]:
    """(x_train, y_train, x_eval, y_eval or None, note): Fashion-MNIST padded to 3×32×32 (grey copied to RGB) when
    it is available offline, else random 8-bit images with random labels."""
    try:
        from qnnlib.data.standin import padded_stand_in  # noqa: PLC0415

        d = padded_stand_in("cifar10", train_size=max(n_train, 100), valid_size=100, test_size=max(n_eval, 100),
                            seed=seed, download=False)
        x_train, x_eval = (t.expand(-1, 3, -1, -1).contiguous() for t in (d.train.x[:n_train], d.test.x[:n_eval]))
        return (x_train, d.train.y[:n_train], x_eval, d.test.y[:n_eval],
                "Fashion-MNIST padded to 32x32, grey copied to RGB (a stand-in: NOT CIFAR-10)")
    except Exception as exc:  # noqa: BLE001 - any reason the data is not here: fall back, and say so
        g = torch.Generator().manual_seed(seed)
        x = torch.randint(0, 256, (n_train + n_eval, 3, 32, 32), generator=g).float() / 255 * 2 - 1
        y = torch.randint(0, 10, (n_train,), generator=g)
        return x[:n_train], y, x[n_train:], None, f"random 8-bit images and labels (Fashion-MNIST not available: {exc})"


def train_briefly(model: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int, batch: int = 32,
                  seed: int = 0) -> nn.Module:
    """``steps`` Adam steps (lr 1e-3, cross-entropy) on random minibatches of (x, y); leaves the model in eval mode
    with BN running statistics of a trained network."""
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    for _ in range(steps):
        i = torch.randint(0, len(x), (batch,), generator=g)
        opt.zero_grad()
        F.cross_entropy(model(x[i]), y[i]).backward()
        opt.step()
    return model.eval()


@torch.no_grad()
def recalibrate_bn(model: nn.Module, x: torch.Tensor, batch: int = 64) -> nn.Module:
    """Re-estimate every BN layer's running statistics as the plain average over the batches of ``x`` (train-mode
    forward passes with ``momentum=None``, no weight update): the statistics of these weights on this data."""
    norms = [m for m in model.modules() if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d))]
    saved = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    for i in range(0, len(x) - 1, batch):
        model(x[i:i + batch])
    for m, mom in zip(norms, saved):
        m.momentum = mom
    return model.eval()


def prepare(width: float = 0.5, fc: int = 1024, images: int = 500, checkpoint: str | None = None,
            train_steps: int = 20, seed: int = 0) -> tuple[nn.Module, torch.Tensor, torch.Tensor | None, str]:
    """(eval-mode binary ConvNet, evaluation images (N, 3, 32, 32), their labels or None, note on the weights)."""
    torch.manual_seed(seed)
    model = cifar10_convnet(width, fc)
    n_train = 0 if checkpoint else max(train_steps * 32, 64)
    x_tr, y_tr, x_ev, y_ev, data_note = training_data(max(min(n_train, 20_000), 256), images, seed)
    if checkpoint:
        note = load_weights(model, checkpoint) + f"; images: {data_note}"
    else:
        train_briefly(model, x_tr, y_tr, train_steps, seed=seed)
        recalibrate_bn(model, x_tr[:256])
        note = (f"trained {train_steps} steps (batch 32, Adam), BN statistics re-estimated on {min(len(x_tr), 256)} "
                f"training images; data: {data_note}")
    return model.eval(), x_ev, y_ev, note


def _batched(fn: Callable[[torch.Tensor], np.ndarray], x: torch.Tensor, batch: int) -> Callable[[], np.ndarray]:
    def run() -> np.ndarray:
        return np.concatenate([fn(x[i:i + batch]) for i in range(0, len(x), batch)])
    return run


def _torch_fn(m: nn.Module) -> Callable[[torch.Tensor], np.ndarray]:
    def f(xb: torch.Tensor) -> np.ndarray:
        with torch.inference_mode():
            return torch.argmax(m(xb), dim=1).numpy()
    return f


def time_convnet(model: nn.Module, x: torch.Tensor, repeats: int = 3, batch: int = 100, *,
                 packed: PackedConvNet | None = None,
                 extra: dict[str, Callable[[torch.Tensor], np.ndarray]] | None = None,
                 skipped: dict[str, str] | None = None) -> pd.DataFrame:
    """One row per contender on the images ``x`` in batches of ``batch``: ``seconds``, ``images/s``,
    ``speedup_vs_fp32``, ``agreement_pct`` (predictions equal to the PyTorch float32 model's), ``status``.
    ``extra``: more contenders (name -> batch -> predictions), e.g. ONNX Runtime; ``skipped``: name -> why."""
    fmodel = float_copy(model)
    packed = export_convnet(model) if packed is None else packed
    fns: dict[str, Callable[[], Any]] = {FP32: _batched(_torch_fn(fmodel), x, batch),
                                         INT8: _batched(_torch_fn(torch_int8(float_copy(model))), x, batch)}
    for name, fn in (extra or {}).items():
        fns[name] = _batched(fn, x, batch)
    fns[OURS] = _batched(lambda xb: packed.predict(xb), x, batch)
    med, last = interleaved_medians(fns, repeats)
    ref = last[FP32]
    rows = [{"method": name, "seconds": sec, "images/s": len(x) / sec, "speedup_vs_fp32": med[FP32] / sec,
             "agreement_pct": 100.0 * float(np.mean(np.asarray(last[name]) == ref)), "status": "ran"}
            for name, sec in med.items()]
    rows += [{"method": k, "seconds": np.nan, "images/s": np.nan, "speedup_vs_fp32": np.nan, "agreement_pct": np.nan,
              "status": v} for k, v in (skipped or {}).items()]
    return pd.DataFrame(rows)


def layer_breakdown(packed: PackedConvNet, x: torch.Tensor, batch: int = 100) -> pd.DataFrame:
    """Seconds per layer and stage (im2col / gemm / pool+threshold) of one pass over ``x`` in batches of
    ``batch``, with each layer's share of the total (conv1's "gemm" is its float conv)."""
    timings: dict = {}
    for i in range(0, len(x), batch):
        packed.predict(x[i:i + batch], timings=timings)
    layers = list(dict.fromkeys(k[0] for k in timings))
    rows = []
    for name in layers:
        r = {"layer": name, **{s: timings.get((name, s), 0.0) for s in ("im2col", "gemm", "pool+threshold")}}
        r["total"] = r["im2col"] + r["gemm"] + r["pool+threshold"]
        rows.append(r)
    df = pd.DataFrame(rows)
    df["share_pct"] = 100.0 * df["total"] / df["total"].sum()
    return df


def run(width: float = 0.5, fc: int = 1024, images: int = 500, repeats: int = 3, batch: int = 100,
        checkpoint: str | None = None, train_steps: int = 20, seed: int = 0) -> int:
    """Print the machine, the images/s table, the per-layer breakdown and the bit-exactness check; exit code 1 if
    the packed network disagrees with the PyTorch model on any prediction or hidden activation."""
    torch.set_num_threads(cpu_cores())
    spin = passive_numba_threads()
    t0 = time.perf_counter()
    model, x, y, note = prepare(width, fc, images, checkpoint, train_steps, seed)
    packed = export_convnet(model)
    print(f"CIFAR-10 ConvNet, conv widths {packed.widths[:6]} (width {width}), fc {fc}; {len(x)} images of 3x32x32 "
          f"in batches of {batch}; {cpu_model()}, popcount: {popcount_isa()}, torch {torch.__version__} with "
          f"{torch.get_num_threads()} threads; interleaved medians of {repeats} rounds")
    print(f"weights: {note} (prepared in {time.perf_counter() - t0:.0f} s)")
    print(f"Numba threading layer {numba.config.THREADING_LAYER!r} with {numba.get_num_threads()} threads, "
          f"GOMP_SPINCOUNT={spin} (see qnnlib.runtime.hardware.passive_numba_threads)")
    df = time_convnet(model, x, repeats, batch, packed=packed)
    with pd.option_context("display.width", 200, "display.max_colwidth", 120):
        print(df.to_string(index=False, float_format="%.3f"))
        bd = layer_breakdown(packed, x, batch)
        print(f"\nours, per layer (seconds over {len(x)} images, batch {batch}):")
        print(bd.to_string(index=False, float_format="%.4f"))
    conv = bd[bd["im2col"] > 0]
    print(f"binary convs: im2col {conv['im2col'].sum():.3f} s vs GEMM {conv['gemm'].sum():.3f} s vs pool+threshold "
          f"{conv['pool+threshold'].sum():.3f} s")
    r = compare_convnet(model, packed, x[:min(len(x), 200)])
    if y is not None:
        acc = float(np.mean(packed.predict(x) == y.numpy()))
        print(f"accuracy of ours on these {len(x)} stand-in test images: {100 * acc:.1f}% (not a CIFAR-10 number)")
    ours = df.set_index("method").loc[OURS, "agreement_pct"]
    ok = bool(ours == 100.0 and r["exact"])
    print(f"every hidden activation on {r['n_images']} images identical: {r['exact']} (mismatches per layer "
          f"{r['activation_mismatches']})")
    print("our packed ConvNet predicts exactly what the PyTorch model predicts" if ok else
          "MISMATCH: our packed ConvNet disagrees with the PyTorch model")
    return 0 if ok else 1
