"""Run deploylab's TensorRT code against one release's real Python bindings, without a GPU.

Started by tests/test_tensorrt_conformance.py in a subprocess, with the release's unpacked
``tensorrt_bindings`` wheel on PYTHONPATH and the stub libraries (nvinfer_stub.c) on
LD_LIBRARY_PATH: ``python driver.py SPEC.json``. SPEC names the release, the cases and the
file to write the results (JSON) to.

The real module is registered as ``tensorrt``, so deploylab's ``detect_tensorrt`` finds it
as the full TensorRT. Everything that needs the TensorRT library (Builder, Runtime,
OnnxParser and the objects they return) is replaced by strict fakes derived from the real
classes of that release:

- an attribute exists only if it is in ``dir()`` of the real class; any other read or
  assignment raises AttributeError naming the class and release;
- a call must fit one of the real pybind11 signatures (read from the docstrings: arity,
  enum types, TensorRT classes, int/bool/str/buffer), as pybind11 checks it; assignment
  only to real properties that have a setter, with a value of the setter's type;
- a real member the fake does not model raises NotImplementedError (a gap in this file,
  not in deploylab).

Every call, read and assignment is recorded (enum arguments by name); so are the module
attributes and enum members deploylab reads. Enums, Dims, Logger and the calibrator base
classes stay the real ones. There is no GPU: torch's CUDA queries answer as one sm_86
device (torch_sees_the_stand_in_gpu), because deploylab checks for a GPU before it touches
TensorRT; no CUDA memory is used (the runtime case binds CPU tensors).
"""

from __future__ import annotations

import contextlib
import inspect
import json
import numbers
import re
import sys
import traceback
import types
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

#: The library-backed classes replaced by fakes (the rest of the module stays real).
FAKED_CLASSES = (
    "Builder", "INetworkDefinition", "IBuilderConfig", "IOptimizationProfile", "ITimingCache", "IHostMemory",
    "OnnxParser", "ParserError", "Runtime", "ICudaEngine", "IExecutionContext", "EngineInspector",
)
MODULE = "tensorrt"  # the owner name of module-level attributes in the records
_NO_VALUE = object()


# ---------------------------------------------------------------- the real signatures
def _split_top_level(text: str) -> list[str]:
    """Split a parameter list on commas outside brackets (types like Dict[str, int])."""
    parts, depth, current = [], 0, ""
    for char in text:
        depth += char in "[(<{"
        depth -= char in "])>}"
        if char == "," and depth == 0:
            parts.append(current.strip())
            current = ""
        else:
            current += char
    if current.strip():
        parts.append(current.strip())
    return parts


@dataclass
class Param:
    name: str
    type: str
    has_default: bool


@dataclass
class Signature:
    params: list[Param]  # without self
    returns: str
    variadic: bool = False

    def text(self) -> str:
        return "(" + ", ".join(f"{p.name}: {p.type}" + (" = ..." if p.has_default else "") for p in self.params) + \
            f") -> {self.returns}"


def parse_signatures(doc: str | None, name: str) -> list[Signature]:
    """The pybind11 signatures in a docstring: ``name(self: X, a: T, b: U = d) -> R``, or the
    numbered list after "Overloaded function."; a property accessor's doc has ``name == ""``.
    An empty list means "no signature found": the call is not checked."""
    lines = (doc or "").splitlines()
    if not lines:
        return []
    if "Overloaded function." in doc:
        heads = [m.group(1) for m in re.finditer(rf"^\d+\. ({re.escape(name)}\(.*)$", doc, flags=re.M)]
    else:
        heads = [lines[0]]
    signatures = []
    for head in heads:
        if not head.startswith(f"{name}("):
            continue
        params_text, sep, returns = head[len(name) + 1:].rpartition(") -> ")
        if not sep:
            continue
        params, variadic = [], False
        for part in _split_top_level(params_text)[1:]:  # [0] is self / arg0
            if part.startswith("*"):
                variadic = True
                continue
            pname, _, rest = part.partition(":")
            ptype, eq, _default = rest.partition(" = ")
            params.append(Param(pname.strip(), ptype.strip(), bool(eq)))
        signatures.append(Signature(params, returns.strip(), variadic))
    return signatures


@dataclass
class Member:
    """One member of a real TensorRT class: a method (its signatures) or a property."""

    kind: str  # "method", "property" or "other"
    signatures: list[Signature] = field(default_factory=list)
    writable: bool = False
    get_type: str = ""
    set_type: str = ""


