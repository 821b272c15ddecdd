"""Where the project's offline data lies: ``../shared/data`` beside the checkout (CI copies it there)."""

from pathlib import Path

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
if not SHARED_DATA.is_dir():  # the development machines' fixed location
    SHARED_DATA = Path("/work/shared/data")
SHARED_MNIST = SHARED_DATA / "mnist"
FASHION_SYSTEM = Path("/usr/share/datasets/fashion-mnist")
