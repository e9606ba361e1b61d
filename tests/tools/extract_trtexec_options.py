"""Regenerate deploylab/backends/tensorrt/trtexec_options.json from NVIDIA's TensorRT sources.

Run it on any clone or mirror of https://github.com/NVIDIA/TensorRT (bare or not; the release
branches are found as local branches or as ``origin/<branch>``):

    git clone --bare https://github.com/NVIDIA/TensorRT.git /tmp/TensorRT.git
    python tests/tools/extract_trtexec_options.py /tmp/TensorRT.git            # rewrite the JSON
    python tests/tools/extract_trtexec_options.py /tmp/TensorRT.git --check    # exit 1 if it differs

``--branches release/10.0 release/11.1 ...`` picks other branches (default: ``DEFAULT_BRANCHES``;
``release/10.0@<sha>`` reads that commit of the branch, as the reproduction test does);
``--output PATH`` writes elsewhere. ``tests/test_trtexec_options.py`` runs ``--check``'s logic when
``DEPLOYLAB_TENSORRT_SRC`` points at a checkout. Only the standard library and ``git`` are used.

What it reads, per branch: trtexec builds its argument map with ``argsToArgumentsMap`` (argv ->
multimap of ``--name`` -> value), calls ``AllOptions::parse`` (samples/common/sampleOptions.cpp),
which erases every option it recognises (``getAndDelOption``, ``getAndDelNegOption``,
``getAndDelRepeatedOption``, ``getAndDelOptionBehind`` and helpers that call them), and then
fails with "Unknown option" on whatever is left (samples/trtexec/trtexec.cpp). So the accepted
options are the option literals passed to those calls in the functions reachable from
``AllOptions::parse`` (plus ``parseHelp``), not the ``--help`` text: ``SafeBuilderOptions`` and
``TaskInferenceOptions`` also parse ``--int8`` etc. but trtexec never calls them. Preprocessor
conditions are evaluated for the Linux build (``TRT_WINML`` 0, ``_WIN32`` undefined); options
under a condition the build system decides (``ENABLE_UNIFIED_BUILDER``) are listed apart.
The release number is read from include/NvInferVersion.h, not from the branch name.
"""

from __future__ import annotations

import argparse
import bisect
import datetime
import json
import re
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

REPOSITORY = "https://github.com/NVIDIA/TensorRT"
OPTIONS_CPP = "samples/common/sampleOptions.cpp"
OPTIONS_H = "samples/common/sampleOptions.h"
VERSION_H = "include/NvInferVersion.h"
DEFAULT_BRANCHES = (
    "release/10.0", "release/10.8", "release/10.9", "release/10.13", "release/10.13.3", "release/10.16",
    "release/11.0", "release/11.1",
)
#: Only used to say what the first listed release removed and added (e.g. --workspace in 10.0).
BASELINE_BRANCH = "release/9.3"
#: Options whose enumerated values are recorded, and how a value is split into enumerated parts.
ENUMERATED = {
    "hardwareCompatibilityLevel": "level",
    "memPoolSize": "pool:size[,pool:size...]",
    "profilingVerbosity": "level",
}
#: Flags deploylab writes (or wrote: --workspace), for the human-readable ``notes``.
WATCHED = (
    "onnx", "saveEngine", "fp16", "bf16", "int8", "calib", "stronglyTyped", "noTF32", "minShapes", "optShapes",
    "maxShapes", "memPoolSize", "workspace", "timingCacheFile", "versionCompatible", "hardwareCompatibilityLevel",
    "profilingVerbosity", "skipInference",
)
#: Macro values of the Linux trtexec build; any other macro in an #if makes its options conditional.
KNOWN_MACROS = {"TRT_WINML": 0, "_WIN32": None}
#: The calls through which sampleOptions.cpp erases an option from the argument map.
ACCESSORS = ("getAndDelOption", "getAndDelNegOption", "getAndDelRepeatedOption", "getAndDelOptionBehind",
             "getAndDelOptionWithPosition")
OPTION_LITERAL = re.compile(r"-{1,2}[A-Za-z][A-Za-z0-9_]*\Z")


