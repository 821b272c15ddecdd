"""ImageNet (ILSVRC-2012) from an image folder: layout scan, Inception-style transforms, reproducible loaders.

ImageNet cannot be downloaded by the library (it needs an account at image-net.org); the user provides it in
the standard layout::

    <root>/train/<wnid>/*.JPEG      e.g. train/n01440764/n01440764_10026.JPEG   (1,281,167 images)
    <root>/val/<wnid>/*.JPEG        e.g. val/n01440764/ILSVRC2012_val_00000293.JPEG  (50,000 images)

The root is :func:`imagenet_root`: an explicit path, else ``$QNNLIB_IMAGENET``, else ``$QNNLIB_DATA/imagenet``.
The validation images ship unsorted (``val/ILSVRC2012_val_*.JPEG``); they must first be sorted into class folders
(e.g. with the standard ``valprep.sh`` script). Files ending in ``.JPEG``/``.jpeg``/``.jpg``/``.png`` (any case)
are images; hidden files and folders are ignored, and so are other files.

Scan (:func:`scan_split`, :func:`scan_imagenet`): classes are the sorted class-folder names (label ``k`` = the
``k``-th wnid, as torchvision's ``ImageFolder`` numbers them, so pretrained weights agree), samples are sorted by
(class, file name). Every layout problem raises :class:`ImageNetLayoutError` (a
:class:`~qnnlib.data.download.DatasetNotFoundError`) naming what was wrong and how to lay the data out.

Transforms (Pillow and torch only; the standard ImageNet pipeline of torchvision's reference scripts):

* training (:func:`train_transform`): random-resized crop (scale (0.08, 1), aspect ratio (3/4, 4/3), 10 attempts
  then the centre-crop fallback: Szegedy et al.'s Inception crop) resized bilinearly to ``size`` × ``size``, then a
  horizontal flip with p = 0.5, every draw from an explicit ``torch.Generator``;
* evaluation (:func:`eval_transform`): shorter side resized to ``resize`` (bilinear), centre crop ``size``.

Both return float32 (3, size, size) tensors ``(pixel/255 − mean) / std`` per RGB channel with the ImageNet
statistics :data:`IMAGENET_MEAN` = (0.485, 0.456, 0.406) and :data:`IMAGENET_STD` = (0.229, 0.224, 0.225)
(channel means and standard deviations of the training set, the values every torchvision ImageNet model expects).
Images are decoded with Pillow and converted to RGB (ImageNet holds greyscale and CMYK JPEGs and one PNG).

Reproducibility: item ``i`` of epoch ``e`` of a training set seeded ``s`` draws its crop and flip from a generator
seeded with :func:`item_seed` ``(s, e, i)``, and the loaders' samplers hand each worker ``(epoch, index)`` pairs
(:class:`EpochSampler`), so a batch does not depend on the number of workers, the order items are read in, or
persistent workers missing a ``set_epoch`` made in the main process. Call ``train_loader.sampler.set_epoch(e)``
before each epoch (it also reseeds the shuffle, and :class:`~torch.utils.data.distributed.DistributedSampler`).

:func:`make_fake_imagenet` writes a tiny ImageNet in the same layout (real JPEG files) for tests and smoke runs.
"""

from __future__ import annotations

import colorsys
import math
import os
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import DataLoader, Dataset, Sampler
from torch.utils.data.distributed import DistributedSampler

from qnnlib.checks import check_int
from qnnlib.data.download import DatasetNotFoundError
from qnnlib.data.idx import DatasetCorruptError
from qnnlib.data.root import data_root, display_path
from qnnlib.data.splits import epoch_seed

__all__ = ["IMAGENET_ENV", "IMAGENET_MEAN", "IMAGENET_STD", "IMAGE_EXTENSIONS", "SPLITS", "EpochSampler",
           "ImageFolderDataset", "ImageFolderIndex", "ImageNetLayoutError", "SeededPermutation", "ShardSampler",
           "eval_transform", "imagenet_datasets", "imagenet_loaders", "imagenet_root", "item_seed", "load_rgb",
           "make_fake_imagenet", "random_resized_crop_box", "scan_imagenet", "scan_split", "to_normalized_tensor",
           "train_transform"]

