"""Triton model repositories (deploylab.serve.triton): one real model per backend, each config parsed
with Triton's own protobuf; the refusals, each shown to leave the user's files as they were."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

from deploylab.errors import DeployLabError
from deploylab.serve.triton import (
    DEFAULT_MAX_BATCH, TRITON_DATA_TYPES, TRITON_RELEASE, check_triton_config, format_pbtxt, parse_triton_config,
    triton_data_type, write_triton_repo,
)

from tritonclient.grpc import model_config_pb2 as pb2
LENET_IR_BATCH = (1, 16)  # conftest.LENET_PROFILE, the lenet_ir fixture's batch range


def tree(folder):
    """Every file under ``folder`` as relative paths."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def loaded_config(repo):
    """The config.pbtxt as Triton's parser reads it from disk."""
    config = parse_triton_config(repo.config_path.read_text(encoding="utf-8"))
    check_triton_config(config)
    return config


def dims(tensor):
    return list(tensor.dims)


# ---------------------------------------------------------------- one model per backend
def test_onnx_dynamic_batch_repo_is_batched_and_runs(lenet_ts_dynamic, tmp_path):
    from deploylab.backends.registry import make_runner

    repo = write_triton_repo(lenet_ts_dynamic.path, tmp_path / "models", name="lenet", preferred_batch=(4, 8),
                             max_queue_delay_us=100, instances=2)
    config = loaded_config(repo)
    assert (config.name, config.backend, config.platform) == ("lenet", "onnxruntime", "")
    assert config.max_batch_size == DEFAULT_MAX_BATCH  # the symbolic batch dim has no upper bound
    assert [(t.name, dims(t), t.data_type) for t in config.input] == [("input", [1, 32, 32], pb2.TYPE_FP32)]
    assert [(t.name, dims(t), t.data_type) for t in config.output] == [("output", [10], pb2.TYPE_FP32)]
    assert list(config.dynamic_batching.preferred_batch_size) == [4, 8]
    assert config.dynamic_batching.max_queue_delay_microseconds == 100
    assert [(g.count, g.kind) for g in config.instance_group] == [(2, pb2.ModelInstanceGroup.KIND_CPU)]
    assert os.listdir(tmp_path / "models") == ["lenet"]  # no temporary folder left beside it
    assert tree(repo.model_dir) == ["1/model.onnx", "config.pbtxt"]
    assert repo.files == (repo.model_dir / "1" / "model.onnx",)
    assert repo.files[0].read_bytes() == lenet_ts_dynamic.path.read_bytes()
    # The shape Triton sends, [batch] + dims, is one the copied model really takes.
    runner = make_runner("onnxruntime", repo.files[0], intra_op_threads=1)
    batch = config.dynamic_batching.preferred_batch_size[-1]
    out = runner.infer({"input": np.zeros((batch, *config.input[0].dims), np.float32)})
    assert out["output"].shape == (batch, *config.output[0].dims)


def test_onnx_dynamic_batch_without_batching_keeps_full_dims(lenet_ts_dynamic, tmp_path):
    repo = write_triton_repo(lenet_ts_dynamic.path, tmp_path / "models", max_batch=0)
    config = loaded_config(repo)
    assert config.name == "model"  # the file's stem
    assert config.max_batch_size == 0 and not config.HasField("dynamic_batching")
    assert dims(config.input[0]) == [-1, 1, 32, 32] and dims(config.output[0]) == [-1, 10]
    assert repo.perf_shapes == ("input:1,1,32,32",)  # perf_analyzer needs a size for the -1
    with pytest.raises(DeployLabError, match="needs max_batch > 0"):
        write_triton_repo(lenet_ts_dynamic.path, tmp_path / "other", max_batch=0, preferred_batch=(2,))
    assert not (tmp_path / "other").exists()


def test_onnx_fixed_batch_gets_full_dims_and_refuses_batching(lenet_ts11, tmp_path):
    repo = write_triton_repo(lenet_ts11.path, tmp_path / "models", name="lenet_fixed")
    config = loaded_config(repo)
    assert config.max_batch_size == 0 and not config.HasField("dynamic_batching")
    assert dims(config.input[0]) == [1, 1, 32, 32] and dims(config.output[0]) == [1, 10]
    assert repo.files[0].read_bytes() == lenet_ts11.path.read_bytes()
    with pytest.raises(DeployLabError, match=r"fixed batch of 1.*re-export with --dynamic-batch"):
        write_triton_repo(lenet_ts11.path, tmp_path / "refused", max_batch=4)
    assert not (tmp_path / "refused").exists()