def member_table(cls) -> dict[str, Member]:
    """Every name in ``dir(cls)`` with what kind of member it is in this release."""
    table = {}
    for name in dir(cls):
        static = inspect.getattr_static(cls, name)
        if isinstance(static, property):
            get = parse_signatures(static.fget.__doc__, "") if static.fget else []
            put = parse_signatures(static.fset.__doc__, "") if static.fset else []
            table[name] = Member("property", writable=static.fset is not None,
                                 get_type=get[0].returns if get else "",
                                 set_type=put[0].params[0].type if put and put[0].params else "")
        elif callable(static) and not isinstance(static, type):
            table[name] = Member("method", parse_signatures(getattr(static, "__doc__", None), name))
        else:
            table[name] = Member("other")
    return table


# ---------------------------------------------------------------- the bindings of one release
class Bindings:
    """The real module of one release, its member tables, and what one case did with it."""

    def __init__(self, module, release: str):
        self.module, self.release = module, release
        self.real = dict(vars(module))  # taken before any fake is installed
        self.tables: dict[str, dict[str, Member]] = {}
        self.enum_names = {n for n, v in self.real.items() if isinstance(v, type) and hasattr(v, "__members__")}
        self.drop: set[tuple[str, str]] = set()
        self.events: list[dict] = []
        self.recording = False
        self.world: dict = {}  # per-case behaviour of the fakes (parser errors, ...) and what they saw
        self.counters: dict[str, int] = {}
        self.factories: dict = {}  # fakes the driver itself hands to deploylab (engine, context)

    # -- what exists
    def table(self, cls: str) -> dict[str, Member]:
        if cls not in self.tables:
            self.tables[cls] = member_table(self.real[cls])
        return self.tables[cls]

    def member(self, owner: str, name: str) -> Member:
        table = self.table(owner)
        if name not in table or (owner, name) in self.drop:
            self.log(owner, name, "missing")
            dropped = " (removed by the case's drop list)" if (owner, name) in self.drop else ""
            raise AttributeError(
                f"TensorRT {self.release}: {owner}.{name} does not exist{dropped}; it is not in dir(tensorrt.{owner})"
            )
        return table[name]

    def missing(self, owner: str, name: str) -> AttributeError:
        self.log(owner, name, "missing")
        return AttributeError(f"TensorRT {self.release}: {owner}.{name} does not exist; "
                              f"it is not in dir(tensorrt{'' if owner == MODULE else '.' + owner})")

    # -- records
    def log(self, owner: str, member: str, kind: str, obj: str = "", args=(), value=_NO_VALUE):
        """One event: kind "call" (args), "get"/"set" (value), or "missing" (an absent name was asked for)."""
        if self.recording:
            event = {"owner": owner, "member": member, "kind": kind, "object": obj}
            if args:
                event["args"] = [self.encode(a) for a in args]
            if value is not _NO_VALUE:
                event["value"] = self.encode(value)
            self.events.append(event)

    def encode(self, value):
        """A JSON-able picture of an argument: enums by name, fakes by label, buffers by size."""
        if value is None or isinstance(value, (bool, int, float)):
            return value
        if isinstance(value, str):
            return value if len(value) <= 300 else value[:300] + "..."
        if isinstance(value, Fake):
            return f"<{object.__getattribute__(value, '_label')}>"
        if isinstance(value, EnumView):
            return f"<enum {value._name}>"
        if hasattr(type(value), "__members__") and hasattr(value, "name"):
            return f"{type(value).__name__}.{value.name}"
        if isinstance(value, (bytes, bytearray, memoryview)):
            return f"<{len(bytes(value))} bytes>"
        if isinstance(value, (tuple, list, self.real["Dims"])):
            return [self.encode(v) for v in value]
        if isinstance(value, np.ndarray):
            return f"<ndarray {value.dtype} {list(value.shape)}>"
        bases = [c.__name__ for c in type(value).__mro__ if c.__module__.startswith("tensorrt")]
        if bases:
            return f"<{type(value).__name__}: {', '.join(bases)}>"
        return f"<{type(value).__name__}>"

    @contextlib.contextmanager
    def recorded(self):
        """Record what deploylab does inside the block (and only that, not the driver's own reads)."""
        self.recording = True
        try:
            yield
        finally:
            self.recording = False

    def begin(self, drop, world: dict) -> None:
        self.drop = {tuple(d) for d in drop}
        self.events, self.world, self.counters = [], dict(world), {}

    # -- the type checks pybind11 makes
    def resolve(self, type_text: str):
        """The real class a signature's type names (``tensorrt_bindings.tensorrt.X.Y``), or None."""
        match = re.fullmatch(r"tensorrt(?:_bindings)?(?:\.tensorrt)?\.([\w.]+)", type_text)
        if not match:
            return None
        obj = self.module
        for part in match.group(1).split("."):
            obj = self.real.get(part) if obj is self.module else getattr(obj, part, None)
            if obj is None:
                return None
        return obj

    def accepts(self, type_text: str, value) -> bool:
        """Would pybind11 take ``value`` for a parameter of ``type_text``? Exact types only (no
        implicit conversions beyond tuple -> Dims): stricter than pybind11, never looser."""
        text = type_text.strip()
        optional = re.fullmatch(r"(?:typing\.)?Optional\[(.*)\]", text)
        if optional:
            return value is None or self.accepts(optional.group(1), value)
        if value is None:
            return False
        if text in ("int", "typing.SupportsInt"):
            return isinstance(value, numbers.Integral) or (hasattr(type(value), "__members__") and
                                                            hasattr(value, "__index__"))
        if text in ("float", "typing.SupportsFloat"):
            return isinstance(value, numbers.Real)
        if text == "bool":
            return isinstance(value, (bool, np.bool_))
        if text == "str":
            return isinstance(value, (str, bytes))
        if text in ("buffer", "typing_extensions.Buffer", "collections.abc.Buffer", "bytes"):
            try:
                memoryview(value)
                return True
            except TypeError:
                return False
        if text == "tuple":
            return isinstance(value, tuple)
        if re.fullmatch(r"(?:typing\.)?(?:List|list|Sequence)(?:\[.*\])?", text):
            return isinstance(value, (list, tuple))
        cls = self.resolve(text)
        if cls is None:  # a C++ name pybind11 could not spell (nvonnxparser::IParserError), or Any
            return True
        if hasattr(cls, "__members__"):  # an enum: only its own members
            return isinstance(value, cls)
        if issubclass(cls, self.real["Dims"]):  # pybind11 converts a sequence of ints to Dims
            return isinstance(value, cls) or (isinstance(value, (tuple, list)) and
                                              all(isinstance(v, numbers.Integral) for v in value))
        if isinstance(value, Fake):
            return issubclass(self.real[object.__getattribute__(value, "_cls")], cls)
        if isinstance(value, HostMemory):
            return issubclass(self.real["IHostMemory"], cls)
        return isinstance(value, cls)

    def bind(self, signature: Signature, args, kwargs) -> bool:
        if signature.variadic:
            return True
        params, kwargs = signature.params, dict(kwargs)
        if len(args) > len(params):
            return False
        pairs = list(zip(params, args))
        for param in params[len(args):]:
            if param.name in kwargs:
                pairs.append((param, kwargs.pop(param.name)))
            elif not param.has_default:
                return False
        return not kwargs and all(self.accepts(p.type, v) for p, v in pairs)

    def check_call(self, owner: str, name: str, signatures: list[Signature], args, kwargs) -> Signature | None:
        if not signatures:
            return None
        for signature in signatures:
            if self.bind(signature, args, kwargs):
                return signature
        given = ", ".join([repr(self.encode(a)) for a in args] + [f"{k}={self.encode(v)!r}" for k, v in kwargs.items()])
        raise TypeError(
            f"TensorRT {self.release}: {owner}.{name}(): incompatible function arguments ({given}); the supported "
            "signatures are:\n" + "\n".join(f"    {name}{s.text()}" for s in signatures)
        )

    def check_return(self, owner: str, name: str, type_text: str, value) -> None:
        """The fakes must return what the real member returns (a bug in this file otherwise)."""
        cls = self.resolve(type_text)
        if value is None and cls is not None and not hasattr(cls, "__members__"):
            return  # pybind11 turns nullptr into None
        if type_text and type_text != "None" and not self.accepts(type_text, value):
            raise RuntimeError(f"driver.py bug: the fake {owner}.{name} returned {value!r}, "
                               f"but TensorRT {self.release} declares {type_text}")

    # -- fakes
    def fake(self, cls: str, impl: dict | None = None, state: dict | None = None) -> Fake:
        self.counters[cls] = self.counters.get(cls, 0) + 1
        return Fake(self, cls, f"{cls}#{self.counters[cls]}", impl or {}, state or {})


