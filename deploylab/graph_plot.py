"""Pictures of an ONNX graph and of the deployment pipeline, drawn with matplotlib alone.

There is no graphviz here, so :func:`draw_onnx_graph` lays the graph out itself, the
Sugiyama way: each node goes in the layer of its longest path from the inputs, edges
that skip layers get invisible waypoints, layers are ordered by barycentres, and x
positions are chosen so chains run straight and skip connections run alongside them.
Figures are made with :class:`matplotlib.figure.Figure`, not pyplot, so a notebook shows
the returned figure once and nothing accumulates in pyplot's list of open figures.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import onnx
from google.protobuf.message import DecodeError
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch, Patch
from matplotlib.path import Path as MplPath
from matplotlib.textpath import TextPath

from deploylab.errors import DeployLabError
from deploylab.paths import save_figure
from deploylab.text import shape_text

_FAMILIES = {  # family -> (legend label, face colour, op types)
    "conv": ("convolution", "#9ecae1", {"Conv", "ConvTranspose", "ConvInteger", "QLinearConv", "DeformConv"}),
    "activation": ("activation", "#fdd0a2", {
        "Relu", "Sigmoid", "Tanh", "LeakyRelu", "PRelu", "Elu", "Selu", "Celu", "Gelu", "Clip",
        "HardSigmoid", "HardSwish", "Softplus", "Softsign", "Mish", "Softmax", "LogSoftmax", "ThresholdedRelu"}),
    "pooling": ("pooling", "#a1d99b", {
        "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "LpPool", "GlobalLpPool", "MaxRoiPool"}),
    "matmul": ("matmul / gemm", "#bcbddc", {"MatMul", "Gemm", "MatMulInteger", "QLinearMatMul", "Einsum"}),
    "elementwise": ("elementwise", "#f7b6d2", {
        "Add", "Sub", "Mul", "Div", "Pow", "Sqrt", "Reciprocal", "Exp", "Log", "Neg", "Abs", "Erf", "Max",
        "Min", "Sum", "Mean", "Where", "Equal", "Less", "Greater", "And", "Or", "Not", "Floor", "Ceil", "Sign"}),
    "shape": ("shape / layout", "#d9d9d9", {
        "Reshape", "Flatten", "Transpose", "Squeeze", "Unsqueeze", "Concat", "Split", "Slice", "Gather",
        "Shape", "Expand", "Tile", "Identity", "Pad", "Resize", "Cast", "DepthToSpace", "SpaceToDepth"}),
    "other": ("other", "#ffffb3", set()),
}
_OP_FAMILY = {op: fam for fam, (_, _, ops) in _FAMILIES.items() for op in ops}
_IO_FACE, _EDGE_COLOUR, _LABEL_COLOUR = "#ffffff", "#444444", "#555555"
# Sizes in inches and points at the nominal 0.55 inch per layer; deep graphs scale down.
_LAYER_IN, _MAX_HEIGHT_IN, _TITLE_IN, _LEGEND_IN = 0.55, 40.0, 0.5, 1.7
_TITLE_PT, _DETAIL_PT, _EDGE_PT = 8.5, 6.5, 6.0


@dataclass
class _Box:
    kind: str  # "input", "op", "output" or "via" (an invisible waypoint of a long edge)
    title: str = ""
    detail: str = ""
    family: str = "other"
    layer: int = 0
    x: float = 0.0
    w: float = 0.0
    h: float = 0.0
    up: list[int] = field(default_factory=list)  # neighbours one layer above
    down: list[int] = field(default_factory=list)  # neighbours one layer below


def _text_width_in(text: str, points: float, bold: bool = False) -> float:
    """Width of one line of text in inches, measured from the glyph outlines."""
    prop = FontProperties(weight="bold" if bold else "normal")
    return max((TextPath((0, 0), line, size=points, prop=prop).get_extents().width
                for line in text.splitlines() if line.strip()), default=0.0) / 72


def _dims(dims) -> str:
    return shape_text(list(dims), sep="×")


def _shape_of(value_info: onnx.ValueInfoProto) -> str | None:
    """'batch×1×32×32' from a ValueInfoProto (symbolic dims by name), None if unknown."""
    if not value_info.type.HasField("tensor_type") or not value_info.type.tensor_type.HasField("shape"):
        return None
    dims = value_info.type.tensor_type.shape.dim
    # Shape inference names the dims it cannot resolve "unk__0", ...: show those as "?".
    return _dims([d.dim_value if d.HasField("dim_value") else d.dim_param
                  if d.dim_param and not d.dim_param.startswith("unk__") else "?" for d in dims])


def _load(model) -> tuple[onnx.ModelProto, str]:
    if isinstance(model, onnx.ModelProto):
        return model, model.graph.name or "ONNX graph"
    if not isinstance(model, (str, os.PathLike)):
        raise DeployLabError(f"model must be an onnx.ModelProto or a path to an .onnx file, "
                             f"not {type(model).__name__}")
    path = Path(model)
    if not path.is_file():
        raise DeployLabError(f"ONNX file {str(path)!r} does not exist or is not a file; check the path")
    hint = "pass a file written by onnx.save or torch.onnx.export"
    try:
        loaded = onnx.load(path, load_external_data=False)
    except DecodeError as exc:
        raise DeployLabError(f"{str(path)!r} is not an ONNX model ({exc}); {hint}") from exc
    if not loaded.HasField("graph"):  # protobuf happily parses an empty file as an empty model
        raise DeployLabError(f"{str(path)!r} is not an ONNX model (it holds no graph); {hint}")
    return loaded, path.name


def _op_detail(node: onnx.NodeProto, weights: list[str]) -> str:
    """Small text under an op: kernel/stride for pooling, stride for conv, weight shapes."""
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    parts = []
    if "kernel_shape" in attrs and _OP_FAMILY.get(node.op_type) == "pooling":
        parts.append("k " + "×".join(map(str, attrs["kernel_shape"])))
    if any(s != 1 for s in attrs.get("strides", [])):
        parts.append("s " + "×".join(map(str, attrs["strides"])))
    if node.op_type in _FAMILIES["conv"][2] | _FAMILIES["matmul"][2]:
        parts += [f"{'WB'[i] if i < 2 else 'c'} {w}" for i, w in enumerate(weights)]
    elif weights:
        parts.append("const " + ", ".join(weights))
    return "  ".join(parts)


def _build(model: onnx.ModelProto) -> tuple[list[_Box], list[tuple[int, int, str]], dict[str, str]]:
    """Boxes (inputs, drawn ops, outputs) and edges (src, dst, tensor) of the graph."""
    try:
        model = onnx.shape_inference.infer_shapes(model)
    except (onnx.shape_inference.InferenceError, onnx.checker.ValidationError, ValueError, RuntimeError):
        pass  # shapes are decoration; an uninferable graph is still drawn, just unlabelled
    g = model.graph
    shapes = {vi.name: s for vi in (*g.input, *g.value_info, *g.output) if (s := _shape_of(vi))}
    # Weights are not boxes: neither are nodes computed from weights alone (Constant, the
    # Identity copies the TorchScript exporter makes of shared weights); their outputs
    # count as weights too.
    const = {t.name: _dims(t.dims) for t in g.initializer}
    const.update({t.values.name: _dims(t.dims) for t in g.sparse_initializer})
    boxes = [_Box("input", vi.name, shapes.get(vi.name, "")) for vi in g.input if vi.name not in const]
    producer = {b.title: i for i, b in enumerate(boxes)}
    edges: list[tuple[int, int, str]] = []
    for node in g.node:
        inputs = [name for name in node.input if name]
        if all(name in const for name in inputs):
            value = next((a.t for a in node.attribute if a.name == "value" and a.type == a.TENSOR), None)
            for out in node.output:
                const[out] = _dims(value.dims) if value is not None else shapes.get(out, "?")
            continue
        k = len(boxes)
        weights = [const[name] for name in inputs if name in const]
        boxes.append(_Box("op", node.op_type, _op_detail(node, weights), _OP_FAMILY.get(node.op_type, "other")))
        for name in dict.fromkeys(inputs):  # one arrow even when a tensor feeds a node twice
            if name in producer:
                edges.append((producer[name], k, name))
        producer.update({out: k for out in node.output if out})
    for vi in g.output:
        boxes.append(_Box("output", vi.name, shapes.get(vi.name, "")))
        if vi.name in producer:
            edges.append((producer[vi.name], len(boxes) - 1, vi.name))
    return boxes, edges, shapes


def _assign_layers(boxes: list[_Box], edges: list[tuple[int, int, str]]) -> int:
    """Longest-path layers (inputs 0, outputs last); returns the number of layers."""
    preds: dict[int, list[int]] = {i: [] for i in range(len(boxes))}
    for s, d, _ in edges:
        preds[d].append(s)
    # ONNX requires topologically sorted nodes and _build keeps that order, so one pass works.
    for i, b in enumerate(boxes):
        if b.kind == "op":
            b.layer = 1 + max((boxes[p].layer for p in preds[i]), default=0)
    last = 1 + max((b.layer for b in boxes if b.kind != "output"), default=0)
    for b in boxes:
        if b.kind == "output":
            b.layer = last
    return last + 1


def _route(boxes: list[_Box], edges) -> list[list[int]]:
    """Each edge as a list of box indices, with a waypoint box in every layer it skips."""
    routes = []
    for s, d, _ in edges:
        route = [s]
        for layer in range(boxes[s].layer + 1, boxes[d].layer):
            boxes.append(_Box("via", layer=layer))
            route.append(len(boxes) - 1)
        route.append(d)
        for a, b in zip(route, route[1:]):
            boxes[a].down.append(b)
            boxes[b].up.append(a)
        routes.append(route)
    return routes


def _order_layers(boxes: list[_Box], n_layers: int, sweeps: int = 6) -> list[list[int]]:
    """Order boxes within layers by the barycentre of their neighbours, to cut crossings."""
    layers: list[list[int]] = [[] for _ in range(n_layers)]
    for i, b in enumerate(boxes):
        layers[b.layer].append(i)
    for sweep in range(sweeps):
        down = sweep % 2 == 0
        pos = {i: p for layer in layers for p, i in enumerate(layer)}
        for layer in layers[1:] if down else layers[-2::-1]:
            def key(i):
                nbrs = boxes[i].up if down else boxes[i].down
                return sum(pos[n] for n in nbrs) / len(nbrs) if nbrs else pos[i]
            layer.sort(key=key)  # stable, so ties keep graph order and skips stay on one side
            pos.update({i: p for p, i in enumerate(layer)})
    return layers


def _project(desired: list[float], weights: list[float], gaps: list[float]) -> list[float]:
    """Positions closest to ``desired`` (weighted least squares) keeping x[i+1]-x[i] >= gaps[i].

    Shifting out the gaps turns this into isotonic regression, solved by pool-adjacent-violators.
    """
    offsets = [0.0]
    for g in gaps:
        offsets.append(offsets[-1] + g)
    blocks: list[list[float]] = []  # [mean, weight, count]
    for d, w, off in zip(desired, weights, offsets):
        blocks.append([d - off, w, 1])
        while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
            m2, w2, n2 = blocks.pop()
            m1, w1, n1 = blocks[-1]
            blocks[-1] = [(m1 * w1 + m2 * w2) / (w1 + w2), w1 + w2, n1 + n2]
    ys = [m for m, _, n in blocks for _ in range(n)]
    return [y + off for y, off in zip(ys, offsets)]


def _critical(boxes: list[_Box], edges) -> set[int]:
    """Boxes on a longest input-to-output path: the spine the layout keeps straight."""
    height = [0] * len(boxes)
    for s, d, _ in sorted(edges, key=lambda e: -boxes[e[0]].layer):
        height[s] = max(height[s], height[d] + 1)
    longest = max((b.layer + h for b, h in zip(boxes, height)), default=0)
    return {i for i, (b, h) in enumerate(zip(boxes, height)) if b.layer + h == longest}


def _place_x(boxes: list[_Box], layers: list[list[int]], spine: set[int], gap: float,
             iterations: int = 12) -> None:
    """x coordinates: each box near its neighbours' mean, boxes never overlapping.

    Boxes rank as waypoint < box < box on the spine (a longest path). A box ignores
    lower-ranked neighbours unless it has no others, and lower ranks give way, so the
    spine of a ResNet stays one straight column while skip connections and downsampling
    branches bend around it, instead of dragging it sideways a little at every block.
    """
    rank = [0 if b.kind == "via" else 2 if i in spine else 1 for i, b in enumerate(boxes)]

    def sep(a: int, b: int) -> float:
        real = [boxes[i].kind != "via" for i in (a, b)]
        return (boxes[a].w + boxes[b].w) / 2 + (gap if all(real) else gap * 0.7 if any(real) else gap * 0.4)

    for layer in layers:
        x = 0.0
        for p, i in enumerate(layer):
            x += sep(layer[p - 1], i) if p else 0.0
            boxes[i].x = x
    for it in range(iterations):
        down = it % 2 == 0
        for layer in layers[1:] if down else layers[-2::-1]:
            desired = []
            for i in layer:
                nbrs = boxes[i].up if down else boxes[i].down
                wts = [1.0 if rank[n] >= rank[i] else 1e-3 for n in nbrs]
                desired.append(sum(w * boxes[n].x for w, n in zip(wts, nbrs)) / sum(wts) if nbrs else boxes[i].x)
            xs = _project(desired, [(0.1, 1.0, 100.0)[rank[i]] for i in layer],
                          [sep(a, b) for a, b in zip(layer, layer[1:])])
            for i, x in zip(layer, xs):
                boxes[i].x = x


def _curve(points: list[tuple[float, float]]) -> MplPath:
    """A smooth path through ``points`` (top to bottom), vertical at every point."""
    verts, codes = [points[0]], [MplPath.MOVETO]
    for (x0, y0), (x1, y1) in zip(points, points[1:]):
        k = (y0 - y1) / 2
        verts += [(x0, y0 - k), (x1, y1 + k), (x1, y1)]
        codes += [MplPath.CURVE4] * 3
    return MplPath(verts, codes)


def _ports(box: _Box, others: list[float]) -> list[float]:
    """x of the attachment points of arrows whose other ends are at ``others``."""
    if len(others) < 2:
        return [box.x]
    # Toward the other end, so an arrow straight down stays central and a branch leaves
    # from the side it heads to.
    return [box.x + max(-0.3 * box.w, min(0.3 * box.w, (x - box.x) / 2)) for x in others]


def draw_onnx_graph(model, path=None, max_nodes: int = 120, ax=None, title: str | None = None) -> Figure:
    """Draw an ONNX graph top to bottom and return the matplotlib figure.

    ``model`` is an :class:`onnx.ModelProto` or the path of an ``.onnx`` file (read without
    its external weight data). Inputs are at the top, each op in the layer of its longest
    path from the inputs, outputs at the bottom. Op boxes are coloured by family and show
    the shapes of their weights (``W 6×1×5×5  B 6``), pooling kernels and strides; weights
    are not boxes. Arrows carry tensor shapes where shape inference finds them; symbolic
    dimensions appear by name (``batch``).

    ``path``: if given, a PNG is written there at 120 dpi (parent folders created). The
    figure is sized to the graph: 0.55 inch per layer, at most 40 inches tall.
    ``max_nodes``: graphs with more nodes raise :class:`DeployLabError` (too many to read;
    use Netron). ``ax``: draw into this axes instead of a new figure (its size is the
    caller's, text sizes stay in points). ``title`` replaces the default
    "<name>: <n> nodes, opset <v>, <parameters>".
    """
    model, name = _load(model)
    n_nodes = len(model.graph.node)
    if n_nodes > max_nodes:
        raise DeployLabError(
            f"the ONNX graph has {n_nodes} nodes, more than max_nodes={max_nodes} can show legibly; "
            "open the file in Netron (https://netron.app) or pass a larger max_nodes")
    boxes, edges, shapes = _build(model)
    n_real = len(boxes)
    n_layers = _assign_layers(boxes, edges)
    routes = _route(boxes, edges)
    layers = _order_layers(boxes, n_layers)

    layer_in = min(_LAYER_IN, (_MAX_HEIGHT_IN - _TITLE_IN) / n_layers)
    scale = max(layer_in / _LAYER_IN, 0.45)  # deep graphs: smaller text rather than overlaps
    title_pt, detail_pt, edge_pt = _TITLE_PT * scale, _DETAIL_PT * scale, _EDGE_PT * scale
    for b in boxes[:n_real]:
        bold = b.kind == "op"
        b.w = max(_text_width_in(b.title, title_pt, bold), _text_width_in(b.detail, detail_pt)) + 0.2 * scale
        b.w = max(b.w, 0.75 * scale)
        b.h = (0.33 if b.detail else 0.22) * scale
    _place_x(boxes, layers, _critical(boxes[:n_real], edges), gap=0.35 * scale)

    height = _TITLE_IN + n_layers * layer_in
    top = height - _TITLE_IN - layer_in / 2

    def y_of(layer: int) -> float:
        return top - layer * layer_in

    # Arrows leave from the bottom edge and enter the top edge, toward their other end.
    starts, ends = {}, {}
    for i, b in enumerate(boxes[:n_real]):
        outs = [r for r in range(len(routes)) if routes[r][0] == i]
        ins = [r for r in range(len(routes)) if routes[r][-1] == i]
        starts.update(zip(outs, _ports(b, [boxes[routes[r][1]].x for r in outs])))
        ends.update(zip(ins, _ports(b, [boxes[routes[r][-2]].x for r in ins])))
    points = []
    for r, route in enumerate(routes):
        s, d = boxes[route[0]], boxes[route[-1]]
        points.append([(starts[r], y_of(s.layer) - s.h / 2),
                       *((boxes[v].x, y_of(boxes[v].layer)) for v in route[1:-1]),
                       (ends[r], y_of(d.layer) + d.h / 2)])

    # One shape label per tensor, on its shortest edge, on whichever side of the arrow is
    # clear of the other arrows and labels crossing the same gap between layers.
    occupied: dict[int, list[tuple[float, float, int]]] = {}  # gap below layer -> (lo, hi, route)
    for r, (pts, route) in enumerate(zip(points, routes)):
        for (x0, _), (x1, _), a in zip(pts, pts[1:], route):
            occupied.setdefault(boxes[a].layer, []).append((min(x0, x1) - 0.03, max(x0, x1) + 0.03, r))
    by_tensor: dict[str, list[int]] = {}
    for r in sorted(range(len(edges)), key=lambda r: len(routes[r])):
        if edges[r][2] in shapes:
            by_tensor.setdefault(edges[r][2], []).append(r)
    labels = []  # (x, y, text)
    for tensor, rs in by_tensor.items():
        w, candidates = _text_width_in(shapes[tensor], edge_pt) + 0.04, []
        for r in rs:
            (x0, y0), (x1, y1) = points[r][:2]
            gap_layer = boxes[routes[r][0]].layer
            # Beside the arrow's whole horizontal extent, so a slanted arrow does not cross it.
            lo, hi = min(x0, x1) - 0.05, max(x0, x1) + 0.05
            for span in ((hi, hi + w), (lo - w, lo)):
                hits = sum(a < span[1] and span[0] < b for a, b, other in occupied[gap_layer] if other != r)
                candidates.append((hits, span, gap_layer, (y0 + y1) / 2))
        _, span, gap_layer, y = min(candidates, key=lambda c: c[0])  # first of the least crowded
        occupied[gap_layer].append((*span, -1))
        labels.append((span[0] + 0.02, y, shapes[tensor]))

    x_lo = min([b.x - b.w / 2 for b in boxes] + [x for x, _, _ in labels]) - 0.15
    x_hi = max([b.x + b.w / 2 for b in boxes] + [a for spans in occupied.values() for _, a, _ in spans]) + 0.15
    if title is None:
        params = sum(_numel(t.dims) for t in model.graph.initializer)
        opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), "?")
        title = f"{name}: {n_nodes} nodes, opset {opset}, {params:,} parameters"
    own_figure = ax is None
    if own_figure:
        width = max(x_hi - x_lo, 2.5)
        fig_w = max(width + _LEGEND_IN, _text_width_in(title, 10, bold=True) + 0.4)
        fig = Figure(figsize=(fig_w, height))
        ax = fig.add_axes((0, 0, width / fig_w, 1))
        x_hi = x_lo + width
    fig = ax.figure
    ax.set_xlim(x_lo, x_hi)
    ax.set_ylim(0, height)
    ax.set_aspect("auto" if own_figure else "equal")
    ax.axis("off")

    for b in boxes[:n_real]:
        y = y_of(b.layer)
        face = _IO_FACE if b.kind != "op" else _FAMILIES[b.family][1]
        style = f"round,pad=0,rounding_size={b.h / 2 if b.kind != 'op' else 0.04 * scale}"
        ax.add_patch(FancyBboxPatch((b.x - b.w / 2, y - b.h / 2), b.w, b.h, boxstyle=style,
                                    facecolor=face, edgecolor="#333333", linewidth=0.8, zorder=3))
        ax.text(b.x, y + (0.065 * scale if b.detail else 0.0), b.title, ha="center", va="center",
                fontsize=title_pt, fontweight="bold" if b.kind == "op" else "normal", zorder=4)
        if b.detail:
            ax.text(b.x, y - 0.075 * scale, b.detail, ha="center", va="center", fontsize=detail_pt,
                    color="#222222", zorder=4)
    for pts in points:
        ax.add_patch(FancyArrowPatch(path=_curve(pts), arrowstyle="-|>", mutation_scale=7 * scale,
                                     color=_EDGE_COLOUR, linewidth=0.8, zorder=2))
    for x, y, text in labels:
        ax.text(x, y, text, ha="left", va="center", fontsize=edge_pt, color=_LABEL_COLOUR, zorder=5)

    present = [f for f in _FAMILIES if any(b.kind == "op" and b.family == f for b in boxes)]
    handles = [Patch(facecolor=_FAMILIES[f][1], edgecolor="#333333", label=_FAMILIES[f][0]) for f in present]
    handles.append(Patch(facecolor=_IO_FACE, edgecolor="#333333", label="graph input / output"))
    if own_figure:
        fig.text(0.15 / fig_w, 1 - 0.12 / height, title, ha="left", va="top", fontsize=10, fontweight="bold")
        fig.legend(handles=handles, loc="upper left", fontsize=7, title="op family", title_fontsize=7.5,
                   bbox_to_anchor=((width + 0.05) / fig_w, 1 - _TITLE_IN / height))
    else:
        ax.set_title(title, fontsize=10, fontweight="bold")
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=7)
    if path is not None:
        save_figure(fig, path, dpi=120, facecolor="white")
    return fig


def _numel(dims) -> int:
    n = 1
    for d in dims:
        n *= d
    return n


def draw_pipeline_figure(path=None) -> Figure:
    """The deployment pipeline as a left-to-right diagram; returns the figure (13 x 4.2 inches).

    Training framework -> ONNX -> inference engine (vendor and general engines) ->
    hardware. If ``path`` is given, a PNG is written there at 120 dpi.
    """
    fig = Figure(figsize=(13, 4.2))
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, 13)
    ax.set_ylim(0, 4.2)
    ax.axis("off")

    def box(x, y, w, h, head, body, face, head_pt=11.5):
        ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0,rounding_size=0.12",
                                    facecolor=face, edgecolor="#333333", linewidth=1.1))
        ax.text(x + w / 2, y + h - 0.22, head, ha="center", va="top", fontsize=head_pt, fontweight="bold")
        ax.text(x + w / 2, y + (h - 0.45) / 2, body, ha="center", va="center", fontsize=9.5,
                color="#222222", linespacing=1.5)

    def arrow(x0, x1, y, label):
        ax.add_patch(FancyArrowPatch((x0, y), (x1, y), arrowstyle="-|>", mutation_scale=18,
                                     color="#333333", linewidth=1.6))
        ax.text((x0 + x1) / 2, y + 0.12, label, ha="center", va="bottom", fontsize=9,
                color="#555555", style="italic", linespacing=1.2)

    ax.text(6.5, 4.05, "From a trained model to hardware", ha="center", va="top", fontsize=13,
            fontweight="bold")
    mid = 1.8
    box(0.2, mid - 0.85, 2.3, 1.7, "Training framework", "PyTorch,\nTensorFlow, ...", "#c6dbef")
    box(3.35, mid - 0.85, 2.3, 1.7, "ONNX", "a graph description,\nnot a program", "#fdd0a2")
    ax.add_patch(FancyBboxPatch((6.5, 0.2), 3.3, 3.25, boxstyle="round,pad=0,rounding_size=0.12",
                                facecolor="#f0f0f0", edgecolor="#333333", linewidth=1.1))
    ax.text(8.15, 3.3, "Inference engine", ha="center", va="top", fontsize=11.5, fontweight="bold")
    box(6.7, 1.75, 2.9, 1.2, "Vendor engines", "TensorRT, OpenVINO, SNPE,\nCore ML, CANN", "#a1d99b", 10.5)
    box(6.7, 0.35, 2.9, 1.2, "General engines", "ONNX Runtime, MNN, TNN,\nPaddle Inference, TVM, TFLite",
        "#bcbddc", 10.5)
    box(10.65, mid - 0.85, 2.15, 1.7, "Hardware",
        "NVIDIA GPU, Intel CPU,\nQualcomm DSP,\nApple NPU,\nHuawei Ascend, ...", "#fbb4c4")
    arrow(2.55, 3.3, mid, "export")
    arrow(5.7, 6.45, mid, "parse,\noptimise")
    arrow(9.85, 10.6, mid, "run\nkernels")
    if path is not None:
        save_figure(fig, path, dpi=120, facecolor="white")
    return fig
