"""What every console script shares: one-line errors and early flag checks.

    def run():
        cli.run(main, "l3-export")

`run` parses the absl flags and calls `main`. Usage and input errors
(`l3.core.errors.UsageError`, `absl.app.UsageError`, a bad or missing flag) print
one line, `l3-export: error: --model_dir=runs/x does not exist`, and exit 2;
a failed write (`l3.core.errors.WriteError`, which the writers raise for
TensorFlow's errors too, or an OSError with a full-disk or permission errno) prints `l3-export: error: cannot write ...`
and exits 1. Anything else is a bug and keeps its traceback. SIGTERM, SIGINT
and SIGHUP remove the run's temporary files before the process dies of them
(`l3.core.temps`; a binary may install its own handler, as `l3-train` does for
SIGTERM).

The `check_*` helpers validate a flag's value before the job starts and name
the flag in their message.
"""

import glob
import os
import sys
from typing import Callable, List, Optional

from absl import app, flags

from l3.core import errors, temps

FLAGS = flags.FLAGS
USAGE_EXIT = 2
WRITE_EXIT = 1


def run(main: Callable, prog: str) -> None:
    """`absl.app.run(main)` with one-line errors (see the module docstring)."""
    def guarded(argv):
        try:
            return main(argv)
        except (errors.UsageError, app.UsageError) as e:
            fail(prog, str(e), USAGE_EXIT)
        except errors.WriteError as e:
            fail(prog, str(e), WRITE_EXIT)
        except OSError as e:  # full disk, permissions: the machine's, not a bug
            if not errors.is_write_failure(e):
                raise
            fail(prog, _write_message(e), WRITE_EXIT)

    def parse(argv: List[str]) -> List[str]:
        # `--help` lists the main module's flags, and absl takes the main module
        # to be `sys.argv[0]`: a console script's wrapper, not the binary's
        # module that defines them. Make them key flags of the wrapper too.
        for flag in FLAGS.get_flags_for_module(main.__module__):
            FLAGS.register_key_flag_for_module(argv[0], flag)
        try:
            return FLAGS(argv)
        except flags.Error as e:
            fail(prog, f"{e} (--helpshort lists the flags)", USAGE_EXIT)

    # ... and the usage text is `__main__`'s docstring: the binary's, please.
    wrapper = sys.modules.get("__main__")
    if wrapper is not None and not wrapper.__doc__:
        wrapper.__doc__ = sys.modules[main.__module__].__doc__
    temps.install_signal_cleanup(prog)
    app.run(guarded, flags_parser=parse)


def fail(prog: str, message: str, status: int) -> None:
    """Prints `prog: error: message` (one line) to stderr and exits with `status`."""
    line = " ".join(str(message).split())
    print(f"{prog}: error: {line}", file=sys.stderr, flush=True)
    sys.exit(status)


def _write_message(e: BaseException) -> str:
    path = getattr(e, "filename", None)
    return f"cannot write {path}: {errors.describe(e)}" if path else errors.describe(e)


def _flag(name: str) -> str:
    return f"--{name}={FLAGS[name].value}"


def check_exists(name: str, *, kind: Optional[str] = None) -> Optional[str]:
    """The value of flag `name` if it is unset or an existing path (`kind` "dir" or "file")."""
    value = FLAGS[name].value
    if value is None:
        return None
    if not os.path.exists(value):
        raise errors.MissingInputError(f"{_flag(name)} does not exist")
    if kind == "dir" and not os.path.isdir(value):
        raise errors.UsageError(f"{_flag(name)} is a file, not a folder")
    if kind == "file" and os.path.isdir(value):
        raise errors.UsageError(f"{_flag(name)} is a folder, not a file")
    return value


def check_matches(name: str) -> Optional[str]:
    """The value of flag `name` (a glob or comma list of globs) if unset or matching a file."""
    value = FLAGS[name].value
    if value is None:
        return None
    patterns = value if isinstance(value, list) else [value]
    if not any(_matches(p) for p in patterns):
        raise errors.MissingInputError(f"{_flag(name)} matches no files")
    return value


def _matches(pattern: str) -> bool:
    if "://" in pattern:  # gs://, hdfs://: tf.io.gfile's business (cost: importing TF)
        import tensorflow as tf
        return bool(tf.io.gfile.glob(pattern))
    return any(os.path.isfile(p) for p in glob.glob(os.path.expanduser(pattern)))


def check_output_dir(name: str) -> Optional[str]:
    """The value of flag `name` if unset, a folder, or not there yet (then it is created later)."""
    value = FLAGS[name].value
    if value is not None:
        errors.check_writable_dir(value, _flag(name))
    return value
