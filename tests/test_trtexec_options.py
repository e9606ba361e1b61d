"""trtexec flags against the option lists of NVIDIA's trtexec source, per TensorRT release.

deploylab/backends/tensorrt/trtexec_options.json is extracted from samples/common/sampleOptions.cpp
of NVIDIA/TensorRT by tests/tools/extract_trtexec_options.py. The test that re-runs the extraction
needs a checkout: set DEPLOYLAB_TENSORRT_SRC to a clone or mirror of github.com/NVIDIA/TensorRT.
"""

from __future__ import annotations

import importlib.util
import itertools
import json
import os
import re
import sys
from pathlib import Path

import pytest

from deploylab.backends.profiles import parse_profile_args
from deploylab.backends.tensorrt import BuildSettings, trtexec_command
from deploylab.backends.tensorrt.trtexec_options import (
    DATA_PATH, check_trtexec_flags, known_releases, trtexec_options,
)
from deploylab.errors import DeployLabError

VERSIONS = ["10.0.1", "10.8.0", "10.9.0", "10.13.3", "11.0.0", "11.1.0", "11.4.0"]
PROFILE = dict(min="input:1x3x224x224", opt="input:8x3x224x224", max="input:32x3x224x224")

PRECISIONS = [
    dict(precision="fp32"),
    dict(precision="fp32", tf32=True),
    dict(precision="fp16"),
    dict(precision="bf16"),
    dict(precision="int8", calibration_cache="calib.cache"),
    dict(precision="fp16", strongly_typed=True),
    dict(precision="int8", strongly_typed=True),
    dict(precision="fp32", strongly_typed=True),
]
EXTRAS = [
    dict(),
    dict(profiles=[parse_profile_args(**PROFILE)]),
    dict(profiles=[parse_profile_args(**PROFILE)], workspace_mib=1024, timing_cache="build/timing.cache"),
    dict(version_compatible=True),
    dict(hardware_compatibility="ampere+"),
    dict(hardware_compatibility="sameComputeCapability", version_compatible=True, workspace_mib=64),
]


def _settings(**kwargs):
    return BuildSettings(**{"onnx_path": "no_such_dir/model.onnx", "engine_path": "no_such_dir/model.plan",
                            **kwargs})


def test_every_command_deploylab_writes_passes_the_check():
    checked, refused = [], []
    for version, precision, extra in itertools.product(VERSIONS, PRECISIONS, EXTRAS):
        settings = _settings(**precision, **extra)
        try:
            command = trtexec_command(settings, version)
        except DeployLabError as exc:  # a combination deploylab refuses for this release
            refused.append((version, precision, extra, str(exc)))
            continue
        answered = check_trtexec_flags(command, version)
        checked.append((version, answered.release, command))
    assert len(checked) > len(refused) > 0
    releases = {(v, r) for v, r, _ in checked}
    assert ("11.4.0", "11.1.0") in releases and ("10.13.3", "10.13.3") in releases
    # the grid did reach every flag deploylab writes, on both majors
    flags = {arg.split("=", 1)[0] for _, _, command in checked for arg in command[1:]}
    assert {"--fp16", "--bf16", "--int8", "--calib", "--stronglyTyped", "--noTF32", "--minShapes",
            "--memPoolSize", "--timingCacheFile", "--versionCompatible", "--hardwareCompatibilityLevel"} <= flags
    assert not any(a.startswith(("--fp16", "--int8", "--calib", "--stronglyTyped"))
                   for v, _, command in checked if v.startswith("11.") for a in command)
    # what deploylab refuses, it refuses for a stated reason (11.x precision flags, 10.8 levels)
    assert any(v == "10.8.0" and "sameComputeCapability" in m for v, _, e, m in refused
               if e.get("hardware_compatibility") == "sameComputeCapability")
    assert all(v.startswith("11.") or "sameComputeCapability" in m or "calibration" in m
               for v, _, _, m in refused), refused


@pytest.mark.parametrize("flag, version, message", [
    ("--workspace=1024", "10.0.1", r"TensorRT 10\.0\.1 has no option --workspace \(removed in 10\.0\.1"),
    ("--workspace=1024", "10.16.0", r"TensorRT 10\.16\.0 has no option --workspace"),
    ("--fp16", "11.0.0", r"TensorRT 11\.0\.0 has no option --fp16 \(removed in 11\.0\.0; 10\.16\.0"),
    ("--calib=calib.cache", "11.4.0", r"TensorRT 11\.1\.0 has no option --calib .*checked for TensorRT 11\.4\.0"),
    ("--int8", "11.1.0", r"has no option --int8"),
    ("--hardwareCompatibilityLevel=sameComputeCapability", "10.8.0",
     r"10\.8\.0 does not accept --hardwareCompatibilityLevel=sameComputeCapability .*accepted from 10\.9\.0 on"),
    ("--memPoolSize=workspace:1024,scratch:8", "10.13.3", r"'scratch' is not one of dlaGlobalDRAM"),
    ("--profilingVerbosity=everything", "11.1.0", r"'everything' is not one of"),
    ("--saveEngin=m.plan", "10.9.0", r"did you mean --saveEngine\?"),
    ("model.onnx", "10.9.0", r"takes only --name\[=value\] options"),
])
def test_the_check_refuses_what_trtexec_refuses(flag, version, message):
    with pytest.raises(DeployLabError, match=message):
        check_trtexec_flags(["trtexec", "--onnx=m.onnx", flag], version)


