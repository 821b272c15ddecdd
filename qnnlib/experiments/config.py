"""One home for configuration: the profiles, the experiment registry, and ``resolve``.

``resolve(experiment, profile, **overrides)`` returns the frozen config dataclass of an experiment at a
profile, with any field of it (or of the dataclasses nested in it: recipes, training, precision, ...)
replaced by an override. Every notebook prints the config it resolved, and the metrics JSON stores it.

Profiles (docs/profiles.md):

* ``smoke`` — CI: each notebook ≤ ~90 s on 2 CPU cores; tiny subsets and widths; proves the pipeline.
* ``quick`` — a laptop CPU: each notebook ≤ ~15 min on 2 cores; reduced widths/epochs; shows the trend.
* ``paper`` — a GPU: the authors' settings (docs/paper.md), as close as the paper lets us.

``$QNNLIB_PROFILE`` overrides the profile a notebook asks for (nbval runs every notebook at ``smoke``).

Each experiment lives in its own module (:data:`EXPERIMENTS` names it) which defines, side by side, its
frozen config dataclass, ``PROFILES`` (profile → complete config), ``SANITY`` (profile → the bounds its
notebook checks) and its stand-in policy (what runs when the paper's data or model is not available).

Overrides (:func:`override`): ``None`` keeps the profile's value; a name that is no field anywhere in
the config raises ``ValueError`` listing the valid names; a value of the wrong type raises ``TypeError``
naming the field and the expected type (a single string is accepted where a tuple of strings is
expected, a list where a tuple is, an int where a float is; a float is never taken for an int, nor a
bool for a number). A name found at several places (e.g. ``epochs`` in every recipe) is replaced at all
of them. Range checks (``epochs >= 1``, bit widths, ...) are the dataclasses' own ``__post_init__``
checks, run as the replaced config is built, so a bad value fails before any work starts.
"""

from __future__ import annotations

import dataclasses
import enum
import importlib
import json
import numbers
import os
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

__all__ = ["PROFILES", "PROFILE_ENV", "Experiment", "EXPERIMENTS", "default_profile", "experiment",
           "resolve", "override", "overridable", "from_dict", "as_dict"]

PROFILES = ("smoke", "quick", "paper")
PROFILE_ENV = "QNNLIB_PROFILE"
_NOT_OVERRIDABLE = frozenset({"profile", "name"})  # identity fields: chosen by the profile / the recipe


@dataclass(frozen=True)
class Experiment:
    """One experiment of the collection: its notebook and the module holding its config."""

    name: str  # key of the metrics JSON (results/<profile>/<name>.json) and of --only
    notebook: str  # file in notebooks/
    module: str  # defines PROFILES (profile -> config dataclass) and SANITY
    title: str


EXPERIMENTS: dict[str, Experiment] = {e.name: e for e in (
    Experiment("tour", "00_tour.ipynb", "qnnlib.experiments.tour",
               "A tour of qnnlib: quantizers, shift-based BN and AdaMax, XNOR-popcount"),
    Experiment("mnist", "01_mnist_bnn.ipynb", "qnnlib.experiments.mnist",
               "Binarized MLP on MNIST (Table 1, MNIST column)"),
    Experiment("cifar10", "02_cifar10_bnn.ipynb", "qnnlib.experiments.cifar10",
               "Binarized ConvNet on CIFAR-10 (Table 1, CIFAR-10 column)"),
    Experiment("svhn", "03_svhn_bnn.ipynb", "qnnlib.experiments.svhn",
               "Binarized ConvNet on SVHN (Table 1, SVHN column)"),
    Experiment("imagenet", "04_imagenet_qnn.ipynb", "qnnlib.experiments.imagenet",
               "ImageNet QNNs: AlexNet and GoogLeNet at low bit widths, one process or many (torchrun, DDP)"),
    Experiment("ptb", "05_ptb_qrnn.ipynb", "qnnlib.experiments.ptb",
               "Quantized RNN and LSTM language models on Penn Treebank (§Language Models)"),
    Experiment("gradients", "06_gradient_quantization.ipynb", "qnnlib.experiments.gradients",
               "Training with quantized gradients: bits and quantizer (§Quantized gradients)"),
    Experiment("ablation", "07_shift_bn_adamax.ipynb", "qnnlib.experiments.ablation",
               "Shift-based BN and shift-based AdaMax ablation, stochastic binarization, code vs paper text"),
    Experiment("energy", "08_energy_memory.ipynb", "qnnlib.experiments.energy",
               "Energy, memory and filter repetition (§3)"),
    Experiment("kernels", "09_xnor_kernel_benchmark.ipynb", "qnnlib.experiments.kernels",
               "XNOR kernels: binary GEMM and bit-exact BNN inference (§4, Fig. 2)"),
    Experiment("summary", "10_summary.ipynb", "qnnlib.experiments.report", "Paper vs reproduced, all experiments"),
)}
"""The registry, in execution order: the reproduction CLI runs the notebooks in this order."""


