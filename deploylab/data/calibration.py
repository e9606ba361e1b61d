"""Calibration sets for int8 quantization, kept apart from the data that evaluates the result.

Post-training quantization runs the model on a few hundred representative inputs to
learn the range of every activation. Those inputs must not be the evaluation inputs:
ranges fitted on the very images that later measure accuracy make the quantized model
look better than it will be on new data (the same reason a model is not tested on its
training set). So:

- digits: calibration samples come from the TRAIN split; accuracy is measured on the
  TEST split (:func:`deploylab.data.digits.load_digits_split`).
- photos: the course ships only ten photos, so calibration and evaluation are both made
  from them, by *different kinds* of augmentation with independent seeds. Calibration
  crops, flips, rescales and brightens but never rotates; evaluation always rotates (by
  2-10 degrees either way), crops, flips, rescales, changes contrast and brightness and
  sometimes blurs. No evaluation input can therefore equal a calibration input, and the
  evaluation set is not a re-sample of what calibration saw. It still shows the same
  scenes: the views measure *fidelity* to the fp32 model (top-1 agreement, KL), and the
  eight labelled photos give a (small) accuracy, not an ImageNet benchmark.

:class:`CalibrationReader` feeds an array to ONNX Runtime's calibrators
(``onnxruntime.quantization.CalibrationDataReader``: ``get_next`` until ``None``,
``rewind``) with a progress bar.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from deploylab.data.arrays import load_npy, load_npz
from deploylab.errors import DeployLabError

# Independent random streams: calibration and evaluation never share a generator state.
_CALIBRATION_STREAM, _EVALUATION_STREAM = 0, 1
NPZ_KEYS = ("images", "calibration", "input", "x")


# ---------------------------------------------------------------- digits
def digits_calibration(num_samples: int = 300, seed: int = 0) -> np.ndarray:
    """``num_samples`` digits drawn without replacement from the TRAIN split, float32 (N, 1, 32, 32).

    The test split (what accuracy is measured on) is never touched.
    """
    from deploylab.data.digits import load_digits_split

    train = load_digits_split("train")
    _check_count("num_samples", num_samples, maximum=len(train),
                 what=f"the digits train split has {len(train)} images")
    rng = np.random.default_rng(np.random.SeedSequence([seed, _CALIBRATION_STREAM]))
    chosen = rng.choice(len(train), size=num_samples, replace=False)
    return np.ascontiguousarray(train.images[chosen], dtype=np.float32)


def _check_count(name: str, value, minimum: int = 1, maximum: int | None = None, what: str = "") -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise DeployLabError(f"{name}={value!r} must be an integer >= {minimum}")
    if maximum is not None and value > maximum:
        raise DeployLabError(f"{name}={value!r} is more than {maximum}: {what}; ask for at most {maximum}")


# ---------------------------------------------------------------- photos
def _photos() -> list[np.ndarray]:
    from deploylab.data.images import sample_image_paths
    from deploylab.data.preprocess import ImagePreprocessing

    return [ImagePreprocessing.load(p) for p in sample_image_paths()]


def _random_crop(image: np.ndarray, rng: np.random.Generator, area: tuple[float, float]) -> np.ndarray:
    """A crop covering a random fraction of the area with aspect ratio 3/4..4/3 (RandomResizedCrop's box)."""
    h, w = image.shape[:2]
    fraction = rng.uniform(*area)
    aspect = np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3)))
    ch = int(min(h, round(np.sqrt(fraction * h * w / aspect))))
    cw = int(min(w, round(np.sqrt(fraction * h * w * aspect))))
    top = int(rng.integers(0, h - ch + 1))
    left = int(rng.integers(0, w - cw + 1))
    return image[top : top + ch, left : left + cw]


def _rescale(image: np.ndarray, scale: float) -> np.ndarray:
    """Resize by ``scale`` (at least 8 px a side): INTER_AREA to shrink, INTER_LINEAR to grow."""
    import cv2

    h, w = image.shape[:2]
    size = (max(8, round(w * scale)), max(8, round(h * scale)))
    return cv2.resize(np.ascontiguousarray(image), size,
                      interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)


