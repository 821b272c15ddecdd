"""experiments.variants: setups, variants and their recipes (each switch reaches the recipe, and the code rules
differ from the paper's text where D24 says), studies over seeds, paired differences, multiplication counts."""

from __future__ import annotations

import dataclasses
import math

import pandas as pd
import pytest
import torch

from qnnlib.data.splits import DatasetSplits, Split
from qnnlib.experiments import variants
from qnnlib.experiments.variants import ConvSetup, MlpSetup, Study, Variant
from qnnlib.optim import ShiftAdaMax


def _data(n: int = 120, shape: tuple[int, ...] = (20,), classes: int = 4, seed: int = 0) -> DatasetSplits:
    """A tiny learnable problem: the class is the argmax of the first ``classes`` inputs."""
    g = torch.Generator().manual_seed(seed)

    def split(k: int) -> Split:
        x = torch.rand((k, *shape), generator=g) * 2 - 1
        y = x.flatten(1)[:, :classes].argmax(1)
        return Split(x, y)

    return DatasetSplits("synthetic", split(n), split(40), split(40), source="generated in the test")


MLP = MlpSetup("fashion-mnist", hidden=16, depth=2, epochs=2, batch_size=20, halve_every=1)
CONV = ConvSetup("cifar10", "fashion-mnist", channels=(2, 4, 4), fc=8, epochs=1, batch_size=20, halve_every=1)


# ------------------------------------------------------------------------------------- variants
def test_the_base_variant_is_a_deterministic_bnn_with_bn_and_adam() -> None:
    v = Variant("base")
    p = v.precision
    assert (p.weight_bits, p.act_bits, p.stochastic, p.norm, p.grad_bits, p.param_grad_bits) == (1, 1, False, "bn",
                                                                                                   None, None)
    assert v.quantized == "none" and v.label == "BN + Adam"


@pytest.mark.parametrize("kw, label, quantized", [
    (dict(norm="sbn", optimizer="shift_adamax", stochastic=True, rules="code"),
     "shift-BN + shift-AdaMax (code), stochastic", "none"),
    (dict(grad_bits=6, param_grad_bits=6), "BN + Adam, G6 log (errors+params)", "errors+params"),
    (dict(grad_bits=4, grad_method="linear"), "BN + Adam, G4 linear (errors)", "errors"),
    (dict(param_grad_bits=8), "BN + Adam, G8 log (params)", "params"),
])
def test_variant_labels_say_what_changed(kw, label, quantized) -> None:
    v = Variant("x", **kw)
    assert v.label == label and v.quantized == quantized


@pytest.mark.parametrize("kw, match", [
    (dict(name=""), "variant name"), (dict(name="a b"), "variant name"), (dict(optimizer="sgd"), "optimizer"),
    (dict(rules="torch7"), "rules"), (dict(norm="ln"), "norm"), (dict(grad_bits=0), "grad_bits"),
    (dict(grad_method="stochastic"), "grad_method"), (dict(grad_bits=1, grad_method="linear"), "grad_bits"),
    (dict(param_grad_bits=True), "param_grad_bits"),
])
def test_bad_variants_are_refused(kw, match) -> None:
    with pytest.raises(ValueError, match=match):
        Variant(**{"name": "x", **kw})


@pytest.mark.parametrize("setup", [MLP, CONV], ids=["mlp", "convnet"])
def test_each_variant_field_reaches_the_recipe(setup) -> None:
    base = variants.recipe(setup, Variant("b"))
    assert base.train.optimizer == "adam" and base.train.lr_schedule == "exp"
    assert (base.train.lr_start, base.train.lr_end) == setup.adam_lr
    assert base.train.glorot and base.train.epochs == setup.epochs and base.train.batch_size == setup.batch_size
    assert base.follows == "paper-text" and base.input_range == "pm1"
    assert variants.recipe(setup, Variant("b", rules="code")).train.optimizer == "lasagne_adam"
    sbn = variants.recipe(setup, Variant("s", norm="sbn", stochastic=True, grad_bits=5, param_grad_bits=6,
                                         grad_method="linear"))
    assert (sbn.precision.norm, sbn.precision.stochastic, sbn.precision.grad_bits, sbn.precision.param_grad_bits,
            sbn.precision.grad_method) == ("sbn", True, 5, 6, "linear")
    ax = variants.recipe(setup, Variant("a", optimizer="shift_adamax"))
    assert (ax.train.optimizer, ax.train.lr_start, ax.train.lr_schedule, ax.train.halve_every) == (
        "shift_adamax", setup.adamax_lr, "halve", setup.halve_every)
    assert (ax.train.betas, ax.train.adamax_state, ax.train.glorot_placement) == (None, "paper", "inside")


