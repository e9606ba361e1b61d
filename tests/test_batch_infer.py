"""Batch inference with Ray Data: one real job (EfficientNet-Lite0 on the shipped photos and one corrupt
file, two actors) checked against the same runner run directly; refusals that need no Ray."""

from __future__ import annotations

import logging
import shutil

import numpy as np
import pytest

from deploylab.data.images import IMAGES_DIR, sample_image_paths
from deploylab.errors import DeployLabError
from deploylab.serve.batch_infer import COLUMNS, batch_infer, check_concurrency, cpu_share, image_files

CAT_CLASSES = {281, 282, 285}  # tabby, tiger cat, Egyptian cat


@pytest.fixture(scope="module")
def photo_folder(tmp_path_factory):
    """The shipped photos and x.jpg (seeded random bytes) in one folder."""
    folder = tmp_path_factory.mktemp("photos")
    for path in sample_image_paths():
        shutil.copy(path, folder / path.name)
    (folder / "x.jpg").write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    (folder / "notes.txt").write_text("not an image: a folder contributes image files only")
    return folder


class _Records(logging.Handler):
    def __init__(self):
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record):
        self.lines.append(record.getMessage())


@pytest.fixture(scope="module")
def job(ray_instance, efficientnet_onnx, photo_folder, tmp_path_factory):
    """(report, output table as rows, Ray Data's log lines) of one job; the output path held a file
    before, which the job replaces."""
    import importlib

    import pyarrow.parquet as pq

    importlib.import_module("ray.data")  # configures its logger (handlers replaced) on import: attach after it

    output = tmp_path_factory.mktemp("out") / "predictions.parquet"
    output.write_bytes(b"an older result")
    records = _Records()
    ray_data_logger = logging.getLogger("ray.data")
    ray_data_logger.addHandler(records)
    try:
        report = batch_infer(efficientnet_onnx, photo_folder, output, batch_size=4, concurrency=2, top_k=5)
    finally:
        ray_data_logger.removeHandler(records)
    return report, pq.read_table(output), records.lines


@pytest.fixture(scope="module")
def direct_scores(efficientnet_onnx):
    """The same runner run directly on the same preprocessed photos: {file name: output row}."""
    from deploylab.backends.registry import make_runner
    from deploylab.data.preprocess import ImagePreprocessing
    from deploylab.serve.requests import preprocessing_for_model

    runner = make_runner("onnxruntime", efficientnet_onnx, intra_op_threads=1)
    spec = runner.inputs[0]
    prep, _ = preprocessing_for_model(efficientnet_onnx, spec)
    paths = sample_image_paths()
    batch = np.stack([prep(ImagePreprocessing.load(p)) for p in paths])
    scores = runner.infer({spec.name: batch})[runner.output_names[0]]
    return {p.name: row for p, row in zip(paths, scores)}


def test_one_row_per_file_in_input_order(job, photo_folder):
    report, table, _ = job
    files = sorted(p.name for p in photo_folder.iterdir() if p.suffix == ".jpg")
    assert table.column_names == list(COLUMNS)
    assert table.column("file").to_pylist() == files
    assert table.column("path").to_pylist() == [str(photo_folder / f) for f in files]
    assert (report.rows, report.errors) == (len(files), 1)


def test_a_corrupt_image_is_an_error_row_without_prediction(job):
    rows = {row["file"]: row for row in job[1].to_pylist()}
    bad = rows.pop("x.jpg")
    assert "could not be decoded" in bad["error"] and "x.jpg" in bad["error"]
    assert "\n" not in bad["error"]
    assert bad["top1_index"] is None and bad["top1_class"] is None and bad["top_k"] is None
    assert all(row["error"] is None and row["top1_index"] is not None for row in rows.values())


def test_predictions_equal_the_runner_run_directly(job, direct_scores):
    from deploylab.postprocess import top_k

    rows = {row["file"]: row for row in job[1].to_pylist() if row["error"] is None}
    assert sorted(rows) == sorted(direct_scores)
    for name, scores in direct_scores.items():
        want = top_k(scores[None], 5)[0]
        got = rows[name]
        assert got["top1_index"] == want[0].index, name
        assert got["top1_score"] == pytest.approx(want[0].probability, abs=1e-4), name
        assert [p["index"] for p in got["top_k"]] == [p.index for p in want], name
        ranked = [p["score"] for p in got["top_k"]]
        assert ranked == sorted(ranked, reverse=True) and 0 < sum(ranked) <= 1 + 1e-6


