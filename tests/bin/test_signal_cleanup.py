"""Signals during the tools leave nothing behind (issue 24, item 3): real binaries, real
signals, tiny inputs (small preset, random weights).

The moment matters (a temporary must exist when the signal comes), so most runs go
through `AT_FSYNC`: the binary itself, with `os.fsync` wrapped to send the signal to
its own process right after the first fsync of a temporary file (every atomic write
fsyncs its temporary before renaming it). The builder and the Kinetics baselines hold a
temporary for seconds and are signalled from outside once it is seen.
"""

import glob
import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from l3.core import temps
from tests.fixtures import media as mf

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# argv: <signal name> <binary's module> <its flags...>
AT_FSYNC = """
import importlib, os, signal, sys
sig = getattr(signal, sys.argv[1])
real_fsync = os.fsync
def fsync(fd):
    real_fsync(fd)
    os.kill(os.getpid(), sig)
os.fsync = fsync
module = sys.argv[2]
sys.argv = [module, *sys.argv[3:]]
importlib.import_module(module).run()
"""


def _env(**extra):
    return dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="", PYTHONPATH=ROOT,
                **extra)


def _at_fsync(sig, module, *flags, **env):
    return subprocess.run([sys.executable, "-c", AT_FSYNC, sig, module, *flags], env=_env(**env),
                          capture_output=True, text=True, timeout=300)


def _binary(module, *flags):
    return subprocess.run([sys.executable, "-m", module, *flags], env=_env(), capture_output=True,
                          text=True, timeout=300)


def _tagged(folder):
    """Every temporary of l3.core.temps's form under `folder` (recursive)."""
    return [os.path.join(d, n) for d, dirs, files in os.walk(folder) for n in dirs + files
            if temps.NAME.match(n)]


