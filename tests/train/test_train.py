"""Training loop, evaluation and launchers, end to end on tiny synthetic shards (CPU).

In-process: real steps of the small preset (loss falls), the L2 factor, the
NaN stop, SIGTERM, resume, AVC evaluation of a checkpoint and of a
SavedModel. In subprocesses, as users run them:
SIGTERM in a child, `l3-eval-avc`, a trainer killed with -9 while it writes a
checkpoint and resumed, and a two-worker job of 2 CPU replicas each started by
launch/local_multiworker.py (one worker killed -9, the job relaunched, the launcher
preempted by SIGTERM, the weights an uninterrupted job's, bit for bit).
"""

import glob
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import tensorflow as tf

from l3.eval import avc as evaluate
from l3.model import network as model_lib
from l3.core import presets
from l3.train import loop as train
from tests.fixtures.avc_reference import reference_avc
from tests.fixtures.processes import ROOT, subprocess_env as _env, train_cmd as _train_cmd

SMALL = presets.SMALL
CLASSES = ["a", "b", "c", "d"]


@pytest.fixture(scope="module")
def shards(learnable_shards):
    """conftest's learnable shards (8 videos, 4 classes, 3 s each)."""
    return learnable_shards


def _config(shards, model_dir, **kwargs):
    base = dict(train_pattern=shards, model_dir=str(model_dir), preset="small",
                global_batch_size=16, strategy="one_device", log_every=5,
                checkpoint_every=1000, eval_every=1000)
    base.update(kwargs)
    return train.TrainConfig(**base)


def _scalars(event_dir):
    """{tag: [(step, value)]} from the TensorBoard event files in event_dir."""
    out = {}
    for path in sorted(glob.glob(os.path.join(event_dir, "events.out.tfevents.*"))):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                number = float(tf.make_ndarray(value.tensor))
                out.setdefault(value.tag, []).append((event.step, number))
    return out


def test_config_defaults_follow_the_preset():
    paper = train.TrainConfig(train_pattern="x", model_dir="m").resolved()
    assert (paper.global_batch_size, paper.learning_rate, paper.weight_decay) == (256, 1e-4, 1e-5)
    assert paper.train_steps == 234_375  # 60M pairs / 256
    small = train.TrainConfig(train_pattern="x", model_dir="m", preset="small",
                              train_pairs=1000, learning_rate=3e-4).resolved()
    assert (small.global_batch_size, small.learning_rate, small.train_steps) == (64, 3e-4, 16)
    assert train.TrainConfig(train_pattern="x", model_dir="m", train_steps=7,
                             train_pairs=10**9).resolved().train_steps == 7
    with pytest.raises(ValueError, match="mixed_precision"):
        train.TrainConfig(train_pattern="x", model_dir="m", mixed_precision="fp8").resolved()
    # Batch-norm groups: the preset's (paper 16, small the replica's batch), none with sync BN.
    assert paper.bn_group_size == 16 and small.bn_group_size == 0
    assert train.TrainConfig(train_pattern="x", model_dir="m",
                             sync_batch_norm=True).resolved().bn_group_size == 0
    assert train.TrainConfig(train_pattern="x", model_dir="m", preset="small",
                             bn_group_size=8).resolved().bn_group_size == 8
    with pytest.raises(ValueError, match="exclude each other"):
        train.TrainConfig(train_pattern="x", model_dir="m", sync_batch_norm=True,
                          bn_group_size=16).resolved()
    with pytest.raises(ValueError, match="cpu_replicas=2 needs"):
        train.TrainConfig(train_pattern="x", model_dir="m", cpu_replicas=2,
                          strategy="one_device").resolved()