class Fake:
    """One object of a real TensorRT class of one release, allowing only that class's members.

    ``impl`` maps a member to what the fake does: a callable for a method, a value or a
    callable without arguments for a property. Assigned properties are kept in ``state``.
    """

    __slots__ = ("_bindings", "_cls", "_label", "_impl", "_state")

    def __init__(self, bindings: Bindings, cls: str, label: str, impl: dict, state: dict):
        for name, value in (("_bindings", bindings), ("_cls", cls), ("_label", label), ("_impl", impl),
                            ("_state", state)):
            object.__setattr__(self, name, value)

    def __getattribute__(self, name):
        if name.startswith("_"):
            return object.__getattribute__(self, name)
        b, cls, label = (object.__getattribute__(self, n) for n in ("_bindings", "_cls", "_label"))
        impl, state = object.__getattribute__(self, "_impl"), object.__getattribute__(self, "_state")
        member = b.member(cls, name)
        if member.kind == "method":
            if name not in impl:
                raise NotImplementedError(f"{cls}.{name} exists in TensorRT {b.release}, but the conformance fake "
                                          "does not model it: add it to tests/tensorrt_conformance/driver.py")

            def method(*args, **kwargs):
                signature = b.check_call(cls, name, member.signatures, args, kwargs)
                b.log(cls, name, "call", label, args + tuple(kwargs.values()))
                result = impl[name](*args, **kwargs)
                if signature is not None:
                    b.check_return(cls, name, signature.returns, result)
                return result

            return method
        if member.kind == "property":
            if name in state:
                value = state[name]
            elif name in impl:
                value = impl[name]() if callable(impl[name]) else impl[name]
            else:
                raise NotImplementedError(f"property {cls}.{name} exists in TensorRT {b.release}, but the "
                                          "conformance fake does not model it: add it to driver.py")
            b.check_return(cls, name, member.get_type, value)
            b.log(cls, name, "get", label, value=value)
            return value
        raise NotImplementedError(f"{cls}.{name} ({member.kind}) is not modelled by the conformance fake")

    def __setattr__(self, name, value):
        b, cls, label = (object.__getattribute__(self, n) for n in ("_bindings", "_cls", "_label"))
        member = b.member(cls, name)
        if member.kind != "property" or not member.writable:
            b.log(cls, name, "missing")
            raise AttributeError(f"TensorRT {b.release}: {cls}.{name} cannot be assigned (it is a "
                                 f"{'read-only property' if member.kind == 'property' else member.kind})")
        if member.set_type and not b.accepts(member.set_type, value):
            raise TypeError(f"TensorRT {b.release}: {cls}.{name} takes {member.set_type}, not {b.encode(value)!r}")
        b.log(cls, name, "set", label, value=value)
        object.__getattribute__(self, "_state")[name] = value

    def __repr__(self):
        return f"<fake {object.__getattribute__(self, '_label')}>"