IMAGENET_ENV = "QNNLIB_IMAGENET"
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
"""Per-channel (RGB) mean of the ImageNet training pixels scaled to [0, 1] (the torchvision convention)."""
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
"""Per-channel (RGB) standard deviation of the ImageNet training pixels scaled to [0, 1]."""
IMAGE_EXTENSIONS: frozenset[str] = frozenset({".jpeg", ".jpg", ".png"})
"""File suffixes (compared lower-case) that count as images."""
SPLITS = ("train", "val")

_LAYOUT = ("lay ImageNet out as <root>/train/<wnid>/*.JPEG and <root>/val/<wnid>/*.JPEG (the val images sorted "
           "into class folders, e.g. with the standard valprep.sh script)")
_FAKE_MARKER = ".qnnlib-fake-imagenet"


class ImageNetLayoutError(DatasetNotFoundError):
    """The ImageNet folder is missing or not in the ``<root>/<split>/<wnid>/*.JPEG`` layout; the message says how."""


def _fix() -> str:
    env = os.environ.get(IMAGENET_ENV)
    return f"{_LAYOUT} or set {IMAGENET_ENV} to that root ({IMAGENET_ENV} is currently {env!r})"


def _few(names: Sequence[str], k: int = 5) -> str:
    shown = ", ".join(names[:k])
    return shown + (f", ... ({len(names)} in all)" if len(names) > k else "")


# ------------------------------------------------------------------------------------------------ layout
def imagenet_root(root: str | os.PathLike | None = None) -> Path:
    """The ImageNet root: ``root`` if given, else ``$QNNLIB_IMAGENET``, else ``<data root>/imagenet``
    (:func:`qnnlib.data.root.data_root`, i.e. ``$QNNLIB_DATA/imagenet``)."""
    if root is None:
        root = os.environ.get(IMAGENET_ENV) or data_root() / "imagenet"
    return Path(root).expanduser()


