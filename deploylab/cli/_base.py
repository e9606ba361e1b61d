"""What every deploylab command shares: exit codes, the one-line parser error, the DEGENERATE line."""

from __future__ import annotations

import argparse

EXIT_OK, EXIT_CHECK_FAILED, EXIT_BAD_INPUT = 0, 1, 2


class Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse prints usage + message; keep it to one line
        self.exit(EXIT_BAD_INPUT, f"deploylab: error: {message} (see `{self.prog} --help`)\n")


def cannot_judge(reason: str) -> str:
    """The line a user sees for a DEGENERATE verdict: why the check cannot judge, what to do."""
    return (f"DEGENERATE, cannot judge: {reason} (--checkpoint FILE; for a seeded torchvision model "
            "--reference-init realistic, the default, when exporting and comparing)")
