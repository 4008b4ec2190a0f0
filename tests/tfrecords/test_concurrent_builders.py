"""Two builders on one output folder (issue 24, item 4), real processes and real signals.

A shard is written by the builder holding its lock (`.<shard>.lock`, naming host and
pid); another builder skips it with one line naming the holder; the lock of a builder
that died is taken over. No traceback, no shard written twice, and the shards equal a
single builder's byte for byte.
"""

import glob
import json
import os
import re
import signal
import socket
import subprocess
import time

import pytest

from l3_tfrecords import builder
from tests.fixtures import media as mf
from tests.tfrecords.test_builder_kill import builder_command

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NUM_SHARDS = 4


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    root = tmp_path_factory.mktemp("videos")
    for i in range(8):
        mf.make_video(str(root / f"v{i}.mp4"), seconds=1.5, size=(96, 72), video_id=i)
    reference = str(tmp_path_factory.mktemp("reference"))
    builder.build_from_input(str(root), builder.BuildConfig(
        output_dir=reference, num_shards=NUM_SHARDS, workers=0, progress=False))
    return str(root), reference


def _start(videos, out):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.Popen(
        builder_command(f"--input={videos}", f"--output_dir={out}", f"--num_shards={NUM_SHARDS}",
                        "--workers=0", "--noprogress"),
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(proc):
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0 and "Traceback" not in err, (out, err[-3000:])
    return out, err


def _same_as_reference(out, reference):
    names = sorted(os.path.basename(p) for p in glob.glob(os.path.join(reference, "*.tfrecord")))
    assert len(names) == NUM_SHARDS
    assert names == sorted(os.path.basename(p) for p in glob.glob(os.path.join(out, "*.tfrecord")))
    for name in names:
        with open(os.path.join(reference, name), "rb") as a, open(os.path.join(out, name), "rb") as b:
            assert a.read() == b.read(), name
    hidden = [n for n in os.listdir(out) if n.startswith(".")]
    assert hidden == [], hidden  # no lock file, no temporary


def _writers(out):
    """{shard: pid of the builder that wrote it} from the sidecars."""
    rows = {}
    for path in glob.glob(os.path.join(out, "_shard_stats", "*.json")):
        with open(path) as f:
            stats = json.load(f)
        rows[stats["shard"]] = stats["pid"]
    return rows


def _stop_while_writing_a_shard(proc, out, timeout=120):
    """SIGSTOPs `proc` at a moment it holds a shard's lock and has its temporary file open;
    returns that shard's name."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert proc.poll() is None, "the builder finished before it could be stopped"
        if glob.glob(os.path.join(out, f".*.tmp.l3-*-{proc.pid}-*")):
            proc.send_signal(signal.SIGSTOP)
            for path in glob.glob(os.path.join(out, f".*.tmp.l3-*-{proc.pid}-*")):
                shard = os.path.basename(path)[1:].split(".tmp.l3-")[0]
                try:
                    with open(os.path.join(out, f".{shard}.lock")) as f:
                        holder = json.load(f)
                except (OSError, ValueError):
                    continue
                if holder["pid"] == proc.pid:
                    return shard
            proc.send_signal(signal.SIGCONT)
        time.sleep(0.002)
    raise TimeoutError("never saw the builder write a shard")


def test_a_second_builder_skips_the_held_shard_and_a_rerun_takes_over_a_dead_ones(
        videos, tmp_path):
    source, reference = videos
    out = str(tmp_path / "records")
    first = _start(source, out)
    try:
        held = _stop_while_writing_a_shard(first, out)
        second = _start(source, out)
        stdout, stderr = _finish(second)
        lines = [l for l in stderr.splitlines() if "being written by another builder" in l]
        assert len(lines) == 1, stderr
        assert re.search(rf"{re.escape(held)} is being written by another builder \(host "
                         rf"{re.escape(socket.gethostname())}, pid {first.pid}, since [^;]+; "
                         rf"{re.escape(os.path.join(out, '.' + held + '.lock'))}\): skipping it$",
                         lines[0]), lines[0]
        counts = re.search(rf"this process: {NUM_SHARDS} shards \((\d+) built, (\d+) already "
                           r"finished, 1 being written by another builder\)", stdout)
        assert counts, stdout
        built, finished = int(counts[1]), int(counts[2])
        writers = list(_writers(out).values())  # no shard twice: each count is its writer's
        assert built + finished == NUM_SHARDS - 1 and len(writers) == NUM_SHARDS - 1
        assert writers.count(second.pid) == built and writers.count(first.pid) == finished
        assert held not in _writers(out)
    finally:
        first.send_signal(signal.SIGKILL)  # dies holding the lock, its shard half written
        first.wait()
    assert os.path.exists(os.path.join(out, f".{held}.lock"))

    third = _start(source, out)
    stdout, stderr = _finish(third)
    assert f"{held}: taking over the lock of a builder that is gone (host " \
           f"{socket.gethostname()}, pid {first.pid}" in stderr, stderr
    assert re.search(rf"removed 1 temporary file left in {re.escape(out)} by runs that were "
                     rf"killed: \.{re.escape(held)}\.tmp\.l3-[0-9a-f]{{8}}-{first.pid}-", stderr), stderr
    assert f"({1} built, {NUM_SHARDS - 1} already finished)" in stdout, stdout
    writers = _writers(out)
    assert writers[held] == third.pid and len(writers) == NUM_SHARDS
    _same_as_reference(out, reference)


def test_two_builders_started_together_split_the_shards(videos, tmp_path):
    """The issue's case: both complete without a traceback, every shard is written by
    exactly one of them (their 'built' counts add up to the shard count) and whole."""
    source, reference = videos
    out = str(tmp_path / "records")
    procs = [_start(source, out) for _ in range(2)]
    outputs = [_finish(p)[0] for p in procs]
    built = [int(re.search(r"\((\d+) built", o).group(1)) for o in outputs]
    assert sum(built) == NUM_SHARDS, outputs
    writers = _writers(out)
    for proc, count in zip(procs, built):
        assert list(writers.values()).count(proc.pid) == count
    _same_as_reference(out, reference)