def _is_image(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


@dataclass(frozen=True)
class ImageFolderIndex:
    """The images of one split: ``classes`` (sorted class-folder names; label = position) and ``samples``
    ``(path, label)`` sorted by (class, file name); ``folder`` is the split folder they were read from."""

    folder: Path
    classes: tuple[str, ...]
    samples: tuple[tuple[Path, int], ...]

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def targets(self) -> list[int]:
        """The label of every sample, in order."""
        return [label for _, label in self.samples]

    def counts(self) -> list[int]:
        """The number of images of each class."""
        out = [0] * len(self.classes)
        for _, label in self.samples:
            out[label] += 1
        return out

    def subset(self, per_class: int | None) -> ImageFolderIndex:
        """The first ``per_class`` images of every class (in file-name order: deterministic), all images of a
        class that has fewer; ``None`` keeps every image. Classes (and so labels) are unchanged."""
        if per_class is None:
            return self
        k = check_int(per_class, "per_class")
        seen = [0] * len(self.classes)
        kept = []
        for path, label in self.samples:
            if seen[label] < k:
                seen[label] += 1
                kept.append((path, label))
        return ImageFolderIndex(self.folder, self.classes, tuple(kept))


def scan_split(root: str | os.PathLike, split: str) -> ImageFolderIndex:
    """Scan ``<root>/<split>/<class>/<image>`` (``split`` is ``"train"`` or ``"val"``, or any folder name).

    Raises :class:`ImageNetLayoutError` when the root or the split folder is missing, when the split folder
    holds image files at its top level (the unsorted validation layout), has no class folders, or has a class
    folder without images (named); each message says how to fix the layout. Hidden entries are ignored.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise ImageNetLayoutError(f"ImageNet: the root {display_path(root)} does not exist or is not a folder; "
                                  f"{_fix()}.")
    folder = root / split
    if not folder.is_dir():
        held = sorted(p.name for p in root.iterdir() if not p.name.startswith("."))
        raise ImageNetLayoutError(f"ImageNet: {display_path(folder)} is missing ({display_path(root)} holds "
                                  f"{_few(held) or 'nothing'}); {_fix()}.")
    class_dirs, loose = [], []
    with os.scandir(folder) as it:
        for entry in it:
            if entry.name.startswith("."):
                continue
            if entry.is_dir():
                class_dirs.append(entry.name)
            elif _is_image(entry.name):
                loose.append(entry.name)
    if loose:
        loose.sort()
        raise ImageNetLayoutError(
            f"ImageNet: {display_path(folder)} holds {len(loose)} image file(s) directly (e.g. {loose[0]}) instead of "
            f"in class folders: the images are not sorted into <wnid> folders. Sort them into "
            f"{display_path(folder)}/<wnid>/ (for the ILSVRC-2012 validation set, e.g. with the standard valprep.sh "
            f"script), or set {IMAGENET_ENV} to a root laid out that way ({IMAGENET_ENV} is currently "
            f"{os.environ.get(IMAGENET_ENV)!r}).")
    if not class_dirs:
        raise ImageNetLayoutError(f"ImageNet: {display_path(folder)} has no class folders; {_fix()}.")
    classes = sorted(class_dirs)
    samples: list[tuple[Path, int]] = []
    empty = []
    for label, name in enumerate(classes):
        with os.scandir(folder / name) as it:
            files = sorted(e.name for e in it if not e.name.startswith(".") and _is_image(e.name) and e.is_file())
        if not files:
            empty.append(name)
        samples.extend((folder / name / f, label) for f in files)
    if empty:
        exts = "/".join(sorted(IMAGE_EXTENSIONS))
        raise ImageNetLayoutError(
            f"ImageNet: {len(empty)} class folder(s) of {display_path(folder)} hold no images ({exts}, any case): "
            f"{_few(empty)}. Put the class's images into {display_path(folder / empty[0])}/ (an incomplete copy or "
            f"extraction?) or remove the folder from both train and val; {_fix()}.")
    return ImageFolderIndex(folder, tuple(classes), tuple(samples))


def scan_imagenet(root: str | os.PathLike | None = None) -> tuple[ImageFolderIndex, ImageFolderIndex]:
    """Scan ``train`` and ``val`` under :func:`imagenet_root` ``(root)`` (:func:`scan_split`) and check that they
    have the same classes (else :class:`ImageNetLayoutError` naming some of the differences)."""
    home = imagenet_root(root)
    train, val = (scan_split(home, s) for s in SPLITS)
    if train.classes != val.classes:
        only_train = sorted(set(train.classes) - set(val.classes))
        only_val = sorted(set(val.classes) - set(train.classes))
        raise ImageNetLayoutError(
            f"ImageNet: the class folders of {display_path(train.folder)} ({len(train.classes)}) and "
            f"{display_path(val.folder)} ({len(val.classes)}) differ, so labels would not match: only in train: "
            f"{_few(only_train) or 'none'}; only in val: {_few(only_val) or 'none'}. Both splits need the same "
            f"<wnid> folders; {_fix()}.")
    return train, val


# ------------------------------------------------------------------------------------------------ transforms
def load_rgb(path: str | os.PathLike) -> Image.Image:
    """Decode the image at ``path`` with Pillow and convert it to RGB (greyscale, CMYK, palette, RGBA ...).

    A file that cannot be decoded (truncated, not an image) raises
    :class:`~qnnlib.data.idx.DatasetCorruptError` naming it and what to do.
    """
    p = Path(path)
    try:
        with Image.open(p) as im:
            return im.convert("RGB")  # convert() loads the whole image: a truncated file fails here
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        try:
            size = f"{p.stat().st_size} B"
        except OSError:
            size = "unknown size"
        raise DatasetCorruptError(
            f"{display_path(p)}: cannot decode the image ({type(exc).__name__}: {exc}; the file is {size}): it is "
            "truncated or not an image. Replace it with a good copy from the ILSVRC-2012 archive, or delete it "
            "(its class then has one image fewer).") from exc


def to_normalized_tensor(img: Image.Image) -> torch.Tensor:
    """An RGB image as float32 (3, H, W): ``(pixel/255 − IMAGENET_MEAN) / IMAGENET_STD`` per channel."""
    if img.mode != "RGB":
        img = img.convert("RGB")
    x = torch.from_numpy(np.array(img, dtype=np.uint8)).permute(2, 0, 1).to(torch.float32).div_(255.0)
    mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float32).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=torch.float32).view(3, 1, 1)
    return x.sub_(mean).div_(std).contiguous()


def _uniform(lo: float, hi: float, generator: torch.Generator) -> float:
    return float(torch.empty(1).uniform_(lo, hi, generator=generator).item())


def random_resized_crop_box(width: int, height: int, generator: torch.Generator,
                            scale: tuple[float, float] = (0.08, 1.0),
                            ratio: tuple[float, float] = (3 / 4, 4 / 3)) -> tuple[int, int, int, int]:
    """The Inception-style random crop ``(left, top, crop_width, crop_height)`` of a ``width`` × ``height`` image.

    Up to 10 attempts draw an area fraction uniformly from ``scale`` and an aspect ratio (w/h) log-uniformly from
    ``ratio``; the first crop that fits is placed uniformly at random. If none fits, the centre crop of the whole
    image clamped to ``ratio`` is returned. Same algorithm as torchvision's ``RandomResizedCrop.get_params``, with
    every draw from ``generator``.
    """
    if not (0 < scale[0] <= scale[1]) or not (0 < ratio[0] <= ratio[1]):
        raise ValueError(f"scale and ratio must be increasing positive pairs, got scale={scale}, ratio={ratio}")
    area = width * height
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    for _ in range(10):
        target = area * _uniform(scale[0], scale[1], generator)
        aspect = math.exp(_uniform(log_lo, log_hi, generator))
        w = round(math.sqrt(target * aspect))
        h = round(math.sqrt(target / aspect))
        if 0 < w <= width and 0 < h <= height:
            top = int(torch.randint(0, height - h + 1, (1,), generator=generator).item())
            left = int(torch.randint(0, width - w + 1, (1,), generator=generator).item())
            return left, top, w, h
    in_ratio = width / height
    if in_ratio < ratio[0]:
        w, h = width, round(width / ratio[0])
    elif in_ratio > ratio[1]:
        w, h = round(height * ratio[1]), height
    else:
        w, h = width, height
    return (width - w) // 2, (height - h) // 2, w, h


def train_transform(img: Image.Image, generator: torch.Generator, *, size: int = 224,
                    scale: tuple[float, float] = (0.08, 1.0), ratio: tuple[float, float] = (3 / 4, 4 / 3),
                    flip_p: float = 0.5) -> torch.Tensor:
    """Training augmentation: :func:`random_resized_crop_box`, bilinear resize to ``size`` × ``size``, horizontal
    flip with probability ``flip_p``, then :func:`to_normalized_tensor`: float32 (3, size, size).

    The crop is drawn first, then the flip, all from ``generator``: the same generator state gives the same tensor.
    """
    size = check_int(size, "size")
    if img.mode != "RGB":
        img = img.convert("RGB")
    left, top, w, h = random_resized_crop_box(img.width, img.height, generator, scale, ratio)
    img = img.resize((size, size), Image.Resampling.BILINEAR, box=(left, top, left + w, top + h))
    x = to_normalized_tensor(img)
    if float(torch.rand(1, generator=generator).item()) < flip_p:
        x = x.flip(-1).contiguous()
    return x


def eval_transform(img: Image.Image, *, size: int = 224, resize: int = 256) -> torch.Tensor:
    """Evaluation preprocessing: resize (bilinear) so the shorter side is ``resize`` (the longer one
    ``int(resize · long / short)``), centre crop ``size`` × ``size`` (offsets ``round((side − size) / 2)``), then
    :func:`to_normalized_tensor`: float32 (3, size, size). Deterministic; torchvision's ``Resize(resize)`` +
    ``CenterCrop(size)`` do the same."""
    size, resize = check_int(size, "size"), check_int(resize, "resize")
    if resize < size:
        raise ValueError(f"resize ({resize}) must be >= size ({size}): the centre crop is taken from the resized image")
    if img.mode != "RGB":
        img = img.convert("RGB")
    w, h = img.size
    if w <= h:
        new = (resize, int(resize * h / w))
    else:
        new = (int(resize * w / h), resize)
    if new != (w, h):
        img = img.resize(new, Image.Resampling.BILINEAR)
    left = round((new[0] - size) / 2.0)
    top = round((new[1] - size) / 2.0)
    return to_normalized_tensor(img.crop((left, top, left + size, top + size)))


def item_seed(seed: int, epoch: int, index: int) -> int:
    """The seed of the augmentation generator of item ``index`` in epoch ``epoch`` of a run seeded ``seed``:
    63 bits of ``numpy.random.SeedSequence([seed, epoch, index])``, so nearby triples give unrelated streams."""
    state = np.random.SeedSequence([check_int(seed, "seed", 0), check_int(epoch, "epoch", 0),
                                    check_int(index, "index", 0)]).generate_state(2, np.uint32)
    return ((int(state[0]) << 32) | int(state[1])) & ((1 << 63) - 1)


# ------------------------------------------------------------------------------------------------ dataset
class ImageFolderDataset(Dataset):
    """The images of an :class:`ImageFolderIndex` as ``(float32 (3, size, size) tensor, int label)``.

    ``train=True`` applies :func:`train_transform` with a generator seeded by :func:`item_seed` ``(seed, epoch,
    index)``; ``train=False`` applies :func:`eval_transform`. An item is either an index (in the epoch set by
    :meth:`set_epoch`) or an ``(epoch, index)`` pair (what :class:`EpochSampler` yields, so that worker processes
    need no ``set_epoch``). A file that cannot be decoded raises :class:`~qnnlib.data.idx.DatasetCorruptError`
    naming it.
    """

    def __init__(self, index: ImageFolderIndex, *, train: bool, size: int = 224, resize: int = 256, seed: int = 0,
                 scale: tuple[float, float] = (0.08, 1.0), ratio: tuple[float, float] = (3 / 4, 4 / 3),
                 flip_p: float = 0.5) -> None:
        self.index, self.train = index, bool(train)
        self.size, self.resize = check_int(size, "size"), check_int(resize, "resize")
        if self.resize < self.size:
            raise ValueError(f"resize ({resize}) must be >= size ({size})")
        self.seed = check_int(seed, "seed", 0)
        self.scale, self.ratio, self.flip_p = tuple(scale), tuple(ratio), float(flip_p)
        self.epoch = 0

    @property
    def classes(self) -> tuple[str, ...]:
        return self.index.classes

    @property
    def samples(self) -> tuple[tuple[Path, int], ...]:
        return self.index.samples

    @property
    def targets(self) -> list[int]:
        return self.index.targets

    def __len__(self) -> int:
        return len(self.index)

    def set_epoch(self, epoch: int) -> None:
        """The epoch that plain-index items use for their augmentation seed."""
        self.epoch = check_int(epoch, "epoch", 0)

    def __getitem__(self, item: int | tuple[int, int]) -> tuple[torch.Tensor, int]:
        epoch, i = (int(item[0]), int(item[1])) if isinstance(item, tuple) else (self.epoch, int(item))
        n = len(self)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"index {item!r} out of range for {n} images")
        path, label = self.index.samples[i]
        img = load_rgb(path)
        if self.train:
            g = torch.Generator().manual_seed(item_seed(self.seed, epoch, i))
            x = train_transform(img, g, size=self.size, scale=self.scale, ratio=self.ratio, flip_p=self.flip_p)
        else:
            x = eval_transform(img, size=self.size, resize=self.resize)
        return x, label


# ------------------------------------------------------------------------------------------------ samplers
class SeededPermutation(Sampler[int]):
    """All ``n`` indices in the order ``torch.randperm(n)`` of a generator seeded with
    :func:`~qnnlib.data.splits.epoch_seed` ``(seed, epoch)``: each epoch's order is reproducible on its own."""

    def __init__(self, n: int, seed: int = 0) -> None:
        self.n, self.seed, self.epoch = check_int(n, "n", 0), check_int(seed, "seed", 0), 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = check_int(epoch, "epoch", 0)

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[int]:
        g = torch.Generator().manual_seed(epoch_seed(self.seed, self.epoch))
        return iter(torch.randperm(self.n, generator=g).tolist())


class ShardSampler(Sampler[int]):
    """Indices ``rank, rank + world_size, ...`` of ``0..n-1``, in order, without padding.

    The evaluation counterpart of an unshuffled ``DistributedSampler`` (same interleaving) that does not repeat
    images to even the shards out: the ranks together see every image exactly once, so summed counts give the
    exact accuracy (ranks may then have one batch more or fewer).
    """

    def __init__(self, n: int, rank: int, world_size: int) -> None:
        self.n = check_int(n, "n", 0)
        self.world_size = check_int(world_size, "world_size")
        self.rank = check_int(rank, "rank", 0, self.world_size - 1)

    def set_epoch(self, epoch: int) -> None:
        """No effect (the order is fixed); present so every loader's sampler has it."""

    def __len__(self) -> int:
        return len(range(self.rank, self.n, self.world_size))

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.n, self.world_size))