def test_device_inputs_finish_uint8_frames_on_the_device():
    """uint8 frames from the pipeline: scaled to [0, 1] and jittered per image in the
    step (brightness within +-32/255 on a grey frame), with a seed that changes with
    the optimizer step and the trainer seed; float frames pass unchanged."""
    strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
    trainer = train.Trainer(SMALL, strategy, global_batch_size=8, learning_rate=1e-3,
                            weight_decay=1e-5, seed=3)
    grey = tf.fill([8, 64, 64, 3], tf.constant(128, tf.uint8))
    batch = (grey, tf.zeros([8, SMALL.clip_samples]), tf.zeros([8], tf.int32))

    def finished():
        out = strategy.run(tf.function(lambda *b: trainer.device_inputs(b)[0]), args=batch)
        return strategy.experimental_local_results(out)[0].numpy()

    first = finished()
    assert first.dtype == np.float32 and 0.0 <= first.min() and first.max() <= 1.0
    shift = first.mean(axis=(1, 2, 3)) - 128 / 255
    assert np.abs(shift).max() <= 32 / 255 + 1e-6 and np.std(shift) > 0.01  # one delta per image
    np.testing.assert_array_equal(finished(), first)  # same step, same jitter
    trainer.optimizer.iterations.assign(1)
    assert not np.allclose(finished(), first)
    other = train.Trainer(SMALL, strategy, global_batch_size=8, learning_rate=1e-3,
                          weight_decay=1e-5, seed=4)
    out = strategy.run(tf.function(lambda *b: other.device_inputs(b)[0]), args=batch)
    assert not np.allclose(strategy.experimental_local_results(out)[0].numpy(), first)
    floats = (tf.fill([8, 64, 64, 3], 0.25),) + batch[1:]
    out = strategy.run(tf.function(lambda *b: trainer.device_inputs(b)[0]), args=floats)
    np.testing.assert_array_equal(strategy.experimental_local_results(out)[0].numpy(), 0.25)


def test_trainer_l2_term_and_fitting_one_batch():
    """The L2 term is 0.5 * wd * sum ||kernel||^2; repeated steps on one batch drive the loss down."""
    strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
    trainer = train.Trainer(SMALL, strategy, global_batch_size=8, learning_rate=1e-3,
                            weight_decay=1e-2)
    rng = np.random.default_rng(0)
    label = np.arange(8, dtype=np.int32) % 2
    image = rng.uniform(size=(8, 64, 64, 3)).astype(np.float32)
    image[label == 1] *= 0.2  # a learnable difference
    waveform = (0.1 * rng.normal(size=(8, SMALL.clip_samples))).astype(np.float32)
    batch = tuple(tf.constant(x) for x in (image, waveform, label))
    want_l2 = 0.5 * 1e-2 * sum(float(np.sum(v.numpy() ** 2))
                               for v in model_lib.weight_decay_variables(trainer.model))
    step = trainer.make_train_function(lambda: batch)
    outs = [train.StepOutputs.from_tensors(step(tf.constant(0.0))) for _ in range(25)]
    np.testing.assert_allclose(outs[0].l2, want_l2, rtol=1e-4)
    assert outs[0].stop_requests == 0.0 and outs[-1].nonfinite == 0.0  # no stop; all finite
    first, last = outs[0].cross_entropy, np.mean([o.cross_entropy for o in outs[-3:]])
    assert last < 0.5 * first and last < 0.3, (first, last)
    assert outs[-1].correct == 8.0  # all 8 pairs right


@pytest.mark.slow  # ~40 s; fast form: test_step_options.py::test_every_option_at_once_on_four_replicas
def test_every_gpu_option_at_once_on_four_cpu_replicas(shards, tmp_path):
    """Issue 21 item 3: `l3-train --cpu_replicas=4 --mixed_precision=bf16 --jit_compile
    --sync_batch_norm --steps_per_loop=4` trains and finishes (the same flags through
    `train`). (The CPU is split into 4 devices for the session by tests/train/conftest.py,
    as the flag does in a fresh process; resuming several replicas per worker:
    test_two_worker_job_killed_preempted_and_resumed.)"""
    options = dict(cpu_replicas=4, strategy="auto", mixed_precision="bf16", jit_compile=True,
                   sync_batch_norm=True, steps_per_loop=4, checkpoint_every=4, log_every=4)
    first = train.train(_config(shards, tmp_path, train_steps=4, **options))
    assert (first["step"], first["num_replicas"], first["stopped"]) == (4, 4, "completed")
    assert np.isfinite(first["loss"]) and first["checkpoint"] == str(tmp_path / "ckpt-4")
    recorded = json.loads((tmp_path / "train_config.json").read_text())
    assert (recorded["num_replicas"], recorded["cpu_replicas"], recorded["bn_group_size"]) == (4, 4, 0)


