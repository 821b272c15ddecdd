"""The Table 1 experiment core: recipe keys, one data load per input scaling, rows, findings, sanity bounds."""

from __future__ import annotations

import dataclasses
import types

import pytest
import torch

from qnnlib.data.splits import DatasetSplits, Split
from qnnlib.experiments import table1
from qnnlib.models.blocks import ModelOptions
from qnnlib.models.mlp import mnist_mlp
from qnnlib.precision import BINARY, FLOAT, Precision
from qnnlib.train import TrainConfig


@dataclasses.dataclass(frozen=True)
class Rc:
    name: str
    precision: Precision
    train: TrainConfig
    options: ModelOptions = ModelOptions()
    follows: str = "paper-text"
    input_range: str = "pm1"
    hidden: int = 16

    @property
    def label(self) -> str:
        return {"float": "Float", "bnn": "BNN (code)", "bnn-paper": "BNN (paper text)"}[self.name]


def _data(shift: float = 0.0) -> DatasetSplits:
    g = torch.Generator().manual_seed(0)

    def split(n: int) -> Split:
        y = torch.randint(0, 4, (n,), generator=g)
        x = (torch.linspace(-0.8, 0.8, 4)[y].unsqueeze(1) + 0.3 * torch.randn(n, 12, generator=g)).clamp(-1, 1)
        return Split(x + shift, y)

    return DatasetSplits("toy", split(200), split(100), split(100), "memory")


def _cfg(recipes: dict[str, Rc]) -> types.SimpleNamespace:
    return types.SimpleNamespace(profile="smoke", recipes=tuple(recipes), resume=False,
                                 recipe=lambda n: recipes[n], seeds=lambda n: (recipes[n].train.seed,))


def test_recipe_key_covers_everything_that_changes_the_model() -> None:
    base = Rc("bnn", BINARY, TrainConfig(epochs=1))
    keys = {table1.recipe_key(r) for r in (
        base, dataclasses.replace(base, options=ModelOptions(bn_running="lasagne")),
        dataclasses.replace(base, input_range="torch7"), dataclasses.replace(base, hidden=32),
        dataclasses.replace(base, train=TrainConfig(epochs=2)), dataclasses.replace(base, precision=FLOAT))}
    assert len(keys) == 6
    assert table1.recipe_key(base) == table1.recipe_key(dataclasses.replace(base, train=TrainConfig(epochs=1,
                                                                                                   progress=False)))


def test_run_recipes_loads_each_scaling_once_and_rows_compare_with_the_code(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("QNNLIB_DATA", str(tmp_path))
    t = TrainConfig(epochs=1, batch_size=50, progress=False, threads=1)
    recipes = {"float": Rc("float", FLOAT, dataclasses.replace(t, glorot=False)),
               "bnn": Rc("bnn", BINARY, t, follows="code", input_range="other"),
               "bnn-paper": Rc("bnn-paper", BINARY, t)}
    loads = []

    def load(r: str) -> DatasetSplits:
        loads.append(r)
        return _data(0.01)

    built = []

    def build(rc: Rc, d: DatasetSplits, seed: int) -> torch.nn.Module:
        built.append((rc.name, d.train.x[0, 0].item()))
        torch.manual_seed(seed)
        return mnist_mlp(rc.hidden, 1, precision=rc.precision, in_features=12, num_classes=4)

    data = _data()
    runs = table1.run_recipes(_cfg(recipes), data, experiment="toy", build=build, load=load, save_models=False,
                              progress=False)
    assert loads == ["other"] and [b[0] for b in built] == ["float", "bnn", "bnn-paper"]
    assert built[1][1] == pytest.approx(data.train.x[0, 0].item() + 0.01)  # bnn trained on the other scaling
    assert "follows the code" in capsys.readouterr().out
    rows = table1.table_rows(runs, data, "mnist", {"bnn": "BNN (Theano)", "bnn-paper": "BNN (Theano)"})
    assert [r.get("paper_key") for r in rows] == [None] + ["mnist:BNN (Theano):test error %"] * 2
    assert "paper's text where it differs from the bnn code" in rows[2]["note"]
    lines = table1.findings(runs, data, "mnist", {})
    assert any(line.startswith("bnn: the authors' code vs the paper's text:") for line in lines)
    assert sum("points vs float" in line for line in lines) == 2
    with pytest.raises(ValueError, match="needs inputs scaled as 'other'"):
        table1.run_recipes(_cfg(recipes), data, experiment="toy", build=build, save_models=False, progress=False)


def test_check_errors_names_the_recipe_and_bound() -> None:
    def run(label: str, errors: list[float]) -> types.SimpleNamespace:
        return types.SimpleNamespace(config=types.SimpleNamespace(label=label),
                                     values=lambda f, e=errors: list(e))

    runs = {"float": run("Float", [0.10]), "bnn": run("BNN", [0.12, 0.14])}
    passed = table1.check_errors("quick", runs, 0.2, 0.05, ("bnn",))
    assert passed[-1] == "bnn - float = +3.00 points <= 5.0"
    with pytest.raises(AssertionError, match="BNN is 3.00 points worse than float; bound 2.0"):
        table1.check_errors("quick", runs, 0.2, 0.02, ("bnn",))
    with pytest.raises(AssertionError, match=r"bnn: test error 0.1400 > 0.13"):
        table1.check_errors("quick", runs, 0.13, 0.05, ("bnn",))