class EpochSampler(Sampler[tuple[int, int]]):
    """The indices of ``base`` paired with the current epoch: yields ``(epoch, index)``.

    :meth:`set_epoch` records the epoch and forwards it to ``base`` (a ``DistributedSampler``, a
    :class:`SeededPermutation`); the epoch then travels with every index to the worker processes, so
    :class:`ImageFolderDataset` seeds its augmentation correctly even with persistent workers.
    """

    def __init__(self, base: Sampler[int] | Sequence[int]) -> None:
        self.base, self.epoch = base, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = check_int(epoch, "epoch", 0)
        if hasattr(self.base, "set_epoch"):
            self.base.set_epoch(self.epoch)

    def __len__(self) -> int:
        return len(self.base)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch = self.epoch
        return ((epoch, int(i)) for i in self.base)


# ------------------------------------------------------------------------------------------------ loaders
def imagenet_datasets(root: str | os.PathLike | None = None, *, size: int = 224, resize: int = 256, seed: int = 0,
                      train_subset: int | None = None,
                      val_subset: int | None = None) -> tuple[ImageFolderDataset, ImageFolderDataset]:
    """The train (augmented) and val (centre-crop) :class:`ImageFolderDataset` of :func:`scan_imagenet` ``(root)``.

    ``train_subset``/``val_subset`` keep the first that many images of every class
    (:meth:`ImageFolderIndex.subset`: deterministic, for small profiles); ``None`` keeps all.
    """
    train, val = scan_imagenet(root)
    return (ImageFolderDataset(train.subset(train_subset), train=True, size=size, resize=resize, seed=seed),
            ImageFolderDataset(val.subset(val_subset), train=False, size=size, resize=resize, seed=seed))


