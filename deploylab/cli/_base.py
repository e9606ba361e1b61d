"""What every deploylab command shares: exit codes, the one-line parser error, the DEGENERATE line."""

from __future__ import annotations

import argparse

from deploylab.errors import DeployLabError

EXIT_OK, EXIT_CHECK_FAILED, EXIT_BAD_INPUT = 0, 1, 2


class Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse prints usage + message; keep it to one line
        self.exit(EXIT_BAD_INPUT, f"deploylab: error: {message} (see `{self.prog} --help`)\n")


def cannot_judge(reason: str) -> str:
    """The line a user sees for a DEGENERATE verdict: why the check cannot judge, what to do."""
    return (f"DEGENERATE, cannot judge: {reason} (--checkpoint FILE; for a seeded torchvision model "
            "--reference-init realistic, the default, when exporting and comparing)")


def parse_sizes(text: str, what: str = "--batch") -> tuple[int, ...]:
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
        if value not in sizes:
            sizes.append(value)
    return tuple(sizes)
