"""Tests for qnnlib.data.imagenet on tiny image folders in the ILSVRC-2012 layout: scan and ordering, layout
errors and their fixes, the train/eval transforms, reproducible loaders (workers, epochs, ranks), the fake set."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from qnnlib.data import imagenet as inet
from qnnlib.data.download import DatasetNotFoundError
from qnnlib.data.idx import DatasetCorruptError

MEAN = torch.tensor(inet.IMAGENET_MEAN).view(3, 1, 1)
STD = torch.tensor(inet.IMAGENET_STD).view(3, 1, 1)


def _save(path: Path, size: tuple[int, int] = (20, 16), colour=(10, 20, 30), fmt: str = "JPEG") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path, fmt)
    return path


def _unnormalize(x: torch.Tensor) -> torch.Tensor:
    """Back to [0, 255] pixel values."""
    return (x * STD + MEAN) * 255.0


def _coord_image(w: int, h: int) -> Image.Image:
    """Pixel (x, y) = (x % 256, y, x // 256): every position readable back from its colour."""
    xs, ys = np.meshgrid(np.arange(w), np.arange(h))
    return Image.fromarray(np.stack([xs % 256, ys, xs // 256], -1).astype(np.uint8))


@pytest.fixture
def fake(tmp_path) -> Path:
    return inet.make_fake_imagenet(tmp_path / "imagenet", classes=3, train_per_class=5, val_per_class=3)


# ------------------------------------------------------------------------------------------------ root
def test_root_explicit_env_then_data_root(tmp_path, monkeypatch):
    monkeypatch.setenv("QNNLIB_DATA", str(tmp_path / "data"))
    monkeypatch.delenv(inet.IMAGENET_ENV, raising=False)
    assert inet.imagenet_root() == tmp_path / "data" / "imagenet"
    monkeypatch.setenv(inet.IMAGENET_ENV, str(tmp_path / "ilsvrc"))
    assert inet.imagenet_root() == tmp_path / "ilsvrc"
    assert inet.imagenet_root(tmp_path / "x") == tmp_path / "x"
    assert inet.IMAGENET_ENV == "QNNLIB_IMAGENET"


# ------------------------------------------------------------------------------------------------ scan
def test_scan_classes_sorted_samples_sorted_hidden_and_other_files_ignored(tmp_path):
    root = tmp_path / "in"
    for split in ("train", "val"):
        for wnid in ("n02000000", "n01000000"):
            for name in ("b.JPEG", "a.jpg", "c.PNG", "d.jpeg"):
                _save(root / split / wnid / name, fmt="PNG" if name.endswith("PNG") else "JPEG")
        (root / split / "n01000000" / "notes.txt").write_text("x")
        _save(root / split / "n01000000" / ".hidden.JPEG")
        _save(root / split / ".cache" / "x.JPEG")
    (root / "val" / "LOC_val_solution.csv").write_text("not an image")  # non-image files at the top are fine
    train, val = inet.scan_imagenet(root)
    assert train.classes == val.classes == ("n01000000", "n02000000")
    assert [(p.parent.name, p.name, y) for p, y in train.samples] == [
        (w, n, y) for y, w in enumerate(train.classes) for n in ("a.jpg", "b.JPEG", "c.PNG", "d.jpeg")]
    assert train.folder == root / "train" and len(val) == 8 and train.counts() == [4, 4]
    assert train.targets == [0, 0, 0, 0, 1, 1, 1, 1]


def test_subset_takes_the_first_images_of_each_class(fake):
    train, _ = inet.scan_imagenet(fake)
    sub = train.subset(2)
    assert sub.classes == train.classes and sub.counts() == [2, 2, 2]
    assert [p.name for p, _ in sub.samples[:2]] == [p.name for p, _ in train.samples[:2]]
    assert train.subset(99).samples == train.samples and train.subset(None) is train
    with pytest.raises(ValueError, match="per_class must be a positive integer"):
        train.subset(0)


def test_missing_root(tmp_path):
    with pytest.raises(DatasetNotFoundError, match=r"root .*nowhere does not exist.*train/<wnid>/\*\.JPEG.*"
                                                   r"valprep\.sh.*set QNNLIB_IMAGENET"):
        inet.scan_split(tmp_path / "nowhere", "train")


def test_missing_split(tmp_path):
    _save(tmp_path / "in" / "train" / "n01" / "a.JPEG")
    with pytest.raises(inet.ImageNetLayoutError, match=r"in/val is missing \(.* holds train\).*set QNNLIB_IMAGENET"):
        inet.scan_imagenet(tmp_path / "in")


def test_no_class_folders(tmp_path):
    (tmp_path / "in" / "val").mkdir(parents=True)
    (tmp_path / "in" / "val" / "readme.txt").write_text("x")
    with pytest.raises(inet.ImageNetLayoutError, match=r"in/val has no class folders; lay ImageNet out as "
                                                       r"<root>/train/<wnid>/\*\.JPEG and <root>/val/<wnid>/\*\.JPEG "
                                                       r"\(the val images sorted .*valprep\.sh.*QNNLIB_IMAGENET"):
        inet.scan_split(tmp_path / "in", "val")


def test_unsorted_val_images(tmp_path):
    for i in (2, 1):
        _save(tmp_path / "in" / "val" / f"ILSVRC2012_val_0000000{i}.JPEG")
    (tmp_path / "in" / "val" / "n01").mkdir()  # even with some folders: the loose images would be lost
    with pytest.raises(inet.ImageNetLayoutError, match=r"val holds 2 image file\(s\) directly \(e\.g\. "
                                                       r"ILSVRC2012_val_00000001\.JPEG\).*not sorted.*Sort them into "
                                                       r".*val/<wnid>/.*valprep\.sh.*set QNNLIB_IMAGENET"):
        inet.scan_split(tmp_path / "in", "val")


def test_class_folder_without_images(tmp_path):
    _save(tmp_path / "in" / "train" / "n01" / "a.JPEG")
    (tmp_path / "in" / "train" / "n02").mkdir()
    (tmp_path / "in" / "train" / "n02" / "a.txt").write_text("x")
    with pytest.raises(inet.ImageNetLayoutError, match=r"1 class folder\(s\) of .*train hold no images .*: n02\. "
                                                       r"Put the class's images into .*train/n02/"):
        inet.scan_split(tmp_path / "in", "train")


def test_train_and_val_classes_differ(tmp_path):
    for split, wnids in (("train", ("n01", "n02", "n03")), ("val", ("n01", "n04"))):
        for w in wnids:
            _save(tmp_path / "in" / split / w / "a.JPEG")
    with pytest.raises(inet.ImageNetLayoutError, match=r"differ.*only in train: n02, n03; only in val: n04\. "
                                                       r"Both splits need the same <wnid> folders"):
        inet.scan_imagenet(tmp_path / "in")


# ------------------------------------------------------------------------------------------------ transforms
def test_normalisation_values():
    x = inet.to_normalized_tensor(Image.new("RGB", (3, 2), (255, 0, 128)))
    assert x.dtype == torch.float32 and x.shape == (3, 2, 3)
    want = [(1 - 0.485) / 0.229, (0 - 0.456) / 0.224, (128 / 255 - 0.406) / 0.225]
    assert torch.allclose(x[:, 0, 0], torch.tensor(want), atol=1e-6)
    assert inet.IMAGENET_MEAN == (0.485, 0.456, 0.406) and inet.IMAGENET_STD == (0.229, 0.224, 0.225)


def test_train_transform_shape_reproducible_and_random():
    img = _coord_image(300, 200)
    a = inet.train_transform(img, torch.Generator().manual_seed(1))
    assert a.shape == (3, 224, 224) and a.dtype == torch.float32
    assert torch.equal(a, inet.train_transform(img, torch.Generator().manual_seed(1)))
    assert not torch.equal(a, inet.train_transform(img, torch.Generator().manual_seed(2)))


def test_train_transform_flips():
    img = _coord_image(64, 48)
    kw = {"size": 32, "scale": (1.0, 1.0), "ratio": (64 / 48, 64 / 48)}  # the crop is the whole image
    plain = inet.train_transform(img, torch.Generator().manual_seed(0), flip_p=0.0, **kw)
    flipped = inet.train_transform(img, torch.Generator().manual_seed(0), flip_p=1.0, **kw)
    assert torch.equal(flipped, plain.flip(-1))
    assert _unnormalize(plain)[0, 0, 0] < _unnormalize(plain)[0, 0, -1]  # red grows with x: not flipped
    # p = 0.5: both outcomes occur over seeds
    outs = {torch.equal(inet.train_transform(img, torch.Generator().manual_seed(s), **kw), plain) for s in range(12)}
    assert outs == {True, False}


def test_random_resized_crop_box_fits_and_falls_back():
    g = torch.Generator().manual_seed(0)
    for _ in range(50):
        left, top, w, h = inet.random_resized_crop_box(100, 80, g)
        assert 0 <= left and left + w <= 100 and 0 <= top and top + h <= 80
        assert 0.08 * 8000 * 0.9 <= w * h <= 8000 and 3 / 4 * 0.8 <= w / h <= 4 / 3 * 1.2
    # no crop of >= 90% of a 1000x10 strip has a ratio in (3/4, 4/3): centre crop clamped to ratio 4/3
    assert inet.random_resized_crop_box(1000, 10, g, scale=(0.9, 1.0)) == ((1000 - 13) // 2, 0, 13, 10)
    assert inet.random_resized_crop_box(10, 1000, g, scale=(0.9, 1.0)) == (0, (1000 - 13) // 2, 10, 13)


def test_eval_transform_centre_crops_and_is_deterministic():
    img = _coord_image(300, 256)  # shorter side already 256: no resampling, the crop is exact
    x = inet.eval_transform(img)
    assert x.shape == (3, 224, 224) and x.dtype == torch.float32 and torch.equal(x, inet.eval_transform(img))
    px = _unnormalize(x).round()
    left, top = 38, 16  # round((300 - 224) / 2), round((256 - 224) / 2)
    assert px[:, 0, 0].tolist() == [left, top, 0]
    assert px[:, 223, 223].tolist() == [(left + 223) % 256, top + 223, (left + 223) // 256]
    # a larger image is resized so its shorter side is 256 (here 512x600 -> 256x300), then cropped
    big = inet.eval_transform(_coord_image(600, 512))
    assert big.shape == (3, 224, 224)
    assert inet.eval_transform(img, size=32, resize=40).shape == (3, 32, 32)
    with pytest.raises(ValueError, match=r"resize \(20\) must be >= size \(32\)"):
        inet.eval_transform(img, size=32, resize=20)


@pytest.mark.parametrize("mode", ["L", "CMYK", "P"])
def test_non_rgb_images_become_rgb(tmp_path, mode):
    img = Image.new("RGB", (40, 30), (90, 90, 90)).convert(mode)
    path = tmp_path / f"x.{'png' if mode == 'P' else 'JPEG'}"
    img.save(path)
    rgb = inet.load_rgb(path)
    assert rgb.mode == "RGB" and rgb.size == (40, 30)
    x = inet.eval_transform(rgb, size=16, resize=20)
    assert x.shape == (3, 16, 16)
    if mode == "L":
        p = _unnormalize(x)
        assert torch.allclose(p[0], p[1], atol=1e-3) and torch.allclose(p[1], p[2], atol=1e-3)
    gray = inet.train_transform(Image.new("L", (40, 30), 50), torch.Generator().manual_seed(0), size=16)
    assert gray.shape == (3, 16, 16)


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_corrupt_image_error_names_the_file(fake, damage):
    train, _ = inet.scan_imagenet(fake)
    path = train.samples[1][0]
    data = path.read_bytes()
    path.write_bytes(b"not a jpeg at all" if damage == "garbage" else data[: len(data) // 2])
    ds = inet.ImageFolderDataset(train, train=True, size=32)
    with pytest.raises(DatasetCorruptError, match=rf"{path.name}: cannot decode the image .*Replace it"):
        ds[1]
    assert ds[0][0].shape == (3, 32, 32)


# ------------------------------------------------------------------------------------------------ dataset
def test_dataset_items_depend_on_seed_epoch_index_only(fake):
    train, _ = inet.scan_imagenet(fake)
    ds = inet.ImageFolderDataset(train, train=True, size=32, seed=5)
    x, y = ds[3]
    assert x.shape == (3, 32, 32) and y == train.samples[3][1] and isinstance(y, int)
    ds[0], ds[7]  # reading other items does not change item 3
    assert torch.equal(ds[3][0], x) and torch.equal(ds[(0, 3)][0], x) and torch.equal(ds[-len(ds) + 3][0], x)
    ds.set_epoch(1)
    assert torch.equal(ds[3][0], ds[(1, 3)][0]) and not torch.equal(ds[3][0], x)
    other = inet.ImageFolderDataset(train, train=True, size=32, seed=6)
    assert not torch.equal(other[(0, 3)][0], x)
    with pytest.raises(IndexError):
        ds[len(ds)]
    assert inet.item_seed(0, 0, 1) != inet.item_seed(0, 1, 0) != inet.item_seed(1, 0, 0)


# ------------------------------------------------------------------------------------------------ loaders
def _collect(loader) -> tuple[torch.Tensor, torch.Tensor]:
    xs, ys = zip(*loader)
    return torch.cat(xs), torch.cat(ys)


def test_loaders_batches_and_same_result_for_0_and_2_workers(fake):
    kw = {"batch_size": 4, "size": 32, "resize": 40, "seed": 3}
    t0, v0 = inet.imagenet_loaders(fake, workers=0, **kw)
    t2, v2 = inet.imagenet_loaders(fake, workers=2, **kw)
    assert t2.persistent_workers and t2.num_workers == 2 and not t0.persistent_workers
    assert t0.pin_memory == torch.cuda.is_available()
    x, y = next(iter(t0))
    assert x.shape == (4, 3, 32, 32) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert len(t0.dataset) == 15 and len(v0.dataset) == 9 and len(t0) == 4
    vx0, vy0 = _collect(v0)
    assert vy0.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]  # val in file order
    vx2, vy2 = _collect(v2)
    assert torch.equal(vx0, vx2) and torch.equal(vy0, vy2)
    for loader in (t0, t2):
        loader.sampler.set_epoch(1)
    e1 = _collect(t0)
    e1_2 = _collect(t2)
    assert torch.equal(e1[0], e1_2[0]) and torch.equal(e1[1], e1_2[1])
    assert sorted(e1[1].tolist()) == [0] * 5 + [1] * 5 + [2] * 5
    t2.sampler.set_epoch(2)  # persistent workers: the new epoch reaches them through the sampler
    e2 = _collect(t2)
    assert not torch.equal(e2[0], e1[0])
    t0.sampler.set_epoch(1)
    again = _collect(t0)
    assert torch.equal(again[0], e1[0]) and torch.equal(again[1], e1[1])


def test_loader_subsets(fake):
    t, v = inet.imagenet_loaders(fake, batch_size=2, workers=0, size=16, resize=20, train_subset=2, val_subset=1)
    assert t.dataset.index.counts() == [2, 2, 2] and v.dataset.index.counts() == [1, 1, 1]
    assert _collect(v)[1].tolist() == [0, 1, 2]
    assert _collect(t)[0].shape == (6, 3, 16, 16)


def test_distributed_ranks_cover_the_splits(fake):
    kw = {"batch_size": 2, "workers": 0, "size": 16, "resize": 20, "seed": 1}
    ranks = [inet.imagenet_loaders(fake, distributed=(r, 2), **kw) for r in (0, 1)]
    train_idx = [[i for _, i in t.sampler] for t, _ in ranks]
    val_idx = [[i for _, i in v.sampler] for _, v in ranks]
    assert isinstance(ranks[0][0].sampler.base, torch.utils.data.distributed.DistributedSampler)
    assert set(train_idx[0]) | set(train_idx[1]) == set(range(15)) and len(train_idx[0]) == len(train_idx[1]) == 8
    assert val_idx == [[0, 2, 4, 6, 8], [1, 3, 5, 7]]  # every val image exactly once, no padding
    assert sum(len(_collect(v)[1]) for _, v in ranks) == 9
    before = train_idx[0]
    ranks[0][0].sampler.set_epoch(1)
    assert [i for _, i in ranks[0][0].sampler] != before
    with pytest.raises(ValueError, match="rank must be an integer >= 0 and <= 1"):
        inet.imagenet_loaders(fake, distributed=(2, 2), **kw)


# ------------------------------------------------------------------------------------------------ fake set
def test_make_fake_imagenet_layout_content_and_speed(tmp_path):
    start = time.perf_counter()
    root = inet.make_fake_imagenet(tmp_path / "f")
    assert time.perf_counter() - start < 1.0
    train, val = inet.scan_imagenet(root)
    assert train.classes == ("n00000000", "n00000001", "n00000002")
    assert train.counts() == [4, 4, 4] and val.counts() == [2, 2, 2]
    assert all(p.suffix == ".JPEG" for p, _ in train.samples + val.samples)
    assert val.samples[0][0].name.startswith("ILSVRC2012_val_")
    imgs = [Image.open(p) for p, _ in train.samples]
    assert {im.format for im in imgs} == {"JPEG"} and {"L", "RGB"} <= {im.mode for im in imgs}
    assert len({im.size for im in imgs}) > 3 and all(40 <= s <= 48 for im in imgs for s in im.size)
    # class-dependent content: per-class mean colours are far apart
    means = [np.mean([np.asarray(Image.open(p).convert("RGB"), float).mean((0, 1)) for p, y in train.samples
                      if y == k], 0) for k in range(3)]
    assert min(np.abs(means[a] - means[b]).max() for a in range(3) for b in range(a + 1, 3)) > 30
    # deterministic; an existing fake set is rewritten, anything else refused
    first = [p.read_bytes() for p, _ in train.samples]
    inet.make_fake_imagenet(root, classes=2)
    assert inet.scan_imagenet(root)[0].classes == ("n00000000", "n00000001")
    inet.make_fake_imagenet(root)
    assert [p.read_bytes() for p, _ in inet.scan_imagenet(root)[0].samples] == first
    _save(tmp_path / "real" / "train" / "n01" / "a.JPEG")
    with pytest.raises(FileExistsError, match="not a fake ImageNet.*nothing was deleted"):
        inet.make_fake_imagenet(tmp_path / "real")
    assert (tmp_path / "real" / "train" / "n01" / "a.JPEG").is_file()
