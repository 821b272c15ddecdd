"""Datasets: the IDX format, verified downloads, where files live, in-memory splits, one module per dataset.

``idx`` (format) ← ``download`` (verified, atomic fetches) ; ``root`` (``$QNNLIB_DATA``) ;
``splits`` (train/valid/test tensors and their mini-batches) ; ``mnist`` (MNIST and Fashion-MNIST) ; ``cifar10`` ;
``svhn`` ; ``ptb`` (word-level Penn Treebank, BPTT batches) ; ``imagenet`` (ILSVRC-2012 folders, augmentation,
(distributed) loaders, a generated stand-in folder) ; ``preprocess`` (the authors' input pipelines: [−1, 1], ZCA, GCN + LCN) ; ``standin`` (padded
32×32 stand-ins for datasets that cannot be obtained).
Import the modules directly, e.g. ``from qnnlib.data.mnist import load_mnist``.
"""
