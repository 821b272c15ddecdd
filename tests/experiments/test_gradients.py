"""Notebook 06's experiment: the variants of the sweep, profiles, rows, findings and sanity bounds, and one
end-to-end run of the MLP at a tiny size."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pandas as pd
import pytest

from qnnlib.experiments import config, gradients, results, variants
from qnnlib.experiments.paper import PAPER_BY_KEY

FASHION = Path("/usr/share/datasets/fashion-mnist")


def test_the_sweep_quantizes_both_tensors_and_splits_them_at_six_bits(monkeypatch) -> None:
    monkeypatch.delenv("QNNLIB_PROFILE", raising=False)
    cfg = config.resolve("gradients", "quick")
    names = [v.name for v in cfg.variants()]
    assert names == ["float", "log-4", "log-5", "log-6", "log-8", "linear-4", "linear-5", "linear-6", "linear-8",
                     "log-6-errors", "log-6-params"]
    v = {x.name: x for x in cfg.variants()}
    assert (v["log-6"].grad_bits, v["log-6"].param_grad_bits, v["log-6"].grad_method) == (6, 6, "log")
    assert (v["linear-4"].grad_bits, v["linear-4"].grad_method) == (4, "linear")
    assert (v["log-6-errors"].grad_bits, v["log-6-errors"].param_grad_bits) == (6, None)
    assert (v["log-6-params"].grad_bits, v["log-6-params"].param_grad_bits) == (None, 6)
    assert v["float"].quantized == "none"
    only = dataclasses.replace(cfg, tensors="errors", methods=("log",), bits=(6,))
    assert [(x.name, x.grad_bits, x.param_grad_bits) for x in only.variants()] == [("float", None, None),
                                                                                 ("log-6", 6, None)]


def test_every_profile_resolves_and_overrides_reach_both_networks(monkeypatch) -> None:
    monkeypatch.delenv("QNNLIB_PROFILE", raising=False)
    for p in config.PROFILES:
        cfg = config.resolve("gradients", p)
        assert cfg.profile == p and [s.network for s in cfg.studies()] == list(cfg.networks)
    cfg = config.resolve("gradients", "quick", epochs=3, n_seeds=2, networks=["convnet"], bits=[5, 6])
    assert (cfg.mlp.epochs, cfg.convnet.epochs, cfg.mlp.n_seeds, cfg.convnet.n_seeds) == (3, 3, 2, 2)
    assert cfg.networks == ("convnet",) and cfg.bits == (5, 6)
    assert all(s.recipe(n).train.epochs == 3 for s in cfg.studies() for n in s.recipes)
    assert config.resolve("gradients", "smoke").mlp.threads == 1  # CI's smoke numbers do not depend on threads


@pytest.mark.parametrize("kw, match", [
    (dict(bits=()), "bits"), (dict(bits=(6, 6)), "bits"), (dict(methods=("stochastic",)), "methods"),
    (dict(tensors="weights"), "tensors"), (dict(networks=("resnet",)), "networks"), (dict(histogram_layer=0),
                                                                                     "histogram_layer"),
    (dict(bits=(1,)), "grad_bits"),  # the linear quantizer needs a sign bit
    (dict(bits=(40,)), "grad_bits"),
])
def test_bad_configs_are_refused(kw, match) -> None:
    with pytest.raises(ValueError, match=match):
        dataclasses.replace(gradients.PROFILES["smoke"], **kw)


def _per_seed(log6: float = 11.0, lin6: float = 20.0, n: int = 2) -> pd.DataFrame:
    rows = []
    for net in ("mlp", "convnet"):
        for name, method, bits, err in (("float", "log", None, 10.0), ("log-6", "log", 6, log6),
                                        ("linear-6", "linear", 6, lin6), ("log-6-errors", "log", 6, 10.5)):
            for i in range(n):
                rows.append({"network": net, "variant": name, "label": name, "seed": 1234 + i,
                             "test_error": err + i, "final_test_error": err, "best_epoch": 1, "train_time_s": 1.0,
                             "dataset": "fashion-mnist", "grad_method": method, "grad_bits": bits,
                             "param_grad_bits": bits if name != "log-6-errors" else None,
                             "quantized": "none" if bits is None else "errors+params", "bits": bits or 32})
    return pd.DataFrame(rows)


def test_rows_are_differences_to_float_gradients_beside_the_papers_alexnet_loss() -> None:
    cfg = dataclasses.replace(gradients.PROFILES["smoke"])
    rows = gradients.table_rows(cfg, _per_seed())
    assert [r["row"] for r in rows] == ["MLP BNN, 6-bit log vs float gradients", "MLP BNN, 6-bit linear vs float "
                                        "gradients", "ConvNet BNN, 6-bit log vs float gradients",
                                        "ConvNet BNN, 6-bit linear vs float gradients"]
    assert rows[0]["value"] == pytest.approx(1.0) and rows[1]["value"] == pytest.approx(10.0)
    assert rows[0]["std"] == pytest.approx(0.7071067811865476) and rows[0]["n"] == 2
    assert rows[0]["paper_key"] == gradients.PAPER_KEY in PAPER_BY_KEY and "paper_key" not in rows[1]
    assert PAPER_BY_KEY[gradients.PAPER_KEY].value == pytest.approx(51.03 - 46.8)
    sized = gradients.table_rows(cfg, _per_seed(), {"convnet": {"train": 5, "valid": 2, "test": 3}})
    assert "dataset_sizes" not in sized[0] and sized[2]["dataset_sizes"] == {"train": 5, "valid": 2, "test": 3}
    one = gradients.table_rows(cfg, _per_seed(n=1))
    assert one[0]["std"] is None
    assert gradients.table_rows(dataclasses.replace(cfg, bits=(4,)), _per_seed()) == []  # no 6-bit network


def test_findings_say_each_quantizers_cost_with_its_spread() -> None:
    cfg = gradients.PROFILES["smoke"]
    stats = pd.DataFrame([{"method": "log", "bits": 6, "flushed_pct": 0.0, "rel_error": 0.2, "octaves": 20.5},
                          {"method": "log", "bits": 8, "flushed_pct": 0.0, "rel_error": 0.2, "octaves": 20.5},
                          {"method": "linear", "bits": 6, "flushed_pct": 27.5, "rel_error": 0.05, "octaves": 20.5}])
    lines = gradients.findings(cfg, _per_seed(), stats)
    text = "\n".join(lines)
    assert "MLP on fashion-mnist: float gradients 10.50% test error (n = 2)." in text
    assert "log quantizer vs float gradients: 6 bits +1.00 ± 0.71 points (n = 2 vs 2)" in text
    assert "linear quantizer vs float gradients: 6 bits +10.00 ± 0.71 points" in text
    assert "6-bit log on the errors between layers only: +0.50 ± 0.71 points" in text
    assert "linear 6 bits flushes 27.5% of the entries to zero" in text
    assert "span 20.5 octaves: from 6 bits on the log quantizer (31 octaves) flushes none of them" in text
    assert "octaves:" not in "\n".join(gradients.findings(cfg, _per_seed(), stats.assign(flushed_pct=1.0)))
    assert "AlexNet on ImageNet" in lines[-1]


def test_sanity_bounds_the_float_network_and_the_six_bit_log_gap(monkeypatch) -> None:
    cfg = dataclasses.replace(gradients.PROFILES["quick"])
    passed = gradients.check_sanity(cfg, _per_seed())
    assert any("log-6 - float = +1.00 points, gap <= 5.0" in p for p in passed)
    with pytest.raises(AssertionError, match=r"mlp: log-6 - float = \+9.00 points; bound gap <= 5.0 \(quick\)"):
        gradients.check_sanity(cfg, _per_seed(log6=19.0))
    bad = _per_seed()
    bad.loc[bad["variant"] == "float", "test_error"] = 95.0
    with pytest.raises(AssertionError, match="float: test error 0.9500 > 0.4"):
        gradients.check_sanity(cfg, bad)
    # a linear network that does not learn is a finding, not a failed sanity check
    assert gradients.check_sanity(cfg, _per_seed(lin6=90.0))
    with pytest.raises(AssertionError, match="was not written"):
        gradients.check_sanity(cfg, _per_seed(), Path("/nonexistent/gradients.json"))
    with pytest.raises(ValueError, match="no sanity bounds"):
        gradients.check_sanity(dataclasses.replace(cfg, profile="huge"), _per_seed())


@pytest.mark.skipif(not FASHION.is_dir(), reason="needs Debian's dataset-fashion-mnist (make test installs it)")
def test_end_to_end_on_the_mlp(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("QNNLIB_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("QNNLIB_RESULTS", str(tmp_path / "results"))
    monkeypatch.delenv("QNNLIB_PROFILE", raising=False)
    cfg = config.resolve("gradients", "smoke", networks=["mlp"], methods=["log"], bits=[6], hidden=32,
                         train_size=400, valid_size=100, test_size=200, epochs=1, histogram_batch=50)
    data = variants.load_data(cfg)
    runs = variants.run(cfg, data, progress=False)
    per_seed = variants.per_seed_table(cfg, runs, data)
    assert list(per_seed["variant"]) == ["float", "log-6", "log-6-errors", "log-6-params"]
    assert list(per_seed["bits"]) == [32, 6, 6, 6]
    layer, g = gradients.error_sample(cfg, runs, data)
    assert layer == "fc2" and tuple(g.shape) == (50, 32)
    stats = gradients.gradient_stats(cfg, g)
    assert list(stats["method"]) == ["log"]
    counts = variants.multiplications_table(cfg, data).set_index("variant")
    assert counts.loc["log-6", "multiplications"] < counts.loc["float", "multiplications"]
    assert counts.loc["log-6-params", "multiplications"] == counts.loc["float", "multiplications"]
    path = gradients.write_metrics(cfg, runs, per_seed, data, 1.0, stats=stats, counts=counts.reset_index())
    saved = json.loads(path.read_text())
    assert saved["metrics"]["rows"][0]["row"] == "MLP BNN, 6-bit log vs float gradients"
    assert saved["metrics"]["rows"][0]["dataset_sizes"] == {"train": 400, "valid": 100, "test": 200}
    assert len(saved["metrics"]["per_seed"]) == 4 and "mlp/log-6" in saved["history"]
    assert saved["dataset"]["per_network"]["mlp"]["name"] == "fashion-mnist"
    assert path == results.profile_dir("smoke") / "gradients.json"
    assert gradients.check_sanity(cfg, per_seed, path)[-1].endswith("gradients.json written")
    with pytest.raises(ValueError, match="histogram_layer=9 but the mlp has 4 compute layers"):
        gradients.error_sample(dataclasses.replace(cfg, histogram_layer=9), runs, data)
