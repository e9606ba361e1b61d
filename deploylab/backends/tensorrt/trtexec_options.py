"""Which options the trtexec of a TensorRT release accepts, read from NVIDIA's source.

``trtexec_options.json`` (next to this module) lists, per release, the options trtexec's
``AllOptions::parse`` consumes (samples/common/sampleOptions.cpp of NVIDIA/TensorRT; anything
else makes trtexec print "Unknown option" and fail) and the values it accepts for the
enumerated options deploylab writes (``--hardwareCompatibilityLevel``, the pool names of
``--memPoolSize``, ``--profilingVerbosity``), with the branch and commit each came from.
``tests/tools/extract_trtexec_options.py`` regenerates it from a checkout.

A version is answered by the newest release with data that is not newer than it, within the
same major version; the answer says which release that was. A version given without a patch
number ("10.13") stands for its whole minor line.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from deploylab.errors import DeployLabError

DATA_PATH = Path(__file__).with_name("trtexec_options.json")
_REGENERATE = "regenerate it with tests/tools/extract_trtexec_options.py"


@dataclass(frozen=True)
class TrtexecOptions:
    """The options of one release's trtexec. ``release`` is the release whose source answered."""

    release: str
    options: frozenset[str]  # long names, without "--"
    short_options: frozenset[str]  # single-dash names, without "-"
    repeatable: frozenset[str]
    values: Mapping[str, Mapping]  # option -> {"syntax", "exact": [...], "case_insensitive": [...]}
    notes: Mapping[str, str]
    provenance: Mapping[str, str]

    @property
    def source(self) -> str:
        """Where the list comes from: branch and commit of NVIDIA/TensorRT."""
        return f"{self.provenance['branch']} @ {self.provenance['commit'][:12]}"

    def accepts(self, flag: str) -> bool:
        """True when ``flag`` ("--name" or "-h", without a value) is an option of this trtexec."""
        if flag.startswith("--"):
            return flag[2:] in self.options
        return flag.startswith("-") and flag[1:] in self.short_options

    def rejected_values(self, name: str, value: str) -> list[str]:
        """The enumerated parts of ``--name=value`` this trtexec refuses ([] when all are accepted).

        Only enumerated options are checked (sizes, paths and shapes are not): a level for
        ``--hardwareCompatibilityLevel``, each pool name of ``--memPoolSize=pool:size,...``.
        """
        spec = self.values.get(name)
        if spec is None:
            return []
        if spec["syntax"].startswith("pool:size"):
            parts = [item.rsplit(":", 1)[0] for item in value.split(",")]
        else:
            parts = [value]
        exact, folded = set(spec["exact"]), set(spec["case_insensitive"])
        return [p for p in parts if p not in exact and p.lower() not in folded]

    def accepted_values(self, name: str) -> list[str]:
        """The values of enumerated option ``name``, as text ("ampere+ (any case)")."""
        spec = self.values.get(name, {})
        return [*spec.get("exact", []), *(f"{v} (any case)" for v in spec.get("case_insensitive", []))]


@lru_cache(maxsize=1)
def _document() -> dict:
    try:
        return json.loads(DATA_PATH.read_text())
    except FileNotFoundError:
        raise DeployLabError(f"{DATA_PATH} is missing: reinstall deploylab, or {_REGENERATE}") from None
    except json.JSONDecodeError as exc:
        raise DeployLabError(f"{DATA_PATH} is not valid JSON ({exc}); {_REGENERATE}") from None


def _key(version) -> tuple[int, int, int]:
    return version.major, version.minor, version.patch


@lru_cache(maxsize=1)
def _releases() -> list[tuple]:
    """[(TensorRTVersion, entry)] sorted by version."""
    from deploylab.backends.tensorrt import TensorRTVersion

    found = [(TensorRTVersion.parse(name), entry) for name, entry in _document()["releases"].items()]
    return sorted(found, key=lambda pair: _key(pair[0]))


def known_releases() -> list[str]:
    """The releases deploylab has trtexec option data for, oldest first."""
    return [str(version) for version, _ in _releases()]


def _options(version, entry: dict) -> TrtexecOptions:
    return TrtexecOptions(
        release=str(version),
        options=frozenset(entry["options"]),
        short_options=frozenset(entry.get("short_options", [])),
        repeatable=frozenset(entry.get("repeatable", [])),
        values=entry.get("values", {}),
        notes=entry.get("notes", {}),
        provenance=entry["provenance"],
    )


