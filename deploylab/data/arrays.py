"""Reading arrays a user hands over (.npy, .npz) without running code and with one-line errors.

``np.load`` raises a different type for each way a file can be wrong: ``EOFError`` for an
empty ``.npy``, ``zipfile.BadZipFile`` for a corrupt ``.npz``, ``ValueError`` for a pickled
(object) array refused by ``allow_pickle=False``, ``OSError`` for unreadable bytes, and a malformed header whatever numpy's header parser raises
(``SyntaxError``, ``tokenize.TokenError``). With ``allow_pickle=False`` nothing in the file runs,
so every exception means "not readable", and becomes a :class:`DeployLabError` naming the file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from deploylab.errors import DeployLabError
from deploylab.text import first_line

def _check_file(path: Path, what: str) -> None:
    if not path.exists():
        raise DeployLabError(f"{what} {str(path)!r} does not exist")
    if not path.is_file():
        raise DeployLabError(f"{what} {str(path)!r} is not a file; give the path of an .npy/.npz file")


def load_npy(path: str | Path, what: str = "input file") -> np.ndarray:
    """The array in the ``.npy`` file at ``path`` (never unpickled)."""
    path = Path(path)
    _check_file(path, what)
    try:
        array = np.load(path, allow_pickle=False)
    except Exception as exc:  # noqa: BLE001 - see the module docstring: any failure means unreadable
        reason = "the file is empty" if path.stat().st_size == 0 else first_line(exc, limit=160)
        raise DeployLabError(f"{what} {str(path)!r} is not a readable .npy array ({reason}); "
                             "save it with numpy.save(path, array)") from exc
    if not isinstance(array, np.ndarray):
        raise DeployLabError(f"{what} {str(path)!r} is not a .npy array; save it with numpy.save(path, array)")
    return array


def load_npz(path: str | Path, what: str = "input file") -> dict[str, np.ndarray]:
    """Every array in the ``.npz`` archive at ``path``, by name (never unpickled)."""
    path = Path(path)
    _check_file(path, what)
    try:
        with np.load(path, allow_pickle=False) as archive:
            if not hasattr(archive, "keys"):
                raise ValueError("it holds a single array, not an archive")
            return {k: archive[k] for k in archive.keys()}
    except Exception as exc:  # noqa: BLE001 - see the module docstring: any failure means unreadable
        reason = "the file is empty" if path.stat().st_size == 0 else first_line(exc, limit=160)
        raise DeployLabError(f"{what} {str(path)!r} is not a readable .npz archive ({reason}); "
                             "save it with numpy.savez(path, name=array)") from exc
