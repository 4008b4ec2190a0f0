"""Training input through the tf.data service, on localhost (l3.pairs.data_service, l3-data-service).

A real dispatcher and two real input workers run as subprocesses
(`l3.pairs.local_service`, i.e. `python -m l3.bin.data_service`) on free 127.0.0.1
ports; every process is stopped at the end of the module, also on failure.
Checked: pairs read through the service decode to aligned positives and
cross-video negatives; `l3-train` trains through it (the loss falls) and
keeps training when an input worker is SIGKILLed; a SIGKILLed trainer resumes
its step and weights while the service keeps running; an unreachable
dispatcher is a one-line error within a bounded time; a dispatcher restarted
on its journal (--work_dir) serves the same job on.

Each test passes alone and in any order: the tests that use the module's
service take it through `live_service`, which first brings back whatever an
earlier test stopped or killed (a dispatcher, input workers).
"""

import os
import re
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from l3.pairs import data_service, pipeline as pairs
from l3.model import network as model_lib
from l3.core import presets
from l3.pairs.local_service import LocalDataService
from tests.fixtures.processes import ROOT, subprocess_env as _env
from tests.fixtures.records import SyntheticCorpus

SMALL = presets.SMALL
# Identity = video index (not learnable): frames and tones name their video.
CORPUS = SyntheticCorpus(num_videos=8, seconds=3.0, fps=4.0, seed=7)


@pytest.fixture(scope="module")
def coded_shards(tmp_path_factory):
    return CORPUS.write(str(tmp_path_factory.mktemp("svc_coded")), num_shards=2)


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    """A dispatcher (journal in work_dir) and two input workers, stopped at the end.

    The dispatcher's port was free a moment before it binds it (`free_port`); if
    another process took it in between, the dispatcher exits and the service is
    started again on a new port (up to 3 tries)."""
    for attempt in range(3):
        base = tmp_path_factory.mktemp(f"service{attempt}")
        svc = LocalDataService(2, str(base / "logs"), work_dir=str(base / "journal"), env=_env())
        with svc:
            try:
                svc.wait_for_workers(2)
            except RuntimeError:
                if svc.dispatcher.poll() is None or attempt == 2:
                    raise
                continue  # the dispatcher could not bind its port: another one
            yield svc
            return


def _live_workers(svc):
    return [i for i, w in enumerate(svc.workers) if w.poll() is None]


@pytest.fixture
def live_service(service):
    """The module's service with a running dispatcher and two live input workers."""
    if service.dispatcher is None or service.dispatcher.poll() is not None:
        service.start_dispatcher()
    for _ in range(2 - len(_live_workers(service))):
        service.start_worker()
    # A dispatcher restarted on its journal may still list dead workers for a while.
    service.wait_for_workers(2, at_least=True)
    return service


def _train_cmd(shards, model_dir, address, *extra):
    return [sys.executable, "-m", "l3.bin.train", f"--train_pattern={shards}",
            f"--model_dir={model_dir}", "--preset=small", "--strategy=one_device",
            f"--data_service_address={address}", *extra]


def _losses(text):
    return [float(x) for x in re.findall(r"step \d+/\d+ \(.*?\) loss ([0-9.]+)", text)]


def _wait_for(predicate, proc, what, timeout=300):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        assert proc.poll() is None, f"the trainer ended before {what}"
        time.sleep(0.05)
    raise TimeoutError(what)


