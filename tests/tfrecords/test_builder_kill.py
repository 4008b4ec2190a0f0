"""The builder killed with SIGKILL mid-build (a real process, a real kill) and run
again writes byte-identical shards to an uninterrupted build (the fast CI form;
slow form: tests/tfrecords/test_builder.py, 9 videos x 4 s).

The kill comes at a known point, not after a race with a poller: the killed
run is the builder's own entry point in a process whose `ShardWriter.add`
sends SIGKILL to itself right after shard `KILL_IN_SHARD`'s first record
reached its temp file. So the earlier shards are finished, that shard is
half-written, the later ones are not started, on every run and every load.
"""

import glob
import os
import signal
import subprocess
import sys
import textwrap

from tests.fixtures import media as mf

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
STATS_DIR = "_shard_stats"  # the builder's per-shard sidecars (tfrecords.builder.STATS_DIR)


def builder_command(*args) -> list:
    """The builder's console script (the one line to change if it is renamed)."""
    return [os.path.join(os.path.dirname(sys.executable), "l3-build-tfrecords"), *args]


def _start_build(*args):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.Popen(builder_command(*args), cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


KILL_IN_SHARD = 2
_KILLED_BUILD = textwrap.dedent("""
    import os, signal, sys
    from l3_tfrecords import build, shards

    add = shards.ShardWriter.add

    def add_then_die(self, result):
        add(self, result)
        if self.index == {kill_at}:
            self.writer.flush()   # the half-written shard is on disk
            os.kill(os.getpid(), signal.SIGKILL)

    shards.ShardWriter.add = add_then_die
    sys.argv = ["l3-build-tfrecords"] + sys.argv[1:]
    build.run()
""")


def _start_killed_build(*args):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    code = _KILLED_BUILD.format(kill_at=KILL_IN_SHARD)
    return subprocess.Popen([sys.executable, "-c", code, *args], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def test_kill_mid_build_then_rerun_gives_the_same_shards_fast(tmp_path):
    videos = tmp_path / "videos"
    os.makedirs(videos)
    for i in range(5):
        mf.make_video(str(videos / f"v{i}.mp4"), seconds=1.5, size=(96, 72), video_id=i)
    args = [f"--input={videos}", "--num_shards=5", "--workers=0", "--noprogress"]
    reference = tmp_path / "reference"
    proc = _start_build(*args, f"--output_dir={reference}")
    assert proc.wait(timeout=300) == 0, proc.stdout.read().decode()
    assert len(glob.glob(str(reference / "*.tfrecord"))) == 5

    out = tmp_path / "killed"
    proc = _start_killed_build(*args, f"--output_dir={out}")
    output = proc.communicate(timeout=300)[0].decode()
    assert proc.returncode == -signal.SIGKILL, output[-3000:]
    # Sequential build (--workers=0): shards before KILL_IN_SHARD finished, it half-written.
    finished = sorted(glob.glob(str(out / STATS_DIR / "*.json")))
    assert len(finished) == KILL_IN_SHARD, finished
    assert glob.glob(str(out / ".*tmp*")), "no half-written shard left by the kill"
    done = os.path.basename(finished[0])[: -len(".json")]
    mtime = os.path.getmtime(out / done)

    proc = _start_build(*args, f"--output_dir={out}")
    output = proc.communicate(timeout=300)[0].decode()
    assert proc.returncode == 0, output
    assert os.path.getmtime(out / done) == mtime  # a finished shard is not redone
    assert not glob.glob(str(out / ".*tmp*"))  # the killed run's temp file is gone
    names = sorted(os.path.basename(p) for p in glob.glob(str(reference / "*.tfrecord")))
    assert names == sorted(os.path.basename(p) for p in glob.glob(str(out / "*.tfrecord")))
    for name in names:
        with open(reference / name, "rb") as a, open(out / name, "rb") as b:
            assert a.read() == b.read(), name
