"""What every deploylab command shares: exit codes, the one-line parser error, the DEGENERATE line."""

from __future__ import annotations

import argparse
import math
import os

from deploylab.errors import DeployLabError

#: 0 ok, 1 a check ran and failed, 2 bad input (one line says which and what to do),
#: 3 an error deploylab did not foresee (one line; DEPLOYLAB_DEBUG=1 keeps the traceback in a log).
EXIT_OK, EXIT_CHECK_FAILED, EXIT_BAD_INPUT, EXIT_INTERNAL = 0, 1, 2, 3


class Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse prints usage + message; keep it to one line
        self.exit(EXIT_BAD_INPUT, f"deploylab: error: {message} (see `{self.prog} --help`)\n")


def cannot_judge(reason: str) -> str:
    """The line a user sees for a DEGENERATE verdict: why the check cannot judge, what to do."""
    return (f"DEGENERATE, cannot judge: {reason} (--checkpoint FILE; for a seeded torchvision model "
            "--reference-init realistic, the default, when exporting and comparing)")


#: Bounds the command line states for sizes and counts (beyond them a run only exhausts memory or
#: oversubscribes the CPU): batch sizes, requests in flight, threads per runner.
MAX_BATCH = 4096
MAX_CONCURRENCY = 64
MAX_THREADS = 4 * (os.cpu_count() or 1)


def check_threads(threads: int | None) -> None:
    """Refuse a thread count over :data:`MAX_THREADS`, saying why."""
    if threads is not None and threads > MAX_THREADS:
        raise DeployLabError(f"--threads must be at most {MAX_THREADS} (4 x this machine's {os.cpu_count() or 1} "
                             f"logical CPUs; more only oversubscribe the cores), got {threads}")


def int_in(low: int, high: int, unit: str = ""):
    """An argparse ``type`` for an integer from ``low`` to ``high``; the error states the bounds."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be an integer from {low} to {high}{unit}, got {value}")
        return value

    return parse


def tolerance(text: str) -> float:
    """An argparse ``type`` for a tolerance: a finite number >= 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"a tolerance must be a finite number >= 0, got {text}")
    return value


def parse_sizes(text: str, what: str = "--batch", high: int = MAX_BATCH) -> tuple[int, ...]:
    """``"1,8,32"`` -> ``(1, 8, 32)``: positive integers, duplicates dropped, order kept.

    ``what`` names the option in the error (``--batch``, ``--concurrency``). The
    benchmark scripts parse their ``--batch`` with it too.
    """
    sizes = []
    for part in str(text).split(","):
        try:
            value = int(part.strip())
        except ValueError:
            raise DeployLabError(f"{what} {text!r} must be comma-separated positive integers, e.g. 1,8,32") from None
        if value < 1:
            raise DeployLabError(f"{what} {text!r} contains {value}; sizes must be at least 1")
        if value > high:
            raise DeployLabError(f"{what} {text!r} contains {value}; sizes must be at most {high}")
        if value not in sizes:
            sizes.append(value)
    return tuple(sizes)
