"""Tests for qnnlib.experiments.report: status rules, rounding, footnotes, the paper's order, the markdown width on
the real quick results, the README block, the figure."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import matplotlib
import pytest

from qnnlib.experiments import config, report
from qnnlib.experiments.paper import PAPER_BY_KEY

matplotlib.use("Agg")

ROOT = Path(__file__).resolve().parents[2]
ENV = {"cpu": "Test CPU", "cpu_count": 4, "cpu_affinity": 2, "gpu": None, "python": "3.11", "numpy": "2"}
FASHION = {"name": "fashion-mnist", "sizes": {"train": 100, "valid": 10, "test": 10}, "source": "x"}
MNIST_FULL = {"name": "mnist", "sizes": {"train": 50_000, "valid": 10_000, "test": 10_000}, "source": "x"}


def _write(root: Path, experiment: str, rows: list[dict], dataset: dict = FASHION, env: dict = ENV,
           created: str = "2026-11-30T10:00:00+00:00", profile: str = "quick") -> Path:
    d = root / profile
    d.mkdir(parents=True, exist_ok=True)
    path = d / f"{experiment}.json"
    path.write_text(json.dumps({"schema": "qnnlib.metrics/1", "experiment": experiment, "profile": profile,
                                "created_utc": created, "wall_time_s": 1.5, "config": {}, "dataset": dataset,
                                "metrics": {"rows": rows}, "history": [], "environment": env,
                                "git": {"commit": "abc", "dirty": False}}))
    return path


def _paper(key: str):
    return PAPER_BY_KEY[key]


# ----------------------------------------------------------------------------------------- status
THEANO = "mnist:BNN (Theano):test error %"  # 0.96, no spread
BC = "mnist:BinaryConnect:test error %"  # 1.29 ± 0.08
MEM = "memory:BNN vs 32-bit DNN:memory size reduction x"  # 32
ENERGY = "energy:BNN vs 32-bit DNN:energy reduction x"  # > 32 (lower bound)
PPL = "ptb:LSTM 300 (W4/A4):perplexity"  # 100
TOP1 = "imagenet:AlexNet BNN (W1/A1):top-1 %"  # 36.1, higher is better
COUNT = "filters:3x3 binary filters:max unique 2D filters"  # 512
GRADIENTS = "gradients:AlexNet QNN (W1/A2): 6-bit vs float gradients:error increase %"  # 4.23, imagenet
ABLATION_BN = "ablation:shift-based BN vs vanilla BN:error increase %"  # 0, any dataset


@pytest.mark.parametrize("ours, key, kw, expected", [
    (1.0, THEANO, {"ours_dataset": "mnist"}, "reproduced"),  # 0.04 points
    (1.30, THEANO, {"ours_dataset": "mnist"}, "within tolerance"),  # 0.34 <= 0.5
    (1.60, THEANO, {"ours_dataset": "mnist"}, "worse"),
    (0.30, THEANO, {"ours_dataset": "mnist"}, "better"),
    (1.90, THEANO, {"ours_dataset": "mnist", "std": 1.0}, "within tolerance"),  # our std widens the tolerance
    (36.5, TOP1, {"ours_dataset": "imagenet"}, "within tolerance"),
    (40.0, TOP1, {"ours_dataset": "imagenet"}, "better"),  # accuracy: higher is better
    (30.0, TOP1, {"ours_dataset": "imagenet"}, "worse"),
    (30.0, MEM, {"ours_dataset": "-"}, "reproduced"),  # 6 % off
    (26.0, MEM, {"ours_dataset": "-"}, "within tolerance"),  # 19 % off
    (20.0, MEM, {"ours_dataset": "-"}, "worse"),
    (45.0, MEM, {"ours_dataset": "-"}, "better"),
    (45.0, ENERGY, {"ours_dataset": "-"}, "reproduced"),  # the paper's is a lower bound
    (31.2, ENERGY, {"ours_dataset": "-"}, "within tolerance"),  # short of "more than 32" by < 10 %
    (25.0, ENERGY, {"ours_dataset": "-"}, "worse"),
    (104.0, PPL, {"ours_dataset": "ptb"}, "reproduced"),
    (108.0, PPL, {"ours_dataset": "ptb"}, "within tolerance"),
    (80.0, PPL, {"ours_dataset": "ptb"}, "better"),
    (512.0, COUNT, {"ours_dataset": "-"}, "reproduced"),
    (13.76, THEANO, {"ours_dataset": "fashion-mnist"}, "different dataset"),
    (6.2, "kernels:XNOR kernel vs cuBLAS:speed-up x", {"hardware_differs": True}, "different hardware"),
    (1.0, None, {}, "no paper number"),
    (None, THEANO, {}, "not run"),
])
def test_status_rules(ours, key, kw, expected) -> None:
    assert report.status_of(ours, _paper(key) if key else None, **kw) == expected


def test_every_status_is_reachable_and_spread_widens_the_tolerance() -> None:
    reached = {report.status_of(1.50, _paper(BC), ours_dataset="mnist")}  # 0.21 points: within
    assert reached == {"within tolerance"}
    assert report.status_of(1.9, _paper(BC), ours_dataset="mnist") == "worse"
    assert set(report.STATUSES) == {"reproduced", "within tolerance", "worse", "better", "different dataset",
                                    "different hardware", "no paper number", "not run", "stale"}


# --------------------------------------------------------------------------------------- rounding
def test_rounding_to_what_the_number_means() -> None:
    f = report.format_value
    assert f(7.215637, "percent") == "7.22%" and f(1.3, "percent", paper=True) == "1.3%"
    assert f(0.96, "percent", paper=True) == "0.96%" and f(13.4, "percent") == "13.40%"
    assert f(31.03245920294661, "ratio") == "31.0×" and f(32.0, "ratio", paper=True) == "32×"
    assert f(3.4, "ratio", paper=True) == "3.4×" and f(512.0, "count") == "512"
    assert f(97.04, "perplexity") == "97.0"
    assert f(1.2345, "percent", std=0.05, n=3) == "1.23 ± 0.05% (n = 3)"
    assert f(1.2345, "percent", std=None, n=1) == "1.23%" and f(None, "ratio") == ""
    assert report.metric_kind("test error %") == ("percent", False)
    assert report.metric_kind("top-1 %") == ("percent", True) and report.metric_kind("speed-up x") == ("ratio", True)


# ----------------------------------------------------------------------------------- footnotes, rows
def test_paper_table_columns_footnotes_shared_and_paper_shown_for_noted_rows(tmp_path) -> None:
    _write(tmp_path, "mnist", [
        {"row": "BNN (Theano)", "metric": "test error %", "value": 13.764, "std": 0.1234, "n": 3, "note": "W1A1"},
        {"row": "BNN (Torch7)", "metric": "test error %", "value": 13.9, "note": "W1A1"},
        {"row": "Only ours", "metric": "test error %", "value": 5.0}])
    rep = report.paper_table("quick", "mnist", results_dir=tmp_path)
    assert list(rep.table.columns) == ["claim", "paper", "ours", "status"]
    t = rep.table
    assert t.loc[0, "claim"] == "BNN (Theano), test error % [1][2]" and t.loc[1, "claim"] == "BNN (Torch7), test error % [1][2]"
    assert (t.loc[0, "paper"], t.loc[0, "ours"], t.loc[0, "status"]) == ("0.96%", "13.76 ± 0.12% (n = 3)",
                                                                          "different dataset")
    assert (t.loc[2, "paper"], t.loc[2, "status"]) == ("", "no paper number")
    assert rep.footnotes[0].startswith("Different dataset: ours fashion-mnist (100/10/10), the paper's mnist")
    assert rep.footnotes[1] == "W1A1." and len(rep.footnotes) == 2  # identical notes share a number
    md = rep.markdown()
    assert md.index("| claim | paper | ours | status |") < md.index("\n1. Different dataset")
    assert "\n2. W1A1." in md
    page = rep._repr_html_()
    assert "<ol" in page and "W1A1." in page and "..." not in page


def test_kernel_rows_compared_in_a_note_show_the_paper_numbers(tmp_path) -> None:
    _write(tmp_path, "kernels", [
        {"row": "CPU binary_matmul vs torch.matmul fp32 (4096^3)", "metric": "speed-up x", "value": 6.229,
         "dataset": "4096^3 matmul"},
        {"row": "MNIST MLP 3x4096 inference, CPU: PackedBNN vs PyTorch float32", "metric": "speed-up x",
         "value": 2.71},
        {"row": "Packed", "metric": "memory size reduction x", "value": 31.83, "dataset": "-", "paper_key": MEM}])
    t = report.paper_table("quick", "kernels", results_dir=tmp_path).table
    assert list(t["paper"]) == ["23× / 3.4× (GTX750)", "7× (GTX750)", "32×"]
    assert list(t["status"]) == ["different hardware", "different hardware", "reproduced"]
    assert list(t["ours"]) == ["6.2×", "2.7×", "31.8×"]


def test_reduced_data_paper_status_and_long_claims_are_footnotes(tmp_path) -> None:
    small = {"name": "mnist", "sizes": {"train": 1000, "valid": 100, "test": 100}}
    _write(tmp_path, "mnist", [{"row": "BNN (Theano)", "metric": "test error %", "value": 1.1}], dataset=small)
    long_row = "AlexNet QNN (W1/A2) " + "with a very long explanation of the recipe " * 3
    _write(tmp_path, "imagenet", [{"row": long_row, "metric": "top-1 %", "value": 50.0, "dataset": "imagenet",
                                   "paper_key": "imagenet:AlexNet QNN (W1/A2):top-1 %"}], dataset=MNIST_FULL)
    rep = report.summary_table("quick", results_dir=tmp_path)
    notes = "\n".join(rep.footnotes)
    assert "Reduced data: ours 1000/100/100 (train/valid/test) vs the paper's 50000/10000/10000." in notes
    assert "Paper number SEC (UNIQ paper table quoting QNN)" in notes
    assert f"Full claim: ImageNet: {long_row}, top-1 %." in notes
    claim = rep.table.loc[rep.table["claim"].str.startswith("ImageNet: AlexNet"), "claim"].item()
    assert "…" in claim and len(claim) < len(long_row)
    assert all(len(line) <= report.MAX_WIDTH for line in rep.markdown().splitlines())


# --------------------------------------------------------------------------------------- order
def test_summary_in_the_papers_order_and_not_run_rows(tmp_path) -> None:
    _write(tmp_path, "zzz", [{"row": "Something else", "metric": "speed-up x", "value": 2.0}])
    _write(tmp_path, "kernels", [{"row": "CPU binary_matmul", "metric": "speed-up x", "value": 6.0},
                                 {"row": "3x3", "metric": "max unique 2D filters", "value": 512.0, "dataset": "-",
                                  "paper_key": COUNT}])
    _write(tmp_path, "energy", [{"row": "E", "metric": "energy reduction x", "value": 33.0, "dataset": "-",
                                 "paper_key": ENERGY},
                                {"row": "M", "metric": "memory size reduction x", "value": 32.0, "dataset": "-",
                                 "paper_key": MEM}])
    _write(tmp_path, "ptb", [{"row": "LSTM 300 (W4/A4)", "metric": "perplexity", "value": 101.0}],
           dataset={"name": "ptb"})
    _write(tmp_path, "cifar10", [{"row": "BNN (Theano)", "metric": "test error %", "value": 11.0}],
           dataset={"name": "cifar10"})
    _write(tmp_path, "mnist", [{"row": "BNN (Theano)", "metric": "test error %", "value": 1.0},
                               {"row": "BNN (Torch7)", "metric": "test error %", "value": 1.4}], dataset=MNIST_FULL)
    _write(tmp_path, "ablation", [{"row": "MLP BNN, shift-based BN vs BN (Adam)", "metric": "error increase %",
                                   "value": 0.3, "std": 0.4, "n": 3, "paper_key": ABLATION_BN}],
           dataset={"name": "fashion-mnist"})
    _write(tmp_path, "gradients", [{"row": "MLP BNN, 6-bit log vs float gradients",
                                    "metric": "error increase %", "value": 0.5, "paper_key": GRADIENTS}],
           dataset={"name": "fashion-mnist"})
    rep = report.summary_table("quick", results_dir=tmp_path)
    claims = [c.split(" [")[0] for c in rep.table["claim"]]
    assert claims == ["MNIST: BNN (Torch7), test error %", "MNIST: BNN (Theano), test error %",
                      "SVHN: Binarized ConvNet on SVHN (Table 1, SVHN column)",
                      "CIFAR-10: BNN (Theano), test error %",
                      "ImageNet: ImageNet QNNs: AlexNet and GoogLeNet at low bit widths, one process or many",
                      "PTB: LSTM 300 (W4/A4), perplexity",
                      "Gradients: MLP BNN, 6-bit log vs float gradients, error increase %",
                      "Ablation: MLP BNN, shift-based BN vs BN (Adam), error increase %",
                      "M, memory size reduction", "E, energy reduction", "CPU binary_matmul, speed-up",
                      "3x3, max unique 2D filters", "Something else, speed-up"]
    assert list(rep.table["status"][:8]) == ["reproduced", "reproduced", "not run", "within tolerance", "not run",
                                             "reproduced", "different dataset", "within tolerance"]
    # the paper's "no accuracy loss" claims hold for any dataset: compared on the stand-in too
    # a registered experiment that writes metrics and has no JSON here (svhn) is one "not run" row
    missing = [e for e in config.EXPERIMENTS if e not in report.NO_METRICS
               and e not in {"zzz", "kernels", "energy", "ptb", "cifar10", "mnist", "gradients", "ablation"}]
    assert missing == ["svhn", "imagenet"]
    empty = report.summary_table("quick", results_dir=tmp_path / "none")
    expected = sorted((e for e in config.EXPERIMENTS if e not in report.NO_METRICS),  # in the paper's order
                      key=lambda e: report.SECTIONS.get(e, len(report.SECTIONS)))
    assert list(empty.data["experiment"]) == expected and set(empty.table["status"]) == {"not run"}
    one = report.paper_table("quick", "mnist", results_dir=tmp_path / "none")
    assert list(one.table["status"]) == ["not run"]


# ------------------------------------------------------------------------- real quick results
@pytest.fixture()
def quick(tmp_path) -> Path:
    src = ROOT / "results" / "quick"
    if not any(src.glob("*.json")):
        pytest.skip("no results/quick metrics JSON in this checkout")
    dst = tmp_path / "results" / "quick"
    dst.mkdir(parents=True)
    for p in src.glob("*.json"):
        shutil.copy(p, dst / p.name)
    return tmp_path / "results"


def test_real_quick_results_fit_120_characters(quick, monkeypatch) -> None:
    monkeypatch.delenv("QNNLIB_PROFILE", raising=False)  # make test sets it to smoke; these are quick results
    rep = report.summary_table("quick", results_dir=quick)
    md = rep.markdown()
    assert max(len(line) for line in md.splitlines()) <= 120
    assert set(rep.table["status"]) <= set(report.STATUSES)
    assert not rep.table["claim"].str.contains("nan").any() and not (rep.table["paper"] == "nan").any()
    prov = report.provenance_table("quick", results_dir=quick)
    assert list(prov.columns) == ["experiment", "row", "metric", "ours", "std", "n", "paper", "delta", "dataset",
                                  "sizes", "paper status", "source", "json"]
    assert len(prov) == len(rep.table[rep.table["status"] != "not run"])
    cfg = config.resolve("summary", "quick")
    assert any(c.startswith("markdown at most") for c in report.check_sanity(cfg, rep, results_dir=quick))


def test_check_sanity_fails_when_an_experiment_is_unaccounted_for(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("QNNLIB_PROFILE", raising=False)
    _write(tmp_path, "mnist", [{"row": "BNN (Theano)", "metric": "test error %", "value": 1.0}])
    rep = report.paper_table("quick", "mnist", results_dir=tmp_path)  # no "not run" rows for the others
    with pytest.raises(AssertionError, match="neither"):
        report.check_sanity(config.resolve("summary", "quick"), rep, results_dir=tmp_path)


# -------------------------------------------------------------------------------------- README
def test_update_readme_between_the_markers(tmp_path) -> None:
    _write(tmp_path, "mnist", [{"row": "BNN (Theano)", "metric": "test error %", "value": 13.76}],
           created="2026-11-29T08:00:00+00:00")
    _write(tmp_path, "energy", [{"row": "M", "metric": "memory size reduction x", "value": 32.0, "dataset": "-",
                                 "paper_key": MEM}], env={**ENV, "gpu": "NVIDIA H200"})
    block = report.readme_results("quick", results_dir=tmp_path)
    assert "2026-11-29 to 2026-11-30" in block and "Test CPU (2 cores), no GPU" in block and "GPU NVIDIA H200" in block
    assert "| claim | paper | ours | status |" in block and "\n1. " in block
    readme = tmp_path / "README.md"
    readme.write_text("# T\n\nintro\n<!-- results:begin -->\nold stuff\n<!-- results:end -->\n\nrest\n")
    assert report.update_readme(readme, "quick", results_dir=tmp_path) is True
    text = readme.read_text()
    assert "old stuff" not in text and text.startswith("# T\n\nintro\n<!-- results:begin -->\n")
    assert text.endswith("<!-- results:end -->\n\nrest\n") and block in text
    assert report.update_readme(readme, "quick", results_dir=tmp_path) is False  # idempotent
    readme.write_text("# no markers\n")
    with pytest.raises(ValueError, match="results:begin"):
        report.update_readme(readme, "quick", results_dir=tmp_path)


# -------------------------------------------------------------------------------------- figure
def test_figure_renders_on_fixture_data(tmp_path) -> None:
    _write(tmp_path, "mnist", [{"row": "BNN (Theano)", "metric": "test error %", "value": 13.76}])
    _write(tmp_path, "energy", [{"row": "M", "metric": "memory size reduction x", "value": 31.0, "dataset": "-",
                                 "paper_key": MEM},
                                {"row": "3x3", "metric": "max unique 2D filters", "value": 512.0, "dataset": "-",
                                 "paper_key": COUNT}])
    fig = report.figure(report.summary_table("quick", results_dir=tmp_path))
    assert len(fig.axes) == 3
    pct, ratio, _ = fig.axes
    assert pct.get_xlabel() == "paper (%)" and pct.get_ylabel() == "ours (%)" and pct.get_xscale() == "linear"
    assert ratio.get_xlabel() == "paper (×)" and ratio.get_xscale() == "log" and ratio.get_yscale() == "log"
    assert any(line.get_linestyle() == "--" for line in ratio.get_lines())  # y = x
    fig.savefig(tmp_path / "f.png")
    assert (tmp_path / "f.png").stat().st_size > 0
    linear = report.figure(report.summary_table("quick", results_dir=tmp_path), log_scale=False)
    assert linear.axes[1].get_xscale() == "linear"
    from qnnlib.experiments.results import comparison_table

    assert len(report.figure(comparison_table("quick", tmp_path)).axes) == 3  # a plain comparison DataFrame works
    assert len(report.figure(report.summary_table("quick", results_dir=tmp_path / "none")).axes) == 1  # no data
