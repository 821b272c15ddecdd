"""The paper's networks, built layer by layer from a precision policy (:mod:`qnnlib.precision`).

``blocks`` (one layer as the policy says) ← ``mlp`` (the MNIST MLP) and ``convnet`` (the CIFAR-10 / SVHN
ConvNet). Import the modules directly, e.g. ``from qnnlib.models.mlp import mnist_mlp``.
"""
