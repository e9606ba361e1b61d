"""The ``deploylab`` command line: thin wrappers over the package's functions.

Each command's arguments sit next to its handler, one module per group of commands
(``register(sub)`` adds them). Bad input ends with one line on stderr and exit status 2,
never a traceback; a check that runs but fails (e.g. parity outside tolerance) exits 1.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from deploylab.cli import bench, build, export, machine, quantize, run, serve, support, tune
from deploylab.cli._base import EXIT_BAD_INPUT, EXIT_CHECK_FAILED, EXIT_INTERNAL, EXIT_OK, Parser
from deploylab.errors import DeployLabError
from deploylab.paths import DISK_ERRNOS
from deploylab.text import first_line

__all__ = ["EXIT_BAD_INPUT", "EXIT_CHECK_FAILED", "EXIT_INTERNAL", "EXIT_OK", "build_parser", "main"]

# In the order `deploylab --help` lists them.
_COMMAND_GROUPS = (export, run, build, bench, quantize, tune, serve, machine, support)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="deploylab", description="Deploy PyTorch models: export, inspect, run, compare.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    for group in _COMMAND_GROUPS:
        group.register(sub)
    return parser


class Terminated(BaseException):
    """SIGTERM, raised in the main thread so that every ``finally`` and temporary folder cleans up
    as on Ctrl-C (Python's default for SIGTERM is to die on the spot, leaving partial files)."""


def _terminate(signum, frame):
    raise Terminated()


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminate) if in_main_thread else None
    try:
        return args.func(args)
    except DeployLabError as exc:
        print(f"deploylab {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("deploylab: interrupted", file=sys.stderr)
        return 130
    except Terminated:
        print("deploylab: terminated", file=sys.stderr)
        return 128 + signal.SIGTERM
    except OSError as exc:
        if exc.errno not in DISK_ERRNOS:  # e.g. an engine's temporary file on a full disk
            return _internal_error(args.command, exc)
        where = f" {exc.filename!r}" if exc.filename else " a file"
        print(f"deploylab {args.command}: error: cannot write{where} ({exc.strerror or exc}); free some space "
              "or choose a writable place (TMPDIR for temporary files)", file=sys.stderr)
        return EXIT_BAD_INPUT
    except Exception as exc:  # noqa: BLE001 - the last resort: one line, never a traceback
        return _internal_error(args.command, exc)
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous)


def _internal_error(command: str, exc: BaseException) -> int:
    """One line for an error deploylab did not turn into a message; with ``DEPLOYLAB_DEBUG`` set, the
    full traceback goes to a log file whose path the line gives."""
    import os
    import tempfile
    import traceback

    line = f"deploylab {command}: internal error: {type(exc).__name__}: {first_line(exc, limit=240)}"
    if os.environ.get("DEPLOYLAB_DEBUG"):
        handle, path = tempfile.mkstemp(prefix=f"deploylab-{command}-", suffix=".log")
        with os.fdopen(handle, "w", encoding="utf-8") as log:
            traceback.print_exception(exc, file=log)
        line += f" (traceback in {path})"
    else:
        line += " (set DEPLOYLAB_DEBUG=1 to keep the traceback in a log file; please report it)"
    print(line, file=sys.stderr)
    return EXIT_INTERNAL
