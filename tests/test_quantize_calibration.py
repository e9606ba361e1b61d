"""Calibration data for int8: digits from the train split, photo views disjoint from the
evaluation views, files and folders checked against the model input, the ORT data reader, and
the built-in set chosen by input shape (:mod:`deploylab.data.calibration`)."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from deploylab.data.calibration import (
    DEFAULT_SAMPLES,
    DIGITS_INPUT,
    CalibrationReader,
    builtin_calibration,
    digits_calibration,
    image_calibration,
    image_evaluation_set,
    load_calibration_data,
)
from deploylab.errors import DeployLabError


def _hashes(array: np.ndarray) -> set[str]:
    return {hashlib.sha1(np.ascontiguousarray(x).tobytes()).hexdigest() for x in array}


@pytest.fixture(scope="module")
def digits_test():
    from deploylab.data.digits import load_digits_split

    return load_digits_split("test")


# ---------------------------------------------------------------- calibration data
def test_digits_calibration_comes_from_the_train_split(digits_test):
    calib = digits_calibration(200, seed=3)
    assert calib.shape == (200, 1, 32, 32) and calib.dtype == np.float32
    assert not _hashes(calib) & _hashes(digits_test.images)
    np.testing.assert_array_equal(calib, digits_calibration(200, seed=3))
    assert not np.array_equal(calib, digits_calibration(200, seed=4))
    with pytest.raises(DeployLabError, match="5000"):
        digits_calibration(5000)


def test_photo_calibration_and_evaluation_sets_are_disjoint():
    calib = image_calibration(30, seed=0)
    evaluation = image_evaluation_set(100, seed=0)
    assert calib.shape == (30, 3, 224, 224) and evaluation.shape == (100, 3, 224, 224)
    assert calib.dtype == evaluation.dtype == np.float32
    assert len(_hashes(evaluation)) == 100  # every evaluation view is distinct
    assert not _hashes(calib) & _hashes(evaluation)
    assert not _hashes(image_calibration(30, seed=1)) & _hashes(image_evaluation_set(30, seed=1))
    np.testing.assert_array_equal(evaluation[:5], image_evaluation_set(5, seed=0))
    # augmented, not the plain preprocessed photos
    from deploylab.data.images import sample_image_paths
    from deploylab.data.preprocess import ImagePreprocessing

    plain = ImagePreprocessing().batch(sample_image_paths())
    assert not _hashes(plain) & (_hashes(calib) | _hashes(evaluation))


def test_load_calibration_data_from_files_and_folders(tmp_path):
    import cv2

    samples = np.random.default_rng(0).random((7, 1, 32, 32), dtype=np.float32)
    np.save(tmp_path / "c.npy", samples)
    np.savez(tmp_path / "c.npz", images=samples, labels=np.arange(7))
    shape = ("batch", 1, 32, 32)
    np.testing.assert_array_equal(load_calibration_data(tmp_path / "c.npy", shape), samples)
    np.testing.assert_array_equal(load_calibration_data(tmp_path / "c.npz", shape, limit=3), samples[:3])
    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(3):
        cv2.imwrite(str(folder / f"{i}.png"), np.full((40, 50, 3), 60 * i, np.uint8))
    grey = load_calibration_data(folder, shape)
    assert grey.shape == (3, 1, 32, 32) and grey.max() <= 1.0
    np.testing.assert_allclose(grey[2], 120 / 255, rtol=1e-6)
    colour = load_calibration_data(folder, (1, 3, 224, 224))
    assert colour.shape == (3, 3, 224, 224)


@pytest.mark.parametrize("case", ["empty", "wrong_shape", "integers", "missing", "npz_keys", "empty_folder"])
def test_bad_calibration_data_names_the_value(case, tmp_path):
    shape = ("batch", 1, 32, 32)
    path, named = tmp_path / "c.npy", None
    if case == "empty":
        np.save(path, np.zeros((0, 1, 32, 32), np.float32))
        named = "empty"
    elif case == "wrong_shape":
        np.save(path, np.zeros((4, 3, 32, 32), np.float32))
        named = "4x3x32x32"
    elif case == "integers":
        np.save(path, np.zeros((4, 1, 32, 32), np.uint8))
        named = "uint8"
    elif case == "missing":
        path, named = tmp_path / "nothing.npz", "nothing.npz"
    elif case == "npz_keys":
        path = tmp_path / "c.npz"
        np.savez(path, a=np.zeros((2, 1, 32, 32)), b=np.zeros(2))
        named = "'a', 'b'"
    else:
        path, named = tmp_path, "no images"
    with pytest.raises(DeployLabError, match=named):
        load_calibration_data(path, shape)


def test_calibration_reader_is_an_ort_data_reader():
    from onnxruntime.quantization import CalibrationDataReader

    data = np.arange(5 * 2, dtype=np.float32).reshape(5, 2)
    reader = CalibrationReader(data, "input", batch_size=2, progress=False)
    assert isinstance(reader, CalibrationDataReader) and len(reader) == 3
    batches = [reader.get_next()["input"] for _ in range(3)]
    assert [len(b) for b in batches] == [2, 2, 1] and reader.get_next() is None
    reader.rewind()
    np.testing.assert_array_equal(reader.get_next()["input"], data[:2])
    with pytest.raises(DeployLabError, match="non-empty"):
        CalibrationReader(np.zeros((0, 2), np.float32), "input")


def test_builtin_calibration_is_chosen_by_the_sample_shape():
    samples, source = builtin_calibration("input", ("batch", *DIGITS_INPUT))
    assert samples.shape == (DEFAULT_SAMPLES[DIGITS_INPUT], *DIGITS_INPUT)
    np.testing.assert_array_equal(samples, digits_calibration(DEFAULT_SAMPLES[DIGITS_INPUT], 0))
    assert source == "300 digits from the train split (seed 0)"
    with pytest.raises(DeployLabError, match=r"input 'x' of shape Nx5x7 .*--calib-data"):
        builtin_calibration("x", ("N", 5, 7))