def test_pairs_through_the_service_are_aligned(live_service, coded_shards):
    service = live_service
    ds = pairs.make_dataset(coded_shards, SMALL, training=True, options=pairs.PipelineOptions(
        batch_size=16, seed=5, include_metadata=True))
    ds = data_service.distribute_dataset(ds, service.address, "alignment-test")
    batches = [b for _, b in zip(range(3), ds)]
    images = np.concatenate([b[0].numpy() for b in batches])
    waves = np.concatenate([b[1].numpy() for b in batches])
    labels = np.concatenate([b[2].numpy() for b in batches])
    meta = {k: np.concatenate([b[3][k].numpy() for b in batches]) for k in batches[0][3]}
    assert len(labels) == 48 and labels.sum() == 24
    tol = 2.0 / SMALL.sample_rate
    for j in range(len(labels)):
        frame_video, k = CORPUS.decode_frame(images[j])
        audio_video, start, score = CORPUS.decode_audio(waves[j], SMALL.sample_rate)
        t = CORPUS.frame_times(frame_video)[k]
        assert score > 0.9, j
        assert meta["frame_video_id"][j].decode() == CORPUS.video_id(frame_video)
        assert meta["audio_video_id"][j].decode() == CORPUS.video_id(audio_video)
        assert meta["audio_start"][j] == pytest.approx(start, abs=tol)
        if labels[j] == 1:  # one video, the frame inside the 1-s window
            assert frame_video == audio_video, j
            assert start - tol <= t < start + 1.0 + tol, (j, t, start)
        else:
            assert frame_video != audio_video, j


def test_train_through_the_service_survives_losing_an_input_worker(live_service, learnable_shards,
                                                                    tmp_path):
    service = live_service
    log_path = tmp_path / "train.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            _train_cmd(learnable_shards, tmp_path / "run", service.address, "--train_steps=20",
                       "--global_batch_size=16", "--log_every=2", "--steps_per_loop=2"),
            env=_env(), stdout=log, stderr=subprocess.STDOUT)
        try:
            _wait_for(lambda: "step 4/20" in log_path.read_text(), proc, "step 4")
            assert proc.poll() is None
            service.kill_worker(_live_workers(service)[-1])  # `live_service` restarts one
            killed_at = len(_losses(log_path.read_text()))
            assert proc.wait(timeout=300) == 0, log_path.read_text()[-3000:]
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    out = log_path.read_text()
    assert f"input: tf.data service {service.address}" in out
    assert "2 step(s) per loop" in out
    losses = _losses(out)
    assert len(losses) == 10 and killed_at < 10, out[-3000:]  # steps logged after the kill
    assert np.mean(losses[-2:]) < losses[0], losses


def _checkpoint_digest(path):
    model = model_lib.build_avc_model(SMALL)
    tf.train.Checkpoint(model=model).restore(path).expect_partial()
    return model_lib.weights_digest(model)


