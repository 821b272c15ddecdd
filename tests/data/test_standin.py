"""Stand-in datasets: padding to 32x32 and the label that says what a stand-in stands in for."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from qnnlib.data.standin import pad_images, padded_stand_in, stand_in_note

FASHION = Path("/usr/share/datasets/fashion-mnist")


def test_pad_images():
    x = torch.linspace(-1, 1, 2 * 784).reshape(2, 784)
    y = pad_images(x)
    assert y.shape == (2, 1, 32, 32)
    assert torch.equal(y[:, 0, 2:30, 2:30], x.reshape(2, 28, 28))
    assert (y[:, :, :2] == -1).all() and (y[:, :, :, 30:] == -1).all()
    with pytest.raises(ValueError, match="expected flat images"):
        pad_images(torch.zeros(2, 100))
    with pytest.raises(ValueError, match="size .30. must be >= side .31."):
        pad_images(torch.zeros(2, 961), side=31, size=30)
    with pytest.raises(TypeError, match="size must be a positive integer"):
        pad_images(x, size=32.0)


@pytest.mark.skipif(not FASHION.is_dir(), reason="needs Debian's dataset-fashion-mnist (make test installs it)")
def test_padded_stand_in_says_what_it_stands_in_for(tmp_path, monkeypatch):
    monkeypatch.setenv("QNNLIB_DATA", str(tmp_path))
    d = padded_stand_in("svhn", train_size=30, valid_size=20, test_size=20)
    assert d.name == "fashion-mnist" and d.train.x.shape == (30, 1, 32, 32) and d.sizes()["valid"] == 20
    assert stand_in_note("fashion-mnist", "svhn") in d.describe()["inputs"]
    assert "NOT the paper's dataset" in d.inputs