def _calibration_view(image: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """Crop (30-100 % of the area), maybe mirror, rescale x0.6-1.4, brightness x0.75-1.25. No rotation."""
    import cv2

    view = _random_crop(image, rng, (0.3, 1.0))
    flip = bool(rng.random() < 0.5)
    if flip:
        view = view[:, ::-1]
    scale = rng.uniform(0.6, 1.4)
    view = _rescale(view, scale)
    gain = rng.uniform(0.75, 1.25)
    params = {"rotate_deg": 0.0, "flip": flip, "scale": round(scale, 4), "gain": round(gain, 4)}
    return cv2.convertScaleAbs(view, alpha=gain, beta=0), params


EVALUATION_MIN_ROTATION_DEG = 2.0


def _evaluation_view(image: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """Rotate 2-10 degrees either way, crop (40-100 %), maybe mirror, rescale x0.7-1.3,
    contrast x0.8-1.2 with a brightness offset of -20..20, blur 30 % of the time.

    Every evaluation view is rotated by at least ``EVALUATION_MIN_ROTATION_DEG``;
    calibration views never are: the two sets cannot share a transform.
    """
    import cv2

    h, w = image.shape[:2]
    angle = rng.uniform(EVALUATION_MIN_ROTATION_DEG, 10.0) * rng.choice([-1.0, 1.0])
    matrix = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
    view = cv2.warpAffine(image, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
    view = _random_crop(view, rng, (0.4, 1.0))
    flip = bool(rng.random() < 0.5)
    if flip:
        view = view[:, ::-1]
    scale = rng.uniform(0.7, 1.3)
    view = _rescale(view, scale)
    contrast, offset = rng.uniform(0.8, 1.2), rng.uniform(-20, 20)
    view = cv2.convertScaleAbs(view, alpha=contrast, beta=offset)
    blur = bool(rng.random() < 0.3)
    if blur:
        view = cv2.GaussianBlur(view, (5, 5), 0)
    params = {"rotate_deg": round(float(angle), 4), "flip": flip, "scale": round(scale, 4),
              "gain": round(contrast, 4), "offset": round(offset, 3), "blur": blur}
    return view, params


def _augmented_set(count: int, seed: int, stream: int, view, preprocessing, photos=None):
    """(count, C, H, W) float32 views, photo index per view, transform parameters per view."""
    from deploylab.data.preprocess import ImagePreprocessing

    preprocessing = preprocessing or ImagePreprocessing()
    photos = _photos() if photos is None else photos
    rng = np.random.default_rng(np.random.SeedSequence([seed, stream]))
    out = np.empty((count, *preprocessing.input_shape), dtype=np.float32)
    which, transforms = [], []
    for i in range(count):  # photo i % n: every photo is used equally often
        image, params = view(photos[i % len(photos)], rng)
        out[i] = preprocessing(np.ascontiguousarray(image))
        which.append(i % len(photos))
        transforms.append(params)
    return out, which, transforms


def image_calibration(num_samples: int = 64, seed: int = 0, preprocessing=None) -> np.ndarray:
    """``num_samples`` augmented views of the shipped photos, preprocessed: float32 (N, 3, H, W).

    Views are crops, mirror images, rescalings and brightness changes (never rotations),
    then ``preprocessing`` (default: the mmcls test pipeline, :class:`ImagePreprocessing`;
    give the model's own, e.g. EfficientNet-Lite's). Deterministic for a given ``seed``.
    """
    _check_count("num_samples", num_samples)
    return _augmented_set(num_samples, seed, _CALIBRATION_STREAM, _calibration_view, preprocessing)[0]


def image_evaluation_set(count: int = 100, seed: int = 0, preprocessing=None) -> np.ndarray:
    """``count`` views of the shipped photos made by *other* augmentations than calibration's.

    Every view is rotated (which calibration never does), cropped, maybe mirrored and
    rescaled, contrast-shifted and sometimes blurred, from its own random stream: the
    evaluation set shares no input with :func:`image_calibration` for any seed, so
    fidelity measured on it is not measured on the calibration data. Use ``count >= 100``
    for stable agreement numbers (a handful is enough for a per-layer sensitivity ranking).
    """
    _check_count("count", count)
    return _augmented_set(count, seed, _EVALUATION_STREAM, _evaluation_view, preprocessing)[0]


@dataclass
class LabelledViews:
    """Evaluation views of the labelled photos, each with the ImageNet classes it accepts."""

    images: np.ndarray  # float32 (N, 3, H, W), preprocessed
    photos: list[str]  # source filename per view
    accepted: list[tuple[int, ...]]  # accepted ImageNet-1k indices per view
    transforms: list[dict]  # the augmentation parameters per view

    def __len__(self) -> int:
        return len(self.images)


def labelled_evaluation_views(count: int = 320, seed: int = 0, preprocessing=None) -> LabelledViews:
    """``count`` evaluation views (:func:`image_evaluation_set`'s transforms) of the *labelled*
    photos only, each photo equally often, with their accepted label sets.

    The default 320 views of the 8 labelled photos are 40 per photo: enough for top-1
    agreement to resolve 1 view in 320 (0.3 points).
    """
    from deploylab.data.images import IMAGES_DIR, labelled_images
    from deploylab.data.preprocess import ImagePreprocessing

    _check_count("count", count)
    specs = labelled_images()
    photos = [ImagePreprocessing.load(IMAGES_DIR / s.filename) for s in specs]
    images, which, transforms = _augmented_set(count, seed, _EVALUATION_STREAM, _evaluation_view,
                                               preprocessing, photos)
    return LabelledViews(images, [specs[i].filename for i in which], [specs[i].accepted for i in which],
                         transforms)


def calibration_transforms(count: int, seed: int = 0) -> list[dict]:
    """The transform parameters :func:`image_calibration` uses for ``count`` samples (for checks)."""
    return _augmented_set(count, seed, _CALIBRATION_STREAM, _calibration_view, None)[2]


# ---------------------------------------------------------------- the built-in sets, by input shape
DIGITS_INPUT, IMAGENET_INPUT = (1, 32, 32), (3, 224, 224)
DEFAULT_SAMPLES = {DIGITS_INPUT: 300, IMAGENET_INPUT: 64}


def builtin_calibration(input_name: str, input_shape: Sequence, num_samples: int | None = None, seed: int = 0,
                        preprocessing=None) -> tuple[np.ndarray, str]:
    """The shipped calibration set that fits a model input, and a line saying what it is.

    Chosen by the sample shape (``input_shape`` without its batch dim): 1x32x32 gets digits
    from the train split (300 by default); an image input gets augmented views of the
    shipped photos (64 by default), preprocessed with ``preprocessing`` (an
    :class:`~deploylab.data.preprocess.ImagePreprocessing`, e.g. from the model file's
    metadata) when its input shape matches, else with the mmcls pipeline (3x224x224 only).
    Any other shape raises :class:`DeployLabError`: give representative inputs instead.
    """
    from deploylab.text import shape_text

    sample_shape = tuple(input_shape[1:])
    if sample_shape == DIGITS_INPUT:
        count = num_samples or DEFAULT_SAMPLES[DIGITS_INPUT]
        return digits_calibration(count, seed), f"{count} digits from the train split (seed {seed})"
    if preprocessing is not None and sample_shape == preprocessing.input_shape:
        count = num_samples or DEFAULT_SAMPLES[IMAGENET_INPUT]
        return (image_calibration(count, seed, preprocessing=preprocessing),
                f"{count} augmented views of the shipped photos, {preprocessing.name} (seed {seed})")
    if sample_shape == IMAGENET_INPUT:
        count = num_samples or DEFAULT_SAMPLES[IMAGENET_INPUT]
        return image_calibration(count, seed), f"{count} augmented views of the shipped photos (seed {seed})"
    raise DeployLabError(
        f"no built-in calibration set for input {input_name!r} of shape {shape_text(tuple(input_shape))} (built in: "
        "Nx1x32x32 digits, Nx3x224x224 photos); give representative inputs with --calib-data DIR_OR_NPZ"
    )


# ---------------------------------------------------------------- files
def _shape_text(shape) -> str:
    """Calibration messages show every dim that is not a fixed size (a name, None) as ``?``."""
    from deploylab.text import shape_text

    return shape_text([d if isinstance(d, (int, np.integer)) else None for d in shape])


def check_calibration_array(array, input_shape: Sequence, source: str = "calibration data") -> np.ndarray:
    """Validate calibration samples against a model input shape; return float32 (N, ...).

    ``input_shape`` is the model's input shape including the batch dim, which may be
    symbolic (a name or None); other symbolic dims accept any size. One sample given
    without its batch dim gets one added.
    """
    if not isinstance(array, np.ndarray):
        raise DeployLabError(f"{source} is a {type(array).__name__}, expected a numpy array")
    shape = tuple(input_shape)
    if array.ndim == len(shape) - 1:
        array = array[None]
    if array.ndim != len(shape):
        raise DeployLabError(
            f"{source} has shape {_shape_text(array.shape)}, but the model input is {_shape_text(shape)}: "
            f"give an array of shape N x {_shape_text(shape[1:])}"
        )
    if array.shape[0] == 0:
        raise DeployLabError(f"{source} is empty (shape {_shape_text(array.shape)}): give at least one sample")
    for axis, (want, got) in enumerate(zip(shape[1:], array.shape[1:]), start=1):
        if isinstance(want, (int, np.integer)) and want > 0 and want != got:
            raise DeployLabError(
                f"{source} has shape {_shape_text(array.shape)}, but the model input is {_shape_text(shape)} "
                f"(dim {axis} is {got}, must be {want}); give samples of shape {_shape_text(shape[1:])}"
            )
    if array.dtype.kind != "f":
        raise DeployLabError(
            f"{source} has dtype {array.dtype}, expected floating point values preprocessed exactly as the "
            "model's inputs (e.g. float32 in [0, 1] for the digits, normalised for ImageNet models)"
        )
    array = np.ascontiguousarray(array, dtype=np.float32)
    if not np.isfinite(array).all():
        raise DeployLabError(f"{source} contains NaN or infinite values; calibration needs real inputs")
    return array


def _load_image_folder(folder: Path, shape: tuple, preprocessing=None) -> np.ndarray:
    import cv2

    from deploylab.data.images import IMAGE_SUFFIXES
    from deploylab.data.preprocess import ImagePreprocessing

    paths = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise DeployLabError(
            f"calibration folder {str(folder)!r} holds no images ({', '.join(IMAGE_SUFFIXES)}); "
            "put representative inputs there or give an .npy/.npz file"
        )
    channels, height, width = (tuple(shape[1:]) + (None, None, None))[:3]
    if len(shape) != 4 or not all(isinstance(d, (int, np.integer)) for d in (channels, height, width)):
        raise DeployLabError(
            f"images can only calibrate a model with an N x C x H x W input of fixed C, H, W; this model "
            f"takes {_shape_text(shape)}: give an .npy/.npz file of preprocessed samples instead"
        )
    if preprocessing is not None and channels == 3 and preprocessing.crop_size == height == width:
        return preprocessing.batch(paths)  # the model's own pipeline (from its file's metadata)
    if channels == 3 and height == width:
        # mmcls's ratio: resize the short side to 256/224 of the crop, then centre-crop.
        prep = ImagePreprocessing(resize_short=round(height * 256 / 224), crop_size=height)
        return prep.batch(paths)
    if channels == 1:
        # Greyscale models (the digits LeNet): the image scaled to H x W, values in [0, 1].
        out = []
        for path in paths:
            grey = cv2.cvtColor(ImagePreprocessing.load(path), cv2.COLOR_BGR2GRAY)
            small = cv2.resize(grey, (width, height), interpolation=cv2.INTER_AREA)
            out.append(small.astype(np.float32)[None] / 255.0)
        return np.stack(out)
    raise DeployLabError(
        f"images can calibrate 3 x S x S (ImageNet preprocessing) or 1 x H x W (greyscale) inputs, not "
        f"{_shape_text(shape[1:])}; give an .npy/.npz file of preprocessed samples instead"
    )


def load_calibration_data(path: str | Path, input_shape: Sequence, limit: int | None = None,
                          preprocessing=None) -> np.ndarray:
    """Calibration samples for a model input of ``input_shape`` from a file or folder.

    - ``.npy``: one array (N, ...) of preprocessed float samples;
    - ``.npz``: its only array, or the one named ``images``/``calibration``/``input``/``x``;
    - a folder of JPEG/PNG images: preprocessed with ``preprocessing`` (the model's own, e.g.
      from its ONNX metadata) or else as the mmcls ImageNet test pipeline for a 3 x S x S
      input, or greyscale scaled to [0, 1] for a 1 x H x W input.

    ``limit`` keeps the first ``limit`` samples. An empty set or samples of the wrong
    shape raise a :class:`DeployLabError` naming the shape.
    """
    path = Path(path)
    shape = tuple(input_shape)
    if limit is not None:
        _check_count("limit", limit)
    if path.is_dir():
        array = _load_image_folder(path, shape, preprocessing)
    elif not path.is_file():
        raise DeployLabError(
            f"calibration data {str(path)!r} does not exist; give an .npy/.npz file or an image folder"
        )
    elif path.suffix.lower() == ".npy":
        array = load_npy(path, what="calibration data")
    elif path.suffix.lower() == ".npz":
        arrays = load_npz(path, what="calibration data")
        key = next(iter(arrays)) if len(arrays) == 1 else next((k for k in NPZ_KEYS if k in arrays), None)
        if key is None:
            raise DeployLabError(
                f"{str(path)!r} holds arrays {', '.join(map(repr, arrays)) or '(none)'}; keep one array, "
                f"or name the calibration samples one of {', '.join(NPZ_KEYS)}"
            )
        array = arrays[key]
    else:
        raise DeployLabError(
            f"calibration data {str(path)!r} is neither an .npy/.npz file nor a folder of images"
        )
    array = check_calibration_array(array, shape, source=f"calibration data {path.name!r}")
    return array[:limit] if limit is not None else array


# ---------------------------------------------------------------- ONNX Runtime reader
class CalibrationReader:
    """An ``onnxruntime.quantization.CalibrationDataReader`` over an array of samples.

    ``get_next()`` returns ``{input_name: batch}`` until the samples run out, then
    ``None``; ``rewind()`` starts again. ORT's reader base class recognises any class with
    ``get_next`` as a subclass (``isinstance(reader, CalibrationDataReader)`` is True), so
    this module does not import onnxruntime. A tqdm bar counts samples (``progress=None``:
    shown only on a terminal).

    With ``batch_size > 1`` and a sample count that is not a multiple of it, the last
    batch is smaller; ORT's histogram calibrators (entropy, percentile) cannot stack
    batches of different sizes in one ``collect_data`` call, so use ``batch_size=1``, a
    divisor of N, or call ``collect_data`` once per batch as deploylab.quantize does.
    """

    def __init__(self, data: np.ndarray, input_name: str, batch_size: int = 1,
                 progress: bool | None = None, desc: str = "calibration"):
        if not isinstance(data, np.ndarray) or data.ndim < 1 or len(data) == 0:
            shape = getattr(data, "shape", None)
            raise DeployLabError(
                f"calibration data must be a non-empty array of samples, got {shape or type(data).__name__}"
            )
        _check_count("batch_size", batch_size)
        self._all = np.ascontiguousarray(data)
        self.data = self._all
        self.input_name = input_name
        self.batch_size = int(batch_size)
        self.progress = progress
        self.desc = desc
        self._position = 0
        self._bar = None

    def __len__(self) -> int:
        """Number of batches (``get_next`` calls that return data)."""
        return -(-len(self.data) // self.batch_size)

    def _open_bar(self):
        from tqdm.auto import tqdm

        disable = None if self.progress is None else not self.progress
        return tqdm(total=len(self.data), desc=self.desc, unit="sample", disable=disable, leave=False)

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._position >= len(self.data):
            if self._bar is not None:
                self._bar.close()
                self._bar = None
            return None
        if self._bar is None:
            self._bar = self._open_bar()
        batch = self.data[self._position : self._position + self.batch_size]
        self._position += len(batch)
        self._bar.update(len(batch))
        return {self.input_name: batch}

    def rewind(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        self._position = 0

    def set_range(self, start_index: int, end_index: int) -> None:
        """Restrict to samples ``start_index:end_index`` of the full set (ORT's strided MinMax calls this)."""
        self.rewind()
        self.data = self._all[start_index:end_index]

    def __iter__(self):
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        batch = self.get_next()
        if batch is None:
            raise StopIteration
        return batch