# ---------------------------------------------------------------- git
class Repo:
    def __init__(self, path: str | Path):
        self.path = str(path)

    def git(self, *args: str) -> str:
        done = subprocess.run(["git", "-C", self.path, *args], capture_output=True, text=True)
        if done.returncode:
            raise RuntimeError(f"git {' '.join(args)} failed in {self.path}: {done.stderr.strip()}")
        return done.stdout

    def resolve(self, branch: str) -> str:
        for ref in (f"refs/heads/{branch}", f"refs/remotes/origin/{branch}", branch):
            done = subprocess.run(["git", "-C", self.path, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"],
                                  capture_output=True, text=True)
            if done.returncode == 0:
                return done.stdout.strip()
        raise RuntimeError(f"branch {branch!r} not found in {self.path}")

    def show(self, commit: str, path: str) -> str:
        return self.git("show", f"{commit}:{path}")

    def files(self, commit: str, *folders: str) -> list[str]:
        return self.git("ls-tree", "-r", "--name-only", commit, *folders).split()


# ---------------------------------------------------------------- C++ scanning
@dataclass
class Literal:
    start: int  # index of the opening quote (or of R for a raw string)
    end: int  # index just past the closing quote
    value: str


_ESCAPES = {"n": "\n", "t": "\t", "\\": "\\", '"': '"', "'": "'", "0": "\0", "r": "\r"}


def _decode(body: str) -> str:
    if "\\" not in body:
        return body
    return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), m.group(1)), body)


def _preprocess(text: str) -> tuple[str, list[tuple[str, ...]]]:
    """Blank the lines a Linux build drops; return the text and, per line, the undecided conditions."""
    lines = text.split("\n")
    stack: list[list] = []  # [condition text, value True/False/None, seen #else]
    tags: list[tuple[str, ...]] = []
    out = []
    for line in lines:
        directive = re.match(r"\s*#\s*(ifdef|ifndef|if|elif|else|endif)\b\s*(.*?)\s*(//.*)?$", line)
        if directive:
            kind, cond = directive.group(1), directive.group(2)
            if kind in ("if", "ifdef", "ifndef"):
                expr = cond if kind == "if" else (f"defined({cond})" if kind == "ifdef" else f"!defined({cond})")
                stack.append([expr, _evaluate(expr), False])
            elif kind in ("else", "elif") and stack:
                frame = stack[-1]
                expr = f"!({frame[0]})" if kind == "else" else f"!({frame[0]}) && ({cond})"
                value = None if frame[1] is None else (not frame[1])
                if kind == "elif" and value is True:
                    value = _evaluate(cond)
                stack[-1] = [expr, value, True]
            elif kind == "endif" and stack:
                stack.pop()
            out.append(" " * len(line))
            tags.append(())
            continue
        active = all(frame[1] is not False for frame in stack)
        out.append(line if active else " " * len(line))
        tags.append(tuple(frame[0] for frame in stack if frame[1] is None))
    return "\n".join(out), tags


def _evaluate(expr: str):
    """True/False for a condition on KNOWN_MACROS, None when the build system decides."""
    match = re.fullmatch(r"\s*(!?)\s*(?:defined\s*\(\s*(\w+)\s*\)|(\w+))\s*", expr)
    if not match:
        return None
    negate, name = match.group(1) == "!", match.group(2) or match.group(3)
    if name not in KNOWN_MACROS:
        return None
    value = KNOWN_MACROS[name]
    truth = (value is not None) if match.group(2) else bool(value)
    return not truth if negate else truth


def mask(text: str) -> tuple[str, list[Literal]]:
    """Blank comments and the insides of string/char literals (same length); return the literals."""
    out = list(text)
    literals: list[Literal] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            out[i:j] = " " * (j - i)
            i = j
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out[i:j] = [ch if ch == "\n" else " " for ch in text[i:j]]
            i = j
        elif c == "R" and text.startswith('R"', i) and (i == 0 or not (text[i - 1].isalnum() or text[i - 1] == "_")):
            open_paren = text.find("(", i + 2)
            delimiter = text[i + 2:open_paren]
            close = text.find(")" + delimiter + '"', open_paren)
            j = close + len(delimiter) + 2
            literals.append(Literal(i, j, text[open_paren + 1:close]))
            out[i + 1:j - 1] = [ch if ch == "\n" else " " for ch in text[i + 1:j - 1]]
            i = j
        elif c == '"':
            j = i + 1
            while text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            literals.append(Literal(i, j + 1, _decode(text[i + 1:j])))
            out[i + 1:j] = " " * (j - i - 1)
            i = j + 1
        elif c == "'" and not (i and text[i - 1].isdigit()):
            j = i + 1
            while text[j] != "'":
                j += 2 if text[j] == "\\" else 1
            out[i + 1:j] = " " * (j - i - 1)
            i = j + 1
        else:
            i += 1
    return "".join(out), literals


