"""Command-line error contract shared by every tool in ``tools/``.

An expected failure (bad input: :class:`~pe_dense.errors.PEDenseError`, a missing file, a directory where a file
was expected, no permission, ``SystemExit('message')``) prints ONE message ``error: <message>`` to stderr and exits
with status 2; ``--debug`` on the command line or ``PE_DENSE_DEBUG=1`` shows the full traceback instead. Any other
exception is a bug (ours or a library's) and keeps its traceback. Usage at the bottom of a tool::

    if __name__ == "__main__":
        from pe_dense.cli import run_cli
        sys.exit(run_cli(main))
"""
from __future__ import annotations

import os
import sys
from typing import Callable, List, Optional, Sequence

from .errors import PEDenseError

DEBUG_FLAG = "--debug"
DEBUG_ENV = "PE_DENSE_DEBUG"
EXIT_USER_ERROR = 2  # argparse's status for bad arguments: the same family of mistake
EXIT_INTERRUPTED = 130  # the shell's convention for SIGINT
# OSErrors that concern a path the user gave (str() of each names it): a file where a folder goes, and the like.
EXPECTED_ERRORS = (PEDenseError, FileNotFoundError, FileExistsError, IsADirectoryError, NotADirectoryError,
                   PermissionError)


def debug_requested(argv: Sequence[str]) -> bool:
    return DEBUG_FLAG in argv or os.environ.get(DEBUG_ENV, "").strip() not in ("", "0")


def format_error(err: BaseException) -> str:
    """``error: <message>``; a multi-line message (a key listing) keeps its lines, indented under the first."""
    text = str(err).strip() or type(err).__name__
    if isinstance(err, KeyError) and len(err.args) == 1:  # KeyError's str() is the repr of its argument
        text = str(err.args[0])
    marker = f"{type(err).__name__}: "
    if "Original Traceback (most recent call last):" in text and marker in text:
        # re-raised from a DataLoader worker: the message is the worker's traceback; keep its final message
        text = text[text.rindex(marker) + len(marker):].strip()
    first, *rest = text.splitlines()
    return "\n".join([f"error: {first}"] + ["  " + line.strip() for line in rest if line.strip()])


def run_cli(main: Callable[[Optional[List[str]]], Optional[int]], argv: Optional[Sequence[str]] = None) -> int:
    """Run ``main(argv)`` (``argv`` defaults to ``sys.argv[1:]``, ``--debug`` removed) and return its exit status,
    turning expected errors into one stderr message and status 2."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = debug_requested(argv)
    argv = [a for a in argv if a != DEBUG_FLAG]
    try:
        status = main(argv)
    except SystemExit as stop:  # argparse (already printed, status 2), sys.exit(n) or SystemExit("message")
        if isinstance(stop.code, str):
            if debug:
                raise
            sys.stderr.write(format_error(PEDenseError(stop.code)) + "\n")
            return EXIT_USER_ERROR
        return int(stop.code or 0)
    except KeyboardInterrupt:
        if debug:
            raise
        sys.stderr.write("error: interrupted\n")
        return EXIT_INTERRUPTED
    except EXPECTED_ERRORS as err:
        if debug:
            raise
        sys.stderr.write(format_error(err) + "\n")
        return EXIT_USER_ERROR
    return int(status or 0)
