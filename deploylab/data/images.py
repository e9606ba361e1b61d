"""Real photos with ImageNet labels, and the ImageNet class names, shipped in ``data/``.

Every photo comes from a package the project installs anyway (scikit-image's ``data/``,
scikit-learn's ``datasets/images``, matplotlib's ``mpl-data/sample_data``): nothing is
downloaded. Each :class:`SampleImage` records where it comes from, its licence, and, for
photos with an unambiguous ImageNet-1k class, the set of class indices accepted as a
correct answer (the cat accepts tabby, tiger cat and Egyptian cat) and why. Photos with
no ImageNet class (the astronaut, the Hubble deep field) ship unlabelled: they show what
a classifier does with something it was never trained on.

The 1,000 ImageNet-1k class names come from torchvision's bundled metadata. Photos and
names are regenerated with ``python -m deploylab.data.images``.
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
    """One shipped photo: the package file it comes from, how it was cut, its labels."""

    filename: str
    package: str  # the installed Python package holding the original ("skimage", ...)
    source: str  # path of the original inside that package
    licence: str
    # (top, bottom, left, right) crop of the original, or None for the whole photo
    crop: tuple[int, int, int, int] | None = None
    note: str = ""
    accepted: tuple[int, ...] = ()  # ImageNet-1k indices that count as correct; () = unlabelled
    why: str = ""

    @property
    def labelled(self) -> bool:
        return bool(self.accepted)


_SKIMAGE_CC0 = "CC0 by the photographer"
SAMPLE_IMAGES: tuple[SampleImage, ...] = (
    SampleImage("astronaut.jpg", "skimage", "data/astronaut.png",
                "public domain (NASA Great Images database)", note="square",
                why="no ImageNet-1k class for an astronaut in a space suit: unlabelled"),
    SampleImage("cameraman.jpg", "skimage", "data/camera.png", f"{_SKIMAGE_CC0} (Lav Varshney)",
                note="square, grey", accepted=(872, 759),
                why="a photographer behind a camera on a tripod: tripod, reflex camera"),
    SampleImage("chelsea_cat.jpg", "skimage", "data/chelsea.png", f"{_SKIMAGE_CC0} (Stefan van der Walt)",
                note="landscape", accepted=(281, 282, 285),
                why="a tabby-patterned house cat: ImageNet's tabby, tiger cat and Egyptian cat all fit it"),
    SampleImage("coffee_cup.jpg", "skimage", "data/coffee.png", f"{_SKIMAGE_CC0} (Rachel Michetti)",
                note="landscape", accepted=(967, 968, 504),
                why="an espresso in a cup on a saucer: espresso, cup, coffee mug"),
    SampleImage("grace_hopper.jpg", "matplotlib", "mpl-data/sample_data/grace_hopper.jpg",
                "US Navy official portrait of Grace M. Hopper: public domain (work of the US government)",
                note="portrait", accepted=(652,),
                why="a naval officer in dress uniform: military uniform"),
    SampleImage("hubble_deep_field.jpg", "skimage", "data/hubble_deep_field.jpg",
                "public domain (NASA / HubbleSite)", note="landscape, downscaled",
                why="galaxies: no ImageNet-1k class; unlabelled"),
    SampleImage("motorcycle.jpg", "skimage", "data/motorcycle_left.png",
                "Middlebury 2014 stereo benchmark (Scharstein et al., GCPR 2014), shipped in the "
                "BSD-3-licensed scikit-image wheel; no separate licence stated",
                note="landscape", accepted=(665, 670),
                why="a motorcycle on its stand; ImageNet-1k has no motorcycle class, and its "
                    "motorised two-wheelers are moped and motor scooter"),
    SampleImage("rocket.jpg", "skimage", "data/rocket.jpg", "public domain (SpaceX Photos)",
                note="landscape", accepted=(657, 744),
                why="a Falcon 9 at launch: missile, projectile (space shuttle is a different vehicle)"),
    # scikit-image has few portrait photos: a 284x427 crop around the rocket (centred at x~320)
    SampleImage("rocket_portrait.jpg", "skimage", "data/rocket.jpg", "public domain (SpaceX Photos)",
                crop=(0, 427, 178, 462), note="portrait crop", accepted=(657, 744),
                why="as rocket.jpg, cropped to portrait"),
    SampleImage("summer_palace.jpg", "sklearn", "datasets/images/china.jpg",
                "CC BY 2.0, danielbuechele on Flickr (scikit-learn's sample image china.jpg)",
                note="landscape", accepted=(698, 663),
                why="the Tower of Buddhist Incense in Beijing's Summer Palace: palace, monastery"),
)
# Seen and left out: skimage's clock_motion (a motion-blurred clock nobody can name),
# scikit-learn's flower.jpg (a dahlia: ImageNet-1k's only flower heads are daisy and
# similar), textures (brick, grass, gravel), microscopy, text and logos.


def labelled_images() -> tuple[SampleImage, ...]:
    """The shipped photos with an accepted ImageNet label set, in filename order."""
    return tuple(sorted((s for s in SAMPLE_IMAGES if s.labelled), key=lambda s: s.filename))


def source_path(spec: SampleImage) -> Path:
    """The original file inside its installed package."""
    import importlib

    module = importlib.import_module(spec.package)
    path = Path(module.__file__).parent / spec.source
    if not path.is_file():
        raise DeployLabError(f"{spec.package} is installed but has no {spec.source!r}; "
                             f"reinstall it to regenerate {spec.filename}")
    return path


def sample_rgb(spec: SampleImage) -> np.ndarray:
    """The photo of ``spec`` as HxWx3 uint8 RGB: cropped, short side at most 512 (INTER_AREA)."""
    import cv2

    bgr = cv2.imread(str(source_path(spec)), cv2.IMREAD_COLOR)
    image = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
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