def _matching(masked: str, start: int, open_char: str = "{", close_char: str = "}") -> int:
    depth = 0
    for k in range(start, len(masked)):
        if masked[k] == open_char:
            depth += 1
        elif masked[k] == close_char:
            depth -= 1
            if depth == 0:
                return k
    raise ValueError(f"unbalanced {open_char} at {start}")


_HEADER = re.compile(r"([A-Za-z_~][\w:~]*(?:<[^()]*?>)?)\s*\(")


@dataclass
class Function:
    name: str  # as defined: "BuildOptions::parse", "getAndDelOption", "stringToValue<int32_t>"
    body_start: int  # index of "{"
    body_end: int  # index of the matching "}"

    @property
    def cls(self) -> str:
        return self.name.rsplit("::", 1)[0] if "::" in self.name else ""

    @property
    def short(self) -> str:
        return re.sub(r"<.*", "", self.name.rsplit("::", 1)[-1])


def functions(masked: str) -> dict[str, Function]:
    """Function definitions at namespace scope (namespaces are entered, classes/initializers skipped)."""
    found: dict[str, Function] = {}
    i, statement_start = 0, 0
    while i < len(masked):
        c = masked[i]
        if c in ";}":
            statement_start = i + 1
        elif c == "{":
            header = masked[statement_start:i].strip()
            if re.fullmatch(r"(?:inline\s+)?namespace(?:\s+\w+)?", header) or re.fullmatch(r'extern\s+"\s*"', header):
                statement_start = i + 1  # enter the namespace
            else:
                end = _matching(masked, i)
                match = _HEADER.search(header)
                if (match and "operator" not in header and re.search(r"\)\s*(?:const|noexcept|override|\s)*$", header)
                        and not re.match(r"(if|for|while|switch|catch)\b", match.group(1))):
                    name = re.sub(r"\s+", "", match.group(1))
                    found.setdefault(name, Function(name, i, end))
                i = end
                statement_start = i + 1
        i += 1
    return found


def class_members(header_masked: str) -> dict[str, dict[str, str]]:
    """class/struct name -> {member name: type name} for members declared as ``Type name{...};``."""
    members: dict[str, dict[str, str]] = {}
    for match in re.finditer(r"\b(?:class|struct)\s+(\w+)\s*(?::[^{;]*)?\{", header_masked):
        end = _matching(header_masked, match.end() - 1)
        body = header_masked[match.end():end]
        members[match.group(1)] = {m.group(2): m.group(1)
                                   for m in re.finditer(r"^\s*(\w+)\s+(\w+)\s*(?:\{[^{}]*\})?\s*;", body, re.M)}
    return members


_CALL = re.compile(r"(?:(?P<obj>\w+)\s*(?:\.|->)\s*|(?P<qual>\w+)\s*::\s*)?"  # model.parse( / Options::help(
                   r"(?P<name>[A-Za-z_]\w*)\s*(?:<[^<>();]*>)?\s*\(")


def reachable(roots: list[str], funcs: dict[str, Function], masked: str,
              members: dict[str, dict[str, str]]) -> list[str]:
    """Names of the functions defined in the file that ``roots`` can call (roots included)."""
    free = {}
    for f in funcs.values():
        if not f.cls:
            free.setdefault(f.short, []).append(f.name)
    seen, todo = [], [r for r in roots if r in funcs]
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.append(current)
        func = funcs[current]
        for call in _CALL.finditer(masked, func.body_start, func.body_end):
            name, obj, qual = call.group("name"), call.group("obj"), call.group("qual")
            targets = []
            if obj:
                owner = members.get(func.cls, {}).get(obj)
                if owner:
                    targets = [f"{owner}::{name}"]
            elif qual and f"{qual}::{name}" in funcs:
                targets = [f"{qual}::{name}"]
            elif func.cls and f"{func.cls}::{name}" in funcs:
                targets = [f"{func.cls}::{name}"]
            else:
                targets = free.get(name, [])
            todo += [t for t in targets if t in funcs and t not in seen]
    return seen


