"""deploylab's mmcv-free test pipeline against the real mmcls 0.25 one, the shipped photos and class names."""

from __future__ import annotations

import numpy as np
import pytest

from deploylab.data.images import (
    IMAGES_DIR,
    SAMPLE_IMAGES,
    load_imagenet_classes,
    sample_image_paths,
    write_sample_images,
)
from deploylab.data.preprocess import ImagePreprocessing
from deploylab.errors import DeployLabError

CONFIG_NAME = "resnet18_8xb32_in1k.py"
TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def mmcls_config():
    from deploylab.mmcls_compat import mmcls_config_path, quiet_mmcls_import

    quiet_mmcls_import()
    import mmcv

    path = mmcls_config_path(CONFIG_NAME)
    return path, mmcv.Config.fromfile(str(path))


@pytest.fixture(scope="module")
def mmcls_pipeline(mmcls_config):
    from mmcls.datasets.pipelines import Compose

    _path, cfg = mmcls_config
    compose = Compose(cfg.data.test.pipeline)

    def run(path):
        result = compose(dict(img_info=dict(filename=str(path)), img_prefix=None))
        return result["img"].numpy()

    return run


@pytest.fixture(scope="module")
def prep():
    return ImagePreprocessing.from_mmcls_config(CONFIG_NAME)


@pytest.fixture(scope="module")
def synthetic_images(tmp_path_factory):
    """Odd-sized PNGs (seeded noise) plus grey, RGBA and EXIF-rotated files."""
    import cv2
    from PIL import Image

    folder = tmp_path_factory.mktemp("synthetic")
    rng = np.random.default_rng(0)
    paths = []
    # (h, w): rounding of the long side and of the crop offset. 256x257 is not resized
    # (short side already 256) and its crop offset round(16.5) is 16: halves go to even.
    for h, w in [(301, 517), (517, 301), (256, 257), (257, 256), (255, 255), (333, 1000)]:
        path = folder / f"noise_{h}x{w}.png"
        cv2.imwrite(str(path), rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
        paths.append(path)
    grey = folder / "grey_300x401.png"
    cv2.imwrite(str(grey), rng.integers(0, 256, (300, 401), dtype=np.uint8))
    rgba = folder / "rgba_281x300.png"
    cv2.imwrite(str(rgba), rng.integers(0, 256, (281, 300, 4), dtype=np.uint8))
    # A landscape JPEG whose EXIF says "rotate 90° clockwise": IMREAD_COLOR honours it.
    exif_jpeg = folder / "exif_rotated_300x400.jpg"
    smooth = cv2.resize(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8), (400, 300))
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(smooth).save(exif_jpeg, quality=90, exif=exif.tobytes())
    return paths + [grey, rgba, exif_jpeg]


# ---------------------------------------------------------------- (a) equals mmcls
@pytest.mark.parametrize("name", [spec.filename for spec in SAMPLE_IMAGES])
def test_shipped_image_matches_mmcls(name, prep, mmcls_pipeline):
    path = IMAGES_DIR / name
    ours = prep.batch([path])[0]
    theirs = mmcls_pipeline(path)
    assert ours.shape == theirs.shape == (3, 224, 224)
    assert ours.dtype == np.float32
    assert float(np.abs(ours - theirs).max()) <= TOLERANCE


def test_synthetic_images_match_mmcls(synthetic_images, prep, mmcls_pipeline):
    import mmcv

    for path in synthetic_images:
        loaded = prep.load(path)
        np.testing.assert_array_equal(loaded, mmcv.imread(str(path)), err_msg=str(path))
        ours = prep(loaded)
        theirs = mmcls_pipeline(path)
        assert ours.shape == theirs.shape == (3, 224, 224), path
        assert float(np.abs(ours - theirs).max()) <= TOLERANCE, path


def test_exif_orientation_is_applied(synthetic_images, prep):
    exif_jpeg = synthetic_images[-1]
    assert prep.load(exif_jpeg).shape == (400, 300, 3)  # stored 300x400, shown rotated


def test_resize_and_crop_rounding(prep):
    assert prep.resized_size(301, 517) == (256, 439)  # int(256 * 517 / 301) = int(439.7)
    assert prep.resized_size(517, 301) == (439, 256)
    assert prep.resized_size(256, 257) == (256, 257)  # short side already 256: not resized
    assert prep.resized_size(300, 300) == (256, 256)
    assert prep.crop_box(256, 257) == (16, 16, 240, 240)  # round(16.5) == 16
    assert prep.crop_box(256, 259) == (16, 18, 240, 242)  # round(17.5) == 18