@pytest.fixture(scope="module")
def trained_run(shards, tmp_path_factory):
    model_dir = tmp_path_factory.mktemp("run")
    summary = train.train(_config(shards, model_dir, train_steps=30, eval_pattern=shards,
                                  eval_pairs=16, eval_batch_size=8))
    return model_dir, summary


def test_training_steps_lower_the_loss_and_write_the_run(trained_run):
    model_dir, summary = trained_run
    assert summary["step"] == 30 and summary["stopped"] == "completed" and summary["start_step"] == 0
    assert 0.0 <= summary["eval_accuracy"] <= 1.0
    assert summary["checkpoint"] == str(model_dir / "ckpt-30")
    assert json.loads((model_dir / "train_config.json").read_text())["preset"] == "small"
    scalars = _scalars(str(model_dir / "train"))
    assert {"loss", "loss_total", "avc_accuracy", "learning_rate",
            "pairs_per_second"} <= set(scalars)
    losses = [v for _, v in scalars["loss"]]
    assert [s for s, _ in scalars["loss"]] == [5, 10, 15, 20, 25, 30]
    assert np.mean(losses[-2:]) < losses[0], losses
    assert scalars["learning_rate"][0][1] == pytest.approx(SMALL.learning_rate)
    assert "avc_accuracy" in _scalars(str(model_dir / "eval"))
    names = {name for name, _ in tf.train.list_variables(summary["checkpoint"])}
    assert any(n.startswith("input/position") for n in names)  # single worker: input position saved
    assert any(n.startswith("optimizer/") for n in names)


def test_resume_continues_from_the_checkpoint(shards, trained_run, tmp_path):
    model_dir, _ = trained_run
    copy = tmp_path / "copy"
    subprocess.run(["cp", "-r", str(model_dir), str(copy)], check=True)
    summary = train.train(_config(shards, copy, train_steps=33, log_every=1))
    assert summary["start_step"] == 30 and summary["step"] == 33
    with pytest.raises(ValueError, match="cannot resume"):
        train.train(_config(shards, copy, preset="paper", train_steps=34))


def test_evaluate_checkpoint(shards, trained_run):
    """l3-eval-avc's numbers for a checkpoint are the numpy reference's on the same
    weights and fixed pairs (tests/fixtures/avc_reference.py)."""
    model_dir, _ = trained_run
    result = evaluate.evaluate_avc(shards, model_dir=str(model_dir), num_pairs=16, batch_size=8)
    assert result["num_pairs"] == 16 and result["step"] == 30 and result["preset"] == "small"
    model = model_lib.build_avc_model(SMALL)
    tf.train.Checkpoint(model=model).restore(str(model_dir / "ckpt-30")).expect_partial()
    want = reference_avc(model, shards, SMALL, num_pairs=16, seed=evaluate.DEFAULT_SEED)
    assert np.abs(want["probability"] - 0.5).min() > 1e-4  # no decision on a knife edge
    for key in ("accuracy", "accuracy_positive", "accuracy_negative"):
        assert result[key] == pytest.approx(want[key], abs=1e-12), key
    assert result["log_loss"] == pytest.approx(want["log_loss"], rel=1e-4)
    assert result["per_class"] == want["per_class"]
    assert set(result["per_class"]) <= set(CLASSES)
    again = evaluate.evaluate_avc(shards, model_dir=str(model_dir), num_pairs=16, batch_size=4)
    assert again["accuracy"] == result["accuracy"]  # fixed pairs, whatever the batch