class HostMemory(bytes):
    """A fake IHostMemory: real IHostMemory exposes the buffer protocol, which a Python class
    can only get from bytes (before 3.12); bytes' own methods are hidden behind the members
    of the real class."""

    bindings: Bindings | None = None

    def __getattribute__(self, name):
        if name.startswith("_"):
            return bytes.__getattribute__(self, name)
        b = HostMemory.bindings
        member = b.member("IHostMemory", name)
        values = {"nbytes": len(self), "dtype": b.real["DataType"].UINT8}
        if member.kind != "property" or name not in values:
            raise NotImplementedError(f"IHostMemory.{name} is not modelled by the conformance fake")
        b.log("IHostMemory", name, "get", "IHostMemory", value=values[name])
        return values[name]


class FakeClass:
    """What deploylab sees as ``trt.Builder`` / ``trt.Runtime`` / ``trt.OnnxParser``: calling it
    checks the real ``__init__`` signature and returns a fake object."""

    def __init__(self, bindings: Bindings, cls: str, make):
        self.bindings, self.cls, self.make = bindings, cls, make
        self.signatures = parse_signatures(bindings.real[cls].__init__.__doc__, "__init__")

    def __call__(self, *args, **kwargs):
        b = self.bindings
        b.check_call(self.cls, "__init__", self.signatures, args, kwargs)
        b.log(self.cls, "__init__", "call", self.cls, args)
        return self.make(*args, **kwargs)

    def __getattr__(self, name):  # class-level reads (static members) go to the real class
        return getattr(self.bindings.real[self.cls], name)