def _split_args(text: str) -> list[str]:
    parts, depth, current = [], 0, ""
    for ch in text:
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(current.strip())
            current = ""
        else:
            current += ch
    return [*parts, current.strip()]


@dataclass
class OptionUse:
    name: str  # "--onnx"
    callee: str
    function: str
    call_start: int  # index of the callee name
    args_end: int  # index of the closing ")"
    destination: str | None  # the variable getAndDelOption/getAndDelNegOption write
    conditions: tuple[str, ...] = ()
    repeatable: bool = False


def option_uses(masked: str, literals: list[Literal], funcs: dict[str, Function], names: list[str],
                line_tags: list[tuple[str, ...]], text: str) -> list[OptionUse]:
    """Every option literal passed as an argument to a call in the functions ``names``."""
    uses = []
    line_starts = [0] + [m.end() for m in re.finditer("\n", text)]
    literals = sorted(literals, key=lambda lit: lit.start)
    for fname in names:
        func = funcs[fname]
        body = masked[func.body_start:func.body_end]
        lambdas = set(re.findall(r"\bauto\s+(\w+)\s*=\s*\[", body))
        for lit in literals:
            if not (func.body_start < lit.start < func.body_end) or not OPTION_LITERAL.match(lit.value):
                continue
            if not (re.search(r"[(,]\s*\Z", masked[max(0, lit.start - 200):lit.start])
                    and re.match(r"\s*[,)]", masked[lit.end:lit.end + 200])):
                continue
            depth, k = 0, lit.start - 1  # find the "(" of the enclosing call
            while k > func.body_start:
                if masked[k] == ")":
                    depth += 1
                elif masked[k] == "(":
                    if depth == 0:
                        break
                    depth -= 1
                k -= 1
            window_start = max(func.body_start, k - 200)
            callee_match = re.search(r"(\w+)\s*(?:<[^<>();]*>)?\s*\Z", masked[window_start:k])
            if not callee_match:
                continue
            callee, call_start = callee_match.group(1), window_start + callee_match.start(1)
            if callee not in lambdas and not any(f.short == callee for f in funcs.values()):
                continue
            close = _matching(masked, k, "(", ")")
            args = _split_args(masked[k + 1:close])
            destination = None
            if callee in ("getAndDelOption", "getAndDelNegOption") and len(args) == 3 and re.fullmatch(r"\w+", args[2]):
                destination = args[2]
            line = bisect.bisect_right(line_starts, lit.start) - 1
            statement = masked[max(func.body_start, call_start - 200):call_start]
            repeatable = callee == "getAndDelRepeatedOption" or bool(re.search(r"\bwhile\s*\(\s*\Z", statement))
            uses.append(OptionUse(lit.value, callee, fname, call_start, close, destination, line_tags[line],
                                  repeatable))
    return uses


# ---------------------------------------------------------------- what one release accepts
def _stream_text(masked: str, literals: list[Literal], start: int, end: int) -> str:
    """The text a ``os << "..." "..." << expr << std::endl`` chain prints (expressions as <...>)."""
    pieces, k = [], start
    inside = [lit for lit in literals if start <= lit.start < end]
    for lit in inside:
        between = masked[k:lit.start]
        pieces.append(_between_text(between))
        pieces.append(lit.value)
        k = lit.end
    pieces.append(_between_text(masked[k:end]))
    return "".join(pieces)


def _between_text(code: str) -> str:
    """What the code between two literals of a stream chain prints: endl, nothing, or an expression."""
    out = []
    pieces = code.split("<<")
    for index, operand in enumerate(pieces):
        operand = operand.strip()
        if "endl" in operand:
            out.append("\n")
        elif 0 < index < len(pieces) - 1 and operand and ";" not in operand:
            out.append("<...>")
    return "".join(out)


def _help_entries(text: str) -> dict[str, str]:
    """Option name (without dashes) -> its --help description, from the printed help text."""
    entries: dict[str, str] = {}
    current: list[str] = []
    for line in text.split("\n"):
        head = re.match(r" {1,4}(-{1,2}[A-Za-z]\w*)((?:\s*(?:,|or)\s*-{1,2}[A-Za-z]\w*)*)(\S*)\s*(.*)$", line)
        if head:
            names = [head.group(1)] + re.findall(r"-{1,2}[A-Za-z]\w*", head.group(2))
            current = [head.group(4).strip()]
            for name in names:
                entries[name.lstrip("-")] = current  # shared list: continuation lines extend every alias
        elif current is not None and re.match(r" {5,}\S", line):
            current.append(line.strip())
        else:
            current = []
    return {name: " ".join(part for part in desc if part) for name, desc in entries.items()}