def test_the_cat_photo_is_a_cat(job):
    cat = next(row for row in job[1].to_pylist() if row["file"] == "chelsea_cat.jpg")
    assert cat["top1_index"] in CAT_CLASSES, cat["top1_class"]
    assert "cat" in cat["top1_class"]


def test_report_and_progress(job):
    report, _, ray_data_lines = job
    assert report.images_per_second > 0 and report.concurrency == 2 and report.threads >= 1
    lines = report.format().splitlines()
    assert len(lines) == 2 and str(report.output) in lines[0] and "1 could not be read" in lines[0]
    # Ray Data's own progress reached its logger (bars on a terminal, these lines otherwise)
    assert any("Total Progress" in line or "execution finished" in line for line in ray_data_lines), ray_data_lines


def test_the_output_replaced_the_old_file_whole(job):
    report = job[0]
    assert report.output.read_bytes()[:4] == b"PAR1"
    assert [p.name for p in report.output.parent.iterdir()] == [report.output.name]  # no partial file left


# ---------------------------------------------------------------- refused up front
def test_inputs_are_files_a_folder_or_a_pattern(photo_folder, tmp_path):
    assert [p.name for p in image_files(photo_folder)][-1] == "x.jpg"
    assert "notes.txt" not in {p.name for p in image_files(photo_folder)}
    assert [p.name for p in image_files(str(photo_folder / "rocket*.jpg"))] == ["rocket.jpg", "rocket_portrait.jpg"]
    listed = [photo_folder / "x.jpg", photo_folder / "astronaut.jpg", photo_folder / "x.jpg"]
    assert [p.name for p in image_files(listed)] == ["x.jpg", "astronaut.jpg"]
    with pytest.raises(DeployLabError, match=r"no files match the pattern '.*\*\.webp'"):
        image_files(str(photo_folder / "*.webp"))
    with pytest.raises(DeployLabError, match="has no image files"):
        image_files(tmp_path)
    with pytest.raises(DeployLabError, match="nope.jpg' does not exist"):
        image_files([photo_folder / "x.jpg", tmp_path / "nope.jpg"])


def test_bad_arguments_are_refused(efficientnet_onnx, tmp_path):
    out = tmp_path / "p.parquet"
    with pytest.raises(DeployLabError, match="is a folder; give a file path"):
        batch_infer(efficientnet_onnx, IMAGES_DIR, tmp_path)
    with pytest.raises(DeployLabError, match="unknown backend.*'tflite'.*available"):
        batch_infer(efficientnet_onnx, IMAGES_DIR, out, backend="tflite")
    with pytest.raises(DeployLabError, match="missing.onnx' does not exist"):
        batch_infer(tmp_path / "missing.onnx", IMAGES_DIR, out)
    with pytest.raises(DeployLabError, match="concurrency must be a positive integer"):
        batch_infer(efficientnet_onnx, IMAGES_DIR, out, concurrency=0)
    with pytest.raises(DeployLabError, match="more than 4 actors per core"):
        check_concurrency(9, 2)
    with pytest.raises(DeployLabError, match="more than 4 actors per core"):
        batch_infer(efficientnet_onnx, IMAGES_DIR, out, concurrency=1000)
    assert not out.exists()


def test_a_batch_size_beyond_the_model_is_refused(lenet_ir, tmp_path):
    # the IR was built for batches 1..16
    with pytest.raises(DeployLabError, match=r"batch sizes 1 to 16.*use batch size 16 or less"):
        batch_infer(lenet_ir, IMAGES_DIR, tmp_path / "p.parquet", batch_size=17)


def test_a_model_that_takes_no_images_is_refused(lenet_ir, tmp_path):
    with pytest.raises(DeployLabError, match=r"does not take images: its input is .*1x32x32"):
        batch_infer(lenet_ir, IMAGES_DIR, tmp_path / "p.parquet", batch_size=16)


def test_the_cpu_share_places_every_actor():
    assert cpu_share([2], 2) == 1.0
    assert cpu_share([2], 8) == 0.25
    # two 8-core nodes, three actors: an even 16/3 = 5.3 each fits one actor per node; 4 fits all three
    share = cpu_share([8, 8], 3)
    assert share == 4.0 and sum(int(c // share) for c in (8, 8)) >= 3
    assert cpu_share([8, 2], 2) == 4.0  # both on the big node beats 5 each, which the small one cannot hold