@pytest.mark.parametrize("version", known_releases())
def test_an_invented_or_repeated_flag_is_refused_everywhere(version):
    with pytest.raises(DeployLabError, match=rf"TensorRT {re.escape(version)} has no option --noSuchFlag"):
        check_trtexec_flags(["trtexec", "--onnx=m.onnx", "--noSuchFlag"], version)
    with pytest.raises(DeployLabError, match="--saveEngine is given twice"):
        check_trtexec_flags(["trtexec", "--saveEngine=a.plan", "--saveEngine=b.plan"], version)
    # --staticPlugins is parsed in a loop, so it may repeat
    check_trtexec_flags(["trtexec", "--staticPlugins=a.so", "--staticPlugins=b.so"], version)


def test_known_facts_of_the_source():
    same_cc = "--hardwareCompatibilityLevel=sameComputeCapability"
    check_trtexec_flags(["trtexec", same_cc], "10.9.0")
    check_trtexec_flags(["trtexec", "--hardwareCompatibilityLevel=SAMECOMPUTECAPABILITY"], "10.13.3")  # lower-cased
    with pytest.raises(DeployLabError, match="ampere"):
        check_trtexec_flags(["trtexec", "--hardwareCompatibilityLevel=NONE"], "10.9.0")  # "none" is exact
    for version in ("10.0.1", "10.8.0", "10.16.0"):
        options = trtexec_options(version)
        assert {"fp16", "bf16", "int8", "calib", "stronglyTyped", "memPoolSize"} <= options.options
        assert "workspace" not in options.options
    for version in ("11.0.0", "11.1.0"):
        options = trtexec_options(version)
        assert not {"fp16", "bf16", "int8", "calib", "best"} & options.options
        # --stronglyTyped: still parsed, its value read nowhere, no warning; --help calls it a no-op
        assert "stronglyTyped" in options.options
        assert "accepted but ignored" in options.notes["stronglyTyped"]
        assert "no-op" in options.notes["stronglyTyped"]
    assert "workspace" in json.loads(DATA_PATH.read_text())["releases"]["10.0.1"]["changes"]["removed"]


def test_versions_are_answered_by_the_newest_release_not_newer():
    assert trtexec_options("10.13.3").release == "10.13.3"
    assert trtexec_options("10.14.1").release == "10.13.3"
    assert trtexec_options("10.13").release == "10.13.3"  # no patch: the whole 10.13 line
    assert trtexec_options("10.30.0").release == "10.16.0"
    assert trtexec_options("11.4.0").release == "11.1.0"
    for version, message in [("9.0", r"no trtexec option data for TensorRT 9\.0\.0 \(no 9\.x release"),
                             ("12.0", r"no trtexec option data for TensorRT 12\.0\.0"),
                             ("10.0.0", r"TensorRT 10\.0\.0 is older than 10\.0\.1, the oldest 10\.x release")]:
        with pytest.raises(DeployLabError, match=message) as info:
            trtexec_options(version)
        assert "10.0.1, 10.8.0" in str(info.value) and "11.1.0" in str(info.value)  # the releases known


def test_every_release_records_where_it_came_from():
    document = json.loads(DATA_PATH.read_text())
    assert set(known_releases()) == set(document["releases"])
    branches = set()
    for release, entry in document["releases"].items():
        provenance = entry["provenance"]
        assert provenance["repository"] == "https://github.com/NVIDIA/TensorRT"
        assert re.fullmatch(r"release/\d+\.\d+(\.\d+)?", provenance["branch"])
        assert release.startswith(provenance["branch"].removeprefix("release/"))
        assert re.fullmatch(r"[0-9a-f]{40}", provenance["commit"])
        assert "samples/common/sampleOptions.cpp" in provenance["files"]
        for date in (provenance["commit_date"], provenance["extracted_on"]):
            assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", date)
        assert len(entry["options"]) > 80 and "onnx" in entry["options"]
        branches.add(provenance["branch"])
    assert {"release/10.0", "release/10.8", "release/10.9", "release/10.13", "release/11.0", "release/11.1"} <= branches


def _extractor():
    path = Path(__file__).parent / "tools" / "extract_trtexec_options.py"
    spec = importlib.util.spec_from_file_location("extract_trtexec_options", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.mark.skipif(not os.environ.get("DEPLOYLAB_TENSORRT_SRC"),
                    reason="set DEPLOYLAB_TENSORRT_SRC to a clone or mirror of github.com/NVIDIA/TensorRT")
def test_the_extraction_reproduces_the_committed_json():
    extractor = _extractor()
    committed = json.loads(DATA_PATH.read_text())
    # at the recorded commits: this checks the extraction, not whether NVIDIA pushed since
    branches = [f"{e['provenance']['branch']}@{e['provenance']['commit']}" for e in committed["releases"].values()]
    baseline = committed.get("baseline")
    baseline = f"{baseline['branch']}@{baseline['commit']}" if baseline else None
    fresh = extractor.build_document(extractor.Repo(os.environ["DEPLOYLAB_TENSORRT_SRC"]), branches, baseline)
    assert extractor.without_dates(fresh) == extractor.without_dates(committed)