def test_sigkilled_trainer_resumes_step_and_weights_while_the_service_runs(
        live_service, learnable_shards, tmp_path):
    service = live_service
    run_dir = tmp_path / "run"
    args = ("--global_batch_size=8", "--checkpoint_every=3", "--log_every=1")
    killed = subprocess.Popen(_train_cmd(learnable_shards, run_dir, service.address,
                                         "--train_steps=1000", *args),
                              env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for(lambda: tf.train.latest_checkpoint(str(run_dir)), killed, "a checkpoint")
        killed.kill()  # SIGKILL: no chance to save or to leave the job
        killed.wait(timeout=60)
    finally:
        if killed.poll() is None:
            killed.kill()
    saved_path = tf.train.latest_checkpoint(str(run_dir))
    saved = int(saved_path.rsplit("-", 1)[1])
    assert saved % 3 == 0 and saved > 0
    resumed = subprocess.run(_train_cmd(learnable_shards, run_dir, service.address,
                                        f"--train_steps={saved + 3}", *args),
                             env=_env(), capture_output=True, text=True, timeout=300)
    out = resumed.stdout + resumed.stderr
    assert resumed.returncode == 0, out[-3000:]
    restored = re.search(rf"resumed from {re.escape(saved_path)} \(step {saved}\), "
                         r"restored weights digest ([0-9a-f]{64})", out)
    assert restored and restored[1] == _checkpoint_digest(saved_path), out[-3000:]
    # A new job for the resumed run: the killed trainer's stream is not replayed.
    assert f"job {data_service.job_name(str(run_dir), saved)}, seed {saved}" in out
    final = tf.train.load_checkpoint(str(run_dir / f"ckpt-{saved + 3}"))
    assert final.get_tensor("step/.ATTRIBUTES/VARIABLE_VALUE") == saved + 3
    assert final.get_tensor("optimizer/_iterations/.ATTRIBUTES/VARIABLE_VALUE") == saved + 3
    # The service kept running: its two input workers and the dispatcher.
    assert len(_live_workers(service)) == 2
    assert service.dispatcher.poll() is None


def test_unreachable_dispatcher_is_a_one_line_error_in_bounded_time(learnable_shards, tmp_path):
    # A port bound here but never listened on: refuses connections, and no other
    # process can take it while the test runs (a merely free port could be taken).
    held = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    held.bind(("127.0.0.1", 0))
    try:
        _unreachable_dispatcher(learnable_shards, tmp_path, held.getsockname()[1])
    finally:
        held.close()


def _unreachable_dispatcher(learnable_shards, tmp_path, port):
    address = f"grpc://127.0.0.1:{port}"  # nothing listens there
    begin = time.time()
    with pytest.raises(data_service.DataServiceError, match="no tf.data service dispatcher"):
        data_service.check_dispatcher(address, timeout_s=2.0)
    assert time.time() - begin < 10
    proc = subprocess.run(_train_cmd(learnable_shards, tmp_path / "run", address,
                                     "--train_steps=5", "--data_service_timeout_s=2"),
                          env=_env(), capture_output=True, text=True, timeout=240)
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(f"l3-train: error: no tf.data service dispatcher answers at {address} "
                           "(waited 2 s)"), proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    for bad in ("localhost", "grpc://host", "http://h:1", "h:99999"):
        with pytest.raises(ValueError, match="--data_service_address"):
            data_service.parse_address(bad)
    assert data_service.parse_address("h:5050") == ("grpc", "h:5050")


def test_local_launcher_starts_and_stops_the_service(learnable_shards, tmp_path):
    logs = tmp_path / "logs"
    cmd = [sys.executable, os.path.join(ROOT, "launch", "local_multiworker.py"), "--num_workers=1",
           "--data_service_workers=1", f"--worker_log_dir={logs}", "--threads_per_worker=1", "--",
           f"--train_pattern={learnable_shards}", f"--model_dir={tmp_path / 'run'}",
           "--preset=small", "--global_batch_size=8", "--train_steps=3", "--log_every=1"]
    proc = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=400)
    trainer = (logs / "worker-0.log").read_text()
    assert proc.returncode == 0, proc.stdout[-2000:] + trainer[-3000:]
    address = re.search(r"tf.data service at (grpc://localhost:(\d+)) with 1 input worker",
                        proc.stdout)
    assert address, proc.stdout
    assert f"input: tf.data service {address[1]}" in trainer and "step 3/3" in trainer
    assert "1 worker(s) registered" in (logs / "dispatcher.log").read_text()
    left = subprocess.run(["pgrep", "-f", f"l3.bin.data_service.*{address[2]}"],
                          capture_output=True, text=True).stdout.split()
    assert not left, f"service processes left running: {left}"


def test_the_launcher_imports_no_tensorflow():
    """launch/local_multiworker.py (and `l3.pairs.local_service`, which it imports) load no
    TensorFlow: the launcher only starts processes, and an import costs ~7 CPU-seconds
    here (`l3.pairs` loads its re-exports, which need TensorFlow, on first use)."""
    code = ("import runpy, sys; sys.argv = ['local_multiworker.py']; "
            f"runpy.run_path({os.path.join(ROOT, 'launch', 'local_multiworker.py')!r}); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras')))")
    proc = subprocess.run([sys.executable, "-c", code], env=_env(), capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == "[]", proc.stdout[-2000:]


def test_a_restarted_dispatcher_resumes_from_its_journal(live_service):
    """A job read before the dispatcher's restart goes on after it."""
    service = live_service
    ds = tf.data.Dataset.range(1 << 40)
    iterator = iter(data_service.distribute_dataset(ds, service.address, "journal-test"))
    before = {int(next(iterator)) for _ in range(20)}
    service.stop_dispatcher()
    service.start_dispatcher()  # same port, same --work_dir
    # The journal may also list a worker SIGKILLed earlier in this module.
    service.wait_for_workers(2, at_least=True)
    after = {int(next(iterator)) for _ in range(20)}
    assert len(before) == 20 and len(after) == 20
    assert not before & after  # the same job went on: no element handed out twice