def _enumerated_values(masked: str, literals: list[Literal], use: OptionUse, next_use: int) -> dict:
    """Literals the option's value is compared with between its parse call and the next option's."""
    exact, folded = [], []
    window = masked[use.call_start:next_use]
    lits = {lit.start - use.call_start: lit.value for lit in literals if use.call_start <= lit.start < next_use}
    for match in re.finditer(r'(toLower\s*\(\s*)?\w+\s*\)?\s*==\s*"|\.compare\s*\(\s*"', window):
        value = lits.get(match.end() - 1)
        if value is None:
            continue
        (folded if match.group(1) else exact).append(value)
    return {"exact": sorted(set(exact)), "case_insensitive": sorted(set(folded))}


def _warnings(masked: str, literals: list[Literal], use: OptionUse, func: Function) -> str | None:
    """The warning printed when the option is given (``if (getAndDel...) { gLogWarning << ... }``)."""
    before = masked[max(func.body_start, use.call_start - 200):use.call_start]
    after = masked[use.args_end + 1:func.body_end]
    block_start = None
    if re.search(r"\bif\s*\(\s*\Z", before):
        rest = re.match(r"\s*\)\s*\{", after)
        block_start = use.args_end + 1 + rest.end() - 1 if rest else None
    elif use.destination:
        rest = re.search(r"\bif\s*\(\s*" + re.escape(use.destination) + r"\s*\)\s*\{", after)
        block_start = use.args_end + 1 + rest.end() - 1 if rest else None
    if block_start is None:
        return None
    block_end = _matching(masked, block_start)
    found = re.search(r"gLogWarning\s*<<", masked[block_start:block_end])
    if not found:
        return None
    start = block_start + found.end()
    end = masked.find(";", start)
    text = _stream_text(masked, literals, start, end).replace("\n", " ")
    return re.sub(r"\s+", " ", text).strip()




@dataclass
class Release:
    version: str
    branch: str
    commit: str
    commit_date: str
    options: set[str] = field(default_factory=set)
    short_options: set[str] = field(default_factory=set)
    conditional: dict[str, str] = field(default_factory=dict)
    repeatable: set[str] = field(default_factory=set)
    values: dict[str, dict] = field(default_factory=dict)
    help: dict[str, str] = field(default_factory=dict)
    warns: dict[str, str] = field(default_factory=dict)
    value_unused: set[str] = field(default_factory=set)


def read_version(text: str) -> str:
    defines = dict(re.findall(r"^\s*#\s*define\s+(\w+)\s+(\w+)", text, re.M))

    def value(name):
        seen = 0
        while name in defines and not name.isdigit() and seen < 5:
            name, seen = defines[name], seen + 1
        return name

    return ".".join(value(f"NV_TENSORRT_{part}") for part in ("MAJOR", "MINOR", "PATCH"))