def test_batch_mixes_paths_and_arrays(prep):
    paths = sample_image_paths()[:2]
    arrays = [prep.load(p) for p in paths]
    batch = prep.batch([paths[0], arrays[1]])
    assert batch.shape == (2, 3, 224, 224) and batch.dtype == np.float32
    np.testing.assert_array_equal(batch[1], prep(arrays[1]))
    # a non-contiguous view (e.g. channel-flipped) is accepted
    flipped = arrays[0][:, :, ::-1]
    np.testing.assert_array_equal(prep(flipped), prep(np.ascontiguousarray(flipped)))


def test_describe_lists_the_steps(prep):
    text = prep.describe()
    for word in ("load", "resize", "256", "center crop", "224", "normalize", "CHW"):
        assert word in text


# ---------------------------------------------------------------- (b) reading configs
def test_from_mmcls_config_recovers_parameters(prep, mmcls_config):
    assert prep == ImagePreprocessing()
    assert prep.resize_short == 256 and prep.crop_size == 224
    assert prep.mean == (123.675, 116.28, 103.53) and prep.std == (58.395, 57.12, 57.375)
    assert prep.to_rgb is True and prep.interpolation == "bilinear"
    path, cfg = mmcls_config
    assert ImagePreprocessing.from_mmcls_config(path) == prep
    assert ImagePreprocessing.from_mmcls_config(f"mmcls:{CONFIG_NAME}") == prep
    assert ImagePreprocessing.from_mmcls_config(cfg) == prep


GOOD_STEPS = [
    "dict(type='LoadImageFromFile')",
    "dict(type='Resize', size=(256, -1))",
    "dict(type='CenterCrop', crop_size=224)",
    "dict(type='Normalize', mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], to_rgb=True)",
    "dict(type='ImageToTensor', keys=['img'])",
    "dict(type='Collect', keys=['img'])",
]


def _write_child_config(tmp_path, base, steps, set_data=True):
    text = f"_base_ = [{str(base)!r}]\ntest_pipeline = [\n    " + ",\n    ".join(steps) + "\n]\n"
    if set_data:
        text += "data = dict(test=dict(pipeline=test_pipeline))\n"
    path = tmp_path / "child_config.py"
    path.write_text(text)
    return path


def test_child_config_with_other_sizes(tmp_path, mmcls_config):
    steps = list(GOOD_STEPS)
    steps[1] = "dict(type='Resize', size=(288, -1), interpolation='bicubic')"
    steps[2] = "dict(type='CenterCrop', crop_size=(256, 256))"
    prep = ImagePreprocessing.from_mmcls_config(_write_child_config(tmp_path, mmcls_config[0], steps))
    assert (prep.resize_short, prep.crop_size, prep.interpolation) == (288, 256, "bicubic")


@pytest.mark.parametrize(
    "index, step, named",
    [
        (2, "dict(type='RandomFlip', flip_prob=0.5, direction='horizontal')", "RandomFlip"),
        (1, "dict(type='Resize', size=256)", "Resize"),
        (1, "dict(type='Resize', size=(256, -1), backend='pillow')", "pillow"),
        (1, "dict(type='Resize', size=(256, -1), adaptive_side='long')", "adaptive_side"),
        (2, "dict(type='CenterCrop', crop_size=224, efficientnet_style=True)", "efficientnet_style"),
        (0, "dict(type='LoadImageFromFile', to_float32=True)", "to_float32"),
    ],
)
def test_unsupported_step_is_named(tmp_path, mmcls_config, index, step, named):
    steps = list(GOOD_STEPS)
    if named == "RandomFlip":
        steps.insert(index, step)
    else:
        steps[index] = step
    config = _write_child_config(tmp_path, mmcls_config[0], steps)
    with pytest.raises(DeployLabError, match=named):
        ImagePreprocessing.from_mmcls_config(config)


def test_crop_larger_than_resize_is_refused(tmp_path, mmcls_config):
    with pytest.raises(DeployLabError, match="crop_size=300"):
        ImagePreprocessing(resize_short=256, crop_size=300)
    steps = list(GOOD_STEPS)
    steps[2] = "dict(type='CenterCrop', crop_size=300)"
    with pytest.raises(DeployLabError, match="crop_size=300"):
        ImagePreprocessing.from_mmcls_config(_write_child_config(tmp_path, mmcls_config[0], steps))


