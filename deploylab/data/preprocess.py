"""mmcls 0.25's ImageNet test pipeline, reproduced with OpenCV and NumPy only (no mmcv).

The seed model's config (``resnet18_8xb32_in1k.py``) evaluates images with::

    LoadImageFromFile -> Resize(size=(256, -1)) -> CenterCrop(crop_size=224)
    -> Normalize(mean, std, to_rgb=True) -> ImageToTensor -> Collect

:class:`ImagePreprocessing` does the same with the same OpenCV calls in the same order, so
its output equals mmcls's bit for bit (the tests compare against the real pipeline). The
details that matter, all read from the mmcls/mmcv sources:

* **Decoding** is ``cv2.imdecode(bytes, cv2.IMREAD_COLOR)``: mmcls's ``color_type='color'``
  maps to plain ``IMREAD_COLOR``, which *applies* a JPEG's EXIF orientation (only the
  ``*_ignore_orientation`` flags skip it). Grey and RGBA files come out as 3-channel BGR.
* **Resize** ``size=(S, -1)`` resizes the *short* side to S (``adaptive_side='short'``).
  The long side is ``int(S * long / short)``, truncated, not rounded. A square image
  takes the "height" branch (the test is ``w < h``). An image whose short side already
  is S is not resized at all. Interpolation is ``cv2.resize(..., INTER_LINEAR)`` on uint8.
* **CenterCrop** starts at ``int(round((side - crop) / 2))``: Python's ``round`` rounds
  halves to even, so an excess of 33 pixels starts the crop at 16, not 17.
* **Normalize** converts to float32, swaps BGR->RGB with ``cv2.cvtColor``, then
  ``cv2.subtract`` the mean and ``cv2.multiply`` by ``1/std``, where mean and std are first
  rounded to float32 (mmcls stores them as float32 arrays) and then widened to float64.
  OpenCV does this arithmetic in double and rounds once to float32; for uint8 pixel
  values that equals ``(x - float32(mean)) / float32(std)`` in float32, but multiplying
  by a float32 ``1/std`` differs in the last bit for 214 of the 768 (value, channel)
  pairs, and using the unrounded mean/std for 367 (up to 2.4e-7).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from deploylab.errors import DeployLabError
from deploylab.log import native_output
from deploylab.text import first_line

# mmcv.image.geometric.cv2_interp_codes (the cv2 backend's names)
_CV2_INTERPOLATIONS = ("nearest", "bilinear", "bicubic", "area", "lanczos")
# The only order of steps this module reproduces: mmcls's ImageNet test pipeline.
_PIPELINE_ORDER = ("LoadImageFromFile", "Resize", "CenterCrop", "Normalize", "ImageToTensor", "Collect")


def _cv2():
    import cv2

    return cv2


def _cv2_interpolation(name: str) -> int:
    cv2 = _cv2()
    return {
        "nearest": cv2.INTER_NEAREST,
        "bilinear": cv2.INTER_LINEAR,
        "bicubic": cv2.INTER_CUBIC,
        "area": cv2.INTER_AREA,
        "lanczos": cv2.INTER_LANCZOS4,
    }[name]


@dataclass(frozen=True)
class ImagePreprocessing:
    """ImageNet evaluation preprocessing: short side -> ``resize_short``, centre crop, normalise.

    Call it on an HxWx3 uint8 BGR image (what :meth:`load` and ``cv2.imread`` return) to get
    a float32 (3, crop_size, crop_size) array, identical to mmcls's test pipeline output.
    """

    resize_short: int = 256
    crop_size: int = 224
    mean: tuple[float, float, float] = (123.675, 116.28, 103.53)
    std: tuple[float, float, float] = (58.395, 57.12, 57.375)
    to_rgb: bool = True
    interpolation: str = "bilinear"
    # TensorFlow/EfficientNet style: crop crop_size/(crop_size+crop_padding) of the short side
    # around the centre first, then resize that square to crop_size (resize_short is unused).
    crop_first: bool = False
    crop_padding: int = 32
    name: str = "mmcls ImageNet test pipeline"

    def __post_init__(self):
        for name in ("resize_short", "crop_size", "crop_padding"):
            value = getattr(self, name)
            lowest = 0 if name == "crop_padding" else 1
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < lowest:
                raise DeployLabError(f"{name}={value!r} must be an integer number of pixels >= {lowest}")
        if not self.crop_first and self.crop_size > self.resize_short:
            raise DeployLabError(
                f"crop_size={self.crop_size} is larger than resize_short={self.resize_short}: "
                "the centre crop would not fit in the resized image (mmcls would silently return "
                "a smaller image); use a crop_size <= resize_short"
            )
        for name in ("mean", "std"):
            value = getattr(self, name)
            if len(tuple(value)) != 3:
                raise DeployLabError(f"{name}={value!r} must have 3 values, one per colour channel")
            object.__setattr__(self, name, tuple(float(v) for v in value))
        if any(s == 0 for s in self.std):
            raise DeployLabError(f"std={self.std!r} contains 0; every channel's std must be non-zero")
        if self.interpolation not in _CV2_INTERPOLATIONS:
            raise DeployLabError(
                f"interpolation={self.interpolation!r} is not one of {', '.join(_CV2_INTERPOLATIONS)}"
            )

    # ------------------------------------------------------------ construction
    @classmethod
    def from_mmcls_config(cls, config: Any = "resnet18_8xb32_in1k.py") -> ImagePreprocessing:
        """The parameters of an mmcls config's test pipeline.

        ``config`` is a config file, the name of a config inside the installed mmcls (e.g.
        ``"resnet18_8xb32_in1k.py"``, optionally prefixed ``mmcls:``) or an already loaded
        ``mmcv.Config``. The pipeline read is ``data.test.pipeline`` (what mmcls's
        ``inference_model`` and test tools run), else ``test_pipeline``. Any step this class
        does not reproduce exactly raises a :class:`DeployLabError` naming that step.
        """
        cfg, source = _load_mmcls_config(config)
        pipeline = _test_pipeline(cfg, source)
        return cls(**_parse_pipeline(pipeline, source))

    # ------------------------------------------------------------ steps
    @staticmethod
    def load(path: str | Path) -> np.ndarray:
        """Decode an image file to HxWx3 uint8 BGR exactly as mmcls's ``LoadImageFromFile``.

        That is ``mmcv.imfrombytes(bytes, flag='color')`` with the cv2 backend:
        ``cv2.imdecode(bytes, cv2.IMREAD_COLOR)`` (EXIF orientation applied, grey and alpha
        images converted to 3-channel BGR).
        """
        path = Path(path)
        if not path.is_file():
            what = "is a directory, not an image file" if path.is_dir() else "does not exist"
            raise DeployLabError(f"image {str(path)!r} {what}; give the path of a JPEG or PNG file")
        return ImagePreprocessing.decode(path.read_bytes(), f"image {str(path)!r}")

    @staticmethod
    def decode(data: bytes, source: str = "image") -> np.ndarray:
        """:meth:`load` on bytes already read (an upload, a row of a dataset); ``source`` names them
        in the error."""
        cv2 = _cv2()
        data = np.frombuffer(data, dtype=np.uint8)
        image = None
        if data.size:
            # libjpeg/libpng print their warnings straight to descriptor 2; kept, and named if decoding fails
            with native_output() as said:
                try:
                    image = cv2.imdecode(data, cv2.IMREAD_COLOR)
                except cv2.error:
                    image = None
        if image is None:
            decoder = first_line("".join(said)) if data.size and "".join(said).strip() else ""
            raise DeployLabError(
                f"{source} ({data.size} bytes) could not be decoded by OpenCV"
                + (f" ({decoder})" if decoder else "")
                + "; it is empty, corrupt or not an image format OpenCV reads (JPEG, PNG, BMP, TIFF, WebP)"
            )
        return image

    def resized_size(self, height: int, width: int) -> tuple[int, int]:
        """(height, width) after mmcls's ``Resize(size=(resize_short, -1))``.

        Follows ``mmcls.datasets.pipelines.Resize._resize_img``: the long side is
        ``int(S * long / short)`` (truncated); ``w < h`` picks the width as the short side,
        so a square image goes through the other branch (same result).
        """
        s = self.resize_short
        if min(height, width) == s:
            return height, width
        if width < height:
            return int(s * height / width), s
        return s, int(s * width / height)

    def crop_box(self, height: int, width: int) -> tuple[int, int, int, int]:
        """(top, left, bottom, right), exclusive ends, of mmcls's ``CenterCrop`` on an image of that size.

        The start is ``max(0, int(round((side - crop) / 2)))``; ``round`` rounds halves to even.
        """
        c = self.crop_size
        top = max(0, int(round((height - c) / 2.0)))
        left = max(0, int(round((width - c) / 2.0)))
        return top, left, min(height, top + c), min(width, left + c)

    def resize(self, image_bgr: np.ndarray) -> np.ndarray:
        """Short side to ``resize_short`` (uint8 in, uint8 out); unchanged if it already is."""
        image_bgr = self._check_image(image_bgr)
        h, w = image_bgr.shape[:2]
        new_h, new_w = self.resized_size(h, w)
        if (new_h, new_w) == (h, w):
            return image_bgr
        cv2 = _cv2()
        return cv2.resize(image_bgr, (new_w, new_h), interpolation=_cv2_interpolation(self.interpolation))

    def center_crop(self, image: np.ndarray) -> np.ndarray:
        top, left, bottom, right = self.crop_box(*image.shape[:2])
        return image[top:bottom, left:right, ...]

    def normalize(self, image_bgr: np.ndarray) -> np.ndarray:
        """HxWx3 -> float32 HxWx3: as ``mmcv.imnormalize`` (to RGB, minus mean, times 1/std)."""
        cv2 = _cv2()
        img = image_bgr.copy().astype(np.float32)
        # mmcls's Normalize stores mean/std as float32; mmcv.imnormalize_ widens them to float64.
        mean = np.float64(np.array(self.mean, dtype=np.float32).reshape(1, -1))
        stdinv = 1 / np.float64(np.array(self.std, dtype=np.float32).reshape(1, -1))
        if self.to_rgb:
            cv2.cvtColor(img, cv2.COLOR_BGR2RGB, img)
        cv2.subtract(img, mean, img)
        cv2.multiply(img, stdinv, img)
        return img

    def padded_center_crop(self, image_bgr: np.ndarray) -> np.ndarray:
        """TensorFlow EfficientNet's eval crop, then resize to ``crop_size`` x ``crop_size``.

        As ``_decode_and_center_crop`` in tensorflow/tpu's ``efficientnet/preprocessing.py``:
        side ``int(crop / (crop + padding) * short side)``, offset ``(excess + 1) // 2``,
        then a resize with ``interpolation`` (cv2's bicubic, not TF's: values differ slightly).
        """
        image_bgr = self._check_image(image_bgr)
        h, w = image_bgr.shape[:2]
        c = self.crop_size
        side = max(1, int(c / (c + self.crop_padding) * min(h, w)))
        top, left = (h - side + 1) // 2, (w - side + 1) // 2
        crop = np.ascontiguousarray(image_bgr[top : top + side, left : left + side])
        return _cv2().resize(crop, (c, c), interpolation=_cv2_interpolation(self.interpolation))

    def __call__(self, image_bgr: np.ndarray) -> np.ndarray:
        """HxWx3 uint8 BGR image -> float32 (3, crop_size, crop_size), C-contiguous."""
        if self.crop_first:
            image = self.padded_center_crop(image_bgr)
        else:
            image = self.center_crop(self.resize(image_bgr))
        return np.ascontiguousarray(self.normalize(image).transpose(2, 0, 1))

    # ------------------------------------------------------------ metadata
    def to_dict(self) -> dict:
        """Plain JSON-able fields (what an export writes into the ONNX file's metadata)."""
        from dataclasses import asdict

        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping) -> ImagePreprocessing:
        """Inverse of :meth:`to_dict`; unknown or malformed fields raise a :class:`DeployLabError`."""
        from dataclasses import fields

        if not isinstance(data, Mapping):
            raise DeployLabError(f"preprocessing metadata must be a JSON object, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise DeployLabError(f"preprocessing metadata has unknown field(s) {', '.join(unknown)}; "
                                 f"expected some of {', '.join(sorted(known))}")
        values = dict(data)
        for key in ("mean", "std"):
            if key in values and isinstance(values[key], list):
                values[key] = tuple(values[key])
        try:
            return cls(**values)
        except TypeError as exc:
            raise DeployLabError(f"preprocessing metadata {data!r} is malformed ({exc})") from exc

    def preprocess_file(self, path: str | Path) -> np.ndarray:
        """:meth:`load` then :meth:`__call__`: the CHW float32 input for one image file."""
        return self(self.load(path))

    def batch(self, items: Iterable[str | Path | np.ndarray]) -> np.ndarray:
        """Paths and/or HxWx3 uint8 BGR arrays -> float32 (N, 3, crop_size, crop_size)."""
        if isinstance(items, (str, Path, np.ndarray)):
            items = [items]
        outputs = [
            self(item) if isinstance(item, np.ndarray) else self.preprocess_file(item) for item in items
        ]
        if not outputs:
            raise DeployLabError("batch() got no images; give at least one path or HxWx3 uint8 array")
        return np.stack(outputs)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (3, self.crop_size, self.crop_size)

    def describe(self) -> str:
        """The steps, one per line, with their parameters."""
        s, c = self.resize_short, self.crop_size
        colour = "BGR -> RGB, " if self.to_rgb else ""
        mean = ", ".join(f"{v:g}" for v in self.mean)
        std = ", ".join(f"{v:g}" for v in self.std)
        if self.crop_first:
            p = self.crop_padding
            geometry = [
                f"2. center crop: square side int({c} / ({c} + {p}) * short side), offset (excess + 1) // 2",
                f"3. resize: that square -> {c}x{c}, cv2 {self.interpolation}",
            ]
        else:
            geometry = [
                f"2. resize: short side -> {s}, long side int({s} * long / short), "
                f"cv2 {self.interpolation} (skipped if the short side is already {s})",
                f"3. center crop: {c}x{c}, offset int(round((side - {c}) / 2)) (halves to even)",
            ]
        return "\n".join(
            [
                f"{self.name}:",
                "1. load: cv2.imdecode(IMREAD_COLOR) -> HxWx3 uint8 BGR (EXIF orientation applied)",
                *geometry,
                f"4. normalize: float32, {colour}(x - [{mean}]) * 1/[{std}]",
                f"5. to tensor: HWC -> CHW float32 (3, {c}, {c})",
            ]
        )

    # ------------------------------------------------------------ helpers
    @staticmethod
    def _check_image(image: Any) -> np.ndarray:
        if not isinstance(image, np.ndarray):
            raise DeployLabError(
                f"expected an HxWx3 uint8 BGR numpy array, got {type(image).__name__}; "
                "use ImagePreprocessing.load(path) or batch([path]) for files"
            )
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise DeployLabError(
                f"expected an HxWx3 uint8 BGR image, got shape {tuple(image.shape)} dtype {image.dtype}; "
                "convert grey images with cv2.cvtColor(img, cv2.COLOR_GRAY2BGR), drop an alpha "
                "channel, and pass uint8 pixel values 0..255 (not normalised floats)"
            )
        if image.shape[0] == 0 or image.shape[1] == 0:
            raise DeployLabError(f"image of shape {tuple(image.shape)} is empty")
        return np.ascontiguousarray(image)  # cv2 rejects views such as rgb[:, :, ::-1]