class _ConstantAvc(tf.Module):
    """A stand-in `avc` SavedModel with the contract's signature: P = 0.9 for every pair."""

    @tf.function(input_signature=[tf.TensorSpec([None, 64, 64, 3], tf.float32, name="image"),
                                  tf.TensorSpec([None, 16000], tf.float32, name="waveform")])
    def serve(self, image, waveform):
        del waveform
        return {"correspondence": tf.fill(tf.shape(image)[:1], 0.9)}


def test_evaluate_saved_model(shards, tmp_path):
    export_dir = tmp_path / "export"
    module = _ConstantAvc()
    tf.saved_model.save(module, str(export_dir / "avc"), signatures={"serving_default": module.serve})
    (export_dir / "export.json").write_text(json.dumps(SMALL.sizes()))
    for source in (export_dir, export_dir / "avc"):
        result = evaluate.evaluate_avc(shards, export_dir=str(source), num_pairs=16)
        # Evaluation pairs are exactly balanced: "always corresponds" scores 50 %.
        assert (result["accuracy"], result["accuracy_positive"], result["accuracy_negative"]) == (0.5, 1.0, 0.0)
    with pytest.raises(FileNotFoundError, match="avc SavedModel"):
        evaluate.evaluate_avc(shards, export_dir=str(tmp_path), num_pairs=16)


def test_avc_metrics():
    r = evaluate.avc_metrics(np.array([0.9, 0.2, 0.6, 0.7]), np.array([1, 0, 0, 1]),
                             np.array([b"x", b"x", b"y", b""]))
    assert r["accuracy"] == 0.75 and r["accuracy_positive"] == 1.0 and r["accuracy_negative"] == 0.5
    assert r["per_class"] == {"x": {"accuracy": 1.0, "num_pairs": 2},
                              "y": {"accuracy": 0.0, "num_pairs": 1}}
    assert r["mean_class_accuracy"] == 0.5
    assert "per_class" not in evaluate.avc_metrics(np.array([0.9]), np.array([1]))


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    def nan_after(bad_from):
        def dataset_fn(seed):
            del seed

            def fn(input_context):
                batch = input_context.get_per_replica_batch_size(4)

                def element(i):
                    scale = tf.where(i >= bad_from, float("nan"), 1.0)
                    return (tf.fill([batch, 64, 64, 3], 0.5),
                            scale * tf.ones([batch, SMALL.clip_samples]) * 0.01,
                            tf.range(batch, dtype=tf.int32) % 2)
                return tf.data.Dataset.range(1 << 30).map(element)
            return fn
        return dataset_fn

    config = _config("unused", tmp_path, global_batch_size=4, train_steps=10, checkpoint_every=2)
    # Step 6 is a checkpoint step whose input is NaN: it must be caught before saving.
    with pytest.raises(train.NonFiniteLossError, match=r"(loss is nan|values are NaN/Inf) at step 6: stopped.*ckpt-4"):
        train.train(config, dataset_fn=nan_after(5))
    assert tf.train.latest_checkpoint(str(tmp_path)).endswith("ckpt-4")
    assert not glob.glob(str(tmp_path / "ckpt-6*"))


_SIGTERM_CHILD = textwrap.dedent("""
    import json, os, signal, sys
    import tensorflow as tf
    from l3.core import presets
    from l3.train import loop as train

    SMALL = presets.SMALL

    def send_sigterm(i):
        if int(i) == 3:
            os.kill(os.getpid(), signal.SIGTERM)  # handled by train(): no exit
        return i

    def dataset_fn(seed):
        del seed

        def fn(input_context):
            del input_context
            ds = tf.data.Dataset.range(1 << 30)
            ds = ds.map(lambda i: tf.py_function(send_sigterm, [i], tf.int64))
            return ds.map(lambda i: (tf.fill([4, 64, 64, 3], 0.5),
                                     0.01 * tf.ones([4, SMALL.clip_samples]),
                                     tf.range(4, dtype=tf.int32) % 2))
        return fn

    # A caller's dataset_fn (here a py_function) has no position: the run saves none.
    config = train.TrainConfig(train_pattern="unused", model_dir=sys.argv[1], preset="small",
                               global_batch_size=4, strategy="one_device", log_every=5,
                               checkpoint_every=1000, eval_every=1000, train_steps=200)
    summary = train.train(config, dataset_fn=dataset_fn)
    print("SUMMARY " + json.dumps({"stopped": summary["stopped"], "step": int(summary["step"])}))
""")