def test_openvino_ir_repo_takes_the_ir_bound_and_runs(lenet_ir, tmp_path):
    from deploylab.backends.registry import make_runner

    repo = write_triton_repo(lenet_ir, tmp_path / "models")
    config = loaded_config(repo)
    assert (config.name, config.backend) == ("lenet", "openvino")
    assert config.max_batch_size == LENET_IR_BATCH[1]
    assert dims(config.input[0]) == [1, 32, 32] and config.input[0].data_type == pb2.TYPE_FP32
    assert dims(config.output[0]) == [10]
    assert config.HasField("dynamic_batching")
    # The backend fixes the batch at max_batch_size: without padding a lone request fails.
    assert config.parameters["ENABLE_BATCH_PADDING"].string_value == "YES"
    assert [(g.count, g.kind) for g in config.instance_group] == [(1, pb2.ModelInstanceGroup.KIND_CPU)]
    assert tree(repo.model_dir) == ["1/model.bin", "1/model.xml", "config.pbtxt"]
    assert (repo.model_dir / "1/model.xml").read_bytes() == lenet_ir.read_bytes()
    assert (repo.model_dir / "1/model.bin").read_bytes() == lenet_ir.with_suffix(".bin").read_bytes()
    # OpenVINO finds model.bin beside model.xml: the copied IR runs.
    out = make_runner("openvino", repo.model_dir / "1/model.xml").infer({"input": np.zeros((2, 1, 32, 32), np.float32)})
    assert out["output"].shape == (2, 10)
    with pytest.raises(DeployLabError, match=r"max_batch 17 is above 16"):
        write_triton_repo(lenet_ir, tmp_path / "refused", max_batch=17)
    assert not (tmp_path / "refused").exists()


@pytest.fixture
def fake_plan(lenet_ts_dynamic, tmp_path):
    """A .plan file (not a real engine: no GPU here) with the build record deploylab's build writes
    beside it, for LeNet's dynamic ONNX model and a batch profile of 1..8 (opt 4)."""
    from deploylab.backends.profiles import ShapeProfile
    from deploylab.backends.tensorrt.record import write_sidecar
    from deploylab.backends.tensorrt.settings import BuildSettings
    from deploylab.backends.tensorrt.version import TensorRTVersion

    def make(name="lenet.plan", low=1):
        plan = tmp_path / "plans" / name
        plan.parent.mkdir(exist_ok=True)
        plan.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
        profile = ShapeProfile({"input": ((low, 1, 32, 32), (4, 1, 32, 32), (8, 1, 32, 32))})
        settings = BuildSettings(lenet_ts_dynamic.path, plan, profiles=[profile])
        write_sidecar(settings, TensorRTVersion.parse("10.13.0"), {"name": "NVIDIA A10", "compute_capability": "8.6",
                                                                    "index": 0}, [profile])
        return plan

    return make


def test_tensorrt_plan_repo_reads_the_build_record(fake_plan, tmp_path):
    plan = fake_plan()
    repo = write_triton_repo(plan, tmp_path / "models", preferred_batch=(8,))
    config = loaded_config(repo)
    assert (config.name, config.backend, config.platform) == ("lenet", "tensorrt", "tensorrt_plan")
    assert config.max_batch_size == 8  # profile 0's max batch
    assert dims(config.input[0]) == [1, 32, 32] and config.input[0].data_type == pb2.TYPE_FP32
    assert dims(config.output[0]) == [10] and config.output[0].data_type == pb2.TYPE_FP32
    assert [(g.count, g.kind) for g in config.instance_group] == [(1, pb2.ModelInstanceGroup.KIND_GPU)]
    assert tree(repo.model_dir) == ["1/model.plan", "config.pbtxt"]
    assert (repo.model_dir / "1/model.plan").read_bytes() == plan.read_bytes()
    server, perf = repo.commands()
    assert server.startswith("docker run --gpus=1 --rm -p8000:8000 -p8001:8001 -p8002:8002 ")
    assert f"-v{(tmp_path / 'models').resolve()}:/models nvcr.io/nvidia/tritonserver:{TRITON_RELEASE}-py3 " in server
    assert server.endswith("tritonserver --model-repository=/models")
    assert f"tritonserver:{TRITON_RELEASE}-py3-sdk perf_analyzer -m lenet --concurrency-range=1:16" in perf
    with pytest.raises(DeployLabError, match=r"max_batch 9 is above 8"):
        write_triton_repo(plan, tmp_path / "refused", name="lenet9", max_batch=9)
    with pytest.raises(DeployLabError, match=r"batches of 2 to 8.*min batch of 1"):
        write_triton_repo(fake_plan("min2.plan", low=2), tmp_path / "refused")
    assert not (tmp_path / "refused").exists()


def test_plan_without_a_record_is_refused(fake_plan, tmp_path):
    bare = tmp_path / "bare.plan"
    bare.write_bytes(b"not deserializable here")
    with pytest.raises(DeployLabError,
                       match=r"no deploylab build record.*deploylab build MODEL.onnx --backend tensorrt"):
        write_triton_repo(bare, tmp_path / "models")
    stale = fake_plan()
    stale.write_bytes(stale.read_bytes()[::-1])  # replaced after its record was written
    with pytest.raises(DeployLabError, match="describes another plan"):
        write_triton_repo(stale, tmp_path / "models")
    assert not (tmp_path / "models").exists()