class EnumView:
    """What deploylab sees as ``trt.<Enum>`` (and ``trt.Logger``): the real class, with member
    reads recorded and the drop list applied; calling it calls the real class."""

    __slots__ = ("_bindings", "_name", "_real")

    def __init__(self, bindings: Bindings, name: str, real):
        self._bindings, self._name, self._real = bindings, name, real

    def __getattr__(self, member):
        b, name = self._bindings, self._name
        if member == "__members__":
            return {k: v for k, v in self._real.__members__.items() if (name, k) not in b.drop}
        if member.startswith("__"):
            return getattr(self._real, member)
        if (name, member) in b.drop or not hasattr(self._real, member):
            raise b.missing(name, member)
        value = getattr(self._real, member)
        b.log(name, member, "get", name, value=value)
        return value

    def __call__(self, *args, **kwargs):
        self._bindings.log(self._name, "__init__", "call", self._name, args)
        return self._real(*args, **kwargs)

    def __repr__(self):
        return f"<recorded {self._real!r}>"


class RecordingModule(types.ModuleType):
    """The class of the real ``tensorrt`` module while deploylab runs: records the names read."""

    bindings: Bindings | None = None

    def __getattribute__(self, name):
        if name.startswith("_"):
            return super().__getattribute__(name)
        b = RecordingModule.bindings
        if (MODULE, name) in b.drop:
            raise b.missing(MODULE, name)
        try:
            value = super().__getattribute__(name)
        except AttributeError:
            raise b.missing(MODULE, name) from None
        b.log(MODULE, name, "get")
        if name in b.enum_names or name == "Logger":
            return EnumView(b, name, value)
        return value