def extract_release(repo: Repo, branch: str) -> Release:
    """What ``branch`` (or ``branch@commit``, to re-read a recorded commit) accepts."""
    branch, _, pinned = branch.partition("@")
    commit = repo.resolve(pinned or branch)
    release = Release(read_version(repo.show(commit, VERSION_H)), branch, commit,
                      repo.git("show", "-s", "--format=%cs", commit).strip())
    raw_cpp = repo.show(commit, OPTIONS_CPP)
    text, line_tags = _preprocess(raw_cpp)
    masked, literals = mask(text)
    header_masked, _ = mask(_preprocess(repo.show(commit, OPTIONS_H))[0])
    funcs = functions(masked)
    members = class_members(header_masked)
    if "AllOptions::parse" not in funcs:
        raise RuntimeError(f"{branch}: no AllOptions::parse in {OPTIONS_CPP}")
    parse_funcs = reachable(["AllOptions::parse", "parseHelp"], funcs, masked, members)
    uses = option_uses(masked, literals, funcs, parse_funcs, line_tags, text)
    if not uses:
        raise RuntimeError(f"{branch}: found no option literals in the parse functions of {OPTIONS_CPP}")
    for use in uses:
        long = use.name.startswith("--")
        name = use.name[2:] if long else use.name[1:]
        if use.conditions:
            release.conditional[name] = " && ".join(use.conditions)
            continue
        (release.options if long else release.short_options).add(name)
        if use.repeatable:
            release.repeatable.add(name)
    # An option reachable both conditionally and unconditionally is simply accepted.
    for name in list(release.conditional):
        if name in release.options:
            del release.conditional[name]

    # Enumerated values: comparisons between the option's parse call and the next option's.
    starts = sorted({u.call_start for u in uses})
    for use in uses:
        name = use.name.lstrip("-")
        if name in ENUMERATED and use.callee in ("getAndDelOption",):
            later = [s for s in starts if s > use.call_start] + [funcs[use.function].body_end]
            values = _enumerated_values(masked, literals, use, min(later))
            release.values[name] = {"syntax": ENUMERATED[name], **values}
        warning = _warnings(masked, literals, use, funcs[use.function])
        if warning:
            release.warns[name] = warning

    # --help text, as AllOptions::help prints it.
    help_text = "\n".join(_stream_text(masked, literals, funcs[f].body_start + 1, funcs[f].body_end)
                        for f in reachable(["AllOptions::help"], funcs, masked, members)
                        if funcs[f].short.startswith("help"))
    release.help = _help_entries(help_text)

    # Accepted but not acted on: the variable an option is parsed into is read nowhere in
    # samples/common and samples/trtexec (unit tests excluded) besides its parse call and declaration.
    identifiers: Counter[str] = Counter()
    for path in repo.files(commit, "samples/common", "samples/trtexec"):
        if path.endswith((".cpp", ".h", ".cu")) and ".test." not in path:
            source_masked, _ = mask(_preprocess(raw_cpp if path == OPTIONS_CPP else repo.show(commit, path))[0])
            if path == OPTIONS_CPP:
                # blank the parse calls themselves, so only other reads count
                chars = list(source_masked)
                for use in uses:
                    chars[use.call_start:use.args_end + 1] = " " * (use.args_end + 1 - use.call_start)
                source_masked = "".join(chars)
            if path == OPTIONS_H:
                # drop member declarations ("bool stronglyTyped{true};"), keep everything else
                declaration = re.compile(r"\s*(?:[\w:<>,]+\s+)+\w+\s*(?:\{[^{};]*\})?\s*;\s*")
                source_masked = "\n".join("" if declaration.fullmatch(line) else line
                                           for line in source_masked.split("\n"))
            identifiers.update(re.findall(r"[A-Za-z_]\w*", source_masked))
    for use in uses:
        if use.destination and use.callee in ("getAndDelOption", "getAndDelNegOption") and not use.conditions:
            if identifiers[use.destination] == 0:
                release.value_unused.add(use.name.lstrip("-"))
    return release


# ---------------------------------------------------------------- the JSON
def _version_key(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in text.split("."))


def release_entry(release: Release, previous: Release | None, extracted_on: str) -> dict:
    accepted = release.options
    documented = {n for n in release.help if n not in release.short_options}
    deprecated = {}
    for name, description in release.help.items():
        marker = description.find("[Deprecated]")
        sentences = ([description[marker:]] if marker >= 0 else
                     [s for s in re.split(r"(?<=[.)])\s+", description) if "deprecat" in s.lower()])
        if name in accepted and sentences:
            deprecated[name] = " ".join(sentences)
    entry = {
        "provenance": {
            "repository": REPOSITORY,
            "branch": release.branch,
            "commit": release.commit,
            "commit_date": release.commit_date,
            "files": [OPTIONS_CPP, OPTIONS_H, VERSION_H],
            "extracted_on": extracted_on,
        },
        "options": sorted(accepted),
        "short_options": sorted(release.short_options),
        "repeatable": sorted(release.repeatable),
        "values": {name: release.values[name] for name in sorted(release.values)},
        "conditional_options": dict(sorted(release.conditional.items())),
        "not_in_help": sorted(accepted - documented),
        "help_only": sorted(documented - accepted - set(release.conditional)),
        "deprecated_in_help": dict(sorted(deprecated.items())),
        "warns_when_given": dict(sorted(release.warns.items())),
        "value_never_read": sorted(release.value_unused),
    }
    if previous is not None:
        entry["changes"] = {
            "since": f"{previous.version} ({previous.branch})",
            "added": sorted(accepted - previous.options),
            "removed": sorted(previous.options - accepted),
        }
    entry["notes"] = _notes(release, previous, entry)
    return entry