def test_sigterm_saves_a_checkpoint_and_stops(tmp_path):
    """SIGTERM (preemption) mid-run: the step in flight finishes, a checkpoint is saved there.

    In a child process whose input pipeline sends SIGTERM to that process at
    element 3: a missing or broken handler kills the child, not pytest."""
    proc = subprocess.run([sys.executable, "-c", _SIGTERM_CHILD, str(tmp_path)], env=_env(),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, (proc.returncode, proc.stderr[-3000:])
    summary = json.loads(proc.stdout.split("SUMMARY ", 1)[1].splitlines()[0])
    assert summary["stopped"] == "preempted" and 1 <= summary["step"] < 200  # prefetch: early
    assert tf.train.latest_checkpoint(str(tmp_path)).endswith(f"ckpt-{summary['step']}")


# --- Subprocesses: the binaries and the launcher, as users run them --------------------

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


def test_two_worker_job_killed_preempted_and_resumed(shards, tmp_path):
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
    killed, pids = _launch(shards, model_dir, tmp_path / "logs1", *args, tmp=tmp)
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
    resumed, _ = _launch(shards, model_dir, logs, *args, tmp=tmp)
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
    straight, _ = _launch(shards, tmp_path / "straight", tmp_path / "logs3",
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


def test_resume_is_bit_identical_with_default_flags(shards, tmp_path):
    """Issue 21: a default-flag run stopped at its step-6 checkpoint and resumed to 12
    ends with the weights of an uninterrupted 12-step run, bit for bit; the checkpoint
    keeps the input's position (under 1 KB), not its buffers."""
    straight = train.train(_config(shards, tmp_path / "straight", train_steps=12,
                                   checkpoint_every=6))
    half = train.train(_config(shards, tmp_path / "run", train_steps=6, checkpoint_every=6))
    resumed = train.train(_config(shards, tmp_path / "run", train_steps=12, checkpoint_every=6))
    assert resumed["start_step"] == 6 and resumed["step"] == 12
    assert resumed["weights_sha256"] == straight["weights_sha256"] != half["weights_sha256"]
    reader = tf.train.load_checkpoint(half["checkpoint"])
    shapes = reader.get_variable_to_dtype_map()
    state = {n: reader.get_tensor(n).nbytes for n in shapes if n.startswith("input/")}
    assert state and sum(state.values()) < 1024, state
    model_bytes = sum(reader.get_tensor(n).nbytes for n in shapes
                      if n.startswith(("model/", "optimizer/")))
    data = sum(os.path.getsize(p) for p in glob.glob(half["checkpoint"] + ".data-*"))
    assert data < model_bytes + 64 * 1024, (data, model_bytes)
    sizes = half["checkpoint_sizes"]  # what the summary (and the demo) reports
    assert sizes["input_state_bytes"] == sum(state.values())
    assert sizes["model_optimizer_bytes"] == model_bytes
    files = glob.glob(half["checkpoint"] + ".*")
    assert sizes["checkpoint_bytes"] == sum(os.path.getsize(p) for p in files) > data


def test_eval_avc_binary(shards, trained_run, tmp_path):
    model_dir, _ = trained_run
    out = tmp_path / "eval.json"
    proc = subprocess.run([sys.executable, "-m", "l3.bin.eval_avc", f"--data_pattern={shards}",
                           f"--model_dir={model_dir}", "--num_pairs=8", f"--output_json={out}"],
                          env=_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "AVC accuracy" in proc.stdout
    result = json.loads(out.read_text())
    assert result["num_pairs"] == 8 and result["step"] == 30


# Runs l3-train with CheckpointManager._record_state patched to SIGKILL the process when
# it is about to record ckpt-8: that checkpoint has its data and index files on disk, but
# the `checkpoint` file (what latest_checkpoint reads) still names the previous one.
_KILL_WHILE_SAVING = """
import os, signal, sys
from tensorflow.python.checkpoint import checkpoint_management as cm
record = cm.CheckpointManager._record_state
def killing_record_state(self):
    if str(self.latest_checkpoint).endswith("ckpt-8"):
        os.kill(os.getpid(), signal.SIGKILL)
    record(self)
cm.CheckpointManager._record_state = killing_record_state
from l3.bin import train
sys.argv = ["l3-train", *sys.argv[1:]]
train.run()
"""


def test_sigkill_while_writing_a_checkpoint(shards, tmp_path):
    """Issue 17, item 6: a trainer killed (SIGKILL, a real process) in the middle of saving
    ckpt-8 leaves ckpt-4 loadable and named as the latest; the same command resumes from it
    and finishes; a half-written checkpoint from a kill even earlier in a save is ignored."""
    model_dir = tmp_path / "run"
    args = ["--train_steps=12", "--checkpoint_every=4", "--strategy=one_device"]
    cmd = _train_cmd(shards, model_dir, *args)
    killed = subprocess.run([sys.executable, "-c", _KILL_WHILE_SAVING, *cmd[3:]], env=_env(),
                            capture_output=True, text=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert os.path.exists(model_dir / "ckpt-8.index")  # written, never recorded
    assert tf.train.latest_checkpoint(str(model_dir)).endswith("ckpt-4")
    assert tf.train.load_checkpoint(str(model_dir / "ckpt-4")).get_tensor(
        "step/.ATTRIBUTES/VARIABLE_VALUE") == 4
    # A save killed earlier still: its temporary files, truncated.
    temp = model_dir / "ckpt-8_temp"
    temp.mkdir()
    (temp / "part-00000-of-00001.data-00000-of-00001").write_bytes(b"\0" * 100)
    resumed = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300)
    out = resumed.stdout + resumed.stderr
    assert resumed.returncode == 0, out[-3000:]
    assert f"resumed from {model_dir}/ckpt-4 (step 4)" in out
    assert tf.train.latest_checkpoint(str(model_dir)).endswith("ckpt-12")
    assert tf.train.load_checkpoint(str(model_dir / "ckpt-8")).get_tensor(
        "step/.ATTRIBUTES/VARIABLE_VALUE") == 8


def test_a_killed_save_s_leftovers_are_removed_on_resume(tmp_path):
    """A SIGKILL inside a checkpoint save leaves TensorFlow's `ckpt-<n>_temp/` shard
    folder and a `checkpoint.tmp<hex>` index; the next run over the folder removes
    them (and nothing else) before it saves."""
    from l3.train import distribute
    model_dir = tmp_path / "run"
    (model_dir / "ckpt-8_temp").mkdir(parents=True)
    (model_dir / "ckpt-8_temp" / "part-00000-of-00001.data-00000-of-00001.tempstate123").write_bytes(b"x")
    (model_dir / "checkpoint.tmp0a1b2c").write_text("half")
    for keep in ("ckpt-4.index", "ckpt-4.data-00000-of-00001", "checkpoint", "notes_temp"):
        (model_dir / keep).write_text("keep")
    removed = distribute.remove_unfinished_saves(str(model_dir))
    assert removed == ["checkpoint.tmp0a1b2c", "ckpt-8_temp"]
    assert sorted(os.listdir(model_dir)) == sorted(
        ["ckpt-4.index", "ckpt-4.data-00000-of-00001", "checkpoint", "notes_temp"])
    assert distribute.remove_unfinished_saves(str(tmp_path / "absent")) == []
