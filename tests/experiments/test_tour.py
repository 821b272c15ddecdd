"""Notebook 00 (the tour): data functions against closed forms, STE gradients against their formulas, figures
render, ``interactive`` falls back to one call with defaults, config overrides, and check_sanity catches breaks."""

from __future__ import annotations

import builtins
import math
import sys

import matplotlib
import numpy as np
import pandas as pd
import pytest
import torch

from qnnlib import progress
from qnnlib.experiments import config, tour

matplotlib.use("Agg")


@pytest.fixture(autouse=True)
def _no_env(monkeypatch):
    monkeypatch.delenv("QNNLIB_PROFILE", raising=False)
    monkeypatch.delenv(progress.WIDGETS_ENV, raising=False)


@pytest.fixture(scope="module")
def cfg() -> tour.TourConfig:
    return tour.PROFILES["smoke"]


@pytest.fixture(scope="module")
def frames(cfg) -> dict:
    v = tour.random_pm1(3, cfg.pack_k, cfg.seed)
    return {
        "binarization": tour.binarization_frame(),
        "stochastic": tour.stochastic_binarization_frame(cfg.n_draws, cfg.seed),
        "linear": tour.linear_quant_frame(cfg.bits),
        "batchnorm": tour.batchnorm_frame(cfg.batch, cfg.seed),
        "optimizers": tour.optimizer_frame(cfg.adamax_steps, cfg.lr, cfg.seed),
        "xnor": tour.xnor_popcount_product(v[1], v[2]),
    }


# ------------------------------------------------------------------------------------- quantizers
def test_binarization_frame_matches_eq_1_to_4() -> None:
    df = tour.binarization_frame()
    x = df.x.to_numpy()
    assert (x == 0).sum() == 1 and len(df) == 401
    np.testing.assert_array_equal(df.sign, np.where(x >= 0, 1.0, -1.0))  # Eq. 1, sign(0) = +1
    np.testing.assert_array_equal(df.binarize, df.sign)
    np.testing.assert_allclose(df.hard_sigmoid, np.clip((x + 1) / 2, 0, 1))  # Eq. 3
    np.testing.assert_allclose(df.expected, np.clip(x, -1, 1), atol=1e-15)
    np.testing.assert_array_equal(df.ste_grad, (np.abs(x) <= 1).astype(float))  # Eq. 4


def test_binarization_frame_on_given_points() -> None:
    df = tour.binarization_frame(torch.tensor([-1.0, -1.0001, 0.0, 1.0, 1.5]))
    assert df.sign.tolist() == [-1, -1, 1, 1, 1]
    assert df.ste_grad.tolist() == [1, 0, 1, 1, 0]  # |x| <= 1 inclusive at both ends


def test_stochastic_binarization_is_hard_sigmoid_on_average_and_seeded() -> None:
    df = tour.stochastic_binarization_frame(20000, seed=3)
    np.testing.assert_allclose(df.std_err, np.sqrt(df.hard_sigmoid * (1 - df.hard_sigmoid) / 20000))
    np.testing.assert_allclose(df["mean"], 2 * df.p_plus - 1)
    assert df.z.abs().max() < 4.5
    certain = df.hard_sigmoid.isin([0.0, 1.0])
    assert certain.any() and (df.p_plus[certain] == df.hard_sigmoid[certain]).all() and (df.z[certain] == 0).all()
    pd.testing.assert_frame_equal(df, tour.stochastic_binarization_frame(20000, seed=3))
    assert not df.p_plus.equals(tour.stochastic_binarization_frame(20000, seed=4).p_plus)
    with pytest.raises(ValueError, match="n_draws"):
        tour.stochastic_binarization_frame(1)


@pytest.mark.parametrize("bits, lo, hi", [(1, -1.0, 1.0), (2, -1.0, 1.0), (3, -2.0, 0.5), (8, -0.5, 2.0)])
def test_linear_quant_frame_levels_and_ste(bits, lo, hi) -> None:
    df = tour.linear_quant_frame(bits, lo, hi)
    x = df.x.to_numpy()
    levels = np.unique(df.q)
    assert len(levels) == 2**bits
    delta = (hi - lo) / (2**bits - 1)
    np.testing.assert_allclose(levels, lo + delta * np.arange(2**bits), atol=1e-12)
    inside = (x > lo + 1e-9) & (x < hi - 1e-9)
    closed = lo + delta * np.floor((np.clip(x, lo, hi) - lo) / delta + 0.5)  # LinearQuant, round half up
    far = np.abs(((np.clip(x, lo, hi) - lo) / delta) % 1 - 0.5) > 1e-6  # away from the rounding mid-points
    np.testing.assert_allclose(df.q[far], closed[far], atol=1e-12)
    np.testing.assert_array_equal(df.ste_grad[inside], 1.0)
    np.testing.assert_array_equal(df.ste_grad, ((x >= lo) & (x <= hi)).astype(float))