def imagenet_loaders(root: str | os.PathLike | None = None, *, batch_size: int, workers: int, size: int = 224,
                     resize: int = 256, seed: int = 0, train_subset: int | None = None, val_subset: int | None = None,
                     distributed: tuple[int, int] | None = None, pin_memory: bool | None = None,
                     drop_last: bool = False) -> tuple[DataLoader, DataLoader]:
    """Train and val ``DataLoader`` s over ImageNet at :func:`imagenet_root` ``(root)`` (:func:`imagenet_datasets`).

    Batches are ``(float32 (B, 3, size, size), int64 (B,))``. The train loader reshuffles every epoch: call
    ``train_loader.sampler.set_epoch(epoch)`` before each one (order and augmentation then depend only on
    ``(seed, epoch)``, not on ``workers``); the val loader reads in file order. ``distributed=(rank,
    world_size)`` shards the data: train with ``DistributedSampler(shuffle=True, seed=seed)`` (which pads with
    repeated images to equal shards), val with :class:`ShardSampler` (no padding: every image exactly once over
    the ranks; sum the counts across ranks). ``workers`` worker processes (persistent when > 0);
    ``pin_memory`` defaults to whether CUDA is available; ``drop_last`` drops the incomplete last training batch.
    """
    batch_size, workers = check_int(batch_size, "batch_size"), check_int(workers, "workers", 0)
    train_ds, val_ds = imagenet_datasets(root, size=size, resize=resize, seed=seed, train_subset=train_subset,
                                         val_subset=val_subset)
    if distributed is None:
        train_base: Sampler[int] = SeededPermutation(len(train_ds), seed)
        val_base: Sampler[int] | range = range(len(val_ds))
    else:
        rank, world = distributed
        world = check_int(world, "world_size")
        rank = check_int(rank, "rank", 0, world - 1)
        train_base = DistributedSampler(train_ds, num_replicas=world, rank=rank, shuffle=True, seed=seed)
        val_base = ShardSampler(len(val_ds), rank, world)
    pin = torch.cuda.is_available() if pin_memory is None else bool(pin_memory)
    common = {"batch_size": batch_size, "num_workers": workers, "persistent_workers": workers > 0,
              "pin_memory": pin}
    train = DataLoader(train_ds, sampler=EpochSampler(train_base), drop_last=drop_last, **common)
    val = DataLoader(val_ds, sampler=EpochSampler(val_base), drop_last=False, **common)
    return train, val