def test_onnx_external_data_is_copied_into_a_model_folder(lenet_ts_dynamic, tmp_path):
    import onnx

    from deploylab.backends.registry import make_runner

    source = tmp_path / "src" / "lenet_ext.onnx"
    source.parent.mkdir()
    onnx.save_model(onnx.load(str(lenet_ts_dynamic.path)), str(source), save_as_external_data=True,
                    all_tensors_to_one_file=True, location="lenet_ext.onnx.data", size_threshold=0)
    repo = write_triton_repo(source, tmp_path / "models")
    assert repo.name == "lenet_ext"
    assert tree(repo.model_dir) == ["1/model.onnx/lenet_ext.onnx.data", "1/model.onnx/model.onnx", "config.pbtxt"]
    assert (repo.model_dir / "1/model.onnx/lenet_ext.onnx.data").read_bytes() == \
        (source.parent / "lenet_ext.onnx.data").read_bytes()
    feed = {"input": np.random.default_rng(0).standard_normal((3, 1, 32, 32)).astype(np.float32)}
    copied = make_runner("onnxruntime", repo.model_dir / "1/model.onnx/model.onnx", intra_op_threads=1).infer(feed)
    original = make_runner("onnxruntime", lenet_ts_dynamic.path, intra_op_threads=1).infer(feed)
    np.testing.assert_array_equal(copied["output"], original["output"])
    # Without its data file the model is refused while copying, and nothing is left behind.
    (source.parent / "lenet_ext.onnx.data").unlink()
    with pytest.raises(DeployLabError, match=r"external data 'lenet_ext.onnx.data', which is missing"):
        write_triton_repo(source, tmp_path / "new" / "models")
    assert not (tmp_path / "new").exists()


# ---------------------------------------------------------------- refusals
def test_existing_model_folder_is_refused_and_left_untouched(lenet_ts_dynamic, tmp_path):
    theirs = tmp_path / "models" / "lenet"
    (theirs / "1").mkdir(parents=True)
    (theirs / "config.pbtxt").write_text("name: \"lenet\"  # theirs\n")
    before = {p: p.read_bytes() for p in theirs.rglob("*") if p.is_file()}
    with pytest.raises(DeployLabError, match=r"lenet' already exists.*another -o or --name"):
        write_triton_repo(lenet_ts_dynamic.path, tmp_path / "models", name="lenet")
    assert {p: p.read_bytes() for p in theirs.rglob("*") if p.is_file()} == before
    assert os.listdir(tmp_path / "models") == ["lenet"]


def test_preferred_batch_above_max_is_refused(lenet_ts_dynamic, tmp_path):
    with pytest.raises(DeployLabError, match=r"preferred batch size 16 is above max_batch 8"):
        write_triton_repo(lenet_ts_dynamic.path, tmp_path / "models", max_batch=8, preferred_batch=(4, 16))
    assert not (tmp_path / "models").exists()


@pytest.mark.parametrize("name", ["../up", "a/b", "", ".hidden", "with space"])
def test_names_triton_would_reject_are_refused(lenet_ts_dynamic, tmp_path, name):
    with pytest.raises(DeployLabError, match="Triton model name"):
        write_triton_repo(lenet_ts_dynamic.path, tmp_path / "models", name=name)
    assert not (tmp_path / "models").exists()


def test_default_name_is_the_sanitized_stem(lenet_ts_dynamic, tmp_path):
    odd = tmp_path / "my lenet (v2).onnx"
    shutil.copyfile(lenet_ts_dynamic.path, odd)
    assert write_triton_repo(odd, tmp_path / "models").name == "my_lenet_v2_"


def test_the_validator_refuses_configs_triton_would_not_take():
    with pytest.raises(DeployLabError, match="Triton cannot parse"):
        parse_triton_config('name: "m"\nmax_batch: 8\n')  # no such field
    with pytest.raises(DeployLabError, match="Triton cannot parse"):
        parse_triton_config('name: "m"\ninstance_group [ { kind: KIND_TPU } ]\n')
    too_large = parse_triton_config('name: "m"\nmax_batch_size: 4\ndynamic_batching { preferred_batch_size: [ 8 ] }\n')
    with pytest.raises(DeployLabError, match=r"preferred batch size 8 is not in 1..max_batch_size \(4\)"):
        check_triton_config(too_large)
    no_dims = parse_triton_config('name: "m"\ninput [ { name: "x" data_type: TYPE_FP32 } ]\n')
    with pytest.raises(DeployLabError, match="'x' has dims"):
        check_triton_config(no_dims)


def test_formatter_round_trips_awkward_names():
    name = 'in"put\\ é'
    text = format_pbtxt({"name": "m", "input": [{"name": name, "dims": [-1, 3]}]})
    config = parse_triton_config(text)
    assert config.input[0].name == name and list(config.input[0].dims) == [-1, 3]


def test_data_types_are_tritons():
    assert set(TRITON_DATA_TYPES.values()) <= set(pb2.DataType.keys())
    assert triton_data_type(np.float16) == "TYPE_FP16" and triton_data_type("bfloat16") == "TYPE_BF16"
    with pytest.raises(DeployLabError, match="float8e4m3fn"):
        triton_data_type("float8e4m3fn")
