"""Where deploylab finds its shipped assets and writes its results."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import uuid
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
# The repository's data/ folder (a source checkout or an editable install); a user can
# point elsewhere with DEPLOYLAB_DATA.
DATA_DIR = Path(os.environ.get("DEPLOYLAB_DATA", PACKAGE_DIR.parent / "data"))
REPO_DIR = PACKAGE_DIR.parent


# errno values that can only come from writing (a full disk, a read-only file system), and all that mean
# "this output cannot be written here" when writing one (not a bug): each said in one line.
DISK_ERRNOS = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT, errno.EROFS}
WRITE_ERRNOS = DISK_ERRNOS | {errno.EACCES, errno.EPERM,
                 errno.EISDIR, errno.ENOTDIR, errno.ENOENT, errno.ENAMETOOLONG}


def partial_name(path: Path, suffix: str = "") -> Path:
    """A temporary name beside ``path`` that no other writer (process or thread) uses at the same time."""
    return path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.partial{suffix}")


def cannot_write(path: str | Path, exc: OSError):
    """The one-line error for an output that cannot be written (disk full, read-only, a folder...)."""
    from deploylab.errors import DeployLabError

    reason = exc.strerror or str(exc)
    return DeployLabError(f"cannot write {str(path)!r} ({reason}); choose a writable path with free space "
                          "(nothing was replaced)")


def check_output_path(path: str | Path) -> Path:
    """Refuse an output path that is a folder, or whose parent is a file, before any work is done."""
    from deploylab.errors import DeployLabError

    path = Path(path)
    if path.is_dir():
        raise DeployLabError(f"output {str(path)!r} is a folder; give a file path inside it")
    parent = next((p for p in path.parents if p.exists()), None)
    if parent is not None and not parent.is_dir():
        raise DeployLabError(f"cannot write {str(path)!r}: {str(parent)!r} is a file, not a folder")
    return path


@contextlib.contextmanager
def replace_when_done(path: str | Path, suffix: str = ""):
    """Yield a temporary path beside ``path`` (``.<name>.<pid>-<random>.partial<suffix>``) and rename
    it onto ``path`` only when the block completes: a reader never sees half a file, a failed or
    interrupted write leaves what was there before, and concurrent writers each rename a complete
    file (the last one wins). ``suffix`` keeps an extension a writer needs. An ``OSError`` that means
    the output cannot be written (disk full, read-only, a folder) becomes a one-line DeployLabError."""
    path = check_output_path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise cannot_write(path, exc) from None
    partial = partial_name(path, suffix)
    try:
        yield partial
        os.replace(partial, path)
    except OSError as exc:
        if exc.errno in WRITE_ERRNOS:
            raise cannot_write(path, exc) from None
        raise
    finally:
        partial.unlink(missing_ok=True)


@contextlib.contextmanager
def signals_held():
    """Hold SIGINT and SIGTERM (delivered when the block ends) while a few renames that belong together
    run: an interrupt then comes before or after all of them, never between (no torn .xml/.bin pair)."""
    import signal

    held = {signal.SIGINT, signal.SIGTERM}
    try:
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    except (AttributeError, OSError):  # no POSIX signal masks here
        yield
        return
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


@contextlib.contextmanager
def replace_with_siblings_when_done(path: str | Path):
    """Like :func:`replace_when_done` for a writer that also writes files beside its output (an ONNX
    file's external data, named after it): yield ``path``'s name inside a temporary folder beside it;
    when the block completes, move the siblings into place, then the file itself. A failure leaves
    what was there before and removes the folder."""
    import shutil

    path = check_output_path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        folder = partial_name(path)
        folder.mkdir()
    except OSError as exc:
        raise cannot_write(path, exc) from None
    try:
        yield folder / path.name
        with signals_held():
            for sibling in sorted(folder.iterdir(), key=lambda p: p.name == path.name):  # the file itself last
                os.replace(sibling, path.parent / sibling.name)
    except OSError as exc:
        if exc.errno in WRITE_ERRNOS:
            raise cannot_write(path, exc) from None
        raise
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def directory_lock(directory: str | Path):
    """Hold an exclusive lock on ``directory`` (``flock`` on the folder itself, so no lock file is
    left behind) while writers that must not interleave (e.g. two builds of one IR) run."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock, the temporary names still keep each file whole
        yield
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


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


def read_json_object(path: str | Path, what: str, fix: str) -> dict:
    """The JSON object in the file at ``path``; a :class:`DeployLabError` naming ``what`` and
    saying ``fix`` when it is missing, a folder, not UTF-8, not JSON, or JSON but not an object."""
    import json

    from deploylab.errors import DeployLabError

    path = Path(path)
    if not path.exists():
        raise DeployLabError(f"{what} {str(path)!r} does not exist; {fix}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except IsADirectoryError:
        raise DeployLabError(f"{what} {str(path)!r} is a folder, not a JSON file; {fix}") from None
    except UnicodeDecodeError:
        raise DeployLabError(f"{what} {str(path)!r} is not UTF-8 text; {fix}") from None
    except ValueError as exc:
        raise DeployLabError(f"{what} {str(path)!r} is not valid JSON ({exc}); {fix}") from None
    except RecursionError:
        raise DeployLabError(f"{what} {str(path)!r} nests deeper than Python's JSON reader goes; {fix}") from None
    except OSError as exc:
        raise DeployLabError(f"{what} {str(path)!r} cannot be read ({exc.strerror or exc}); {fix}") from None
    if not isinstance(data, dict):
        raise DeployLabError(f"{what} {str(path)!r} holds JSON {type(data).__name__}, not an object; {fix}")
    return data


def save_figure(fig, path: str | Path, **savefig_kwargs) -> Path:
    """Save a matplotlib figure to ``path`` atomically, in the format its extension names; an
    extension matplotlib cannot write (``g.txt``) is a :class:`DeployLabError` listing the ones it can."""
    from deploylab.errors import DeployLabError

    path = Path(path)
    formats = fig.canvas.get_supported_filetypes()
    kind = path.suffix.lower().lstrip(".")
    if kind not in formats:
        raise DeployLabError(f"cannot draw to {str(path)!r}: the extension names no image format matplotlib writes; "
                             f"use one of {', '.join('.' + k for k in sorted(formats))} (e.g. .png)")
    with replace_when_done(path) as partial:
        fig.savefig(partial, format=kind, **savefig_kwargs)
    return path
