"""l3.core.temps (issue 24, item 3): SIGTERM and SIGINT remove a run's temporary files, and
a later run removes those a SIGKILLed run left, saying so in one line.

Real processes and real signals: a 10-line console script (`cli.run`, as every l3
binary) that is stopped in the middle of an atomic write. No TensorFlow: fast.
"""

import os
import signal
import subprocess
import sys
import time

import pytest

from l3.core import temps

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# argv: <mode> <path>. "block": stops mid-write (prints "writing" first); "write": writes and
# exits; "deferred": prints "in" inside deferred_signals, then finishes a rename there.
SCRIPT = """
import os, sys, time
from l3.core import cli, fileio, temps

def main(argv):
    mode, path = argv[1], argv[2]
    if mode == "deferred":
        with temps.deferred_signals():
            print("in", flush=True)
            time.sleep(1.0)
            with fileio.atomic_write(path) as f:
                f.write("done")
        time.sleep(60)
    with fileio.atomic_write(path) as f:
        f.write("new")
        if mode == "block":
            print("writing", flush=True)
            time.sleep(60)

cli.run(main, "l3-test")
"""


def _start(mode, path):
    env = dict(os.environ, PYTHONPATH=ROOT)
    return subprocess.Popen([sys.executable, "-c", SCRIPT, mode, str(path)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for(proc, word):
    line = proc.stdout.readline()
    assert line.strip() == word, (line, proc.stderr.read() if proc.poll() is not None else "")


def _tagged(folder):
    return [n for n in os.listdir(folder) if temps.NAME.match(n)]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_mid_write_removes_the_temporary_and_the_process_dies_of_it(tmp_path, sig):
    out = tmp_path / "result.txt"
    out.write_text("old")
    proc = _start("block", out)
    _wait_for(proc, "writing")
    assert len(_tagged(tmp_path)) == 1  # the temporary exists while the write is under way
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == -sig, err  # as without the handler: 128 + signal in a shell
    name = signal.Signals(sig).name
    assert err.strip().splitlines() == [f"l3-test: stopped by {name}; removed 1 temporary file"]
    assert sorted(os.listdir(tmp_path)) == ["result.txt"] and out.read_text() == "old"


def test_sigkill_leaves_the_temporary_and_the_next_run_sweeps_it(tmp_path):
    out = tmp_path / "result.txt"
    proc = _start("block", out)
    _wait_for(proc, "writing")
    proc.kill()
    proc.wait(timeout=30)
    [left] = _tagged(tmp_path)
    assert temps.NAME.match(left)["pid"] == str(proc.pid)
    # Beside it, what a sweep must leave alone: a temporary of a live process (this one)
    # written after it started, one of another host, a user's file, and a dead run's
    # temporary written after the next run started (mtime in the future). And one it
    # must remove: this process's pid, but written before this process started (a reused pid).
    now, old = time.time(), time.time() - 24 * 3600
    live = tmp_path / os.path.basename(temps.temp_path(tmp_path / "x"))
    reused = tmp_path / os.path.basename(temps.temp_path(tmp_path / "y"))
    other_host = tmp_path / left.replace(temps.HOST_TAG, "0" * 8 if temps.HOST_TAG != "0" * 8
                                         else "1" * 8)
    user_file = tmp_path / ".notes.tmp"
    fresh = tmp_path / (left[:-8] + ("f" * 8 if not left.endswith("f" * 8) else "e" * 8))
    for path, mtime in ((live, now - 1), (reused, old), (other_host, old), (user_file, old),
                        (fresh, now + 3600), (tmp_path / left, old)):
        path.write_text("x") if path.name != left else None
        os.utime(path, (mtime, mtime))

    again = _start("write", out)
    _, err = again.communicate(timeout=30)
    assert again.returncode == 0, err
    lines = [l for l in err.splitlines() if "temporary" in l]
    gone = ", ".join(sorted([left, reused.name]))
    assert len(lines) == 1 and lines[0].endswith(
        f"removed 2 temporary files left in {tmp_path} by runs that were killed: {gone}"), err
    assert sorted(os.listdir(tmp_path)) == sorted(
        ["result.txt", live.name, other_host.name, user_file.name, fresh.name])
    assert out.read_text() == "new"


def test_a_signal_inside_deferred_signals_waits_for_the_block(tmp_path):
    out = tmp_path / "done.txt"
    proc = _start("deferred", out)
    _wait_for(proc, "in")
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGTERM, err
    assert out.read_text() == "done"  # the block finished its write before the process died
    assert os.listdir(tmp_path) == ["done.txt"]


def test_handlers_set_by_others_are_left_alone():
    """The trainer's SIGTERM checkpointing and nohup's ignored SIGHUP keep working."""
    mine = lambda signum, frame: None  # noqa: E731
    saved = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    try:
        signal.signal(signal.SIGTERM, mine)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        assert temps.install_signal_cleanup("x") == ["SIGINT"]
        assert signal.getsignal(signal.SIGTERM) is mine
        assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
    finally:
        for s, h in saved.items():
            signal.signal(s, h)


def test_names_registry_and_discard(tmp_path):
    final = tmp_path / "out.npz"
    path = temps.new_name(final)
    match = temps.NAME.match(os.path.basename(path))
    assert match and match["final"] == "out.npz" and match["pid"] == str(os.getpid())
    assert os.path.dirname(path) == str(tmp_path) and path in temps.live()
    folder = temps.new_dir(final)
    (tmp_path / os.path.basename(folder) / "inner").write_text("x")
    assert temps.cleanup() >= 1  # the folder (the name was never created)
    assert os.listdir(tmp_path) == [] and path not in temps.live() and folder not in temps.live()
    with pytest.raises(RuntimeError):
        with temps.temporary(final, "dir") as d:
            assert os.path.isdir(d)
            raise RuntimeError("boom")
    assert os.listdir(tmp_path) == [] and d not in temps.live()