# ---------------------------------------------------------------- what the fakes do
def _install_fakes(b: Bindings) -> None:
    """Replace the library-backed factories of the real module by fakes of this release."""
    trt = b.real
    Dims = trt["Dims"]

    def host_memory(data: bytes) -> HostMemory:
        return HostMemory(data)

    def timing_cache(blob) -> Fake:
        cache = {"blob": bytes(memoryview(blob))}
        return b.fake("ITimingCache", {
            "serialize": lambda: host_memory(cache["blob"] or f"timing cache of TensorRT {b.release}".encode()),
        })

    def builder_config() -> Fake:
        flags = {"TF32"}  # NvInfer.h (10.x, 11.x): TF32 is "Enabled by default"
        pools, profiles, held = {}, [], {}

        def set_timing_cache(cache, ignore_mismatch):
            held["timing_cache"] = cache
            return b.world.get("timing_cache_accepted", True)

        config = b.fake("IBuilderConfig", {
            "set_flag": lambda flag: flags.add(flag.name),
            "clear_flag": lambda flag: flags.discard(flag.name),
            "get_flag": lambda flag: flag.name in flags,
            "set_memory_pool_limit": lambda pool, size: pools.__setitem__(pool.name, size),
            "get_memory_pool_limit": lambda pool: pools.get(pool.name, 0),
            "add_optimization_profile": lambda profile: profiles.append(profile) or len(profiles) - 1,
            "num_optimization_profiles": lambda: len(profiles),
            "set_calibration_profile": lambda profile: True,
            "create_timing_cache": timing_cache,
            "set_timing_cache": set_timing_cache,
            "get_timing_cache": lambda: held.get("timing_cache"),
        })
        return config

    def build_serialized_network(network, config):
        # What TensorRT 10.x does with an int8 calibrator whose cache exists: ask the batch
        # size, read the cache, and (cache found) never call get_batch.
        state = object.__getattribute__(config, "_state")
        calibrator = state.get("int8_calibrator")
        if calibrator is not None:
            batch_size = calibrator.get_batch_size()
            cache = calibrator.read_calibration_cache()
            b.world["calibration"] = {"batch_size": batch_size,
                                      "cache_bytes": None if cache is None else bytes(memoryview(cache)).hex()}
            if cache is None:
                # No cache: TensorRT calls get_batch until it answers None. An exception raised in
                # get_batch is printed by the pybind11 trampoline and read as None, so the build goes on.
                calls = 0
                while calls < 100:
                    calls += 1
                    try:
                        if calibrator.get_batch(["input"]) is None:
                            break
                    except Exception:  # noqa: BLE001 - what the trampoline does
                        break
                b.world["calibration"]["get_batch_calls"] = calls
        if b.world.get("build_fails"):
            return None  # e.g. a tactic or workspace failure: build_serialized_network returns None
        return host_memory(f"plan built by the TensorRT {b.release} stand-in".encode())

    def builder(logger) -> Fake:
        return b.fake("Builder", {
            "create_network": lambda flags=0: b.fake("INetworkDefinition", {"num_inputs": 1, "num_outputs": 1}),
            "create_builder_config": builder_config,
            "create_optimization_profile": lambda: b.fake("IOptimizationProfile", {
                "set_shape": lambda name, low, opt, high: None,
            }),
            "build_serialized_network": build_serialized_network,
        })

    def parser_error(error: dict) -> Fake:
        return b.fake("ParserError", {
            "code": lambda: getattr(trt["ErrorCode"], error["code"]),
            "desc": lambda: error["desc"],
            "node": lambda: error["node"],
            "node_name": lambda: error.get("name", ""),
            "node_operator": lambda: error.get("op", ""),
            "file": lambda: "ModelImporter.cpp",
            "func": lambda: "parseNode",
            "line": lambda: 1,
        })

    def onnx_parser(network, logger) -> Fake:
        errors = [parser_error(e) for e in b.world.get("parser_errors", [])]
        return b.fake("OnnxParser", {
            "parse_from_file": lambda path: not errors,
            "num_errors": lambda: len(errors),
            "get_error": lambda index: errors[index],
            "clear_errors": lambda: errors.clear(),
        })

    def runtime(logger) -> Fake:
        return b.fake("Runtime", {"engine_host_code_allowed": False,
                                  "deserialize_cuda_engine": lambda blob: engine()})

    def engine() -> Fake:
        """A plan with input [-1, 3, 8, 8] -> output [-1, 4, 6, 6] (float32) and two profiles."""
        mode = trt["TensorIOMode"]
        io = {"input": (mode.INPUT, (-1, 3, 8, 8)), "output": (mode.OUTPUT, (-1, 4, 6, 6))}
        profiles = [((1, 3, 8, 8), (2, 3, 8, 8), (4, 3, 8, 8)), ((1, 3, 8, 8), (8, 3, 8, 8), (16, 3, 8, 8))]
        return b.fake("ICudaEngine", {
            "num_io_tensors": len(io),
            "num_optimization_profiles": len(profiles),
            "get_tensor_name": lambda index: list(io)[index],
            "get_tensor_mode": lambda name: io[name][0],
            "get_tensor_shape": lambda name: Dims(io[name][1]),
            "get_tensor_dtype": lambda name: trt["DataType"].FLOAT,
            "get_tensor_location": lambda name: trt["TensorLocation"].DEVICE,
            "get_tensor_profile_shape": lambda name, index: [Dims(s) for s in profiles[index]],
            "create_execution_context": lambda *strategy: context(),
            "create_engine_inspector": lambda: b.fake("EngineInspector", {
                "get_engine_information": lambda fmt: json.dumps({"Layers": ["conv"], "Bindings": list(io)}),
            }),
        })

    def context() -> Fake:
        shapes = {}

        def set_input_shape(name, shape):
            shapes[name] = tuple(shape)
            return True

        def output_shape(name):  # Conv 3x3 without padding: batch follows the input
            batch = shapes.get("input", (-1,))[0]
            return Dims((batch, 4, 6, 6))

        return b.fake("IExecutionContext", {
            "set_optimization_profile_async": lambda index, stream: True,
            "set_input_shape": set_input_shape,
            "get_tensor_shape": lambda name: Dims(shapes[name]) if name in shapes else output_shape(name),
            "set_tensor_address": lambda name, address: True,  # nothing is read or written there
            "execute_async_v3": lambda stream: True,
        })

    b.factories = {"engine": engine, "context": context}
    HostMemory.bindings = b
    b.module.Builder = FakeClass(b, "Builder", builder)
    b.module.OnnxParser = FakeClass(b, "OnnxParser", onnx_parser)
    b.module.Runtime = FakeClass(b, "Runtime", runtime)


GPU_NAME, GPU_CC = "conformance stand-in GPU", (8, 6)


@contextlib.contextmanager
def torch_sees_the_stand_in_gpu():
    """deploylab asks torch which GPU it builds for (build records) and whether CUDA exists
    (load_plan); answer as one sm_86 device would, also on a machine with a real GPU, so the
    records are the same everywhere. Only these queries and set_device are answered: no CUDA
    memory or stream is made (the runtime case binds CPU tensors)."""
    import torch

    answers = {"is_available": lambda: True, "device_count": lambda: 1, "current_device": lambda: 0,
               "set_device": lambda device: None, "get_device_capability": lambda device=None: GPU_CC,
               "get_device_name": lambda device=None: GPU_NAME}
    saved = {name: getattr(torch.cuda, name) for name in answers}
    for name, answer in answers.items():
        setattr(torch.cuda, name, answer)
    try:
        yield
    finally:
        for name, original in saved.items():
            setattr(torch.cuda, name, original)