def default_profile(requested: str | None = "quick") -> str:
    """``$QNNLIB_PROFILE`` if set, else ``requested`` (default ``quick``); validated."""
    profile = os.environ.get(PROFILE_ENV) or requested or "quick"
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r} (from {PROFILE_ENV} or the notebook); choose one of {PROFILES}")
    return profile


def experiment(name: str) -> types.ModuleType:
    """The module of a registered experiment (``ValueError`` listing the registered names otherwise)."""
    if name not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {name!r}; registered experiments: {tuple(EXPERIMENTS)}")
    return importlib.import_module(EXPERIMENTS[name].module)


def resolve(experiment_name: str, profile: str | None = None, /, **overrides: Any) -> Any:
    """The config of ``experiment_name`` at ``profile`` (``$QNNLIB_PROFILE`` wins) with ``overrides``.

    ``overrides`` may also contain ``overrides={...}`` (a dict, or its JSON text as Papermill's ``-p``
    passes it): the way a notebook forwards any field without naming it in its parameters cell.
    """
    module = experiment(experiment_name)
    base = module.PROFILES[default_profile(profile)]
    extra = overrides.pop("overrides", None)
    if extra is not None:
        if isinstance(extra, str):
            try:
                extra = json.loads(extra)
            except json.JSONDecodeError as exc:
                raise ValueError(f"overrides must be a dict or its JSON text, got {extra!r} ({exc})") from None
        if not isinstance(extra, Mapping):
            raise TypeError(f"overrides must be a dict of field names to values, got {type(extra).__name__}")
        both = sorted(set(extra) & {k for k, v in overrides.items() if v is not None})
        if both:
            raise ValueError(f"{both} given both as parameters and inside overrides; give each once")
        overrides = {**overrides, **extra}
    return override(base, **overrides)


# ------------------------------------------------------------------------------------ overrides
def _is_container(hint: Any, value: Any = None) -> bool:
    """Mappings of dataclasses (e.g. ``recipe_configs``) are walked into, not overridden as a whole."""
    if hint in (dict, Mapping) or get_origin(hint) in (dict, Mapping, typing.Mapping):
        return value is None or (isinstance(value, Mapping) and all(dataclasses.is_dataclass(v) for v in value.values()))
    return False


def _fields(obj: Any) -> list[tuple[str, Any, Any]]:
    """(name, value, type hint) of a dataclass instance's fields."""
    hints = get_type_hints(type(obj))
    return [(f.name, getattr(obj, f.name), hints.get(f.name, Any)) for f in dataclasses.fields(obj)]


def overridable(cfg: Any) -> dict[str, list[Any]]:
    """Every overridable field name in ``cfg`` and its nested dataclasses → the type hints it has there."""
    out: dict[str, list[Any]] = {}

    def walk(obj: Any) -> None:
        for name, value, hint in _fields(obj):
            if _is_container(hint, value):
                for v in value.values():
                    if dataclasses.is_dataclass(v):
                        walk(v)
                continue
            if name not in _NOT_OVERRIDABLE:
                out.setdefault(name, [])
                if hint not in out[name]:
                    out[name].append(hint)
            if dataclasses.is_dataclass(value) and not isinstance(value, type):
                walk(value)

    walk(cfg)
    return out


def override(cfg: Any, **overrides: Any) -> Any:
    """``cfg`` with every field named in ``overrides`` replaced wherever it occurs (``None`` = keep).

    Returns a new frozen config; ``cfg`` is unchanged. Experiment configs may define ``resolved()``,
    called on the result (e.g. to keep only the selected recipes). See the module docstring for the rules.
    """
    given = {k: v for k, v in overrides.items() if v is not None}
    valid = overridable(cfg)
    unknown = sorted(set(given) - set(valid))
    if unknown:
        raise ValueError(f"unknown parameter(s) {unknown} for {type(cfg).__name__}; valid names: {sorted(valid)}")

    def walk(obj: Any) -> Any:
        changes = {}
        for name, value, hint in _fields(obj):
            if _is_container(hint, value):
                new = {k: walk(v) if dataclasses.is_dataclass(v) else v for k, v in value.items()}
                if any(new[k] is not value[k] for k in value):
                    changes[name] = type(value)(new) if not isinstance(value, types.MappingProxyType) else new
                continue
            if name in given:
                changes[name] = coerce(name, given[name], hint)
            elif dataclasses.is_dataclass(value) and not isinstance(value, type):
                new = walk(value)
                if new is not value:
                    changes[name] = new
        return dataclasses.replace(obj, **changes) if changes else obj

    out = walk(cfg)
    return out.resolved() if hasattr(out, "resolved") else out