# ------------------------------------------------------------------------------------------------ fake data
def make_fake_imagenet(root: str | os.PathLike, classes: int = 3, train_per_class: int = 4, val_per_class: int = 2,
                       size: tuple[int, int] = (40, 48), seed: int = 0) -> Path:
    """Write a tiny ImageNet in the real layout under ``root`` and return ``root``: real JPEG files
    ``<root>/{train,val}/n{k:08d}/n{k:08d}_{j}.JPEG`` (val: ``ILSVRC2012_val_{j:08d}.JPEG``).

    Each image's width and height are drawn independently from ``size`` = (smallest, largest) side in pixels, so
    sizes and aspect ratios vary; every third image is greyscale. The content is the class's colour (a fixed
    palette of distinct hues and brightnesses) plus noise, so a tiny model can learn the classes. Deterministic
    in ``seed``. A root that already holds a fake ImageNet (marker file ``.qnnlib-fake-imagenet``) is rewritten;
    one that holds anything else raises ``FileExistsError`` (nothing is deleted).
    """
    classes = check_int(classes, "classes")
    train_per_class, val_per_class = check_int(train_per_class, "train_per_class"), check_int(val_per_class,
                                                                                             "val_per_class")
    lo, hi = (check_int(s, "size", 1) for s in size)
    if lo > hi:
        raise ValueError(f"size must be (smallest, largest) side, got {size}")
    root = Path(root).expanduser()
    marker = root / _FAKE_MARKER
    if root.is_dir() and any(root.iterdir()):
        if not marker.is_file():
            raise FileExistsError(f"{display_path(root)} is not empty and is not a fake ImageNet made by "
                                  "make_fake_imagenet; choose an empty or new folder (nothing was deleted)")
        for split in SPLITS:
            shutil.rmtree(root / split, ignore_errors=True)
    root.mkdir(parents=True, exist_ok=True)
    marker.write_text("written by qnnlib.data.imagenet.make_fake_imagenet\n")
    rng = np.random.default_rng(seed)
    hues = np.linspace(0.0, 1.0, classes, endpoint=False)
    j_val = 0
    for k in range(classes):
        wnid = f"n{k:08d}"
        value = (90 + (k * 97) % 150) / 255.0  # brightness differs too: greyscale images stay separable
        colour = np.array([round(255 * c) for c in colorsys.hsv_to_rgb(float(hues[k]), 0.8, value)], dtype=np.int16)
        for split, count in (("train", train_per_class), ("val", val_per_class)):
            folder = root / split / wnid
            folder.mkdir(parents=True, exist_ok=True)
            for j in range(count):
                h, w = (int(v) for v in rng.integers(lo, hi + 1, size=2))
                pixels = np.clip(colour + rng.integers(-40, 41, size=(h, w, 3)), 0, 255).astype(np.uint8)
                img = Image.fromarray(pixels)
                if j % 3 == 2:
                    img = img.convert("L")
                if split == "train":
                    name = f"{wnid}_{j}.JPEG"
                else:
                    j_val += 1
                    name = f"ILSVRC2012_val_{j_val:08d}.JPEG"
                img.save(folder / name, "JPEG", quality=90)
    return root