# ---------------------------------------------------------------- the cases
def case_build(b: Bindings, case: dict) -> dict:
    from deploylab.backends.profiles import parse_profile_args
    from deploylab.backends.tensorrt import BuildSettings, build_engine_plan

    settings = BuildSettings(**case["settings"], profiles=[parse_profile_args(**p) for p in case.get("profiles", [])])
    # Calibration batches that lack the input TensorRT asks for: get_batch raises inside TensorRT.
    batches = [{"not_the_input": np.zeros((2, 3, 8, 8), np.float32)}] if case.get("bad_batches") else None
    sidecar = Path(str(settings.engine_path) + ".deploylab.json")
    if case.get("stale_sidecar"):
        sidecar.write_text('{"format": "a record of an older plan"}')
    try:
        with b.recorded():
            report = build_engine_plan(settings, calibration_batches=batches)
    finally:
        b.world["sidecar_after"] = sidecar.is_file()
    out = report.to_dict()
    result = {"report": {k: out[k] for k in ("strongly_typed", "profiles", "engine_bytes", "timing_cache_loaded",
                                             "timing_cache_saved", "notes", "tensorrt_version")}}
    if "calibration" in b.world:
        result["calibration"] = b.world["calibration"]
    return result


def case_runtime(b: Bindings, case: dict) -> dict:
    """_EngineSession on a fake engine/context, then TensorRTRunner.inspect() on that session."""
    from deploylab.backends.tensorrt import TensorRTRunner, _EngineSession

    engine, context = b.factories["engine"](), b.factories["context"]()
    record = {"inputs": {"input": ["batch", 3, 8, 8]}, "outputs": {"output": ["batch", 4, 6, 6]}}
    feed = {"input": np.zeros((3, 3, 8, 8), np.float32)}
    with b.recorded():
        session = _EngineSession(b.module, engine, context, device="cpu", stream_handle=0,
                                 synchronize=lambda: None, profile_index=case.get("profile_index", 0), record=record)
        inputs, outputs = session.describe()
        outputs_got = session.infer(feed)
        runner = TensorRTRunner("conformance.plan")

        def activate():
            runner.session = session

        runner._activate = activate
        facts = runner.inspect()
    return {
        "describe": [[s.name, str(s.dtype), list(s.shape), [list(x) for x in s.bounds]] for s in inputs + outputs],
        "infer": {name: [str(a.dtype), list(a.shape)] for name, a in outputs_got.items()},
        "inspect": {k: facts[k] for k in ("io_tensors", "profiles", "layers", "layers_note")},
    }


def case_calibrator_base(b: Bindings, case: dict) -> dict:
    """The int8 calibrator base class, as TensorRT binds it (no deploylab code)."""
    base = b.real.get("IInt8EntropyCalibrator2")
    if base is None:
        return {"present": False, "calibrators": sorted(n for n in b.real if "Calibrator" in n)}

    class Probe(base):
        def __init__(self):
            base.__init__(self)  # pybind11 trampolines need the base initialised explicitly

    probe = Probe()
    wanted = ("get_batch", "get_batch_size", "read_calibration_cache", "write_calibration_cache")
    return {"present": True, "constructed": isinstance(probe, base),
            "members": {m: hasattr(base, m) for m in wanted}}


def case_make_calibrator(b: Bindings, case: dict) -> dict:
    from deploylab.backends.tensorrt import make_entropy_calibrator

    with b.recorded():
        calibrator = make_entropy_calibrator([], case["cache"])
        bytes_read = calibrator.read_calibration_cache()
    return {"calibrator": b.encode(calibrator),
            "read": None if bytes_read is None else len(bytes(memoryview(bytes_read)))}


def case_calibration_header(b: Bindings, case: dict) -> dict:
    """write_calibration_cache without a version: the header follows the installed TensorRT."""
    from deploylab.backends.tensorrt import write_calibration_cache

    with b.recorded():
        path = write_calibration_cache(case["cache"], {"input": 0.5})
    return {"header": Path(path).read_text().splitlines()[0]}