def _type_name(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


def coerce(name: str, value: Any, hint: Any) -> Any:
    """``value`` checked against (and converted to) the type hint ``hint`` of field ``name``."""
    if hint is Any:
        return value
    origin, args = get_origin(hint), get_args(hint)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for a in (a for a in args if a is not type(None)):
            try:
                return coerce(name, value, a)
            except (TypeError, ValueError) as exc:
                errors.append(str(exc))
        raise TypeError(f"{name} must be {' or '.join(_type_name(a) for a in args)}, got {value!r}")
    if origin is Literal:
        if isinstance(value, str) and value in args:
            return value
        if not isinstance(value, str) and any(value == a and type(value) is type(a) for a in args):
            return value
        raise ValueError(f"{name} must be one of {args}, got {value!r}")
    if origin is tuple:
        if isinstance(value, str):
            value = (value,)  # a single name where names are expected
        if not isinstance(value, (list, tuple)):
            raise TypeError(f"{name} must be a list/tuple, got {type(value).__name__} {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(coerce(f"{name}[{i}]", v, args[0]) for i, v in enumerate(value))
        if args and len(args) != len(value):
            raise ValueError(f"{name} must have {len(args)} elements, got {len(value)}: {value!r}")
        return tuple(coerce(f"{name}[{i}]", v, a) for i, (v, a) in enumerate(zip(value, args))) if args else tuple(value)
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise TypeError(f"{name} must be True or False, got {value!r}")
    if hint is int:
        if isinstance(value, numbers.Integral) and not isinstance(value, bool):
            return int(value)
        raise TypeError(f"{name} must be an integer, got {type(value).__name__} {value!r}")
    if hint is float:
        if isinstance(value, numbers.Real) and not isinstance(value, bool):
            return float(value)
        raise TypeError(f"{name} must be a number, got {type(value).__name__} {value!r}")
    if hint is str:
        if isinstance(value, str):
            return value
        raise TypeError(f"{name} must be a string, got {type(value).__name__} {value!r}")
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        if isinstance(value, hint):
            return value
        try:
            return hint(value)  # its value, as as_dict writes it
        except ValueError:
            raise ValueError(f"{name} must be one of {[m.value for m in hint]}, got {value!r}") from None
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        if isinstance(value, hint):
            return value
        if isinstance(value, Mapping):
            return from_dict(hint, value)
        raise TypeError(f"{name} must be a {hint.__name__} (or a dict of its fields), got {type(value).__name__}")
    if isinstance(hint, type):
        if isinstance(value, hint):
            return value
        raise TypeError(f"{name} must be a {hint.__name__}, got {type(value).__name__} {value!r}")
    return value


def from_dict(cls: type, data: Mapping[str, Any]) -> Any:
    """Rebuild a (nested) config dataclass from :func:`as_dict` output, checking every field's type."""
    if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
        raise TypeError(f"{cls!r} is not a dataclass")
    hints = get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"{cls.__name__} has no field(s) {unknown}; fields: {sorted(names)}")
    kwargs = {}
    for key, value in data.items():
        hint = hints.get(key, Any)
        if _is_container(hint) and isinstance(value, Mapping):
            inner = get_args(hint)[1] if len(get_args(hint)) == 2 else Any
            kwargs[key] = {k: coerce(f"{key}[{k!r}]", v, inner) for k, v in value.items()}
        else:
            kwargs[key] = coerce(key, value, hint)
    return cls(**kwargs)


def _plain(obj: Any) -> Any:
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_plain(v) for v in obj)
    return obj


def as_dict(cfg: Any) -> dict[str, Any]:
    """A plain dict of a config dataclass — strings, numbers, lists/tuples, dicts; enum members as their
    values — for printing, the metrics JSON and saved models (:func:`from_dict` reads it back)."""
    return _plain(dataclasses.asdict(cfg))
