"""Errors a person can act on: bad input and failed writes, each one line.

Library code raises these where the cause is the caller's input (a missing
path, a pattern matching nothing, a folder of the wrong kind, a preset that
does not match a checkpoint) or the machine (a full disk, a read-only path);
the console scripts (`l3.core.cli.run`) print them as
`l3-export: error: <message>` without a traceback. Anything else is a bug and
keeps its traceback.
"""

import errno
import os
from typing import Optional


class UsageError(ValueError):
    """Bad input the user can fix; the message names the path or flag (exit status 2)."""


class MissingInputError(UsageError, FileNotFoundError):
    """A path the job reads does not exist (a `FileNotFoundError` too)."""


class DamagedShardError(UsageError):
    """An input shard is damaged on disk (truncated, a CRC mismatch); the message names it."""


class WriteError(OSError):
    """A write failed for a reason outside the program (full disk, no permission); exit 1.

    The message names the path and the cause: "cannot write out/x.tfrecord: No space left
    on device". The partial file has already been removed when this is raised.
    """


# Causes of a failed write that are the machine's, not the program's.
WRITE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS,
                errno.EFBIG, errno.EIO, errno.ENOTDIR, errno.EISDIR)


def write_error(path: str, cause: BaseException) -> WriteError:
    """A `WriteError` naming `path` and the cause (an OSError or a TensorFlow error); its
    `errno` is the cause's (ENOSPC for TensorFlow's ResourceExhaustedError)."""
    error = WriteError(f"cannot write {os.fspath(path)}: {describe(cause)}")
    error.errno = getattr(cause, "errno", None) or (
        errno.ENOSPC if type(cause).__name__ == "ResourceExhaustedError" else None)
    return error


def is_disk_full(e: BaseException) -> bool:
    """A write failed for lack of space (a job writing more can stop: the next write fails too)."""
    return isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT)


def describe(cause: BaseException) -> str:
    """A short cause: OSError's strerror, a TensorFlow error's message without its op trace."""
    if isinstance(cause, OSError) and cause.strerror:
        return cause.strerror
    message = getattr(cause, "message", None) or str(cause)
    return message.strip().splitlines()[0] if message.strip() else type(cause).__name__


def is_write_failure(e: BaseException) -> bool:
    """True for an OSError with a machine-side errno, or TensorFlow's equivalents.

    TensorFlow's file writers report ENOSPC as `ResourceExhaustedError` and
    EACCES/EROFS as `PermissionDeniedError`/`FailedPreconditionError`; the
    check goes by class name so that this module does not import TensorFlow.
    """
    if isinstance(e, OSError):
        return e.errno in WRITE_ERRNOS
    name = type(e).__name__
    return name in ("ResourceExhaustedError", "PermissionDeniedError") or (
        name in ("FailedPreconditionError", "UnknownError", "InternalError")
        and _mentions_write_cause(str(e)))


def _mentions_write_cause(message: str) -> bool:
    lowered = message.lower()
    return any(s in lowered for s in ("no space left", "read-only file system", "permission denied",
                                      "quota exceeded"))


def check_writable_dir(path: str, what: Optional[str] = None) -> None:
    """Raises UsageError if `path` exists and is not a folder (`what` names it, e.g. a flag)."""
    label = what or os.fspath(path)
    if os.path.exists(path) and not os.path.isdir(path):
        raise UsageError(f"{label} is a file, not a folder")