def test_two_bit_activations_are_thirds() -> None:
    df = tour.linear_quant_frame(2)
    np.testing.assert_allclose(np.unique(df.q), [-1, -1 / 3, 1 / 3, 1])


def test_log_quant_frame_against_closed_forms() -> None:
    df = tour.log_quant_frame(3, fsr=0)
    x = df.x.to_numpy()
    nz = x != 0
    np.testing.assert_allclose(df.ap2[nz], np.sign(x[nz]) * 2.0 ** np.round(np.log2(np.abs(x[nz]))))
    assert df.ap2[~nz].tolist() == [0.0]
    e = np.round(np.log2(np.abs(x[nz])))  # 3 bits: n = 2^2 - 1 = 3 exponent codes -2..0 under fsr 0; below: 0
    want = np.where(e < -2, 0.0, np.sign(x[nz]) * 2.0 ** np.minimum(e, 0))
    np.testing.assert_allclose(df.log_quant[nz], want)
    assert set(np.abs(df.log_quant)) == {0.0, 0.25, 0.5, 1.0}
    np.testing.assert_array_equal(df.ap2_ste_grad, 1.0)  # identity STE


# ------------------------------------------------------------------------------------- batch norm
def test_batchnorm_frame_matches_bn_and_alg3_closed_forms() -> None:
    df = tour.batchnorm_frame(32, seed=1)
    assert len(df) == 32 * 4 and set(df.feature) == {0, 1, 2, 3}
    for _, part in df.groupby("feature"):
        x = torch.tensor(part.x.to_numpy(), dtype=torch.float64)
        c = x - x.mean()
        bn = c / torch.sqrt((c**2).mean() + 1e-5)
        var = (c * torch.sign(c) * 2.0 ** torch.round(torch.log2(c.abs()))).mean()
        inv = 1 / torch.sqrt(var + 1e-5)
        sbn = c * 2.0 ** torch.round(torch.log2(inv))
        np.testing.assert_allclose(part.bn, bn.numpy(), rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(part.sbn, sbn.numpy(), rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(part["diff"], part.sbn - part.bn)
    s = tour.batchnorm_summary(df)
    np.testing.assert_allclose(s.bn_std, 1.0, atol=1e-3)
    assert (s.log2_ratio.abs() <= 0.75).all()
    with pytest.raises(ValueError, match="batch"):
        tour.batchnorm_frame(1)


# ------------------------------------------------------------------------------------- optimizers
def test_optimizer_frame_first_steps_against_closed_forms() -> None:
    df = tour.optimizer_frame(3, lr=2.0**-5, seed=2)
    a, b = tour.least_squares_problem(2)
    assert sorted(df.optimizer.unique()) == ["Adam", "shift-AdaMax"] and len(df) == 8
    loss = lambda w: float(((a @ w - b) ** 2).mean())  # noqa: E731
    w0 = torch.zeros(a.shape[1], dtype=torch.float64)
    g = 2 * a.T @ (a @ w0 - b) / a.shape[0]
    beta1 = 1 - 2.0**-3
    # shift-AdaMax step 1: m = (1-β1) g, v = |g|, θ = −AP2(lr/(1−β1)) · m · AP2(1/(v + ε))
    w_sa = -(2.0 ** round(math.log2(2.0**-5 / (1 - beta1)))) * (1 - beta1) * g * 2.0 ** torch.round(
        -torch.log2(g.abs() + 2.0**-27))
    w_adam = -(2.0**-5) * g / (g.abs() + 1e-8)  # Adam's bias-corrected first step: −lr · g/|g|
    sa, ad = df[df.optimizer == "shift-AdaMax"], df[df.optimizer == "Adam"]
    assert sa.loss.iloc[0] == pytest.approx(loss(w0)) == ad.loss.iloc[0]
    assert sa.loss.iloc[1] == pytest.approx(loss(w_sa), rel=1e-9)
    assert ad.loss.iloc[1] == pytest.approx(loss(w_adam), rel=1e-6)
    pd.testing.assert_frame_equal(df, tour.optimizer_frame(3, lr=2.0**-5, seed=2))


def test_shift_adamax_reduces_the_toy_loss(frames, cfg) -> None:
    sa = frames["optimizers"][frames["optimizers"].optimizer == "shift-AdaMax"]
    assert sa.loss.iloc[-1] < 0.5 * sa.loss.iloc[0] and sa.step.iloc[-1] == cfg.adamax_steps


# ------------------------------------------------------------------------------------ bit-packing
def test_bitpack_frame_shows_lsb_first_words_with_zero_padding() -> None:
    v = np.array([[1, -1, -1, 1, 1] + [-1] * 30 + [1]], dtype=np.float32)  # K = 36: two 32-bit words
    df = tour.bitpack_frame(v)
    assert df.word.tolist() == [0, 1] and df.elements.tolist() == ["0..31", "32..35"]
    assert df.binary.iloc[0] == "0" * 27 + "11001"  # element 0 is the rightmost bit
    assert df.binary.iloc[1] == "0" * 28 + "1000"  # element 35 is bit 3; bits 4..31 are padding
    assert df.signs.iloc[0] == "+--++" + "-" * 27 and df.signs.iloc[1] == "---+"
    assert df.hex.tolist() == ["0x00000019", "0x00000008"]


@pytest.mark.parametrize("k", [1, 7, 32, 40, 100])
def test_xnor_popcount_product_is_the_dot_product(k) -> None:
    v = tour.random_pm1(2, k, seed=k)
    r = tour.xnor_popcount_product(v[0], v[1])
    dot = int(v[0] @ v[1])
    mismatches = int((v[0] != v[1]).sum())
    assert r["popcount"] == mismatches and r["xnor_popcount"] == k - mismatches
    assert r["eq7"] == r["float_dot"] == r["binary_matmul"] == dot and r["roundtrip"]
    assert len(r["a_words"]) == math.ceil(k / 32)
    with pytest.raises(ValueError, match="same length"):
        tour.xnor_popcount_product(v[0], v[1][:-1] if k > 1 else np.ones(2))


# --------------------------------------------------------------------------------------- figures
def _labelled(fig) -> None:
    for ax in fig.axes:
        assert ax.get_xlabel() and ax.get_ylabel() and ax.get_title()
    fig.canvas.draw()


def test_figures_render_with_labelled_axes(frames) -> None:
    _labelled(tour.plot_binarization(frames["binarization"], frames["stochastic"]))
    _labelled(tour.plot_binarization(frames["binarization"]))
    _labelled(tour.plot_linear_quant(frames["linear"]))
    _labelled(tour.plot_log_quant(tour.log_quant_frame(4)))
    _labelled(tour.plot_batchnorm(frames["batchnorm"]))
    _labelled(tour.plot_optimizers(frames["optimizers"]))


def test_views_return_figures_not_left_open_in_pyplot() -> None:
    import matplotlib.pyplot as plt

    before = plt.get_fignums()
    figs = [tour.binarization_view(200), tour.linear_quant_view(3, -2.0, 1.0), tour.log_quant_view(3, -1),
            tour.batchnorm_view(8), tour.optimizer_view(5, -4)]
    assert all(isinstance(f, matplotlib.figure.Figure) for f in figs)
    assert plt.get_fignums() == before


# ----------------------------------------------------------------------------------- interactive
def _no_ipywidgets(monkeypatch) -> None:
    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name == "ipywidgets" or name.startswith("ipywidgets."):
            raise ImportError("No module named 'ipywidgets'")
        return real_import(name, *args, **kwargs)

    monkeypatch.delitem(sys.modules, "ipywidgets", raising=False)
    monkeypatch.setattr(builtins, "__import__", fake_import)
    monkeypatch.setattr(progress.importlib, "import_module", lambda name, *a: fake_import(name))


def test_interactive_without_ipywidgets_calls_once_with_defaults(monkeypatch) -> None:
    _no_ipywidgets(monkeypatch)
    monkeypatch.setenv(progress.WIDGETS_ENV, "1")  # even forced: no ipywidgets, no widgets
    assert not progress.widgets_available()
    calls, shown = [], []
    monkeypatch.setattr(tour, "_display", shown.append)

    def fn(**kw):
        calls.append(kw)
        return "result"

    assert tour.interactive(fn, bits=tour.Slider(1, 8, 3), min_v=(-2.0, 0.0), n=(2, 256), step=(0, 10, 2),
                            mode=["a", "b"], pair=[("x", 1), ("y", 2)], seed=7, name="fixed") is None
    assert calls == [{"bits": 3, "min_v": -1.0, "n": 129, "step": 5, "mode": "a", "pair": 1, "seed": 7,
                      "name": "fixed"}]
    assert shown == ["result"]


def test_interactive_with_a_figure_and_headless_rules(monkeypatch) -> None:
    shown = []
    monkeypatch.setattr(tour, "_display", shown.append)
    monkeypatch.setenv("QNNLIB_HEADLESS", "1")  # make test / the reproduction CLI
    assert not progress.widgets_available()
    tour.interactive(tour.linear_quant_view, bits=tour.Slider(1, 8, 2), min_v=tour.Slider(-2.0, 0.0, -1.0, 0.25))
    assert len(shown) == 1 and isinstance(shown[0], matplotlib.figure.Figure)
    monkeypatch.delenv("QNNLIB_HEADLESS")
    monkeypatch.setenv(progress.WIDGETS_ENV, "off")
    assert not progress.widgets_available()
    monkeypatch.delenv(progress.WIDGETS_ENV)
    assert not progress.widgets_available()  # plain Python (pytest): no kernel, no front end


def test_interactive_uses_ipywidgets_interact_when_enabled(monkeypatch) -> None:
    import types

    seen = {}
    fake = types.ModuleType("ipywidgets")
    fake.fixed = lambda v: ("fixed", v)
    fake.IntSlider = lambda **kw: ("int", kw)
    fake.FloatSlider = lambda **kw: ("float", kw)
    fake.interact = lambda fn, **kw: seen.update(fn=fn, kw=kw) or fn
    monkeypatch.setitem(sys.modules, "ipywidgets", fake)
    monkeypatch.setenv(progress.WIDGETS_ENV, "1")
    assert progress.widgets_available()
    fn = lambda **kw: None  # noqa: E731
    assert tour.interactive(fn, bits=tour.Slider(1, 8, 9), lo=tour.Slider(-2.0, 0.0, -1.0, 0.25), r=(0, 4),
                            seed=3) is None
    assert seen["fn"] is fn
    assert seen["kw"]["bits"] == ("int", {"min": 1, "max": 9, "value": 9, "continuous_update": False})
    assert seen["kw"]["lo"] == ("float", {"min": -2.0, "max": 0.0, "value": -1.0, "continuous_update": False,
                                          "step": 0.25})
    assert seen["kw"]["r"] == (0, 4) and seen["kw"]["seed"] == ("fixed", 3)


# ----------------------------------------------------------------------------------- config, sanity
def test_config_resolves_with_overrides_and_profiles_share_content() -> None:
    c = config.resolve("tour", "smoke", bits=3, batch=16, lr=0.01, seed=None)
    assert (c.profile, c.bits, c.batch, c.lr, c.seed) == ("smoke", 3, 16, 0.01, 0)
    assert next(iter(config.EXPERIMENTS)) == "tour" and config.EXPERIMENTS["tour"].notebook == "00_tour.ipynb"
    p = {k: config.as_dict(v) for k, v in tour.PROFILES.items()}
    same = {k for k in p["smoke"] if k not in ("profile", "n_draws", "adamax_steps")}
    assert all(p["smoke"][k] == p["quick"][k] == p["paper"][k] for k in same)
    assert p["smoke"]["adamax_steps"] < p["quick"]["adamax_steps"] and p["smoke"]["n_draws"] < p["quick"]["n_draws"]
    with pytest.raises(ValueError, match="bits"):
        config.resolve("tour", "smoke", bits=0)
    with pytest.raises(TypeError):
        config.resolve("tour", "smoke", batch=2.5)


def test_check_sanity_passes(cfg, frames) -> None:
    lines = tour.check_sanity(cfg, **frames)
    assert len(lines) == 7 and lines[0] == "sign(0) = +1 (Eq. 1)"


def _broken(frames, key, fn):
    out = dict(frames)
    out[key] = fn(frames[key].copy())
    return out


@pytest.mark.parametrize("key, breaks, match", [
    ("binarization", lambda d: d.assign(sign=np.where(d.x > 0, 1.0, np.where(d.x < 0, -1.0, 0.0))), "sign\\(0\\)"),
    ("binarization", lambda d: d.assign(ste_grad=1.0), "STE"),
    ("stochastic", lambda d: d.assign(z=d.z + 10), "standard errors"),
    ("linear", lambda d: d.assign(q=d.q.round(0)), "levels"),
    ("batchnorm", lambda d: d.assign(sbn=d.sbn * np.where(d.feature == 1, 2.0, 1.0)), "SBN/BN"),
    ("optimizers", lambda d: d.assign(loss=np.where(d.step == d.step.max(), 1e9, d.loss)), "shift-AdaMax"),
    ("xnor", lambda d: {**d, "eq7": d["eq7"] + 2}, "popcount"),
])
def test_check_sanity_fails_on_a_broken_input(cfg, frames, key, breaks, match) -> None:
    with pytest.raises(AssertionError, match=match):
        tour.check_sanity(cfg, **_broken(frames, key, breaks))
