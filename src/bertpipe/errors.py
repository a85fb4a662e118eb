"""The errors a user can fix: every one names the file, key or service and says what to do.

Each such error class derives from ``UserError`` (and from the builtin it always was);
the stage entry points and the ``bertpipe`` command print its message and exit with
status 1 instead of a traceback (``BERTPIPE_TRACEBACK=1`` shows it anyway). A disk or
quota that fills up is reported the same way, naming the file being written.
"""

from __future__ import annotations

import errno
import logging
import os
import sys
from collections.abc import Callable

FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


class UserError(Exception):
    """Bad input or an unreachable service, with a message that says what to fix."""


class InputError(UserError, ValueError):
    """Data or settings that do not fit together (a stage's input, a task's data, a model)."""


class MissingInputError(UserError, FileNotFoundError):
    """A stage's input that is not there; the message names it and the stage that makes it."""


def describe(e: BaseException) -> str | None:
    """The one-line report of an error a user can act on, or None for a bug."""
    if isinstance(e, UserError):
        return str(e)
    if isinstance(e, OSError) and e.errno in FULL:
        where = e.filename or "a stage output"
        return (
            f"{where}: the disk or quota is full ({os.strerror(e.errno or 0)}); free space "
            "(`dvc gc` drops unused cache entries) and run again: finished work is kept"
        )
    return None


def configure_logging() -> None:
    """The stages' and commands' log format, at ``BERTPIPE_LOG_LEVEL`` (default INFO)."""
    logging.basicConfig(
        level=os.environ.get("BERTPIPE_LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def run_main(main: Callable[[], object], log: logging.Logger) -> None:
    """Run an entry point; a user error ends it with its message and exit status 1.

    The last line names the error's class (``module.Class: message``), which is what the
    Prefect flow reads to tell a transient failure from a deterministic one.
    """
    try:
        main()
    except Exception as e:
        message = describe(e)
        if message is None or os.environ.get("BERTPIPE_TRACEBACK") == "1":
            raise
        log.error("%s", message)
        print(f"{type(e).__module__}.{type(e).__name__}: {message}", file=sys.stderr)
        sys.exit(1)
