"""A two-worker job as users launch it (launch/local_multiworker.py, 2 CPU replicas per
worker): one worker killed -9, the job relaunched, the launcher preempted by SIGTERM,
and an uninterrupted job to the same step whose weights the resumed job's equal, bit
for bit. Its own file so that the suite's workers can start it first (it is the
suite's longest test)."""

import os
import re
import signal
import subprocess
import sys
import time

import tensorflow as tf

from tests.fixtures.processes import ROOT, subprocess_env as _env, train_cmd as _train_cmd


def _digests(text):
    return re.findall(r"weights sha256 ([0-9a-f]{64})", text)


def _launch(shards, model_dir, logs, *extra, tmp=None):
    cmd = [sys.executable, os.path.join(ROOT, "launch", "local_multiworker.py"),
           "--num_workers=2", f"--worker_log_dir={logs}", "--threads_per_worker=1",
           "--grace_seconds=10", "--",
           *_train_cmd(shards, model_dir, "--checkpoint_every=2", "--cpu_replicas=2",
                       *extra)[3:]]
    env = _env(TMPDIR=str(tmp)) if tmp else _env()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    first = proc.stdout.readline()  # "started 2 workers on ... (pids A, B); logs in ..."
    pids = [int(p) for p in re.search(r"\(pids (\d+), (\d+)\)", first).groups()]
    return proc, pids


def test_two_worker_job_killed_preempted_and_resumed(learnable_shards, tmp_path):
    """Issue 21 item 5: a 2-worker job (launch/local_multiworker.py, 2 CPU replicas per
    worker: 4 replicas). kill -9 of one worker stops the job with one line naming it
    (exit 137); the same command resumes both workers from the last checkpoint; SIGTERM
    to the launcher then makes every worker save at the same step and stop (exit 143),
    with identical weights, the chief alone writing the model checkpoint, each worker
    its input position, and no temporary copies left. Issue 21: those weights are an
    uninterrupted job's to the same step, bit for bit (each worker resumed its own
    input position). Issue 17, item 5: that uninterrupted job's clean finish reads
    clean (the launcher says both workers finished; no worker log shows the
    coordination service's shutdown noise as if it crashed)."""
    model_dir, tmp = tmp_path / "run", tmp_path / "tmp"
    tmp.mkdir()
    args = ("--train_steps=100000",)
    killed, pids = _launch(learnable_shards, model_dir, tmp_path / "logs1", *args, tmp=tmp)
    try:
        _wait_for_checkpoint(model_dir, 2, killed)
        # Both positions of a step saved (the chief's model first, then each worker's
        # position: tests/train/test_resume_point.py holds a kill in between).
        _wait_for(lambda: (model_dir / "input_state" / "worker-1" / "checkpoint").exists(), killed)
        os.kill(pids[1], signal.SIGKILL)
        out = killed.communicate(timeout=120)[0]
    finally:
        if killed.poll() is None:
            killed.kill()
    assert killed.returncode == 128 + signal.SIGKILL, out
    lines = out.strip().splitlines()
    assert lines[0].startswith(f"worker 1 (pid {pids[1]}) was killed by SIGKILL: "), out
    assert "Traceback" not in out
    # The resume point: the newest model checkpoint that both workers saved their input
    # position for (worker 1 may have died between the chief's save and its own).
    state = tf.train.get_checkpoint_state(str(model_dir))
    saved = max(step for step in (int(p.rsplit("-", 1)[1]) for p in state.all_model_checkpoint_paths)
                if all((model_dir / "input_state" / f"worker-{i}" / f"ckpt-{step}.index").exists()
                       for i in range(2)))

    logs = tmp_path / "logs2"
    resumed, _ = _launch(learnable_shards, model_dir, logs, *args, tmp=tmp)
    try:
        _wait_for_checkpoint(model_dir, saved + 2, resumed)
        resumed.send_signal(signal.SIGTERM)
        out = resumed.communicate(timeout=300)[0]
    finally:
        if resumed.poll() is None:
            resumed.kill()
    worker = [(logs / f"worker-{i}.log").read_text() for i in range(2)]
    assert resumed.returncode == 143, out + "\n".join(w[-3000:] for w in worker)
    assert "4 replica(s) on 2 worker(s), task worker:0 (chief)" in worker[0]
    for log in worker:
        assert f"resumed from {model_dir}/ckpt-{saved} (step {saved})" in log
    steps = [re.findall(r"preempted at step (\d+)", w) for w in worker]
    assert len(steps[0]) == 1 and steps[0] == steps[1], steps
    assert out.strip().splitlines()[-1] == (
        f"stopped by SIGTERM: all 2 workers saved a checkpoint at step {steps[0][0]}; run "
        "the same command to resume")
    digests = [_digests(w) for w in worker]
    assert len(digests[0]) == 1 and digests[0] == digests[1]
    assert tf.train.latest_checkpoint(str(model_dir)).endswith(f"ckpt-{steps[0][0]}")
    assert "checkpoint " + str(model_dir) in worker[0]
    assert "checkpoint " + str(model_dir) not in worker[1]
    # The non-chief's temporary checkpoint copies are gone (the killed processes leave
    # AutoGraph's own temporary files there, not ours).
    assert not [n for n in os.listdir(tmp) if n.startswith("l3-worker")]
    # Each worker keeps its own input position beside the chief's model checkpoint.
    assert sorted(os.listdir(model_dir / "input_state")) == ["worker-0", "worker-1"]
    assert not (model_dir / "trainer.lock").exists()
    assert all("input position restored" in log for log in worker)

    stop = int(steps[0][0])
    straight, _ = _launch(learnable_shards, tmp_path / "straight", tmp_path / "logs3",
                          f"--train_steps={stop}")
    out = straight.communicate(timeout=600)[0]
    clean = [(tmp_path / "logs3" / f"worker-{i}.log").read_text() for i in range(2)]
    assert straight.returncode == 0, out + "\n".join(w[-3000:] for w in clean)
    assert out.splitlines()[-1].startswith("all 2 workers finished normally"), out
    for log in clean:
        tail = log[log.index(f"completed at step {stop}"):]
        assert not re.search(r"StartAbort|UNAVAILABLE|Connection refused", tail), tail
    want = {d for log in clean for d in _digests(log)}
    assert len(want) == 1 and want == set(digests[0]), (want, digests)


def _wait_for(condition, proc, timeout=300):
    """Polls `condition()` until true while `proc` runs."""
    deadline = time.time() + timeout
    while not condition():
        assert proc.poll() is None, "the run ended before it could be interrupted"
        assert time.time() < deadline, "timed out"
        time.sleep(0.05)


def _wait_for_checkpoint(model_dir, at_least, proc, timeout=300):
    """Polls until model_dir's latest checkpoint step is >= at_least; returns that step."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        latest = tf.train.latest_checkpoint(str(model_dir))
        if latest and int(latest.rsplit("-", 1)[1]) >= at_least:
            return int(latest.rsplit("-", 1)[1])
        assert proc.poll() is None, "the run ended before it could be interrupted"
        time.sleep(0.05)
    raise TimeoutError(f"no checkpoint >= {at_least} in {model_dir}")