def trtexec_options(version) -> TrtexecOptions:
    """The trtexec options of ``version``: those of the newest listed release <= it, same major.

    ``version``: text ("10.13.3", "11.4") or a TensorRTVersion; without a patch number the
    whole minor line counts ("10.13" is answered by 10.13.3 when listed). Raises DeployLabError
    for a major version without data, or a version older than the oldest listed release of its
    major, naming the releases known.
    """
    from deploylab.backends.tensorrt import TensorRTVersion

    wanted = TensorRTVersion.parse(version)
    limit = _key(wanted) if getattr(wanted, "given", 3) >= 3 else (wanted.major, wanted.minor, float("inf"))
    same_major = [(v, e) for v, e in _releases() if v.major == wanted.major]
    known = ", ".join(known_releases())
    if not same_major:
        raise DeployLabError(
            f"deploylab has no trtexec option data for TensorRT {wanted} (no {wanted.major}.x release listed); "
            f"it knows releases {known}. Use one of those, or add the release's branch and {_REGENERATE}"
        )
    candidates = [(v, e) for v, e in same_major if _key(v) <= limit]
    if not candidates:
        raise DeployLabError(
            f"TensorRT {wanted} is older than {same_major[0][0]}, the oldest {wanted.major}.x release deploylab has "
            f"trtexec option data for; it knows releases {known}"
        )
    return _options(*candidates[-1])


def _history(name: str, answered: TrtexecOptions) -> str:
    """Where ``--name`` went: "removed in 11.0.0; 10.16.0 (release/10.16) accepts it", "added in 11.1.0"."""
    from deploylab.backends.tensorrt import TensorRTVersion

    here = _key(TensorRTVersion.parse(answered.release))
    removed = None
    for version, entry in _releases():
        if _key(version) <= here and name in entry.get("changes", {}).get("removed", []):
            removed = f"removed in {version}; {entry['changes']['since']} accepts it"
        if _key(version) > here and name in entry["options"]:
            return f"added in {version}"
    return removed or ""


def _value_history(name: str, value: str, answered: TrtexecOptions) -> str:
    from deploylab.backends.tensorrt import TensorRTVersion

    here = _key(TensorRTVersion.parse(answered.release))
    for version, entry in _releases():
        if _key(version) > here and not _options(version, entry).rejected_values(name, value):
            return f"; accepted from {version} on"
    return ""


def check_trtexec_flags(command: Sequence[str], version) -> TrtexecOptions:
    """Raise DeployLabError unless the trtexec of ``version`` accepts every flag of ``command``.

    ``command``: an argv list, the program first ("trtexec" or a path to it), as
    ``trtexec_command`` returns. Checks that each argument is ``--name[=value]`` (or ``-h``) with
    a name that release's trtexec parses, that no option it parses once is given twice (the
    second copy would be left over and reported as unknown), and that enumerated values are
    among the accepted ones. The message names the flag (and value) and the release whose
    trtexec lacks it. Returns the option data used, whose ``release`` says which release answered.
    """
    answered = trtexec_options(version)
    where = (f"checked for TensorRT {version} against the trtexec options of {answered.release} "
             f"({answered.source}, samples/common/sampleOptions.cpp)")
    arguments = [str(a) for a in command]
    if arguments and not arguments[0].startswith("-"):
        arguments = arguments[1:]
    seen: set[str] = set()
    profiles = any(a.split("=", 1)[0] == "--profile" for a in arguments)
    for argument in arguments:
        key, _, value = argument.partition("=")
        if not key.startswith("-") or key in ("-", "--"):
            raise DeployLabError(
                f"trtexec of TensorRT {answered.release} takes only --name[=value] options, so {argument!r} would be "
                f"reported as an unknown option; {where}"
            )
        long = key.startswith("--")
        name = key[2:] if long else key[1:]
        if not answered.accepts(key):
            history = _history(name, answered) if long else ""
            close = difflib.get_close_matches(name, sorted(answered.options), n=1, cutoff=0.8) if long else []
            hint = f"; did you mean --{close[0]}?" if close and close[0] != name else ""
            raise DeployLabError(
                f"trtexec of TensorRT {answered.release} has no option {key}"
                + (f" ({history})" if history else "") + f"{hint}; {where}"
            )
        shapes = name in ("minShapes", "optShapes", "maxShapes") and profiles
        if key in seen and name not in answered.repeatable and not shapes:
            raise DeployLabError(
                f"{key} is given twice; trtexec of TensorRT {answered.release} parses it once and reports the "
                f"other copy as an unknown option; {where}"
            )
        seen.add(key)
        rejected = answered.rejected_values(name, value)
        if rejected:
            raise DeployLabError(
                f"trtexec of TensorRT {answered.release} does not accept {argument} ({', '.join(map(repr, rejected))} "
                f"is not one of {', '.join(answered.accepted_values(name))}{_value_history(name, value, answered)}); "
                f"{where}"
            )
    return answered
