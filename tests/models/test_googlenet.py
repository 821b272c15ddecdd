"""models.googlenet: Inception v1 as Szegedy et al. 2014 Table 1 lays it out (module by module), the parameter
count that table implies, the bits of all 58 compute layers, concatenated k-bit branches, bad inputs."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from qnnlib.gradquant import GradQuant
from qnnlib.layers import QuantAct, QuantConv2d, QuantLinear
from qnnlib.models.googlenet import INCEPTION, N_LAYERS, ConvBlock, googlenet_qnn

# Szegedy et al. 2014, Table 1, transcribed independently of the module: name, #1×1, #3×3 reduce, #3×3,
# #5×5 reduce, #5×5, pool proj, and the input channels of the module
TABLE1 = [("3a", 64, 96, 128, 16, 32, 32, 192), ("3b", 128, 128, 192, 32, 96, 64, 256),
          ("4a", 192, 96, 208, 16, 48, 64, 480), ("4b", 160, 112, 224, 24, 64, 64, 512),
          ("4c", 128, 128, 256, 24, 64, 64, 512), ("4d", 112, 144, 288, 32, 64, 64, 512),
          ("4e", 256, 160, 320, 32, 128, 128, 528), ("5a", 256, 160, 320, 32, 128, 128, 832),
          ("5b", 384, 192, 384, 48, 128, 128, 832)]


def _conv(c_in: int, c_out: int, k: int) -> int:
    return c_in * c_out * k * k + c_out  # weights and bias


def _expected_params(classes: int = 1000) -> int:
    total = _conv(3, 64, 7) + _conv(64, 64, 1) + _conv(64, 192, 3)
    for _, n1, r3, n3, r5, n5, p, c in TABLE1:
        total += _conv(c, n1, 1) + _conv(c, r3, 1) + _conv(r3, n3, 3) + _conv(c, r5, 1) + _conv(r5, n5, 5) + _conv(c, p, 1)
    return total + 1024 * classes + classes


def test_modules_and_parameter_count_follow_table_1() -> None:
    assert {name: tuple(spec[:6]) for name, *spec in TABLE1} == INCEPTION
    m = googlenet_qnn(1, 1)
    n = sum(p.numel() for name, p in m.named_parameters() if ".bn." not in name and not name.startswith("bn."))
    assert n == _expected_params() == 6_998_552
    outs = [m.inception.get_submodule(f"inception{name}").out_channels for name, *_ in TABLE1]
    assert outs == [256, 480, 512, 512, 512, 528, 832, 832, 1024]
    assert tuple(m.inception.inception3b.b3.conv.conv.weight.shape) == (96, 32, 5, 5)  # the 5×5 branch is 5×5


def test_58_compute_layers_in_forward_order_with_float_first_and_last() -> None:
    m = googlenet_qnn(1, 1, width=0.0625, num_classes=10)
    blocks = [mod for mod in m.modules() if isinstance(mod, ConvBlock)]
    assert [b.layer_index for b in blocks] == list(range(1, N_LAYERS)) and N_LAYERS == 58
    assert type(m.conv1.conv) is nn.Conv2d and type(m.fc) is nn.Linear
    assert all(isinstance(b.conv, QuantConv2d) and b.conv.weight_bits == 1 for b in blocks[1:])
    assert all(isinstance(b.act, QuantAct) and b.act.bits == 1 for b in blocks)
    q = googlenet_qnn(4, 4, float_first=False, float_last=False, width=0.0625)
    assert isinstance(q.conv1.conv, QuantConv2d) and isinstance(q.fc, QuantLinear) and q.fc.weight_bits == 4


def test_forward_concatenates_k_bit_branches() -> None:
    torch.manual_seed(0)
    m = googlenet_qnn(4, 4, width=0.0625, num_classes=7).eval()
    seen = {}
    m.inception.inception4a.register_forward_hook(lambda _m, _a, o: seen.__setitem__("4a", o))
    y = m(torch.randn(2, 3, 224, 224))
    assert y.shape == (2, 7)
    levels = torch.tensor([-1 + 2 * i / 15 for i in range(16)])
    v = seen["4a"].unique()
    assert torch.isclose(v[:, None], levels[None, :], atol=1e-6).any(1).all()  # every value a 4-bit level
    assert seen["4a"].shape == (2, m.inception.inception4a.out_channels, 14, 14)
    assert googlenet_qnn(1, 1, width=0.0625, num_classes=3)(torch.randn(2, 3, 64, 64)).shape == (2, 3)


def test_six_bit_gradients_everywhere_but_the_float_layers() -> None:
    m = googlenet_qnn(6, 6, 6, width=0.0625)
    gq = [mod for mod in m.modules() if isinstance(mod, GradQuant)]
    assert len(gq) == N_LAYERS - 2 and {g.bits for g in gq} == {6}
    m.train()
    m(torch.randn(2, 3, 64, 64)).sum().backward()  # trains end to end
    assert m.inception.inception5b.b1.conv.weight.grad is not None


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="width"):
        googlenet_qnn(width=-1)
    with pytest.raises(ValueError, match="num_classes"):
        googlenet_qnn(num_classes=0)
