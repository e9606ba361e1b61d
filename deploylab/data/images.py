"""Real photos and ImageNet class names for the ResNet-18 notebooks, shipped in ``data/``.

The photos come from scikit-image's sample data, which ships *inside* the scikit-image
wheel (no ``pooch`` download): public-domain / CC0 images, re-encoded here as JPEG
quality 90. The 1,000 ImageNet-1k class names come from torchvision's bundled metadata.
Both are regenerated with ``python -m deploylab.data.images``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from deploylab.errors import DeployLabError
from deploylab.paths import DATA_DIR

IMAGES_DIR = DATA_DIR / "images"
IMAGENET_CLASSES_PATH = DATA_DIR / "imagenet_classes.txt"
IMAGENET_NUM_CLASSES = 1000
JPEG_QUALITY = 90
MAX_SHORT_SIDE = 512
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


@dataclass(frozen=True)
class SampleImage:
    """One shipped photo: the skimage.data function it comes from and how it was cut."""

    filename: str
    skimage_function: str
    # (top, bottom, left, right) crop of the original, or None for the whole photo
    crop: tuple[int, int, int, int] | None = None
    note: str = ""


SAMPLE_IMAGES: tuple[SampleImage, ...] = (
    SampleImage("astronaut.jpg", "astronaut", note="square"),
    SampleImage("chelsea_cat.jpg", "chelsea", note="landscape"),
    SampleImage("coffee_cup.jpg", "coffee", note="landscape"),
    SampleImage("hubble_deep_field.jpg", "hubble_deep_field", note="landscape, downscaled"),
    SampleImage("rocket.jpg", "rocket", note="landscape"),
    # skimage has no portrait photo: a 284x427 crop around the rocket (centred at x~320)
    SampleImage("rocket_portrait.jpg", "rocket", crop=(0, 427, 178, 462), note="portrait crop"),
)


def sample_rgb(spec: SampleImage) -> np.ndarray:
    """The photo of ``spec`` as HxWx3 uint8 RGB: cropped, short side at most 512 (INTER_AREA)."""
    import cv2
    import skimage.data

    image = getattr(skimage.data, spec.skimage_function)()
    if spec.crop is not None:
        top, bottom, left, right = spec.crop
        image = image[top:bottom, left:right]
    h, w = image.shape[:2]
    if min(h, w) > MAX_SHORT_SIDE:
        scale = MAX_SHORT_SIDE / min(h, w)
        size = (round(w * scale), round(h * scale))
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(image)


def write_sample_images(folder: str | Path = IMAGES_DIR) -> list[Path]:
    """Write the sample photos into ``folder`` as JPEG quality 90; return their paths (sorted)."""
    import cv2

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for spec in SAMPLE_IMAGES:
        path = folder / spec.filename
        bgr = cv2.cvtColor(sample_rgb(spec), cv2.COLOR_RGB2BGR)
        if not cv2.imwrite(str(path), bgr, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]):
            raise DeployLabError(f"OpenCV could not write {str(path)!r}; is the folder writable?")
        paths.append(path)
    return sorted(paths)


def sample_image_paths(folder: str | Path = IMAGES_DIR) -> list[Path]:
    """The shipped photos (JPEG/PNG files in ``data/images/``), sorted by name."""
    folder = Path(folder)
    paths = sorted(p for p in folder.glob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not paths:
        raise DeployLabError(
            f"no sample images in {str(folder)!r}; regenerate them with: python -m deploylab.data.images"
        )
    return paths


def imagenet_classes_from_torchvision() -> list[str]:
    """ImageNet-1k class names in index order, from torchvision's bundled metadata (no download)."""
    from torchvision.models._meta import _IMAGENET_CATEGORIES

    return list(_IMAGENET_CATEGORIES)


def write_imagenet_classes(path: str | Path = IMAGENET_CLASSES_PATH) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(imagenet_classes_from_torchvision()) + "\n", encoding="utf-8")
    return path


def load_imagenet_classes(path: str | Path = IMAGENET_CLASSES_PATH) -> list[str]:
    """The 1,000 ImageNet-1k class names, index ``i`` = logit ``i`` (0 "tench", 281 "tabby")."""
    path = Path(path)
    if not path.is_file():
        raise DeployLabError(
            f"ImageNet class list {str(path)!r} does not exist; regenerate it with: "
            "python -m deploylab.data.images"
        )
    names = path.read_text(encoding="utf-8").splitlines()
    if len(names) != IMAGENET_NUM_CLASSES or any(not n.strip() for n in names):
        raise DeployLabError(
            f"{str(path)!r} has {len(names)} lines (blank ones included), expected "
            f"{IMAGENET_NUM_CLASSES} non-empty class names, one per line"
        )
    return names


if __name__ == "__main__":
    for written in write_sample_images():
        print(f"{written}  {written.stat().st_size:,} bytes")
    print(write_imagenet_classes())