# ---------------------------------------------------------------- config reading
def _load_mmcls_config(config: Any):
    if not isinstance(config, (str, Path)):
        if hasattr(config, "get") or isinstance(config, Mapping):
            return config, getattr(config, "filename", None) or "the given config"
        raise DeployLabError(
            f"config {config!r} is neither a path, an mmcls config name nor an mmcv Config"
        )
    from deploylab.mmcls_compat import mmcls_config_path, quiet_mmcv_import

    name = str(config)
    if name.startswith("mmcls:"):
        name = name[len("mmcls:") :]
    path = mmcls_config_path(name)
    mmcv = quiet_mmcv_import("reading an mmcls config")
    try:
        return mmcv.Config.fromfile(str(path)), str(path)
    except Exception as exc:  # syntax errors, missing _base_ files, ...
        raise DeployLabError(f"could not read mmcls config {str(path)!r}: {type(exc).__name__}: {exc}") from exc


def _plain(value: Any) -> Any:
    """mmcv ConfigDict/list -> plain dicts and lists, for comparing pipelines."""
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(v) for v in value)
    return value


def _test_pipeline(cfg: Any, source: str) -> list[dict]:
    data = cfg.get("data") or {}
    test = data.get("test") if isinstance(data, Mapping) or hasattr(data, "get") else None
    from_data = test.get("pipeline") if test is not None and hasattr(test, "get") else None
    top = cfg.get("test_pipeline")
    if from_data is None and top is None:
        raise DeployLabError(f"mmcls config {source!r} has neither data.test.pipeline nor test_pipeline")
    if from_data is not None and top is not None and _plain(list(from_data)) != _plain(list(top)):
        # The mmcv inheritance trap: data.test.pipeline was filled in by the _base_ file with
        # the base's test_pipeline, so redefining test_pipeline in a child changes nothing.
        raise DeployLabError(
            f"mmcls config {source!r}: test_pipeline differs from data.test.pipeline, and mmcls "
            "runs data.test.pipeline (a child config that redefines test_pipeline must also set "
            "data = dict(test=dict(pipeline=test_pipeline))); make the two agree"
        )
    return [_plain(step) for step in (from_data if from_data is not None else top)]


