"""The build phase's one report and one build record (sidecar) format, for every backend.

A build (OpenVINO IR, TensorRT plan) writes its artifact and a JSON record beside it saying
what it was built from and how; a later run reads the record to reuse the artifact or to refuse
one this machine cannot run. Every record carries a ``format`` tag naming the backend and the
record's version, so a record of another backend, or of an older deploylab, is never trusted.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from deploylab.errors import DeployLabError
from deploylab.paths import read_json_object, write_atomically

#: The tag each backend writes into its records; a record with another tag is not read.
RECORD_FORMATS = {
    "openvino": "deploylab-openvino-ir/1",
    "tensorrt": "deploylab-tensorrt-plan/1",
}


# A record is named after its artifact plus this suffix (m.xml -> m.xml.deploylab.json): no user file
# has such a name, so writing or replacing a record never touches one (m.json, results.json are theirs).
RECORD_SUFFIX = ".deploylab.json"


def record_path_for(artifact: str | Path) -> Path:
    """Where the build record of ``artifact`` lives: ``<artifact>.deploylab.json`` beside it."""
    artifact = Path(artifact)
    return artifact.with_name(artifact.name + RECORD_SUFFIX)


def write_record(path: str | Path, backend: str, record: dict) -> Path:
    """Write ``record`` (with its format tag first) to ``path`` atomically; returns the path."""
    path = Path(path)
    tagged = {"format": RECORD_FORMATS[backend], **{k: v for k, v in record.items() if k != "format"}}
    write_atomically(path, (json.dumps(tagged, indent=2) + "\n").encode("utf-8"))
    return path


def read_record(path: str | Path, backend: str, rebuild_hint: str) -> dict | None:
    """The record at ``path``, None when there is none; a record that is not JSON or carries
    another format tag raises a :class:`DeployLabError` naming the file and ``rebuild_hint``."""
    path = Path(path)
    if not path.exists():
        return None
    record = read_json_object(path, "build record", f"delete it or {rebuild_hint}")
    wanted = RECORD_FORMATS[backend]
    if not isinstance(record, dict) or record.get("format") != wanted:
        raise DeployLabError(f"{str(path)!r} is not a deploylab {backend} build record (format {wanted}); "
                             f"{rebuild_hint}")
    return record


@dataclass
class BuildReport:
    """What a build phase did, for every backend.

    ``artifact``: the file built (or reused); ``record_path``/``record``: its build record as
    written; ``facts``: the backend's own summary (TensorRT: version, precision, profiles, plan
    bytes, timing cache; OpenVINO: input shapes); ``notes``: what the build said.
    """

    backend: str
    artifact: Path
    record_path: Path
    seconds: float
    record: dict = field(default_factory=dict)
    reused: bool = False
    facts: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    # The names the course and its tests have always used for these.
    @property
    def xml_path(self) -> Path:
        return self.artifact

    @property
    def engine_path(self) -> Path:
        return self.artifact

    @property
    def sidecar(self) -> dict:
        return self.record

    @property
    def sidecar_path(self) -> Path:
        return self.record_path

    @property
    def input_shapes(self) -> dict[str, str]:
        return self.facts.get("input_shapes", {})

    @property
    def engine_bytes(self) -> int:
        return self.facts.get("engine_bytes", self.artifact.stat().st_size if self.artifact.is_file() else 0)

    @property
    def timing_cache_saved(self) -> bool:
        return bool(self.facts.get("timing_cache_saved"))

    def format(self) -> str:
        label = {"openvino": "OpenVINO IR", "tensorrt": "TensorRT plan"}.get(self.backend, self.backend)
        shapes = ", ".join(f"{k}: {v}" for k, v in self.input_shapes.items())
        where = f"{self.artifact} ({shapes})" if shapes else str(self.artifact)
        return f"{label} {'reused' if self.reused else 'built'} in {self.seconds:.2f} s: {where}"

    def to_dict(self) -> dict:
        """Flat JSON-ready view: the common fields, then the backend's facts."""
        return {"backend": self.backend, "artifact": str(self.artifact), "record_path": str(self.record_path),
                "seconds": self.seconds, "reused": self.reused, "notes": list(self.notes), **self.facts}
