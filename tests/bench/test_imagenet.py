"""bench.imagenet: the data-path and training-step throughputs, and the whole benchmark at a tiny size (it runs the
1- and 2-process trainings as subprocesses)."""

from __future__ import annotations

import re

import pytest
import torch

from qnnlib.bench import imagenet as bench
from qnnlib.data.imagenet import make_fake_imagenet
from qnnlib.models.alexnet import alexnet_qnn


def test_data_and_step_throughputs_are_positive_rates(tmp_path) -> None:
    root = make_fake_imagenet(tmp_path / "inet", classes=2, train_per_class=4, val_per_class=1, size=(40, 60))
    assert bench.data_throughput(root, workers=0, size=32, batch=4) > 0
    torch.manual_seed(0)
    model = alexnet_qnn(1, 2, width=1 / 16, fc=16, num_classes=2, image_size=64)
    assert bench.step_throughput(model, batch=2, size=64, steps=1, classes=2) > 0


@pytest.mark.slow
def test_the_benchmark_prints_every_figure_and_a_verdict(capsys) -> None:
    assert bench.run(classes=2, per_class=4, size=64, batch=4, workers=1, width=1 / 16, fc=16) == 0
    out = capsys.readouterr().out
    for label in ("data path, 0 workers", "data path, 1 workers", "training step (no data)", "whole run, 1 process",
                  "whole run, 2 processes (DDP)"):
        assert re.search(rf"{re.escape(label)}\s*:\s*[0-9.]+ images/s", out), label
    assert re.search(r"the data path \(\d+ images/s with 1 workers\) (is not|IS) the bottleneck", out)
