"""The PTB language models: float path equal to torch's modules, truncated-BPTT state, grids, bad inputs."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from qnnlib.models.language import LanguageModel, QuantEmbedding, QuantSoftmaxLayer, default_weight_range, ptb_lm
from qnnlib.optim import clip_latent_weights
from qnnlib.quantize import linear_levels

V, H, T, B = 50, 16, 7, 3


def _ids(t: int = T, b: int = B, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, V, (t, b), generator=torch.Generator().manual_seed(seed))


def test_default_weight_range_is_a_power_of_two_above_four_init_bounds() -> None:
    assert default_weight_range(300) == 0.25 and default_weight_range(2048) == 0.125
    for h in (1, 7, 100, 650, 1500, 4096):
        r = default_weight_range(h)
        assert math.log2(r).is_integer() and 4 / math.sqrt(h) <= r < 8 / math.sqrt(h)


@pytest.mark.parametrize("cell", ["rnn", "lstm"])
def test_float_model_is_embedding_then_torch_rnn_then_linear(cell: str) -> None:
    torch.manual_seed(0)
    m = ptb_lm(cell, V, H, 2, 32, 32).double().eval()
    rnn = (nn.RNN(H, H, 2, nonlinearity="relu") if cell == "rnn" else nn.LSTM(H, H, 2)).double()
    rnn.load_state_dict(m.rnn.state_dict())
    x = _ids()
    ref = nn.functional.linear(rnn(m.embedding.embedding(x))[0], m.decoder.weight, m.decoder.bias)
    torch.testing.assert_close(m(x), ref)
    assert list(m.decoder.latent_weights()) == [] and list(m.rnn.latent_weights()) == []


@pytest.mark.parametrize("cell", ["rnn", "lstm"])
@pytest.mark.parametrize("bits", [32, 4])
def test_consecutive_calls_continue_the_stream_and_mode_changes_reset_it(cell: str, bits: int) -> None:
    """Truncated BPTT: two calls on the halves equal one call on the whole (the state is carried), and the state
    is forgotten at train()/eval(), at reset_state() and when the batch size changes."""
    torch.manual_seed(1)
    m = ptb_lm(cell, V, H, 1, bits, bits).double().eval()
    x = _ids(8)
    whole = m(x)
    m.eval()  # a mode change resets
    torch.testing.assert_close(torch.cat([m(x[:5]), m(x[5:])]), whole)
    m.reset_state()
    torch.testing.assert_close(m(x[:5]), whole[:5])
    m.train().eval()
    torch.testing.assert_close(m(x[:5]), whole[:5])
    m(_ids(4))  # a state for batch B; a call with another batch size starts from zeros
    torch.testing.assert_close(m(_ids(4, B + 1)), m.eval()(_ids(4, B + 1)))


def test_carried_state_is_detached() -> None:
    m = ptb_lm("lstm", V, H, 1, 4, 4).train()
    m(_ids(4)).sum().backward()
    out = m(_ids(4, seed=1))  # a second graph: backward must not reach into the first one
    out.sum().backward()
    assert all(not t.requires_grad for t in m._state)


@pytest.mark.parametrize("bits", [2, 4])
def test_quantized_tensors_lie_on_their_grids(bits: int) -> None:
    torch.manual_seed(2)
    m = ptb_lm("lstm", V, 300, 1, bits, bits, embed_size=H)
    r = m.weight_range
    assert r == 0.25 and m.rnn.weight_range == r and m.decoder.weight_range == r
    w = m.decoder.quantized_weight().detach()
    grid = r * linear_levels(bits).float()
    assert torch.isin(w, grid).all() and w.unique().numel() <= 2**bits
    with torch.no_grad():
        m.embedding.embedding.weight.uniform_(-2, 2)
    e = m.embedding(_ids())
    assert torch.isin(e, linear_levels(bits).float()).all()


def test_output_layer_latent_weights_are_clipped_to_its_grid() -> None:
    layer = QuantSoftmaxLayer(300, V, 4)
    assert [lw.name for lw in layer.latent_weights()] == ["weight"]
    with torch.no_grad():
        layer.weight.mul_(100)
    clip_latent_weights(layer)
    assert layer.weight.abs().max().item() == 0.25
    x = torch.randn(5, 300, requires_grad=True)
    layer(x).sum().backward()
    assert x.grad is not None and layer.weight.grad is not None and layer.weight.grad.abs().sum() > 0


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="cell must be one of"):
        ptb_lm("gru", V, H)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"dropout must be a probability in \[0, 1\)"):
        ptb_lm("lstm", V, H, dropout=1.0)
    with pytest.raises(ValueError, match="weight_bits"):
        ptb_lm("lstm", V, H, 1, 0, 4)
    with pytest.raises(ValueError, match="weight_range must be a finite number > 0"):
        ptb_lm("lstm", V, H, 1, 4, 4, weight_range=-1.0)
    with pytest.raises(ValueError, match="vocab_size"):
        LanguageModel("lstm", 1, H, H)
    m = ptb_lm("lstm", V, H)
    with pytest.raises(ValueError, match=r"takes \(T, B\) integer word ids"):
        m(torch.zeros(T, B))
    with pytest.raises(ValueError, match=r"takes \(T, B\) integer word ids"):
        m(torch.zeros(T, dtype=torch.long))
    with pytest.raises(ValueError, match="embed_bits"):
        QuantEmbedding(V, H, bits=17)
