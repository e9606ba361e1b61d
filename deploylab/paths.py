"""Where deploylab finds its shipped assets and writes its results."""

from __future__ import annotations

import contextlib
import hashlib
import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
# The repository's data/ folder (a source checkout or an editable install); a user can
# point elsewhere with DEPLOYLAB_DATA.
DATA_DIR = Path(os.environ.get("DEPLOYLAB_DATA", PACKAGE_DIR.parent / "data"))
REPO_DIR = PACKAGE_DIR.parent


@contextlib.contextmanager
def replace_when_done(path: str | Path, suffix: str = ""):
    """Yield a temporary path beside ``path`` (``.<name>.partial<suffix>``) and rename it onto
    ``path`` only when the block completes: a reader never sees half a file, and a failed or
    interrupted write leaves what was there before. ``suffix`` keeps an extension a writer needs."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial{suffix}")
    try:
        yield partial
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def write_atomically(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through :func:`replace_when_done`."""
    with replace_when_done(path) as partial:
        partial.write_bytes(data)


def output_dir(*parts: str) -> Path:
    """Folder for results and artifacts (created): ``$DEPLOYLAB_OUT`` or ``build/results``.

    ``make course`` points it at ``build/course/results`` so executed notebooks and their
    JSON/CSV/PNG results end up side by side.
    """
    base = Path(os.environ.get("DEPLOYLAB_OUT", REPO_DIR / "build" / "results"))
    path = base.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def sha256_file(path: str | Path) -> str:
    """The hex sha256 of a file, read in 1 MiB blocks (models run to gigabytes)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def refuse_overwriting_inputs(output: str | Path, *inputs: str | Path | None, flag: str = "-o") -> None:
    """Refuse an output path that is one of the run's inputs (``quantize m.onnx -o m.onnx``): the
    run would replace the file it reads, and a failure would leave neither."""
    from deploylab.errors import DeployLabError

    target = Path(output)
    for source in inputs:
        if source is None:
            continue
        source = Path(source)
        same = source.resolve() == target.resolve() or (
            source.exists() and target.exists() and os.path.samefile(source, target))
        if same:
            raise DeployLabError(f"{flag} {str(target)!r} is the input {str(source)!r}: deploylab does not replace a "
                                 "file it reads; write the output to another path")