def _step_error(source: str, index: int, step: Mapping, why: str) -> DeployLabError:
    kind = step.get("type", "?")
    return DeployLabError(
        f"mmcls config {source!r}, test pipeline step {index} {kind!r} ({_describe_step(step)}): {why}; "
        f"deploylab reproduces exactly {' -> '.join(_PIPELINE_ORDER)} "
        "with Resize(size=(S, -1)), a square CenterCrop and the cv2 backend"
    )


def _describe_step(step: Mapping) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in step.items() if k != "type") or "no arguments"


def _parse_pipeline(pipeline: Sequence[Mapping], source: str) -> dict:
    kinds = [step.get("type") for step in pipeline]
    for index, step in enumerate(pipeline):
        if step.get("type") not in _PIPELINE_ORDER:
            raise _step_error(source, index, step, "this transform is not reproduced")
    if tuple(kinds) != _PIPELINE_ORDER:
        raise DeployLabError(
            f"mmcls config {source!r}: test pipeline steps are {' -> '.join(map(str, kinds))}, "
            f"but deploylab reproduces only {' -> '.join(_PIPELINE_ORDER)} in that order"
        )
    params: dict[str, Any] = {}
    load, resize, crop, norm, to_tensor, collect = pipeline

    def unexpected(index, step, allowed):
        extra = sorted(set(step) - {"type"} - set(allowed))
        if extra:
            raise _step_error(source, index, step, f"argument(s) {', '.join(extra)} are not reproduced")

    # LoadImageFromFile: uint8 BGR from the local disk, IMREAD_COLOR
    unexpected(0, load, ("to_float32", "color_type", "file_client_args"))
    if load.get("to_float32", False):
        raise _step_error(source, 0, load, "to_float32=True changes how cv2 resizes (float, not uint8)")
    if load.get("color_type", "color") != "color":
        raise _step_error(source, 0, load, f"color_type={load['color_type']!r} is not reproduced (only 'color')")
    if dict(load.get("file_client_args", {"backend": "disk"})) != {"backend": "disk"}:
        raise _step_error(source, 0, load, "only file_client_args=dict(backend='disk') is reproduced")

    # Resize: adaptive short side with the cv2 backend
    unexpected(1, resize, ("size", "interpolation", "adaptive_side", "backend"))
    size = resize.get("size")
    if not (isinstance(size, (list, tuple)) and len(size) == 2 and size[1] == -1 and isinstance(size[0], int)
            and size[0] > 0):
        raise _step_error(source, 1, resize, f"size={size!r} is not reproduced (only (S, -1): short side to S)")
    if resize.get("adaptive_side", "short") != "short":
        raise _step_error(source, 1, resize, f"adaptive_side={resize['adaptive_side']!r} is not reproduced (only 'short')")
    if resize.get("backend", "cv2") != "cv2":
        raise _step_error(source, 1, resize, f"backend={resize['backend']!r} is not reproduced (only 'cv2')")
    interpolation = resize.get("interpolation", "bilinear")
    if interpolation not in _CV2_INTERPOLATIONS:
        raise _step_error(source, 1, resize, f"interpolation={interpolation!r} is not a cv2 interpolation")
    params["resize_short"] = int(size[0])
    params["interpolation"] = interpolation

    # CenterCrop: plain square crop
    unexpected(2, crop, ("crop_size", "efficientnet_style", "crop_padding", "interpolation", "backend"))
    if crop.get("efficientnet_style", False):
        raise _step_error(source, 2, crop, "efficientnet_style=True (crop then resize) is not reproduced")
    crop_size = crop.get("crop_size")
    if isinstance(crop_size, (list, tuple)) and len(crop_size) == 2 and crop_size[0] == crop_size[1]:
        crop_size = crop_size[0]
    if not isinstance(crop_size, int) or crop_size <= 0:
        raise _step_error(source, 2, crop, f"crop_size={crop_size!r} is not reproduced (only a square crop)")
    params["crop_size"] = crop_size

    # Normalize
    unexpected(3, norm, ("mean", "std", "to_rgb"))
    for key in ("mean", "std"):
        value = norm.get(key)
        if value is None or len(value) != 3:
            raise _step_error(source, 3, norm, f"{key}={value!r} must have 3 values")
        params[key] = tuple(float(v) for v in value)
    params["to_rgb"] = bool(norm.get("to_rgb", True))

    for index, step in ((4, to_tensor), (5, collect)):
        keys = list(step.get("keys", []))
        if keys != ["img"]:
            raise _step_error(source, index, step, f"keys={keys!r} is not reproduced (only ['img'])")
    unexpected(4, to_tensor, ("keys",))
    unexpected(5, collect, ("keys", "meta_keys"))
    return params