def test_child_redefining_only_test_pipeline_is_refused(tmp_path, mmcls_config):
    """mmcv fills data.test.pipeline from the base's test_pipeline: redefining it alone is a no-op in mmcls."""
    steps = list(GOOD_STEPS)
    steps[2] = "dict(type='CenterCrop', crop_size=192)"
    config = _write_child_config(tmp_path, mmcls_config[0], steps, set_data=False)
    with pytest.raises(DeployLabError, match="data.test.pipeline"):
        ImagePreprocessing.from_mmcls_config(config)


def test_unknown_config_name():
    with pytest.raises(DeployLabError, match="no_such_config.py"):
        ImagePreprocessing.from_mmcls_config("no_such_config.py")


# ---------------------------------------------------------------- (c) bad inputs
def test_missing_file(tmp_path, prep):
    missing = tmp_path / "missing.jpg"
    with pytest.raises(DeployLabError, match="missing.jpg.*does not exist"):
        prep.load(missing)
    with pytest.raises(DeployLabError, match="missing.jpg"):
        prep.batch([missing])


def test_non_image_files(tmp_path, prep, garbage_file):
    with pytest.raises(DeployLabError, match="not_an_image.jpg.*could not be decoded"):
        prep.load(garbage_file("not_an_image.jpg"))
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(DeployLabError, match="empty.png"):
        prep.load(empty)
    with pytest.raises(DeployLabError, match="directory"):
        prep.load(tmp_path)


@pytest.mark.parametrize(
    "array, text",
    [
        (np.zeros((224, 224), np.uint8), r"shape \(224, 224\) dtype uint8"),
        (np.zeros((64, 64, 4), np.uint8), r"shape \(64, 64, 4\)"),
        (np.zeros((3, 224, 224), np.uint8), r"shape \(3, 224, 224\)"),
        (np.zeros((64, 64, 3), np.float32), "dtype float32"),
        ([[1, 2, 3]], "got list"),
    ],
)
def test_wrong_arrays(prep, array, text):
    with pytest.raises(DeployLabError, match=text):
        prep(array)


def test_empty_batch(prep):
    with pytest.raises(DeployLabError, match="no images"):
        prep.batch([])


# ---------------------------------------------------------------- shipped data
def test_shipped_images():
    import cv2

    paths = sample_image_paths()
    assert [p.name for p in paths] == sorted(spec.filename for spec in SAMPLE_IMAGES)
    assert sum(p.stat().st_size for p in paths) < 800_000
    shapes = [cv2.imread(str(p)).shape for p in paths]
    assert any(h > w for h, w, _ in shapes) and any(w > h for h, w, _ in shapes)
    assert all(min(h, w) <= 512 for h, w, _ in shapes)
    readme = (IMAGES_DIR / "README.md").read_text()
    assert all(p.name in readme for p in paths)


def test_sample_images_regenerate(tmp_path):
    import cv2

    regenerated = write_sample_images(tmp_path)
    for new, shipped in zip(regenerated, sample_image_paths(), strict=True):
        assert new.name == shipped.name
        a, b = cv2.imread(str(new)).astype(int), cv2.imread(str(shipped)).astype(int)
        assert a.shape == b.shape
        assert np.abs(a - b).mean() < 1.0  # identical here; JPEG codecs may differ slightly elsewhere


# ---------------------------------------------------------------- (d) class names
def test_imagenet_classes():
    from torchvision.models._meta import _IMAGENET_CATEGORIES

    names = load_imagenet_classes()
    assert len(names) == 1000 and len(set(names)) == 1000
    assert names == list(_IMAGENET_CATEGORIES)
    assert names[0] == "tench" and names[281] == "tabby" and names[285] == "Egyptian cat"


def test_imagenet_classes_missing_or_bad(tmp_path):
    with pytest.raises(DeployLabError, match="nope.txt"):
        load_imagenet_classes(tmp_path / "nope.txt")
    short = tmp_path / "short.txt"
    short.write_text("tench\ngoldfish\n")
    with pytest.raises(DeployLabError, match="2 lines"):
        load_imagenet_classes(short)
