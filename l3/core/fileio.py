"""Atomic file writes and digests: the one place results, sidecars and caches are written.

Every file the project produces under a final name is written to a temporary
file in the same directory, flushed and fsynced, then renamed over the final
name (`os.replace` is atomic on POSIX within one filesystem). A crash, a kill
or a full disk therefore leaves either the old file or the new one, never a
truncated one; on any error the temporary file is removed and the error
propagates (a full disk or a permission error as `l3.core.errors.WriteError`,
an OSError, naming the final path). The temporary name is `l3.core.temps`'s
(`.<name>.tmp.l3-<host>-<pid>-<hex>`): a SIGTERM or SIGINT removes it, and a
later write into the same folder removes those a SIGKILLed run left.

    with atomic_write("out/result.json", "w") as f:
        f.write("...")
    write_json("out/result.json", {"accuracy": np.float32(0.9)})
"""

import contextlib
import hashlib
import json
import os
from typing import IO, Iterable, Iterator

import numpy as np

from l3.core import errors, temps


@contextlib.contextmanager
def atomic_write(path: str, mode: str = "w", encoding: str = "utf-8") -> Iterator[IO]:
    """Opens a temporary sibling of `path`; on success renames it to `path`.

    Creates the parent directory if needed. `mode` is "w" (text) or "wb". The file
    gets the permissions `open(path, "w")` would give it (0666 less the umask), not
    the temporary's owner-only 0600, so that others can read a shared output folder.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"mode must be 'w' or 'wb', got {mode!r}")
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(folder, exist_ok=True)
        fd, tmp = temps.new_file(path)
    except OSError as e:
        if errors.is_write_failure(e):
            raise errors.write_error(path, e) from e
        raise
    try:
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": encoding})) as f:
            yield f
            f.flush()
            os.fchmod(f.fileno(), 0o666 & ~_umask())
            os.fsync(f.fileno())
        os.replace(tmp, path)
        temps.forget(tmp)
    except BaseException as e:
        temps.discard(tmp)
        if isinstance(e, OSError) and not isinstance(e, errors.WriteError) \
                and errors.is_write_failure(e):
            raise errors.write_error(path, e) from e
        raise


@contextlib.contextmanager
def atomic_path(path: str) -> Iterator[str]:
    """A path to write `path` through, for writers that open the file themselves (Keras
    `.save`, `tf.io.TFRecordWriter`, which also want the final name's extension).

    Yields `<temporary folder beside path>/<path's base name>`; when the block ends
    normally the file there is renamed to `path` (atomic), and the folder is removed
    in any case. A failed write with a machine-side cause (full disk, permissions;
    OSError or TensorFlow's equivalents) becomes a `WriteError` naming `path`.
    """
    path = os.fspath(path)
    try:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        folder = temps.new_dir(path)
    except OSError as e:
        if errors.is_write_failure(e):
            raise errors.write_error(path, e) from e
        raise
    try:
        yield os.path.join(folder, os.path.basename(path))
        os.replace(os.path.join(folder, os.path.basename(path)), path)
    except BaseException as e:
        if errors.is_write_failure(e) and not isinstance(e, errors.WriteError):
            raise errors.write_error(path, e) from e
        raise
    finally:
        temps.discard(folder)


def _umask() -> int:
    """The process's umask (reading it means setting it; restored at once)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def json_default(o):
    """`json.dump(default=...)` for numpy scalars and arrays."""
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"{type(o).__name__} is not JSON serialisable")


def write_json(path: str, obj, *, indent: int = 2, sort_keys: bool = False) -> None:
    """Writes `obj` as JSON (numpy values converted), atomically, with a final newline."""
    with atomic_write(path, "w") as f:
        json.dump(obj, f, indent=indent, sort_keys=sort_keys, default=json_default)
        f.write("\n")


def write_jsonl(path: str, rows: Iterable[dict], *, sort_keys: bool = True) -> None:
    """Writes one JSON object per line, atomically."""
    with atomic_write(path, "w") as f:
        for row in rows:
            f.write(json.dumps(row, sort_keys=sort_keys, default=json_default) + "\n")


def files_digest(paths: Iterable[str]) -> str:
    """sha1 over the base names and bytes of `paths` (sorted): a cache key for a set of files."""
    h = hashlib.sha1()
    for path in sorted(paths):
        h.update(os.path.basename(path).encode())
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def file_sha256(path: str) -> str:
    """sha256 hex digest of one file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def arrays_digest(arrays: Iterable[np.ndarray]) -> str:
    """sha256 of the arrays' bytes, in order: equal digests mean equal weights.

    `l3.model.weights_digest(model)` applies this to a model's variables.
    """
    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()