def test_code_rules_of_shift_adamax_are_the_torch7_rows_1_to_4() -> None:
    """Rows 1-4 of docs/decisions.md D24: every one differs from the paper-text variant (flip test)."""
    paper = variants.recipe(MLP, Variant("p", optimizer="shift_adamax")).train
    code = variants.recipe(MLP, Variant("c", optimizer="shift_adamax", rules="code")).train
    assert code.betas == (0.9, 0.999) != paper.betas  # row 2
    assert code.adamax_state == "torch7" != paper.adamax_state  # row 1
    assert code.glorot_placement == "after" != paper.glorot_placement  # row 3
    assert code.lr_factors == "torch7" != paper.lr_factors  # row 4, the MNIST model file
    assert variants.recipe(MLP, Variant("c", optimizer="shift_adamax", rules="code")).follows == "code"
    conv = variants.recipe(CONV, Variant("c", optimizer="shift_adamax", rules="code")).train
    assert (conv.lr_factors, conv.glorot_pow2) == ("biases", True)  # the CIFAR-10/SVHN model files
    # everything else stays: the same LR schedule and the same model options
    same = [f.name for f in dataclasses.fields(paper) if f.name not in
            ("betas", "adamax_state", "glorot_placement", "lr_factors")]
    assert all(getattr(code, f) == getattr(paper, f) for f in same)


def test_the_code_rules_build_the_torch7_optimizer() -> None:
    from qnnlib.train import make_optimizer  # noqa: PLC0415

    data = _data()
    study = Study("smoke", "t", MLP, [Variant("c", optimizer="shift_adamax", rules="code")])
    rc = study.recipe("c")
    model = variants._build(rc, data, 0)
    opt = make_optimizer(model, rc.train)
    assert isinstance(opt, ShiftAdaMax)
    assert {g["betas"] for g in opt.param_groups} == {(0.9, 0.999)}


# --------------------------------------------------------------------------------------- setups
@pytest.mark.parametrize("make, kw, match", [
    (MlpSetup, dict(dataset="cifar10"), "dataset"), (MlpSetup, dict(hidden=0), "hidden"),
    (MlpSetup, dict(epochs=1.5), "epochs"), (MlpSetup, dict(train_size=0), "train_size"),
    (MlpSetup, dict(adam_lr=(1e-5, 1e-3)), "adam_lr"), (MlpSetup, dict(adamax_lr=0.0), "adamax_lr"),
    (MlpSetup, dict(n_seeds=0), "n_seeds"), (ConvSetup, dict(channels=(4, 8)), "channels"),
    (ConvSetup, dict(experiment="svhn", dataset="cifar10"), "dataset"), (ConvSetup, dict(experiment="mnist"),
                                                                          "experiment"),
    (ConvSetup, dict(fc=-1), "fc"),
])
def test_bad_setups_are_refused(make, kw, match) -> None:
    with pytest.raises(ValueError, match=match):
        make(**kw)


def test_setups_describe_their_network() -> None:
    assert MLP.describe() == "784-2x16-10" and MLP.network == "mlp"
    assert CONV.describe() == "convs 2/4/4, fc 8" and CONV.network == "convnet"


