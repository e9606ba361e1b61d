"""Failure corpus: run the deploylab CLI on bad inputs, odd flags, hostile outputs and kills.

    .venv/bin/python benchmarks/failure_corpus.py [--jobs 2] [--only SUBSTR] [--json out.json]

Every case runs ``deploylab`` as a subprocess in its own folder (its own TMPDIR too) and ends
in one of three outcomes:

* handled: exit code in the case's allowed set, no traceback, an error is one stderr line;
* traceback: "Traceback" on stderr, an exit code outside the allowed set, exit 3 (internal
  error), an error longer than one line, a signal death we did not cause, or a hang;
* files lost or torn: a file that existed before changed or vanished although the command failed,
  an input or a neighbour changed, a stray temp file left (output folder, or TMPDIR after a failure
  or kill), or an output left behind that does not load (onnx.checker, OpenVINO read_model + its
  build record, json.load, CSV shape, torch.load(weights_only=True), PIL).

A case with both kinds of problem counts as "files lost or torn" (the worse); its listing
names every problem. The script exits 0 whatever it finds: it is a measurement.
"""

from __future__ import annotations

import argparse
import csv
import concurrent.futures as futures
import hashlib
import io
import json
import os
import pickle
import resource
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
VENV_CLI = REPO / ".venv" / "bin" / "deploylab"
CLI = [str(VENV_CLI)] if VENV_CLI.is_file() else [sys.executable, "-m", "deploylab.cli"]
IS_ROOT = os.geteuid() == 0
KILL_CODES = frozenset({0, 130, -signal.SIGINT, -signal.SIGTERM, 128 + signal.SIGTERM})
CLASSES = {
    "1": "corrupt/odd ONNX",
    "2": "run --input files",
    "3": "checkpoints",
    "4": "flags",
    "5": "outputs",
    "6": "sidecars/matrix",
    "7": "concurrency/kills",
}


@dataclass
class Case:
    cid: str
    klass: str
    argv: list
    allowed: frozenset
    setup: dict = field(default_factory=dict)   # relpath -> Path (copy) | bytes | "DIR" | callable(path)
    outputs: tuple = ()                         # relpaths the command may write or replace
    fsize: int | None = None                    # RLIMIT_FSIZE for the child (a full disk)
    kill: tuple | None = None                   # (signal, delay seconds)
    parallel: int = 1                           # run this many copies at once (same folder)
    check: object = None                        # callable(casedir, results) -> list of file problems
    marker: str | None = None                   # a file a malicious input would create
    timeout: float = 90.0


@dataclass
class Outcome:
    case: Case
    outcome: str
    codes: list
    first_line: str
    problems: list
    seconds: float


# ------------------------------------------------------------------ fixtures
def _tiny(path: Path, nodes, inputs, outputs, inits=(), opset=17, domains=(), ir=8, check=False):
    import onnx
    from onnx import helper

    graph = helper.make_graph(nodes, "g", inputs, outputs, list(inits))
    ops = [helper.make_opsetid("", opset)] + [helper.make_opsetid(d, 1) for d in domains]
    model = helper.make_model(graph, opset_imports=ops)
    model.ir_version = ir
    if check:
        onnx.checker.check_model(model)
    path.write_bytes(model.SerializeToString())
    return path


def build_fixtures(fx: Path, log) -> dict:
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    F = {}
    vi = helper.make_tensor_value_info
    X4 = [vi("x", TensorProto.FLOAT, [1, 4])]
    Y4 = [vi("y", TensorProto.FLOAT, [1, 4])]
    F["tiny"] = _tiny(fx / "tiny.onnx", [helper.make_node("Relu", ["x"], ["y"])], X4, Y4, check=True)
    F["tiny_dyn"] = _tiny(fx / "tiny_dyn.onnx", [helper.make_node("Relu", ["x"], ["y"])],
                          [vi("x", TensorProto.FLOAT, ["N", 4])], [vi("y", TensorProto.FLOAT, ["N", 4])], check=True)
    F["tiny_img"] = _tiny(fx / "tiny_img.onnx", [helper.make_node("GlobalAveragePool", ["x"], ["p"]),
                                                  helper.make_node("Flatten", ["p"], ["y"])],
                          [vi("x", TensorProto.FLOAT, [1, 3, 8, 8])], [vi("y", TensorProto.FLOAT, [1, 3])], check=True)
    # the corrupt / odd family
    (fx / "empty.onnx").write_bytes(b"")
    (fx / "random.onnx").write_bytes(np.random.default_rng(1).bytes(4096))
    (fx / "text.onnx").write_text("this is not an ONNX model\n")
    _tiny(fx / "unknown_op.onnx", [helper.make_node("FrobnicateXYZ", ["x"], ["y"])], X4, Y4)
    _tiny(fx / "unknown_domain.onnx", [helper.make_node("Relu", ["x"], ["y"], domain="com.nowhere")], X4, Y4,
          domains=("com.nowhere",))
    _tiny(fx / "missing_init.onnx", [helper.make_node("Add", ["x", "W"], ["y"])], X4, Y4)
    _tiny(fx / "cycle.onnx", [helper.make_node("Add", ["x", "b"], ["a"]), helper.make_node("Relu", ["a"], ["b"]),
                              helper.make_node("Identity", ["a"], ["y"])], X4, Y4)
    _tiny(fx / "dup_inputs.onnx", [helper.make_node("Add", ["x", "x"], ["y"])],
          [vi("x", TensorProto.FLOAT, [1, 4]), vi("x", TensorProto.FLOAT, [1, 4])], Y4)
    _tiny(fx / "huge_dim.onnx", [helper.make_node("Relu", ["x"], ["y"])],
          [vi("x", TensorProto.FLOAT, [2 ** 40, 4])], [vi("y", TensorProto.FLOAT, [2 ** 40, 4])])
    for name, location in (("ext_missing", "weights_missing.bin"), ("ext_traversal", "../../../etc/passwd")):
        w = numpy_helper.from_array(np.ones((1, 4), np.float32), "W")
        w.ClearField("float_data")
        w.ClearField("raw_data")
        w.data_location = TensorProto.EXTERNAL
        for k, v in (("location", location), ("offset", "0"), ("length", "16")):
            entry = w.external_data.add()
            entry.key, entry.value = k, v
        _tiny(fx / f"{name}.onnx", [helper.make_node("Add", ["x", "W"], ["y"])], X4, Y4, inits=[w])
    _tiny(fx / "no_outputs.onnx", [helper.make_node("Relu", ["x"], ["y"])], X4, [])
    c = helper.make_tensor("c", TensorProto.FLOAT, [1, 4], [1, 2, 3, 4])
    _tiny(fx / "no_inputs.onnx", [helper.make_node("Constant", [], ["y"], value=c)], [], Y4)
    zero = numpy_helper.from_array(np.zeros((1, 4), np.float32), "z")
    _tiny(fx / "bool_out.onnx", [helper.make_node("Greater", ["x", "z"], ["y"])], X4,
          [vi("y", TensorProto.BOOL, [1, 4])], inits=[zero])
    for n, v in (("st", [0]), ("en", [0]), ("ax", [1])):
        pass
    _tiny(fx / "zero_out.onnx", [helper.make_node("Slice", ["x", "st", "en", "ax"], ["y"])], X4,
          [vi("y", TensorProto.FLOAT, [1, 0])],
          inits=[numpy_helper.from_array(np.array(v, np.int64), n) for n, v in (("st", [0]), ("en", [0]), ("ax", [1]))])
    _tiny(fx / "bad_reshape.onnx", [helper.make_node("Reshape", ["x", "s"], ["y"])],
          [vi("x", TensorProto.FLOAT, ["N", 4])], [vi("y", TensorProto.FLOAT, None)],
          inits=[numpy_helper.from_array(np.array([3, 5], np.int64), "s")])
    (fx / "dir.onnx").mkdir(exist_ok=True)
    # the real small model and its IR, through the CLI itself
    lenet = fx / "lenet.onnx"
    r = subprocess.run(CLI + ["export", "lenet", "-o", str(lenet), "--no-verify"], capture_output=True, text=True)
    if r.returncode != 0 or not lenet.is_file():
        raise SystemExit(f"fixture: deploylab export lenet failed ({r.returncode}): {r.stderr.strip()[-400:]}")
    F["lenet"] = lenet
    irdir = fx / "ir"
    irdir.mkdir(exist_ok=True)
    r = subprocess.run(CLI + ["build", str(lenet), "--backend", "openvino", "-o", str(irdir / "lenet.xml")],
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"fixture: deploylab build failed ({r.returncode}): {r.stderr.strip()[-400:]}")
    F["ir_files"] = sorted(p for p in irdir.iterdir())
    b = fx / "ir_tiny"
    b.mkdir(exist_ok=True)
    subprocess.run(CLI + ["build", str(F["tiny_dyn"]), "--backend", "openvino", "-o", str(b / "old.xml")],
                   capture_output=True, text=True, check=True)
    F["ir_tiny_files"] = sorted(p for p in b.iterdir())
    (fx / "lenet_trunc.onnx").write_bytes(lenet.read_bytes()[: lenet.stat().st_size // 2])
    # a medium model: a build takes 1-3 s, long enough to be killed mid-way
    rng = np.random.default_rng(0)
    nodes, inits, prev = [], [], "x"
    for i in range(12):
        inits.append(numpy_helper.from_array((rng.standard_normal((1024, 1024)) * 0.01).astype(np.float32), f"w{i}"))
        nodes.append(helper.make_node("MatMul", [prev, f"w{i}"], [f"h{i}"]))
        prev = f"h{i}"
    nodes.append(helper.make_node("Relu", [prev], ["y"]))
    F["medium"] = _tiny(fx / "medium.onnx", nodes, [vi("x", TensorProto.FLOAT, ["N", 1024])],
                        [vi("y", TensorProto.FLOAT, ["N", 1024])], inits=inits)
    # arrays
    np.save(fx / "x_lenet.npy", rng.random((1, 1, 32, 32)).astype(np.float32))
    np.save(fx / "x_tiny.npy", rng.random((1, 4)).astype(np.float32))
    np.save(fx / "calib_tiny.npy", rng.random((8, 4)).astype(np.float32))  # N samples of the 1x4 input
    # checkpoints
    import torch

    sd = torch.load(REPO / "data" / "checkpoints" / "lenet_digits.pt", map_location="cpu", weights_only=True)
    if "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    F["lenet_sd"] = sd
    log(f"fixtures ready in {fx}")
    return F


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _evil_npy(marker: str) -> bytes:
    import io

    import numpy as np

    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "|O", "fortran_order": False, "shape": (1,)})
    return buf.getvalue() + pickle.dumps(_Evil(marker), protocol=2)


