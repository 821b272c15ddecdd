"""Notebook 07's experiment: the cells, comparisons, profiles (n >= 3 seeds at quick), rows, findings, sanity
bounds, and one end-to-end run of the MLP at a tiny size."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pandas as pd
import pytest

from qnnlib.experiments import ablation, config, variants
from qnnlib.experiments.paper import PAPER_BY_KEY

FASHION = Path("/usr/share/datasets/fashion-mnist")


def test_the_cells_are_the_2x2_plus_stochastic_plus_the_code_optimizer() -> None:
    c = ablation.CELLS
    grid = {(c[n].norm, c[n].optimizer) for n in ("bn-adam", "sbn-adam", "bn-adamax", "sbn-adamax")}
    assert grid == {("bn", "adam"), ("sbn", "adam"), ("bn", "shift_adamax"), ("sbn", "shift_adamax")}
    assert not any(c[n].stochastic or c[n].rules == "code" for n in ("bn-adam", "sbn-adam", "bn-adamax", "sbn-adamax"))
    assert dataclasses.replace(c["sbn-adamax-stoch"], name="sbn-adamax", stochastic=False) == c["sbn-adamax"]
    assert dataclasses.replace(c["sbn-adamax-stoch-code"], name="sbn-adamax-stoch", rules="paper-text") == \
        c["sbn-adamax-stoch"]
    assert all(v.quantized == "none" for v in c.values())
    for comp in ablation.COMPARISONS:
        assert comp.cell in c and comp.reference in c
        assert comp.paper_key is None or comp.paper_key in PAPER_BY_KEY


def test_profiles_resolve_with_three_seeds_at_quick(monkeypatch) -> None:
    monkeypatch.delenv("QNNLIB_PROFILE", raising=False)
    for p in config.PROFILES:
        assert config.resolve("ablation", p).profile == p
    quick = config.resolve("ablation", "quick")
    assert quick.mlp.n_seeds >= 3 and quick.convnet.n_seeds >= 3
    assert quick.cells == tuple(ablation.CELLS)
    cfg = config.resolve("ablation", "quick", cells=["sbn-adamax", "bn-adam"], epochs=2)
    assert [s.recipes for s in cfg.studies()] == [("bn-adam", "sbn-adamax")] * 2  # CELLS order
    for bad in (dict(cells=()), dict(cells=("bn-sgd",)), dict(cells=("bn-adam", "bn-adam")),
                dict(networks=("mlp", "mlp"))):
        with pytest.raises(ValueError):
            dataclasses.replace(quick, **bad)


def _per_seed(shift: float = 0.3, n: int = 3) -> pd.DataFrame:
    base = {"bn-adam": 10.0, "sbn-adam": 10.0 + shift, "bn-adamax": 10.5, "sbn-adamax": 10.0 + shift,
            "sbn-adamax-stoch": 12.0, "sbn-adamax-stoch-code": 15.0}
    rows = []
    for net in ("mlp", "convnet"):
        for name, err in base.items():
            for i in range(n):
                rows.append({"network": net, "variant": name, "label": name, "seed": 1234 + i,
                             "test_error": err + (0.5 * i if n > 1 else 0), "final_test_error": err, "best_epoch": 1,
                             "train_time_s": 1.0, "dataset": "fashion-mnist"})
    return pd.DataFrame(rows)


def test_comparisons_and_rows() -> None:
    comp = ablation.comparisons_frame(_per_seed())
    assert len(comp) == 2 * len(ablation.COMPARISONS)
    first = comp.iloc[0]
    assert (first["claim"], first["diff"]) == ("shift-based BN vs BN (Adam)", pytest.approx(0.3))
    assert first["se"] == pytest.approx((2 * 0.25 / 3) ** 0.5)  # sample variance 0.25 on each side, n = 3
    rows = ablation.table_rows(_per_seed())
    assert rows[0]["row"] == "MLP BNN, shift-based BN vs BN (Adam)" and rows[0]["metric"] == "error increase %"
    assert rows[0]["paper_key"] == "ablation:shift-based BN vs vanilla BN:error increase %"
    assert "paper_key" not in rows[3]  # shift-BN + shift-AdaMax vs BN + Adam: no number of the paper's own
    assert rows[5]["value"] == pytest.approx(3.0)  # code vs paper-text optimizer
    partial = ablation.comparisons_frame(_per_seed()[lambda d: d["variant"].isin(["bn-adam", "sbn-adam"])])
    assert list(partial["claim"]) == ["shift-based BN vs BN (Adam)"] * 2


def test_findings_judge_each_difference_by_its_standard_error() -> None:
    counts = pd.DataFrame([
        {"network": "mlp", "variant": "bn-adam", "multiplications": 1000, "largest": "fc1 weight gradient",
         "largest_share": 0.5},
        {"network": "mlp", "variant": "sbn-adamax", "multiplications": 250, "largest": "fc1 weight gradient",
         "largest_share": 0.996}])
    text = "\n".join(ablation.findings(_per_seed(), counts))
    assert "MLP on fashion-mnist (test error, mean ± std over n = 3-3 seeds): bn-adam 10.50% ± 0.50" in text
    assert "MLP: shift-based BN vs BN (Adam): +0.30 ± 0.41 points — within 2 standard errors of zero." in text
    assert "MLP: Torch7 code vs paper-text shift-AdaMax (shift-BN, stochastic): +3.00 ± 0.41 points — worse by " \
           "more than 2 standard errors (7.3)." in text
    assert "1,000 (BN + Adam) -> 250 (shift-BN + shift-AdaMax), 4.00x fewer; of those left, 99.6% are the fc1 " \
           "weight gradient." in text
    one = "\n".join(ablation.findings(_per_seed(n=1)))
    assert "one seed: no spread to judge it by" in one


def test_sanity_guards_errors_and_the_shift_gap() -> None:
    cfg = ablation.PROFILES["quick"]
    assert ablation.check_sanity(cfg, _per_seed())
    with pytest.raises(AssertionError, match=r"mlp: sbn-adamax - bn-adam = \+12.00 points; bound \|.\| <= 10.0"):
        ablation.check_sanity(cfg, _per_seed(shift=12.0))
    with pytest.raises(AssertionError, match=r"-12.00 points; bound \|.\|"):
        ablation.check_sanity(cfg, _per_seed(shift=-12.0))  # either sign: a gap this large is a regression
    with pytest.raises(AssertionError, match="test error 0.5"):
        ablation.check_sanity(cfg, _per_seed(shift=40.0))
    assert ablation.check_sanity(ablation.PROFILES["smoke"], _per_seed(shift=12.0))  # smoke: no gap bound


@pytest.mark.skipif(not FASHION.is_dir(), reason="needs Debian's dataset-fashion-mnist (make test installs it)")
def test_end_to_end_on_the_mlp(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("QNNLIB_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("QNNLIB_RESULTS", str(tmp_path / "results"))
    monkeypatch.delenv("QNNLIB_PROFILE", raising=False)
    cfg = config.resolve("ablation", "smoke", networks=["mlp"], cells=["bn-adam", "sbn-adamax"], hidden=32,
                         train_size=400, valid_size=100, test_size=200, epochs=1, n_seeds=2)
    data = variants.load_data(cfg)
    runs = variants.run(cfg, data, progress=False)
    per_seed = variants.per_seed_table(cfg, runs, data)
    assert list(per_seed["variant"]) == ["bn-adam"] * 2 + ["sbn-adamax"] * 2
    counts = variants.multiplications_table(cfg, data)
    path = ablation.write_metrics(cfg, runs, per_seed, data, 1.0, counts=counts)
    saved = json.loads(path.read_text())
    assert [r["row"] for r in saved["metrics"]["rows"]] == ["MLP BNN, shift-BN + shift-AdaMax vs BN + Adam"]
    assert saved["metrics"]["rows"][0]["n"] == 2 and len(saved["metrics"]["multiplications"]) == 2
    assert saved["metrics"]["rows"][0]["dataset_sizes"] == {"train": 400, "valid": 100, "test": 200}
    assert "mlp/sbn-adamax@seed1235" in saved["history"]
    assert any("fewer" in line for line in ablation.findings(per_seed, counts))
    assert ablation.check_sanity(cfg, per_seed, path)[-1].endswith("ablation.json written")