# -------------------------------------------------------------------------------------- studies
def test_a_study_is_a_recipe_set() -> None:
    s = Study("smoke", "gradients", dataclasses.replace(MLP, n_seeds=3), [Variant("a"), Variant("b", norm="sbn")])
    assert s.recipes == ("a", "b") and s.key == "gradients-mlp" and s.network == "mlp"
    assert s.seeds("b") == (1234, 1235, 1236)
    assert s.recipe("b").precision.norm == "sbn"
    with pytest.raises(ValueError, match="given twice"):
        Study("smoke", "g", MLP, [Variant("a"), Variant("a", norm="sbn")])
    with pytest.raises(ValueError, match="non-empty"):
        Study("smoke", "g", MLP, [])
    assert "gradients-mlp" in repr(s)


def test_run_study_trains_every_variant_and_seed_with_paired_starts(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("QNNLIB_DATA", str(tmp_path))
    data = _data()
    setup = dataclasses.replace(MLP, n_seeds=2)
    study = Study("smoke", "t", setup, [Variant("a"), Variant("b", norm="sbn", optimizer="shift_adamax")],
                  resume=False)
    runs = variants.run_study(study, data, progress=False)
    assert list(runs) == ["a", "b"] and [sr.seed for sr in runs["b"].runs] == [1234, 1235]
    # paired: the same seed gives the same initial latent weights in every variant
    wa = variants._build(study.recipe("a"), data, 1234).state_dict()
    wb = variants._build(study.recipe("b"), data, 1234).state_dict()
    assert torch.equal(wa["fc1.weight"], wb["fc1.weight"])
    frame = variants.per_seed_frame(study, runs, data)
    assert list(frame["variant"]) == ["a", "a", "b", "b"] and set(frame["dataset"]) == {"synthetic"}
    assert frame.loc[3, "norm"] == "sbn" and frame.loc[3, "optimizer"] == "shift_adamax"
    expected = [100 * sr.result.test_error_at_best for r in runs.values() for sr in r.runs]
    assert frame["test_error"].tolist() == pytest.approx(expected)


# ------------------------------------------------------------------------------------- statistics
def _frame() -> pd.DataFrame:
    rows = [("mlp", "ref", 10.0), ("mlp", "ref", 12.0), ("mlp", "ref", 14.0),
            ("mlp", "x", 13.0), ("mlp", "x", 13.0), ("mlp", "x", 16.0), ("convnet", "ref", 30.0)]
    return pd.DataFrame([{"network": n, "variant": v, "label": v.upper(), "seed": i, "test_error": e,
                          "final_test_error": e + 1, "best_epoch": 1, "train_time_s": 1.0, "dataset": "d"}
                         for i, (n, v, e) in enumerate(rows)])


def test_difference_of_means_with_its_standard_error() -> None:
    d = variants.difference(_frame(), "mlp", "x", "ref")
    assert d["diff"] == pytest.approx(14.0 - 12.0)
    assert d["se"] == pytest.approx(math.sqrt(3.0 / 3 + 4.0 / 3))  # sample variances 3 and 4, n = 3 each
    assert (d["n_variant"], d["n_reference"]) == (3, 3)
    one = variants.difference(pd.concat([_frame(), _frame().iloc[[0]].assign(network="convnet", variant="x")]),
                              "convnet", "x", "ref")
    assert math.isnan(one["se"])
    with pytest.raises(ValueError, match="no runs of variant 'nope' on 'mlp'"):
        variants.difference(_frame(), "mlp", "nope", "ref")


def test_summary_and_table_keep_the_training_order() -> None:
    s = variants.summary_frame(_frame())
    assert list(zip(s["network"], s["variant"])) == [("mlp", "ref"), ("mlp", "x"), ("convnet", "ref")]
    assert s.loc[1, "mean"] == pytest.approx(14.0) and s.loc[1, "std"] == pytest.approx(math.sqrt(3.0))
    assert math.isnan(s.loc[2, "std"]) and s.loc[2, "n"] == 1
    t = variants.error_table(_frame())
    assert list(t.columns) == ["label", "MLP", "ConvNet"] and list(t.index) == ["ref", "x"]
    assert t.loc["x", "MLP"] == "14.00 ± 1.73 (n = 3)" and t.loc["ref", "ConvNet"] == "30.00 (n = 1)"
    with pytest.raises(ValueError, match="empty"):
        variants.summary_frame(_frame().iloc[:0])


def test_check_max_error_names_the_variant() -> None:
    assert len(variants.check_max_error(_frame(), 0.31)) == 3
    with pytest.raises(AssertionError, match="convnet ref: test error 0.3000 > 0.2"):
        variants.check_max_error(_frame(), 0.2)


def test_check_networks() -> None:
    variants.check_networks(("convnet",))
    for bad in ((), ("mlp", "mlp"), ("resnet",)):
        with pytest.raises(ValueError, match="networks"):
            variants.check_networks(bad)


# -------------------------------------------------------------------------------- multiplications
def test_multiplication_counts_follow_the_models_in_closed_form() -> None:
    data = _data()
    cells = [Variant("bn-adam"), Variant("sbn-adam", norm="sbn"), Variant("bn-adamax", optimizer="shift_adamax"),
             Variant("log", grad_bits=6)]
    study = Study("smoke", "t", MLP, cells)
    c = variants.multiplications(study, data).set_index("variant")
    b, h, d = MLP.batch_size, MLP.hidden, MLP.depth
    params = sum(p.numel() for p in variants._build(study.recipe("bn-adam"), data, 0).parameters())
    # shift-BN: 8 multiplications per hidden BN element become 8 shifts (the output BN stays vanilla)
    assert c.loc["bn-adam", "multiplications"] - c.loc["sbn-adam", "multiplications"] == 8 * b * h * d
    assert c.loc["sbn-adam", "shifts"] == 8 * b * h * d
    # shift-AdaMax: 6 multiplications and 2 divisions/roots per parameter become 5 shifts
    assert c.loc["bn-adam", "multiplications"] - c.loc["bn-adamax", "multiplications"] == 6 * params
    assert (c.loc["bn-adamax", "divisions"], c.loc["bn-adamax", "shifts"]) == (0, 5 * params)
    # a log-quantized error turns the first layer's weight gradient (real inputs) into shifts
    assert c.loc["bn-adam", "multiplications"] - c.loc["log", "multiplications"] == 20 * h * b
    assert c.loc["bn-adam", "largest"] == "fc1 weight gradient"
    assert c.loc["bn-adam", "multiplications_vs_first"] == 1.0 and c.loc["log", "multiplications_vs_first"] < 1


def test_multiplications_of_the_convnet_count_its_convolutions() -> None:
    data = _data(shape=(1, 32, 32))
    study = Study("smoke", "t", CONV, [Variant("bn"), Variant("sbn", norm="sbn")])
    c = variants.multiplications(study, data).set_index("variant")
    assert c.loc["bn", "largest"] == "conv1 weight gradient"
    assert c.loc["sbn", "multiplications"] < c.loc["bn", "multiplications"]


def test_config_level_tables_and_the_bits_column(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("QNNLIB_DATA", str(tmp_path))

    class Cfg:  # the StudyConfig protocol
        profile, networks = "smoke", ("mlp",)

        def setup(self, network):
            return MLP

        def studies(self):
            return [Study("smoke", "t", dataclasses.replace(MLP, epochs=1), [Variant("f"), Variant("g", grad_bits=5),
                                                                              Variant("p", param_grad_bits=4)],
                          resume=False)]

    cfg, data = Cfg(), {"mlp": _data()}
    runs = variants.run(cfg, data, progress=False)
    table = variants.per_seed_table(cfg, runs, data)
    assert list(table["bits"]) == [32, 5, 4] and list(table["quantized"]) == ["none", "errors", "params"]
    assert list(variants.multiplications_table(cfg, data)["variant"]) == ["f", "g", "p"]
    with pytest.raises(ValueError, match="no runs of any of"):
        variants.per_seed_table(cfg, {}, data)