def _png_header(width: int, height: int) -> bytes:
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def _npy_bytes(array) -> bytes:
    import io

    import numpy as np

    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


def _torch_bytes(obj, **kw) -> bytes:
    import io

    import torch

    buf = io.BytesIO()
    torch.save(obj, buf, **kw)
    return buf.getvalue()


# ------------------------------------------------------------------ the corpus
def build_corpus(F: dict, fx: Path) -> list[Case]:
    import numpy as np
    import torch

    cases: list[Case] = []
    S02, S12, S012 = frozenset({0, 2}), frozenset({1, 2}), frozenset({0, 1, 2})
    S2 = frozenset({2})

    def add(cid, klass, argv, allowed=S2, **kw):
        cases.append(Case(cid, klass, list(argv), frozenset(allowed), **kw))

    SENT = b"user's own file: must survive a failed command\n"

    # 1. corrupt / odd ONNX, every command
    broken = ["empty", "random", "text", "lenet_trunc", "dir", "missing", "unknown_op", "unknown_domain",
              "missing_init", "cycle", "dup_inputs", "huge_dim", "ext_missing", "ext_traversal", "no_outputs"]
    odd = ["no_inputs", "bool_out", "zero_out", "bad_reshape"]
    for name in broken + odd:
        src = {"m.onnx": (fx / "dir.onnx") if name == "dir" else None if name == "missing" else fx / f"{name}.onnx"}
        src = {k: v for k, v in src.items() if v is not None}
        is_odd = name in odd
        feed = {"x.npy": fx / "x_tiny.npy"}
        cmds = {
            "inspect": (["inspect", "m.onnx"], S012 if is_odd else S12, ()),
            "run": (["run", "m.onnx", "--input", "x.npy"], S02 if is_odd else S2, ()),
            "compare": (["compare", "m.onnx", "--backends", "onnxruntime,openvino"], S012 if is_odd else S12, ()),
            "build": (["build", "m.onnx", "--backend", "openvino", "-o", "out.xml"], S02 if is_odd else S2,
                      ("out.xml", "out.bin", "out.json", "out.xml.deploylab.json")),
            "quantize-fp16": (["quantize", "m.onnx", "--mode", "fp16", "-o", "out.onnx"], S02 if is_odd else S2,
                              ("out.onnx",)),
            "quantize-int8": (["quantize", "m.onnx", "--mode", "int8", "--calib-data", "calib.npy", "-o", "out.onnx"],
                              S02 if is_odd else S2, ("out.onnx",)),
            "quantize-int8-ov": (["quantize", "m.onnx", "--mode", "int8", "--backend", "openvino", "--calib-data",
                                  "calib.npy", "-o", "out.xml"], S02 if is_odd else S2,
                                 ("out.xml", "out.bin", "out.xml.deploylab.json")),
            "bench": (["bench", "m.onnx", "--batch", "1", "--repeats", "3"], S02 if is_odd else S2, ()),
            "profile": (["profile", "m.onnx", "--runs", "2"], S02 if is_odd else S2, ()),
        }
        # Valid ONNX files that are odd: a declared 2**40 dim and a custom-domain op pass the checker, so
        # inspecting or converting them to fp16 may succeed; a graph without outputs builds and converts
        # to an equally empty model. Running them must still be refused in one line.
        if name in ("huge_dim", "unknown_domain"):
            cmds["inspect"] = (cmds["inspect"][0], S012, ())
        if name in ("huge_dim", "unknown_domain", "no_outputs"):
            for lenient in ("quantize-fp16", "build") + (("quantize-int8", "quantize-int8-ov") if name == "no_outputs" else ()):
                cmds[lenient] = (cmds[lenient][0], S02, cmds[lenient][2])
        for cmd, (argv, allowed, outs) in cmds.items():
            setup = dict(src, **feed, **{"calib.npy": fx / "calib_tiny.npy"})
            add(f"onnx/{name}/{cmd}", "1", argv, allowed, setup=setup, outputs=outs)

    # 2. run --input
    lenet, tiny_img = F["lenet"], F["tiny_img"]
    inputs = {
        "empty.npy": b"",
        "float64.npy": _npy_bytes(np.zeros((1, 1, 32, 32), np.float64)),
        "int64.npy": _npy_bytes(np.zeros((1, 1, 32, 32), np.int64)),
        "uint8.npy": _npy_bytes(np.zeros((1, 1, 32, 32), np.uint8)),
        "bool.npy": _npy_bytes(np.zeros((1, 1, 32, 32), bool)),
        "complex.npy": _npy_bytes(np.zeros((1, 1, 32, 32), np.complex64)),
        "str.npy": _npy_bytes(np.array([["ab"] * 32] * 32)),
        "shape28.npy": _npy_bytes(np.zeros((1, 1, 28, 28), np.float32)),
        "rank1.npy": _npy_bytes(np.zeros((1024,), np.float32)),
        "rank5.npy": _npy_bytes(np.zeros((1, 1, 1, 32, 32), np.float32)),
        "scalar.npy": _npy_bytes(np.float32(1.0)),
        "batch0.npy": _npy_bytes(np.zeros((0, 1, 32, 32), np.float32)),
        "batch2.npy": _npy_bytes(np.zeros((2, 1, 32, 32), np.float32)),
        "object.npy": None,  # filled per case (marker)
        "badheader.npy": b"\x93NUMPY\x01\x00\x10\x00{'descr': nonsense" + b" " * 40,
        "truncated.npy": _npy_bytes(np.zeros((1, 1, 32, 32), np.float32))[:200],
        "corrupt.npz": b"PK\x03\x04" + b"\0garbage" * 20,
        "wrongnames.npz": None,
        "corrupt.jpg": b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + b"\x13\x37" * 200,
        "truncated.jpg": (REPO / "data" / "images" / "chelsea_cat.jpg").read_bytes()[:3000],
        "text.png": b"not a png\n",
        "huge.png": _png_header(100_000, 100_000),
        "zero.png": _png_header(0, 0),
        "missing.npy": "MISSING",
        "missing.jpg": "MISSING",
        "dir.npy": "DIR",
        "dir.jpg": "DIR",
        "noext": (REPO / "data" / "images" / "chelsea_cat.jpg").read_bytes(),
    }
    odd_ok = {"float64.npy", "int64.npy", "uint8.npy", "bool.npy", "batch0.npy", "noext", "truncated.jpg"}
    import io

    buf = io.BytesIO()
    np.savez(buf, wrong_name=np.zeros((1, 1, 32, 32), np.float32))
    inputs["wrongnames.npz"] = buf.getvalue()
    for model_name, model in (("lenet", lenet), ("tiny_img", tiny_img)):
        for name, data in inputs.items():
            if model_name == "tiny_img" and name.endswith(".npy") and name not in ("object.npy", "empty.npy"):
                continue
            setup = {"m.onnx": model}
            marker = None
            if name == "object.npy":
                marker = "PWNED_npy"
                setup[name] = _evil_npy(marker)
            elif data == "DIR":
                setup[name] = "DIR"
            elif data != "MISSING":
                setup[name] = data
            add(f"input/{model_name}/{name}", "2", ["run", "m.onnx", "--input", name],
                S02 if name in odd_ok else S2, setup=setup, marker=marker)
    for name in ("empty.npy", "shape28.npy", "object.npy", "corrupt.jpg"):
        setup = {f"ir/{p.name}": p for p in F["ir_files"]}
        marker = "PWNED_irnpy" if name == "object.npy" else None
        setup[name] = _evil_npy(marker) if marker else inputs[name]
        add(f"input/ir/{name}", "2", ["run", "ir/lenet.xml", "--input", name], setup=setup, marker=marker)

    # 3. checkpoints to export lenet
    sd = F["lenet_sd"]
    first = next(iter(sd))
    wrong = dict(sd)
    wrong[first] = torch.zeros(3, 3)
    ckpts = {
        "empty.pt": b"",
        "random.pt": np.random.default_rng(2).bytes(2048),
        "evil_pickle.pt": pickle.dumps(_Evil("PWNED_ckpt"), protocol=2),
        "evil_zip.pt": _torch_bytes({"w": _Evil("PWNED_ckpt")}),
        "int_key.pt": _torch_bytes({0: torch.zeros(3)}),
        "int_key_mixed.pt": _torch_bytes({**sd, 7: torch.zeros(1)}),
        "wrong_shape.pt": _torch_bytes(wrong),
        "non_tensors.pt": _torch_bytes({k: "hello" for k in sd}),
        "tensor.pt": _torch_bytes(torch.zeros(3)),
        "list.pt": _torch_bytes([torch.zeros(3)]),
        "partial.pt": _torch_bytes(dict(list(sd.items())[:2])),
        "extra_key.pt": _torch_bytes({**sd, "bogus.weight": torch.zeros(2)}),
        "truncated.pt": (REPO / "data" / "checkpoints" / "lenet_digits.pt").read_bytes()[:5000],
        "nested_sd.pt": _torch_bytes({"state_dict": "not a dict"}),
        "nan.pt": _torch_bytes({k: torch.full_like(v, float("nan")) if v.is_floating_point() else v
                                for k, v in sd.items()}),
        "legacy.pt": _torch_bytes(dict(sd), _use_new_zipfile_serialization=False),
        "missing.pt": "MISSING",
        "dir.pt": "DIR",
    }
    ok_ckpt = {"nan.pt": S012, "legacy.pt": S012, "extra_key.pt": S012}
    for name, data in ckpts.items():
        setup = {"out.onnx": SENT}
        if data == "DIR":
            setup[name] = "DIR"
        elif data != "MISSING":
            setup[name] = data
        add(f"ckpt/{name}", "3", ["export", "lenet", "--checkpoint", name, "-o", "out.onnx"],
            ok_ckpt.get(name, S2), setup=setup, outputs=("out.onnx",),
            marker="PWNED_ckpt" if name.startswith("evil") else None)
    add("ckpt/same-as-output", "3", ["export", "lenet", "--checkpoint", "c.pt", "-o", "c.pt"],
        setup={"c.pt": _torch_bytes(dict(sd))})
    add("ckpt/mmcls-empty", "3", ["export", "mmcls:resnet18_8xb32_in1k.py", "--checkpoint", "e.pth", "-o", "o.onnx"],
        setup={"e.pth": b""}, outputs=("o.onnx",))
    add("ckpt/mmcls-evil", "3", ["export", "mmcls:resnet18_8xb32_in1k.py", "--checkpoint", "e.pth", "-o", "o.onnx"],
        setup={"e.pth": pickle.dumps(_Evil("PWNED_ckpt"), protocol=2)}, outputs=("o.onnx",), marker="PWNED_ckpt")

    # 4. flags
    L = {"m.onnx": lenet, "x.npy": fx / "x_lenet.npy"}
    T = {"m.onnx": F["tiny_dyn"]}
    for v in ("0", "-1", "1001", "abc", "1e3", ""):
        add(f"flags/run-topk={v}", "4", ["run", "m.onnx", "--input", "x.npy", "--topk", v], setup=L)
    add("flags/run-topk=1000-on-10-classes", "4", ["run", "m.onnx", "--input", "x.npy", "--topk", "1000"], S02, setup=L)
    for flag in ("--atol", "--rtol"):
        for v in ("nan", "-1", "inf", "-inf", "abc", "1e999"):
            add(f"flags/compare{flag}={v}", "4", ["compare", "m.onnx", flag, v], setup=L)
    for v in ("0", "-1", "4097", "abc", "1,,2", "99999999", "1.5"):
        add(f"flags/compare-batch={v}", "4", ["compare", "m.onnx", "--batch", v], setup=L)
        add(f"flags/bench-batch={v}", "4", ["bench", "m.onnx", "--batch", v, "--repeats", "3"], setup=L)
    for v in ("0", "-1", "9999", "abc"):
        add(f"flags/bench-threads={v}", "4", ["bench", "m.onnx", "--batch", "1", "--repeats", "3", "--threads", v],
            setup=L)
        add(f"flags/profile-threads={v}", "4", ["profile", "m.onnx", "--runs", "2", "--threads", v], setup=L)
    for v in ("0", "-1", "65", "abc", "2,,"):
        add(f"flags/bench-concurrency={v}", "4",
            ["bench", "m.onnx", "--batch", "1", "--repeats", "3", "--concurrency", v], setup=L)
    for v in ("0", "-1", "100001", "abc"):
        add(f"flags/bench-repeats={v}", "4", ["bench", "m.onnx", "--batch", "1", "--repeats", v], setup=L)
    for v in ("nan", "-1", "0", "inf", "1e308"):
        add(f"flags/bench-seconds={v}", "4", ["bench", "m.onnx", "--batch", "1", "--seconds", v], setup=L,
            timeout=60)
    add("flags/bench-plot=x.txt", "4", ["bench", "m.onnx", "--batch", "1", "--repeats", "3", "--plot", "x.txt"],
        setup=L)
    for flag, v in (("--batch", "0"), ("--batch", "99999"), ("--runs", "0"), ("--runs", "-5"), ("--top", "0"),
                    ("--precision", "fp8"), ("--backend", "tensorrt"), ("--batch", "abc")):
        add(f"flags/profile{flag}={v}", "4", ["profile", "m.onnx", flag, v], setup=L)
    add("flags/profile-ort-fp16", "4", ["profile", "m.onnx", "--precision", "fp16"], setup=L)
    for v in ("0", "-1", "10001", "abc"):
        add(f"flags/train-epochs={v}", "4", ["train-lenet", "--epochs", v, "-o", "t.pt"], outputs=("t.pt",))
    add("flags/train-seed=huge", "4", ["train-lenet", "--epochs", "1", "--seed", str(2 ** 70), "-o", "t.pt"], S02,
        outputs=("t.pt",))
    add("flags/train-seed=-1", "4", ["train-lenet", "--epochs", "1", "--seed", "-1", "-o", "t.pt"], S02,
        outputs=("t.pt",))
    for v in ("0", "-1x1x32x32", "99999999x1x28x28", "abc", "1x1x32", "1x1x32x32x", "0x1x32x32", "1x1x0x32",
              "1x1x28x28", "1x3x32x32"):
        add(f"flags/export-input-shape={v}", "4", ["export", "lenet", "--input-shape", v, "-o", "o.onnx"],
            setup={"o.onnx": SENT}, outputs=("o.onnx",))
    for v in ("0", "99", "-1", "abc", "6"):
        add(f"flags/export-opset={v}", "4", ["export", "lenet", "--opset", v, "-o", "o.onnx"],
            S2 if v != "6" else S012, setup={"o.onnx": SENT}, outputs=("o.onnx",))
    for spec in ("nosuchmodel", "torchvision:nosuch", "mmcls:nosuch.py", "torchvision:", "", "lenet:extra"):
        add(f"flags/export-model={spec or 'EMPTY'}", "4", ["export", spec, "-o", "o.onnx", "--no-verify"],
            outputs=("o.onnx",))
    add("flags/export-exporter=bogus", "4", ["export", "lenet", "--exporter", "bogus", "-o", "o.onnx"])
    add("flags/export-atol=nan", "4", ["export", "lenet", "--atol", "nan", "-o", "o.onnx"])
    profiles = {
        "min>max": ["--min", "8x4", "--opt", "4x4", "--max", "2x4"],
        "opt-outside": ["--min", "1x4", "--opt", "16x4", "--max", "8x4"],
        "rank-mismatch": ["--min", "1x4x1", "--opt", "1x4x1", "--max", "1x4x1"],
        "unknown-input": ["--min", "foo:1x4", "--opt", "foo:1x4", "--max", "foo:1x4"],
        "nonsense": ["--min", "abc", "--opt", "def", "--max", "ghi"],
        "zero": ["--min", "0x4", "--opt", "0x4", "--max", "0x4"],
        "negative": ["--min", "-1x4", "--opt", "1x4", "--max", "2x4"],
        "huge": ["--min", "1x4", "--opt", "1x4", "--max", "99999999x4"],
        "static-dim-changed": ["--min", "1x5", "--opt", "1x5", "--max", "1x5"],
        "min-only": ["--min", "1x4"],
        "empty": ["--min", "", "--opt", "", "--max", ""],
    }
    for name, extra in profiles.items():
        add(f"flags/build-profile-{name}", "4", ["build", "m.onnx", "--backend", "openvino", "-o", "o.xml", *extra],
            S02 if name in ("min-only", "huge") else S2, setup=T, outputs=("o.xml", "o.bin", "o.json", "o.xml.deploylab.json"))
    add("flags/build-precision-int8-openvino", "4", ["build", "m.onnx", "--backend", "openvino", "--precision",
                                                     "int8", "-o", "o.xml"], setup=T)
    add("flags/build-precision-bogus", "4", ["build", "m.onnx", "--backend", "openvino", "--precision", "fp7",
                                             "-o", "o.xml"], setup=T)
    add("flags/build-backend-bogus", "4", ["build", "m.onnx", "--backend", "bogus", "-o", "o.xml"], setup=T)
    add("flags/build-tensorrt-no-gpu", "4", ["build", "m.onnx", "--backend", "tensorrt", "-o", "o.plan"], setup=T,
        outputs=("o.plan",))
    add("flags/build-trt-version-bogus", "4", ["build", "m.onnx", "--backend", "tensorrt", "-o", "o.plan",
                                               "--print-trtexec", "--trt-version", "banana"], S02, setup=T)
    add("flags/build-workspace-negative", "4", ["build", "m.onnx", "--backend", "tensorrt", "-o", "o.plan",
                                                "--print-trtexec", "--trt-version", "10.13", "--workspace-mib", "-1"],
        setup=T)
    for argv in (["run", "m.onnx", "--input", "x.npy", "--backend", "bogus"],
                 ["compare", "m.onnx", "--backends", "bogus"], ["compare", "m.onnx", "--backends", ","],
                 ["bench", "m.onnx", "--backends", "", "--batch", "1"], ["profile", "m.onnx", "--backend", "bogus"],
                 ["check-support", "m.onnx", "--backends", "bogus"], ["run", "m.onnx", "--input", "x.npy",
                                                                      "--backend", "tensorrt"],
                 ["run", "m.onnx", "--input", "x.npy", "--providers", "bogus"],
                 ["bench", "m.onnx", "--batch", "1", "--providers", "cuda:device_id=abc"]):
        # an empty --backends means "from the file type"; CUDA provider options are ORT's to check, and
        # without CUDA the run falls back to CPU and says so
        lenient = argv[3] == "" or "cuda:device_id=abc" in argv
        add("flags/backend:" + "_".join(a for a in argv[2:] if a not in ("x.npy", "--input")), "4", argv,
            S02 if lenient else S2, setup=L)
    for argv in (["quantize", "m.onnx", "--mode", "bogus", "-o", "q.onnx"],
                 ["quantize", "m.onnx", "--mode", "int8", "--backend", "bogus", "-o", "q.onnx"],
                 ["quantize", "m.onnx", "--mode", "int8", "--calib-method", "bogus", "-o", "q.onnx"],
                 ["quantize", "m.onnx", "--mode", "int8", "--num-samples", "0", "-o", "q.onnx"],
                 ["quantize", "m.onnx", "--mode", "int8", "--num-samples", "-3", "-o", "q.onnx"],
                 ["quantize", "m.onnx", "--mode", "fp16", "--for", "tensorrt", "-o", "q.onnx"],
                 ["quantize", "m.onnx", "--mode", "int8", "--backend", "openvino", "-o", "q.onnx"]):
        add("flags/" + "_".join(argv[2:-2]), "4", argv, setup=L, outputs=("q.onnx",))
    for argv in (["evaluate", "m.onnx", "--views", "0"], ["evaluate", "m.onnx", "--views", "abc"],
                 ["evaluate", "m.onnx", "--min-top1-agreement", "2"], ["evaluate", "m.onnx", "--max-kl", "-1"],
                 ["evaluate", "m.onnx", "--max-kl", "nan"], ["evaluate", "m.onnx", "--min-top1-agreement", "nan"]):
        add("flags/" + "_".join(argv[2:]), "4", argv, setup=L)
    add("flags/no-command", "4", [])
    add("flags/unknown-command", "4", ["frobnicate"])

    # 5. outputs
    q8 = ["quantize", "m.onnx", "--mode", "int8"]
    writers = {
        "export": (["export", "lenet", "--no-verify", "-o"], {}, ".onnx"),
        "quantize-fp16": (["quantize", "m.onnx", "--mode", "fp16", "-o"], {"m.onnx": lenet}, ".onnx"),
        "quantize-int8": (q8 + ["-o"], {"m.onnx": lenet}, ".onnx"),
        "quantize-int8-ov": (q8 + ["--backend", "openvino", "-o"], {"m.onnx": lenet}, ".xml"),
        "build": (["build", "m.onnx", "--backend", "openvino", "-o"], {"m.onnx": lenet}, ".xml"),
        "bench": (["bench", "m.onnx", "--batch", "1", "--repeats", "3", "--out"], {"m.onnx": lenet}, ".json"),
        "train-lenet": (["train-lenet", "--epochs", "1", "-o"], {}, ".pt"),
        "inspect-draw": (["inspect", "m.onnx", "--draw"], {"m.onnx": lenet}, ".png"),
    }
    unwritable = [("under-a-file", "f.txt/out"), ("proc", "/proc/deploylab_out"),
                  ("missing-deep", "/nonexistent_root_dir_xyz/out")]
    if not IS_ROOT:
        unwritable.append(("readonly-dir", "ro/out"))
    for wname, (argv, setup, ext) in writers.items():
        outs_for = lambda stem: (stem + ext, stem + ".bin", stem + ".json", stem + ".csv", stem + ext + ".deploylab.json")
        for uname, target in unwritable:
            s = dict(setup, **{"f.txt": SENT})
            if uname == "readonly-dir":
                s["ro"] = lambda p: (p.mkdir(), os.chmod(p, 0o555))
            # root can create a missing top-level folder, so success is fine there
            add(f"out/{wname}/{uname}", "5", argv + [target + ext], S02 if uname == "missing-deep" else S2, setup=s,
                outputs=(target + ext,) if uname == "missing-deep" else ())
        add(f"out/{wname}/existing-dir", "5", argv + ["d" + ext], S2, setup=dict(setup, **{"d" + ext: "DIR"}))
        # a full disk: the user's file at -o must survive
        for limit in (4096, 65536):
            s = dict(setup, **{"out" + ext: SENT})
            if ext == ".xml":
                s["out.bin"] = SENT
            # an output that fits under the limit may be written (then it must be complete and valid);
            # one that does not must fail in one line with the user's file intact
            add(f"out/{wname}/disk-full-{limit // 1024}k", "5", argv + ["out" + ext], S02, setup=s,
                outputs=outs_for("out"), fsize=limit)
    for wname in ("quantize-fp16", "quantize-int8", "bench", "inspect-draw"):
        argv, setup, _ = writers[wname]
        add(f"out/{wname}/same-as-input", "5", argv + ["m.onnx"], setup=dict(setup))
        add(f"out/{wname}/symlink-to-input", "5", argv + ["link.onnx"],
            setup=dict(setup, **{"link.onnx": lambda p: p.symlink_to("m.onnx")}))
        add(f"out/{wname}/hardlink-to-input", "5", argv + ["hard.onnx"],
            setup=dict(setup, **{"hard.onnx": lambda p: os.link(p.parent / "m.onnx", p)}))
    add("out/build/same-as-input-xml", "5", ["build", "m.onnx", "--backend", "openvino", "-o", "m.onnx.xml"], S02,
        setup={"m.onnx": lenet}, outputs=("m.onnx.xml", "m.onnx.bin", "m.onnx.json", "m.onnx.xml.deploylab.json"))
    add("out/build/input-is-ir", "5", ["build", "ir/lenet.xml", "--backend", "openvino", "-o", "ir/lenet.xml"],
        setup={f"ir/{p.name}": p for p in F["ir_files"]})
    add("out/build/neighbour-results.json", "5", ["build", "m.onnx", "--backend", "openvino", "-o", "results.xml"],
        S02, setup={"m.onnx": lenet, "results.json": b'{"my": "own results"}\n'},
        outputs=("results.xml", "results.bin", "results.xml.deploylab.json"))
    add("out/build/neighbour-results.json-rebuild", "5",
        ["build", "m.onnx", "--backend", "openvino", "-o", "results.xml", "--rebuild"],
        S02, setup={"m.onnx": lenet, "results.json": b'[1, 2, 3]\n'},
        outputs=("results.xml", "results.bin", "results.xml.deploylab.json"))
    add("out/bench/neighbour-csv", "5", ["bench", "m.onnx", "--batch", "1", "--repeats", "3", "--out", "r.json"],
        S02, setup={"m.onnx": lenet, "r.csv": b"my,own\n1,2\n"}, outputs=("r.json",))
    add("out/bench/out-not-json", "5", ["bench", "m.onnx", "--batch", "1", "--repeats", "3", "--out", "r.txt"],
        S02, setup={"m.onnx": lenet, "r.csv": b"my,own\n1,2\n"}, outputs=("r.txt",))
    add("out/bench/plot-under-file", "5", ["bench", "m.onnx", "--batch", "1", "--repeats", "3", "--plot",
                                           "f.txt/p.png"], setup={"m.onnx": lenet, "f.txt": SENT})
    add("out/inspect/draw-g.txt", "5", ["inspect", "m.onnx", "--draw", "g.txt"], setup={"m.onnx": lenet, "g.txt": SENT})
    add("out/inspect/draw-g.txt-new", "5", ["inspect", "m.onnx", "--draw", "g.txt"], setup={"m.onnx": lenet})
    add("out/inspect/draw-noext", "5", ["inspect", "m.onnx", "--draw", "graph"], S02, setup={"m.onnx": lenet},
        outputs=("graph",))

    # 6. sidecars and the support matrix
    def ir_setup(sidecar):
        s = {f"ir/{p.name}": p for p in F["ir_files"]}
        names = [k for k in s if k.endswith(".json")]
        for k in names:
            s[k] = sidecar
        s["m.onnx"], s["x.npy"] = lenet, fx / "x_lenet.npy"
        return s

    sidecars = {"list": b"[1, 2]\n", "null": b"null\n", "not-utf8": b"\xff\xfe\x00\x81garbage",
                "dir": "DIR", "empty": b"", "garbage": b"{not json", "other-format": b'{"format": "other/9"}',
                "number": b"42", "wrong-ir-files": None}
    ir_json = [p for p in F["ir_files"] if p.suffix == ".json"]
    for name, data in sidecars.items():
        if data is None:
            rec = json.loads(ir_json[0].read_text())
            rec["ir_files"] = {"xml": {"bytes": 1, "sha256": "0" * 64}, "bin": "x"}
            data = json.dumps(rec).encode()
        outs = tuple(f"ir/{p.name}" for p in F["ir_files"])
        add(f"sidecar/{name}/run", "6", ["run", "ir/lenet.xml", "--input", "x.npy"], S02, setup=ir_setup(data))
        add(f"sidecar/{name}/build", "6", ["build", "m.onnx", "--backend", "openvino", "-o", "ir/lenet.xml"], S02,
            setup=ir_setup(data), outputs=outs, check=_ir_consistent("ir/lenet.xml"))
        add(f"sidecar/{name}/bench", "6", ["bench", "ir/lenet.xml", "--batch", "1", "--repeats", "3"], S02,
            setup=ir_setup(data))
        add(f"sidecar/{name}/compare", "6", ["compare", "ir/lenet.xml", "--reference", "m.onnx"], S012,
            setup=ir_setup(data))
    binp = next(p for p in F["ir_files"] if p.suffix == ".bin")
    raw = bytearray(binp.read_bytes())
    flipped = bytes(raw[:100]) + bytes(b ^ 0x5A for b in raw[100:4100]) + bytes(raw[4100:])
    for name, data in (("bin-flipped", flipped), ("bin-truncated", bytes(raw[: len(raw) // 2])), ("bin-empty", b"")):
        s = {f"ir/{p.name}": p for p in F["ir_files"]}
        s[f"ir/{binp.name}"] = data
        s["m.onnx"], s["x.npy"] = lenet, fx / "x_lenet.npy"
        add(f"sidecar/{name}/run", "6", ["run", "ir/lenet.xml", "--input", "x.npy"], S2, setup=dict(s))
        add(f"sidecar/{name}/build-reuse", "6", ["build", "m.onnx", "--backend", "openvino", "-o", "ir/lenet.xml"],
            frozenset({0}), setup=dict(s), outputs=tuple(f"ir/{p.name}" for p in F["ir_files"]),
            check=_ir_consistent("ir/lenet.xml", rebuilt_from=binp))
    matrices = {"empty": b"", "garbage": b"{{{", "list": b"[]", "null": b"null", "not-utf8": b"\xff\xfe\x81",
                "dir": "DIR", "missing": "MISSING", "no-ops": b'{"format": 1}',
                "ops-entry-number": b'{"format": 1, "backends": ["onnxruntime", "openvino"], "ops": {"ai.onnx::Conv": 5}}',
                "ops-bad-opset": b'{"format": 1, "backends": ["onnxruntime", "openvino"], '
                                 b'"ops": {"ai.onnx::Conv": {"x": {"cases": 1}}}}',
                "ops-counts-str": b'{"format": 1, "backends": ["onnxruntime", "openvino"], '
                                  b'"ops": {"ai.onnx::Conv": {"11": {"onnxruntime": "pass"}}}}',
                "backends-number": b'{"format": 1, "backends": 5, "ops": {}}',
                "format-2": b'{"format": 2, "ops": {}}',
                "deep-nesting": b"[" * 100000 + b"]" * 100000}
    for name, data in matrices.items():
        s = {"m.onnx": lenet}
        if data == "DIR":
            s["mx.json"] = "DIR"
        elif data != "MISSING":
            s["mx.json"] = data
        add(f"matrix/{name}", "6", ["check-support", "m.onnx", "--matrix", "mx.json"], S12, setup=s)

    # 7. concurrency and kills
    outs_ir = ("o.xml", "o.bin", "o.json", "o.xml.deploylab.json")
    for i in range(6):
        same = i < 3
        add(f"race/build-same-o-{i}{'' if same else '-two-models'}", "7",
            ["build", "m.onnx", "--backend", "openvino", "-o", "o.xml", "--rebuild"], S02,
            setup={"m.onnx": lenet, "m2.onnx": F["tiny_dyn"]}, outputs=outs_ir, parallel=2,
            check=_ir_consistent("o.xml", must_exist=True))
        if not same:
            cases[-1].argv = [["build", "m.onnx", "--backend", "openvino", "-o", "o.xml", "--rebuild"],
                              ["build", "m2.onnx", "--backend", "openvino", "-o", "o.xml", "--rebuild"]]
    for sig in (signal.SIGTERM, signal.SIGINT):
        for delay in (1.0, 2.0, 3.0):
            add(f"kill/{sig.name}/quantize-int8@{delay}s", "7", q8 + ["-o", "out.onnx"], KILL_CODES,
                setup={"m.onnx": lenet, "out.onnx": SENT}, outputs=("out.onnx",), kill=(sig, delay))
        for delay in (1.0, 1.5, 2.5):
            add(f"kill/{sig.name}/build@{delay}s", "7", ["build", "m.onnx", "--backend", "openvino", "-o", "out.xml"],
                KILL_CODES, setup={"m.onnx": F["medium"], "out.xml": SENT, "out.bin": SENT},
                outputs=("out.xml", "out.bin", "out.json", "out.xml.deploylab.json"), kill=(sig, delay))
        for delay in (3.0, 4.5):
            add(f"kill/{sig.name}/export@{delay}s", "7", ["export", "lenet", "-o", "out.onnx"], KILL_CODES,
                setup={"out.onnx": SENT}, outputs=("out.onnx",), kill=(sig, delay))
        add(f"kill/{sig.name}/bench@2s", "7", ["bench", "m.onnx", "--batch", "1,2", "--out", "r.json"], KILL_CODES,
            setup={"m.onnx": lenet, "r.json": SENT, "r.csv": SENT}, outputs=("r.json", "r.csv"),
            kill=(sig, 2.0))
        cases[-1].allowed = KILL_CODES | {2}  # refusing the user's r.csv up front is right too
    add("kill/draw-unsupported-ext", "7", ["inspect", "m.onnx", "--draw", "g.txt"], S2, setup={"m.onnx": lenet})
    return cases


def _ir_consistent(xml_rel: str, must_exist=False, rebuilt_from: Path | None = None):
    def check(casedir: Path, codes) -> list[str]:
        xml = casedir / xml_rel
        if not xml.is_file():
            return ["no IR at -o after the build"] if must_exist or rebuilt_from is not None else []
        if codes and all(c not in (0,) for c in codes):
            return []  # a refused build is judged by the sentinel checks
        problems = _validate(xml, strict_record=True)
        if rebuilt_from is not None and not problems:
            if xml.with_suffix(".bin").read_bytes() != rebuilt_from.read_bytes():
                problems.append("build reused an IR whose .bin was altered (not rebuilt)")
        return problems

    return check


# ------------------------------------------------------------------ validation
_VLOCK = threading.Lock()


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _snapshot(root: Path) -> dict:
    snap = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for d in dirnames:
            p = Path(dirpath, d)
            snap[str(p.relative_to(root))] = "LINK" if p.is_symlink() else "DIR"
        for f in filenames:
            p = Path(dirpath, f)
            rel = str(p.relative_to(root))
            try:
                snap[rel] = ("LINK:" + os.readlink(p)) if p.is_symlink() else _sha(p)
            except OSError as exc:
                snap[rel] = f"UNREADABLE {exc}"
    return snap


def _record_for(xml: Path):
    for cand in (xml.with_name(xml.name + ".deploylab.json"), xml.with_suffix(".json")):
        if cand.is_file():
            try:
                rec = json.loads(cand.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            if isinstance(rec, dict) and str(rec.get("format", "")).startswith("deploylab-openvino"):
                return cand, rec
    return None, None


def _validate(path: Path, strict_record=False) -> list[str]:
    name = path.name
    suffix = path.suffix.lower()
    if path.is_dir():
        return []
    try:
        with _VLOCK:
            if suffix == ".onnx":
                import onnx

                onnx.checker.check_model(str(path), full_check=False)
            elif suffix == ".xml":
                import openvino as ov

                ov.Core().read_model(str(path))
                rpath, rec = _record_for(path)
                if rec is None:
                    if strict_record:
                        return [f"{name}: IR has no readable deploylab build record beside it"]
                else:
                    files = rec.get("ir_files") or {}
                    for kind, p in (("xml", path), ("bin", path.with_suffix(".bin"))):
                        want = files.get(kind) if isinstance(files, dict) else None
                        if isinstance(want, dict) and p.is_file() and want.get("sha256") != _sha(p):
                            return [f"{name}: {p.name} does not match its build record {rpath.name}"]
            elif suffix == ".json":
                json.loads(path.read_text(encoding="utf-8"))
            elif suffix == ".csv":
                text = path.read_text(encoding="utf-8")
                rows = list(csv.reader(io.StringIO(text, newline="")))
                if len(rows) < 2 or not text.endswith("\n") or len({len(r) for r in rows}) != 1:
                    return [f"{name}: CSV empty or truncated"]
            elif suffix in (".pt", ".pth"):
                import torch

                torch.load(str(path), map_location="cpu", weights_only=True)
            elif suffix in (".png", ".jpg", ".svg", ".pdf") and suffix == ".png":
                from PIL import Image

                with Image.open(path) as im:
                    im.verify()
    except Exception as exc:  # noqa: BLE001 - any failure to load is the finding
        return [f"{name}: output does not load ({type(exc).__name__}: {str(exc).splitlines()[0][:120] if str(exc) else ''})"]
    return []


TEMPISH = ("partial", ".tmp", "tmp", "~")


# ------------------------------------------------------------------ running
def _materialise(case: Case, casedir: Path) -> None:
    for rel, src in case.setup.items():
        p = casedir / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        if callable(src):
            src(p)
        elif src == "DIR":
            p.mkdir()
        elif isinstance(src, bytes):
            p.write_bytes(src)
        elif Path(src).is_dir():
            shutil.copytree(src, p)
        else:
            shutil.copyfile(src, p)


def _preexec(fsize):
    def fn():
        os.setsid()
        if fsize is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
    return fn


def run_case(case: Case, root: Path) -> Outcome:
    casedir = root / "cases" / case.cid.replace("/", "__").replace(" ", "_")
    tmpdir = root / "tmp" / casedir.name
    shutil.rmtree(casedir, ignore_errors=True)
    shutil.rmtree(tmpdir, ignore_errors=True)
    casedir.mkdir(parents=True)
    tmpdir.mkdir(parents=True)
    _materialise(case, casedir)
    before = _snapshot(casedir)
    env = dict(os.environ, TMPDIR=str(tmpdir), MPLBACKEND="Agg", PYTHONUNBUFFERED="1")
    env.pop("DEPLOYLAB_DEBUG", None)
    argvs = case.argv if case.argv and isinstance(case.argv[0], list) else [case.argv] * case.parallel
    start = time.perf_counter()
    procs = []
    for argv in argvs:
        procs.append(subprocess.Popen(CLI + argv, cwd=casedir, env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, preexec_fn=_preexec(case.fsize)))
    killed_by_us = False
    if case.kill is not None:
        sig, delay = case.kill
        try:
            procs[0].wait(timeout=delay)
        except subprocess.TimeoutExpired:
            os.kill(procs[0].pid, sig)  # the main process only, like kill PID
            killed_by_us = True
    results, problems_tb = [], []
    for p in procs:
        try:
            out, err = p.communicate(timeout=case.timeout)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            out, err = p.communicate()
            problems_tb.append(f"hang: no exit after {case.timeout:.0f} s (killed)")
        results.append((p.returncode, out.decode(errors="replace"), err.decode(errors="replace")))
    if killed_by_us:
        time.sleep(0.3)  # let orphaned children (if any) go
    seconds = time.perf_counter() - start
    codes = [r[0] for r in results]
    first = ""
    for code, out, err in results:
        lines = [ln for ln in err.replace("\r", "\n").split("\n") if ln.strip()]
        error_lines = [ln for ln in lines if not ln.startswith(("training LeNet", "warning:"))]
        if not first and lines:
            first = (error_lines or lines)[0].strip()[:200]
        if "Traceback" in err:
            problems_tb.append("traceback on stderr")
        if code == 3:
            problems_tb.append("exit 3 (internal error)")
        if code not in case.allowed:
            if code is not None and code < 0:
                problems_tb.append(f"killed by signal {-code}" + ("" if killed_by_us else " (not by us)"))
            else:
                problems_tb.append(f"exit {code} not in allowed {sorted(case.allowed)}")
        if code not in (0, 1) and code is not None and code >= 0 and len(error_lines) > 1:
            problems_tb.append(f"error message is {len(error_lines)} lines")
        if code == 2 and not lines:
            problems_tb.append("exit 2 with nothing on stderr")
    failed = any(c != 0 for c in codes)
    problems_files = _file_problems(case, casedir, tmpdir, before, codes, failed or killed_by_us)
    if case.check is not None:
        problems_files += case.check(casedir, codes)
    if case.marker:
        for where in (casedir, tmpdir, root):
            if (where / case.marker).exists():
                problems_files.append(f"malicious pickle ran: {case.marker} created")
                (where / case.marker).unlink()
    problems_tb = list(dict.fromkeys(problems_tb))
    outcome = "files" if problems_files else "traceback" if problems_tb else "handled"
    return Outcome(case, outcome, codes, first, problems_files + problems_tb, seconds)


def _file_problems(case, casedir, tmpdir, before, codes, failed) -> list[str]:
    after = _snapshot(casedir)
    problems = []
    outputs = set(case.outputs)
    ok_codes = all(c in (0, 1) for c in codes)
    for rel, digest in before.items():
        now = after.get(rel)
        if now is None:
            problems.append(f"{rel} vanished")
        elif now != digest:
            # A signal can land after the output was renamed into place: the user's file at -o was then
            # replaced by the complete output they asked for, which must load (else it is torn).
            if rel in outputs and (ok_codes or case.kill is not None):
                problems += _validate(casedir / rel)
            elif rel in outputs:
                problems.append(f"{rel} (existing file at the output path) changed although the command failed")
            else:
                problems.append(f"{rel} (an input or neighbour) was changed")
    for rel in sorted(set(after) - set(before)):
        base = Path(rel).name
        if rel in outputs:
            problems += _validate(casedir / rel)
            if not ok_codes and case.kill is None and rel.endswith((".onnx", ".xml", ".pt", ".png")):
                pass  # a complete output after a failure is tolerated; a broken one is caught above
        elif failed:
            problems.append(f"stray file left after failure: {rel}")
        elif any(t in base.lower() for t in TEMPISH) or base.startswith("."):
            problems.append(f"stray temp file left: {rel}")
    if failed:
        # torch's own compile cache (torchinductor_<user>) appears on import, not a deploylab leak
        left = sorted(str(p.relative_to(tmpdir)) for p in tmpdir.iterdir()
                      if not p.name.startswith("torchinductor_")) if tmpdir.is_dir() else []
        if left:
            problems.append(f"left in TMPDIR: {', '.join(left[:4])}" + (" ..." if len(left) > 4 else ""))
    return problems


# ------------------------------------------------------------------ report
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--only", default=None, help="run only cases whose id contains this")
    parser.add_argument("--json", type=Path, default=None, help="write every case's outcome here")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    root = Path(tempfile.mkdtemp(prefix="deploylab-failure-corpus-"))
    log = lambda m: print(m, file=sys.stderr, flush=True)
    log(f"CLI: {' '.join(CLI)}; work folder {root}; euid {os.geteuid()}")
    fx = root / "fixtures"
    fx.mkdir()
    F = build_fixtures(fx, log)
    cases = build_corpus(F, fx)
    seen = {}
    for c in cases:  # make ids unique (a few flag variants spell alike)
        seen[c.cid] = seen.get(c.cid, 0) + 1
        if seen[c.cid] > 1:
            c.cid += f"#{seen[c.cid]}"
    if args.only:
        cases = [c for c in cases if args.only in c.cid]
    log(f"{len(cases)} cases, {args.jobs} jobs")
    outcomes: list[Outcome] = []
    done = 0
    with futures.ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        jobs = {pool.submit(run_case, c, root): c for c in cases}
        for fut in futures.as_completed(jobs):
            case = jobs[fut]
            try:
                outcomes.append(fut.result())
            except Exception as exc:  # noqa: BLE001 - the harness failed on this case: say so, keep going
                outcomes.append(Outcome(case, "harness-error", [], f"{type(exc).__name__}: {exc}", [], 0.0))
            done += 1
            if done % 25 == 0:
                log(f"  {done}/{len(cases)} done ({time.perf_counter() - t0:.0f} s)")
    outcomes.sort(key=lambda o: (o.case.klass, o.case.cid))
    print(f"\n{'class':<24} {'cases':>6} {'handled':>8} {'tracebacks':>11} {'files lost/torn':>16}")
    for k, label in CLASSES.items():
        sub = [o for o in outcomes if o.case.klass == k]
        if sub:
            print(f"{k + ' ' + label:<24} {len(sub):>6} {sum(o.outcome == 'handled' for o in sub):>8} "
                  f"{sum(o.outcome == 'traceback' for o in sub):>11} {sum(o.outcome == 'files' for o in sub):>16}")
    n = len(outcomes)
    h = sum(o.outcome == "handled" for o in outcomes)
    t = sum(o.outcome == "traceback" for o in outcomes)
    lost = sum(o.outcome == "files" for o in outcomes)
    herr = [o for o in outcomes if o.outcome == "harness-error"]
    print()
    for o in outcomes:
        if o.outcome == "handled":
            continue
        argv = o.case.argv if not (o.case.argv and isinstance(o.case.argv[0], list)) else o.case.argv[0]
        extra = (f" [RLIMIT_FSIZE {o.case.fsize}]" if o.case.fsize else "") + \
                (f" [{signal.Signals(o.case.kill[0]).name} after {o.case.kill[1]} s]" if o.case.kill else "") + \
                (f" [x{o.case.parallel} at once]" if o.case.parallel > 1 else "")
        print(f"[{o.outcome}] {o.case.cid}: deploylab {' '.join(argv)}{extra}")
        print(f"    exit {o.codes}; {'; '.join(o.problems)}")
        print(f"    stderr: {o.first_line or '(empty)'}")
    wall = time.perf_counter() - t0
    print(f"\ncases {n}, handled {h}, tracebacks {t}, files lost or torn {lost}"
          + (f", harness errors {len(herr)}" if herr else "") + f" ({wall:.0f} s wall)")
    if args.json:
        args.json.write_text(json.dumps({
            "totals": {"cases": n, "handled": h, "tracebacks": t, "files_lost_or_torn": lost,
                       "harness_errors": len(herr), "wall_seconds": round(wall, 1)},
            "cases": [{"id": o.case.cid, "class": o.case.klass, "argv": o.case.argv, "allowed": sorted(o.case.allowed),
                       "outcome": o.outcome, "exit": o.codes, "stderr_first_line": o.first_line,
                       "problems": o.problems, "seconds": round(o.seconds, 2)} for o in outcomes],
        }, indent=2))
    if not args.keep:
        for p in (root / "cases").glob("*"):  # a read-only test folder must be writable again to delete it
            for q in [p, *p.rglob("*")]:
                if q.is_dir() and not q.is_symlink():
                    try:
                        os.chmod(q, 0o755)
                    except OSError:
                        pass
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