def case_strictness_probe(b: Bindings, case: dict) -> dict:
    """Misuses the fakes directly (no deploylab): each must raise as the real bindings would."""
    trt = b.real
    config = b.fake("IBuilderConfig", {"set_flag": lambda flag: None,
                                       "set_memory_pool_limit": lambda pool, size: None})
    engine = b.factories["engine"]()
    probes = {
        # TensorRT 10.0 removed max_workspace_size (use set_memory_pool_limit)
        "removed member": lambda: setattr(config, "max_workspace_size", 1 << 20),
        "wrong enum type": lambda: config.set_flag(trt["MemoryPoolType"].WORKSPACE),
        "missing argument": lambda: config.set_memory_pool_limit(trt["MemoryPoolType"].WORKSPACE),
        "int for an enum": lambda: config.set_flag(0),
        "read-only property": lambda: setattr(engine, "num_io_tensors", 3),
        "method assigned": lambda: setattr(config, "set_flag", None),
        "property of the wrong type": lambda: setattr(config, "profiling_verbosity", "DETAILED"),
    }
    out = {}
    for name, probe in probes.items():
        try:
            probe()
            out[name] = None
        except Exception as exc:  # noqa: BLE001
            out[name] = {"type": type(exc).__name__, "message": str(exc)}
    return {"probes": out}


def case_load_plan(b: Bindings, case: dict) -> dict:
    """load_plan on a plan an earlier case built (record check, Runtime, deserialize_cuda_engine)."""
    from deploylab.backends.tensorrt import load_plan

    with b.recorded():
        loaded = load_plan(case["plan"])
    return {"runtime_kind": loaded.runtime_kind, "version": str(loaded.version),
            "engine": b.encode(loaded.engine), "version_compatible": (loaded.record or {}).get("version_compatible")}


CASES = {"build": case_build, "runtime": case_runtime, "load_plan": case_load_plan,
         "calibrator_base": case_calibrator_base, "make_calibrator": case_make_calibrator,
         "calibration_header": case_calibration_header, "strictness_probe": case_strictness_probe}


def _where(exc: BaseException) -> str:
    """The innermost deploylab frame of a traceback: ``deploylab/...py:function:line``."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if "/deploylab/" in f.filename.replace("\\", "/")]
    if not frames:
        return ""
    f = frames[-1]
    return f"{f.filename[f.filename.replace(chr(92), '/').rindex('/deploylab/') + 1:]}:{f.name}:{f.lineno}"


def run_case(b: Bindings, case: dict) -> dict:
    b.begin(case.get("drop", []), case.get("world", {}))
    try:
        out = {"ok": True, **CASES[case["kind"]](b, case)}
    except Exception as exc:  # noqa: BLE001 - every failure is a result to report
        out = {"ok": False, "error": {"type": type(exc).__name__, "message": str(exc), "where": _where(exc)}}
    out["events"] = b.events
    if "sidecar_after" in b.world:  # read after a failed build too
        out["sidecar_after"] = b.world["sidecar_after"]
    if "calibration" in b.world:
        out["calibration"] = b.world["calibration"]
    return out


def main(spec_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    release = spec["release"]
    import tensorrt_bindings as module  # the real bindings of this release, from the unpacked wheel

    if module.__version__ != release:
        raise SystemExit(f"expected tensorrt_bindings {release}, imported {module.__version__} from {module.__file__}")
    b = Bindings(module, release)
    _install_fakes(b)
    RecordingModule.bindings = b
    module.__class__ = RecordingModule
    sys.modules["tensorrt"] = module  # what `import tensorrt` / detect_tensorrt() finds first

    from deploylab.backends.tensorrt import detect_tensorrt

    found, version, runtime_only = detect_tensorrt()
    results = {
        "release": release,
        "module_file": module.__file__,
        "detect": {"is_these_bindings": found is module, "version": str(version), "runtime_only": runtime_only},
        "cases": {},
        # Enum values the test's expectations depend on (they differ between majors).
        "enum_names": sorted(b.enum_names),
        "enums": {e: {k: int(v) for k, v in b.real[e].__members__.items()} for e in spec.get("enum_values", [])},
    }
    with torch_sees_the_stand_in_gpu():
        for case in spec["cases"]:
            results["cases"][case["name"]] = run_case(b, case)
    owners = set(spec.get("dir_of", [])) | {e["owner"] for c in results["cases"].values() for e in c["events"]}
    results["dirs"] = {o: sorted(b.real) if o == MODULE else sorted(dir(b.real[o])) for o in owners
                       if o == MODULE or o in b.real}
    Path(spec["output"]).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main(sys.argv[1])
