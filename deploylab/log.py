"""deploylab's one logger: short lines on stderr, prefixed so a reader knows the source."""

from __future__ import annotations

import logging

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
