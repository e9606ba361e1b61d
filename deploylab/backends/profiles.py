"""Optimization profiles: the (min, opt, max) shapes a build phase plans for.

TensorRT builds one engine per profile range; OpenVINO's twin bounds the same dims
(it has no "opt" shape). Both read the same trtexec-style specs and validate them against
the ONNX model before any engine sees them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from deploylab.errors import DeployLabError
from deploylab.text import shape_text

Shape = tuple[int, ...]


@dataclass
class ShapeProfile:
    """One optimization profile: input name -> (min, opt, max) shapes.

    The name ``""`` stands for "the model's only input" (a bare ``1x3x224x224``); it is
    resolved by :func:`validate_profile`.
    """

    shapes: dict[str, tuple[Shape, Shape, Shape]] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {n: {"min": list(a), "opt": list(b), "max": list(c)} for n, (a, b, c) in self.shapes.items()}

    @classmethod
    def from_dict(cls, data: Mapping) -> ShapeProfile:
        return cls({n: (tuple(v["min"]), tuple(v["opt"]), tuple(v["max"])) for n, v in data.items()})


def _split_specs(text: str) -> list[str]:
    """Split ``a:1x3,'b,c':2x3`` on commas outside single quotes (trtexec quotes odd names)."""
    parts, current, quoted = [], "", False
    for char in text:
        if char == "'":
            quoted = not quoted
        if char == "," and not quoted:
            parts.append(current)
            current = ""
        else:
            current += char
    if quoted:
        raise DeployLabError(f"unbalanced single quote in shape spec {text!r}")
    return [*parts, current]


def _parse_shape(text: str, context: str) -> Shape:
    text = text.strip()
    if text in ("", "scalar"):
        return ()
    dims = []
    for part in text.split("x"):
        try:
            dims.append(int(part))
        except ValueError:
            raise DeployLabError(
                f"{context}: {text!r} is not a shape; write dims joined by 'x', e.g. 1x3x224x224"
            ) from None
    return tuple(dims)


def _parse_shape_spec(text: str, which: str) -> dict[str, Shape]:
    """``input:1x3x224x224[,other:...]`` or a bare ``1x3x224x224`` (name ``""``) -> {name: shape}."""
    if not isinstance(text, str) or not text.strip():
        raise DeployLabError(f"{which} shape spec is empty; write e.g. 'input:1x3x224x224' or '1x3x224x224'")
    shapes: dict[str, Shape] = {}
    for spec in _split_specs(text.strip()):
        spec = spec.strip()
        if spec.startswith("'"):  # 'Input:0':1x3 - the quotes protect colons in the name
            end = spec.index("'", 1)
            name, rest = spec[1:end], spec[end + 1:]
            if not rest.startswith(":"):
                raise DeployLabError(f"{which} shape spec {spec!r}: expected ':' after the quoted name")
            shape_text = rest[1:]
        elif ":" in spec:
            name, shape_text = spec.rsplit(":", 1)  # shapes hold no colons, names may
        else:
            name, shape_text = "", spec
        if name in shapes:
            raise DeployLabError(f"{which} shape spec {text!r} names input {name or '(bare)'!r} twice")
        shapes[name] = _parse_shape(shape_text, f"{which} shape for input {name or '(bare)'!r}")
    if "" in shapes and len(shapes) > 1:
        raise DeployLabError(
            f"{which} shape spec {text!r} mixes a bare shape with named ones; name every input (name:shape)"
        )
    return shapes


def parse_profile_args(
    min: str | None = None, opt: str | None = None, max: str | None = None, input_name: str | None = None
) -> ShapeProfile:
    """A profile from trtexec-style specs: ``min="input:1x3x224x224"``, ``opt=...``, ``max=...``.

    Specs may name several inputs (``a:1x3,b:1x5``) or be a bare shape (``1x3x224x224``) that
    applies to ``input_name`` or, if None, to the model's single input. As in trtexec, ``opt``
    alone means min = opt = max; otherwise all three are required.
    """
    if opt is None:
        raise DeployLabError("a profile needs an opt shape (and min and max, unless min = opt = max)")
    if (min is None) != (max is None):
        raise DeployLabError("give both min and max shapes, or neither (then min = max = opt)")
    specs = {"opt": _parse_shape_spec(opt, "opt")}
    specs["min"] = _parse_shape_spec(min, "min") if min is not None else dict(specs["opt"])
    specs["max"] = _parse_shape_spec(max, "max") if max is not None else dict(specs["opt"])
    names = set(specs["opt"])
    for which in ("min", "max"):
        if set(specs[which]) != names:
            raise DeployLabError(
                f"min, opt and max must name the same inputs: opt names {sorted(names)}, "
                f"{which} names {sorted(specs[which])}"
            )
    profile = ShapeProfile()
    for name in specs["opt"]:
        key = input_name if (name == "" and input_name) else name
        profile.shapes[key] = (specs["min"][name], specs["opt"][name], specs["max"][name])
    return profile


def validate_profile(profile: ShapeProfile, onnx_path: str | Path) -> ShapeProfile:
    """Check ``profile`` against the model's inputs and return it with a bare shape named.

    Every input with a symbolic or unknown dim must be covered (fully static inputs may be
    omitted); rank must match; dims the model fixes must be equal in min, opt and max; every
    dim positive; min <= opt <= max per dim.
    """
    from deploylab.onnx_tools import graph_inputs, load_onnx

    inputs = {t.name: t for t in graph_inputs(load_onnx(onnx_path, load_external_data=False))}
    shapes = dict(profile.shapes)
    if "" in shapes:
        if len(inputs) != 1:
            raise DeployLabError(
                f"a bare profile shape needs a model with one input, but {Path(onnx_path).name} has "
                f"{len(inputs)}: {', '.join(inputs)}; write name:shape for each"
            )
        shapes[next(iter(inputs))] = shapes.pop("")
    model_text = ", ".join(f"{t.name}: {t.shape_text()}" for t in inputs.values())
    for name in shapes:
        if name not in inputs:
            raise DeployLabError(f"the profile names input {name!r}, but the model's inputs are {model_text}")
    for name, tensor in inputs.items():
        dynamic = [a for a, d in enumerate(tensor.shape) if not isinstance(d, int) or d < 0]
        if name not in shapes:
            if dynamic:
                raise DeployLabError(
                    f"input {name!r} has shape {tensor.shape_text()} (dim {', '.join(map(str, dynamic))} not fixed) "
                    f"but the profile gives no shapes for it; add e.g. {name}:"
                    + "x".join("1" if a in dynamic else str(d) for a, d in enumerate(tensor.shape))
                )
            continue
        triple = shapes[name]
        for which, shape in zip(("min", "opt", "max"), triple):
            if len(shape) != len(tensor.shape):
                raise DeployLabError(
                    f"the profile's {which} shape for input {name!r} is {shape_text(shape)} (rank {len(shape)}), "
                    f"but the model's input is {tensor.shape_text()} (rank {len(tensor.shape)})"
                )
            for axis, (want, got) in enumerate(zip(tensor.shape, shape)):
                if got < 1:
                    raise DeployLabError(
                        f"the profile's {which} shape {shape_text(shape)} for input {name!r} has dim {axis} = {got}; "
                        "every profile dim must be >= 1"
                    )
                if isinstance(want, int) and want >= 0 and want != got:
                    raise DeployLabError(
                        f"the profile's {which} shape {shape_text(shape)} for input {name!r} has dim {axis} = {got}, "
                        f"but the model fixes dim {axis} to {want} (model shape {tensor.shape_text()})"
                    )
        for axis, (low, mid, high) in enumerate(zip(*triple)):
            if not low <= mid <= high:
                raise DeployLabError(
                    f"input {name!r} dim {axis}: min {low}, opt {mid}, max {high} must satisfy min <= opt <= max "
                    f"(model shape {tensor.shape_text()})"
                )
    return ShapeProfile(shapes)