def _notes(release: Release, previous: Release | None, entry: dict) -> dict[str, str]:
    """One sentence per watched flag whose status is not plain "accepted"."""
    notes = {}
    for name in WATCHED:
        parts = []
        if name not in release.options:
            if previous is not None and name in previous.options:
                was = previous.warns.get(name)
                parts.append(f"removed: {previous.version} parsed it" + (f" (warning: {was!r})" if was else "")
                             + f", {release.version} does not, so trtexec stops with 'Unknown option: --{name}'")
            else:
                continue
        else:
            if name in entry["value_never_read"]:
                parts.append("accepted but ignored: the value it is parsed into is read nowhere in samples/"
                             + ("" if name in release.warns else ", and no warning is printed"))
            if name in release.warns:
                parts.append(f"may warn: {release.warns[name]!r}")
            if name in entry["deprecated_in_help"]:
                parts.append(f"--help: {entry['deprecated_in_help'][name]!r}")
            if name in release.values:
                values = release.values[name]
                folded = [f"{v} (any case)" for v in values["case_insensitive"]]
                parts.append("values: " + ", ".join(values["exact"] + folded))
        if parts:
            notes[name] = "; ".join(parts)
    return notes


def build_document(repo: Repo, branches=DEFAULT_BRANCHES, baseline: str | None = BASELINE_BRANCH,
                   extracted_on: str | None = None) -> dict:
    extracted_on = extracted_on or datetime.date.today().isoformat()
    releases = sorted((extract_release(repo, b) for b in branches), key=lambda r: _version_key(r.version))
    versions = [r.version for r in releases]
    if len(set(versions)) != len(versions):
        raise RuntimeError(f"two branches report the same release: {versions}")
    previous = extract_release(repo, baseline) if baseline else None
    document = {
        "about": (
            "Options the trtexec of each TensorRT release accepts, extracted from NVIDIA's source by "
            "tests/tools/extract_trtexec_options.py (run it to regenerate; its docstring says how it reads the "
            "source). 'options': long names (--name) erased by AllOptions::parse, so accepted; anything else "
            "makes trtexec print 'Unknown option' and fail. 'values': accepted values of enumerated options "
            "(exact, or compared after lower-casing). 'value_never_read': accepted, but the variable it is "
            "parsed into is read nowhere in samples/ (static scan). 'changes' compares with the release listed "
            "before it (the first with the baseline branch). Keys of 'releases' are NV_TENSORRT_MAJOR.MINOR.PATCH "
            "of include/NvInferVersion.h."
        ),
        "baseline": None if previous is None else {
            "release": previous.version, "branch": previous.branch, "commit": previous.commit,
            "commit_date": previous.commit_date,
        },
        "releases": {},
    }
    for release in releases:
        document["releases"][release.version] = release_entry(release, previous, extracted_on)
        previous = release
    return document


def without_dates(document: dict) -> dict:
    """The document minus 'extracted_on', for comparing two extractions."""
    copy = json.loads(json.dumps(document))
    for entry in copy.get("releases", {}).values():
        entry.get("provenance", {}).pop("extracted_on", None)
    return copy


def dump(document: dict) -> str:
    return json.dumps(document, indent=1, ensure_ascii=False) + "\n"


DEFAULT_OUTPUT = Path(__file__).resolve().parents[2] / "deploylab" / "backends" / "tensorrt" / "trtexec_options.json"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("repo", help="a clone or mirror of github.com/NVIDIA/TensorRT")
    parser.add_argument("--branches", nargs="+", default=list(DEFAULT_BRANCHES))
    parser.add_argument("--baseline", default=BASELINE_BRANCH, help="branch the first release is compared with")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--check", action="store_true", help="compare with --output instead of writing it")
    args = parser.parse_args(argv)
    document = build_document(Repo(args.repo), args.branches, args.baseline or None)
    if args.check:
        committed = json.loads(args.output.read_text())
        if without_dates(committed) != without_dates(document):
            print(f"{args.output} differs from what {args.repo} gives; rerun without --check", file=sys.stderr)
            return 1
        print(f"{args.output} matches {args.repo}")
        return 0
    args.output.write_text(dump(document))
    print(f"wrote {args.output}: releases {', '.join(document['releases'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