def _stopped(returncode, stderr, prog, sig="SIGTERM"):
    """The run died of `sig` after removing at least one temporary; returns how many."""
    assert returncode == -getattr(signal, sig), stderr[-3000:]
    lines = re.findall(rf"^{prog}: stopped by {sig}; removed (\d+) temporary files?$", stderr, re.M)
    assert len(lines) == 1 and int(lines[0]) >= 1, stderr[-3000:]
    assert "Traceback" not in stderr
    return int(lines[0])


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A checkpoint of a random-weight small-preset model, as l3-train leaves one."""
    import tensorflow as tf
    from l3.core import presets
    from l3.model import network as model_lib
    folder = str(tmp_path_factory.mktemp("run"))
    checkpoint = tf.train.Checkpoint(model=model_lib.build_avc_model(presets.SMALL),
                                     step=tf.Variable(5, dtype=tf.int64))
    tf.train.CheckpointManager(checkpoint, folder, max_to_keep=1).save(checkpoint_number=5)
    return folder


def test_export_killed_then_rerun_then_terminated(model_dir, tmp_path):
    """SIGKILL leaves the half export's folder; the next export removes it (one line) and
    completes; a SIGTERM during a later export removes its own and keeps the previous one."""
    parent = tmp_path / "exports"
    out = parent / "export"
    flags = [f"--model_dir={model_dir}", f"--output_dir={out}", "--preset=small",
             "--formats=keras"]
    killed = _at_fsync("SIGKILL", "l3.bin.export", *flags)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    left = [os.path.basename(p) for p in _tagged(parent) if os.path.dirname(p) == str(parent)]
    assert len(left) == 1 and left[0].startswith(".export.tmp.l3-") and not out.exists()

    done = _binary("l3.bin.export", *flags)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [l for l in done.stderr.splitlines() if "left in" in l]
    assert len(lines) == 1 and lines[0].endswith(
        f"removed 1 temporary file left in {parent} by runs that were killed: {left[0]}"), lines
    assert os.listdir(parent) == ["export"]
    before = (out / "export.json").read_text()

    stopped = _at_fsync("SIGTERM", "l3.bin.export", *flags)
    _stopped(stopped.returncode, stopped.stderr, "l3-export")
    assert os.listdir(parent) == ["export"] and not _tagged(parent)
    assert (out / "export.json").read_text() == before  # the previous export, whole


def test_embed_terminated_mid_write(tmp_path, tmp_path_factory):
    from l3 import media
    from tests.fixtures.embeddings import make_small_export  # one export per test session
    export_dir = make_small_export(tmp_path_factory).export_dir
    inputs = tmp_path / "in"
    inputs.mkdir()
    for i in range(2):
        media.write_wav(str(inputs / f"a{i}.wav"), mf.tone_bursts(1.5, 16000), 16000)
    out = tmp_path / "out"
    stopped = _at_fsync("SIGTERM", "l3.bin.embed", f"--export_dir={export_dir}",
                        f"--input={inputs}", f"--output_dir={out}", "--noprogress")
    assert _stopped(stopped.returncode, stopped.stderr, "l3-embed") == 1
    assert not _tagged(out) and not os.listdir(out)  # the one being written is gone


def test_esc50_terminated_while_caching_features(tmp_path):
    from tests.eval.test_transfer_audio import make_esc50
    root = make_esc50(tmp_path / "esc50", clips_per_class_fold=1, seconds=2.0)
    cache = tmp_path / "cache"
    stopped = _at_fsync("SIGTERM", "l3.bin.esc50", f"--data_dir={root}", "--random_encoder",
                        "--preset=small", f"--cache_dir={cache}", "--noprogress",
                        f"--output_json={tmp_path / 'esc50.json'}")
    assert _stopped(stopped.returncode, stopped.stderr, "l3-esc50") == 1
    assert os.listdir(cache) == [] and not (tmp_path / "esc50.json").exists()


def test_builder_terminated_while_writing_a_shard(tmp_path):
    videos = tmp_path / "videos"
    videos.mkdir()
    for i in range(4):
        mf.make_video(str(videos / f"v{i}.mp4"), seconds=1.5, size=(96, 72), video_id=i)
    out = tmp_path / "records"
    proc = subprocess.Popen(
        [sys.executable, "-m", "l3_tfrecords.build", f"--input={videos}", f"--output_dir={out}",
         "--num_shards=1", "--workers=0", "--noprogress"],
        env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not glob.glob(str(out / ".train-*.tmp.l3-*")):
        assert proc.poll() is None and time.time() < deadline, proc.communicate()[1][-3000:]
        time.sleep(0.002)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert _stopped(proc.returncode, stderr, "l3-build-tfrecords") == 2  # the shard's temporary and its lock
    assert [n for n in os.listdir(out) if n.startswith(".")] == []
    assert not glob.glob(str(out / "*.tfrecord"))


def test_kinetics_baselines_terminated_removes_its_work_folder(tmp_path):
    from tests.fixtures.records import write_synthetic_shards
    labels = ("a", "b")
    write_synthetic_shards(str(tmp_path / "train"), num_videos=4, seconds=2.0, fps=2.0,
                           num_shards=1, labels=labels, learnable=True)
    write_synthetic_shards(str(tmp_path / "test"), num_videos=2, seconds=2.0, fps=2.0,
                           num_shards=1, labels=labels, learnable=True, split="test", seed=1)
    train, test = tmp_path / "train" / "*.tfrecord", tmp_path / "test" / "*.tfrecord"
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-m", "l3.bin.kinetics_baselines", f"--train_pattern={train}",
         f"--eval_pattern={test}", "--preset=small", "--classifier_steps=100000",
         f"--output_json={tmp_path / 'kb.json'}"],
        env=_env(TMPDIR=str(tmp)), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not glob.glob(str(tmp / ".l3-kinetics-baselines.tmp.l3-*" / "split" / "*.tfrecord")):
        assert proc.poll() is None and time.time() < deadline, proc.communicate()[1][-3000:]
        time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    _stopped(proc.returncode, stderr, "l3-kinetics-baselines")
    # (TensorFlow's autograph leaves its own generated modules in TMPDIR when a process dies
    # of a signal, with or without l3; they are not ours.)
    ours = [n for n in os.listdir(tmp) if not n.startswith("__autograph_generated_file")]
    assert ours == [] and not (tmp_path / "kb.json").exists()
