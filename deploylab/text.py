"""How deploylab writes small things the same way everywhere: an engine's error in one line,
a shape as text."""

from __future__ import annotations

import re


def first_line(exc: BaseException | str, limit: int = 300) -> str:
    """The first non-empty line of an exception's message (its type name if it has none),
    cut to ``limit`` characters: engines' errors run to pages, a message to the user is one line."""
    text = str(exc).strip()
    if not text:
        return type(exc).__name__ if isinstance(exc, BaseException) else ""
    line = next(line.strip() for line in text.splitlines() if line.strip())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def shape_text(shape, unknown: str = "?", sep: str = "x") -> str:
    """``1x3x224x224``; symbolic dims by name (``batchx3x224x224``), unknown ones (None) as
    ``unknown``; a rank-0 shape is ``scalar``."""
    if len(shape) == 0:
        return "scalar"
    return sep.join(unknown if d is None else str(d) for d in shape)


_BOILERPLATE = (
    re.compile(r"^Exception from src/\S+:\d+:?$"),
    re.compile(r"^Check '.*' failed at \S+:\d+:?$"),
    re.compile(r"^FrontEnd API failed with \w+:?$"),
    re.compile(r"^Model wasn't fully converted"),
    re.compile(r"^Summary:$"),
    re.compile(r"^To facilitate the conversion"),
    re.compile(r"^While validating "),
    re.compile(r"^Shape inference input shapes"),
)


def engine_error_summary(text: str, limit: int = 300) -> str:
    """The informative part of an engine's error text, on one line.

    ONNX Runtime prefixes ``[ONNXRuntimeError] : 9 : NOT_IMPLEMENTED :``; OpenVINO wraps
    the reason in source locations, then lists ``-- Op-N with a message:`` blocks and a
    ``Summary:`` whose ``-- ...`` lines name the operators it could not convert. The
    result is ``"Op-N: reason"`` per failed operator, or the summary lines, or the first
    line that is not boilerplate.
    """
    lines = [re.sub(r"^\[ONNXRuntimeError\] : \d+ : [A-Z_]+ : ", "", ln.strip())
             for ln in str(text).splitlines() if ln.strip()]
    useful = lambda block: [ln for ln in block if not any(p.search(ln) for p in _BOILERPLATE)]  # noqa: E731
    marks = [i for i, ln in enumerate(lines) if ln.startswith("-- ") or ln == "Summary:"]
    detailed = []
    for position, i in enumerate(marks):
        if lines[i].endswith("with a message:"):
            end = marks[position + 1] if position + 1 < len(marks) else len(lines)
            reason = useful(lines[i + 1:end])
            detailed.append(f"{lines[i][3:-len(' with a message:')]}: {reason[-1] if reason else 'failed'}")
    if detailed:
        return "; ".join(detailed)[:limit]
    summary = [ln[3:] for ln in lines if ln.startswith("-- ")]
    if summary:
        return "; ".join(summary)[:limit]
    rest = useful(lines)
    return (rest[0] if rest else (lines[0] if lines else ""))[:limit]
