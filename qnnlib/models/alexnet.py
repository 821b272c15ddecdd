"""AlexNet QNN: the ImageNet network of QNN's AlexNet rows (1-bit weights, 1- or 2-bit activations, 6-bit gradients).

The one-tower AlexNet (Krizhevsky 2014; the layer widths of torchvision's ``alexnet``, 61,100,840 conv/fc weights
and biases at 1000 classes) with every block built from the precision policy as in the paper's other networks:
``conv → [gq] → [maxpool 3/2] → BN → quantized activation`` (pooling before BN), then three fully connected
layers, the last followed by BN and no activation (Alg. 1). No LRN and no dropout: batch normalization replaces
both, as in the authors' binarized AlexNet.

=====  =============================  ===================  =========
layer  operation                      output (224 input)   weights
=====  =============================  ===================  =========
1      conv 11×11/4, pad 2, 64        64×55×55 → pool 27   23,232
2      conv 5×5, pad 2, 192           192×27×27 → pool 13  307,200
3      conv 3×3, pad 1, 384           384×13×13            663,552
4      conv 3×3, pad 1, 256           256×13×13            884,736
5      conv 3×3, pad 1, 256           256×13×13 → pool 6   589,824
6      fc 9216 → 4096                 4096                 37,748,736
7      fc 4096 → 4096                 4096                 16,777,216
8      fc 4096 → classes, BN          classes              4,096,000
=====  =============================  ===================  =========

Layer names: ``conv1, gq1?, pool1, bn1, act1, ..., flatten, fc6, bn6, act6, fc7, bn7, act7, fc8, bn8``.
"""

from __future__ import annotations

from collections import OrderedDict

from torch import nn

from qnnlib.checks import check_int, check_positive
from qnnlib.models.blocks import (
    ModelOptions,
    act_layer,
    conv_layer,
    grad_quant_layer,
    imagenet_precision,
    linear_layer,
    norm_layer,
    param_grad_quant,
)
from qnnlib.precision import NormKind, Precision

__all__ = ["ALEXNET_CONVS", "alexnet", "alexnet_qnn"]

ALEXNET_CONVS: tuple[tuple[int, int, int, int, bool], ...] = (
    # out channels, kernel, stride, padding, max-pool after
    (64, 11, 4, 2, True),
    (192, 5, 1, 2, True),
    (384, 3, 1, 1, False),
    (256, 3, 1, 1, False),
    (256, 3, 1, 1, True),
)
"""The five conv layers of the one-tower AlexNet."""


def alexnet(precision: Precision, *, num_classes: int = 1000, width: float = 1.0, fc: int = 4096,
            image_size: int = 224, bn_eps: float = 1e-5, bn_momentum: float = 0.1, htanh_bound: float = 1.0,
            options: ModelOptions = ModelOptions()) -> nn.Sequential:  # noqa: B008 - frozen default
    """AlexNet with every layer's bits from ``precision`` (8 compute layers); ``width`` scales the conv channels and
    ``fc`` the hidden FC width (small models for tests and the smoke profile); ``image_size`` must leave a
    positive map after the three 3/2 poolings (the standard 224 gives 6×6); ``htanh_bound`` > 1 relaxes every
    activation's hard-tanh to ``[−bound, bound]`` (:func:`qnnlib.models.blocks.act_layer`)."""
    check_int(num_classes, "num_classes")
    check_int(fc, "fc")
    check_int(image_size, "image_size", minimum=63)
    check_positive(width, "width")
    bits = precision.all_layer_bits(8)
    layers: OrderedDict[str, nn.Module] = OrderedDict()

    def grad_quant(k: int) -> None:
        gq = grad_quant_layer(bits[k - 1].grad_bits, precision.grad_method)
        if gq is not None:
            layers[f"gq{k}"] = gq

    c_in, side = 3, image_size
    for k, (c, ks, stride, pad, pool) in enumerate(ALEXNET_CONVS, start=1):
        c_out = max(1, round(c * width))
        layers[f"conv{k}"] = conv_layer(c_in, c_out, bits[k - 1].weight_bits, options.bias_init, ks, stride, pad)
        grad_quant(k)
        side = (side + 2 * pad - ks) // stride + 1
        if pool:
            layers[f"pool{k}"] = nn.MaxPool2d(3, 2)
            side = (side - 3) // 2 + 1
        layers[f"bn{k}"] = norm_layer(c_out, precision.norm, 2, bn_eps, bn_momentum, options=options)
        layers[f"act{k}"] = act_layer(bits[k - 1].act_bits, precision.stochastic, htanh_bound)
        c_in = c_out
    if side < 1:
        raise ValueError(f"image_size={image_size} leaves no feature map after the poolings")
    layers["flatten"] = nn.Flatten()
    width_in = c_in * side * side
    for k in (6, 7):
        layers[f"fc{k}"] = linear_layer(width_in, fc, bits[k - 1].weight_bits, options.bias_init)
        grad_quant(k)
        layers[f"bn{k}"] = norm_layer(fc, precision.norm, 1, bn_eps, bn_momentum, options=options)
        layers[f"act{k}"] = act_layer(bits[k - 1].act_bits, precision.stochastic, htanh_bound)
        width_in = fc
    layers["fc8"] = linear_layer(width_in, num_classes, bits[7].weight_bits, options.bias_init)
    grad_quant(8)
    layers["bn8"] = norm_layer(num_classes, precision.norm, 1, bn_eps, bn_momentum, output=True, options=options)
    model = nn.Sequential(layers)
    param_grad_quant(model, precision.param_grad_bits, precision.grad_method)
    return model


def alexnet_qnn(weight_bits: int | None = 1, act_bits: int | None = 1, grad_bits: int | None = None, *,
                float_first: bool = True, float_last: bool = True, stochastic: bool = False, norm: NormKind = "bn",
                grad_method: str = "log", **kwargs: object) -> nn.Sequential:
    """The paper's AlexNet QNN: ``alexnet_qnn(1, 2)`` is the 1-bit-weight, 2-bit-activation row, ``alexnet_qnn(1,
    2, 6)`` the one with 6-bit gradients; the first and last layers float by default
    (:func:`qnnlib.models.blocks.imagenet_precision`). ``kwargs`` go to :func:`alexnet`."""
    p = imagenet_precision(weight_bits, act_bits, grad_bits, float_first=float_first, float_last=float_last,
                           stochastic=stochastic, norm=norm, grad_method=grad_method)
    return alexnet(p, **kwargs)  # type: ignore[arg-type]
