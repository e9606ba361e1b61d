"""deploylab's one logger: short lines on stderr, prefixed so a reader knows the source."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
from collections.abc import Iterator

logger = logging.getLogger("deploylab")
if not logger.handlers:
    _handler = logging.StreamHandler()
    _handler.setFormatter(logging.Formatter("[deploylab] %(message)s"))
    logger.addHandler(_handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False


_announced: set[str] = set()


def announce(message: str) -> None:
    """Tell the user something they must know about the result: one line on stderr, once per process."""
    if message not in _announced:
        _announced.add(message)
        logger.warning(message)


def info(message: str) -> None:
    """Progress or context a user may want to see."""
    logger.info(message)


@contextlib.contextmanager
def logger_level(target: logging.Logger, level: int) -> Iterator[None]:
    """``target`` at ``level`` inside the block, its own level again after."""
    previous = target.level
    target.setLevel(level)
    try:
        yield
    finally:
        target.setLevel(previous)


def info_held():
    """Hold back :func:`info` lines inside the block (announcements still print): for a caller
    that reports the same fact itself, e.g. ``tune``'s table naming a precision a CPU lacks."""
    return logger_level(logger, logging.WARNING)


@contextlib.contextmanager
def native_output(enabled: bool = True) -> Iterator[list[str]]:
    """Collect what C++ code writes to file descriptors 1 and 2 (Python's redirects cannot see it)."""
    sink: list[str] = []
    if not enabled:
        yield sink
        return
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(AttributeError, OSError, ValueError):
            stream.flush()
    saved = {fd: os.dup(fd) for fd in (1, 2)}
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        for fd in saved:
            os.dup2(tmp.fileno(), fd)
        try:
            yield sink
        finally:
            for fd, copy in saved.items():
                os.dup2(copy, fd)
                os.close(copy)
            tmp.seek(0)
            sink.append(tmp.read().decode("utf-8", "replace"))
