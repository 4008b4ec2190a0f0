"""TF_CONFIG and Slurm variables are input (issue 24, item 2): each problem is one line
`l3-train: error: TF_CONFIG: ...`, exit 2, before TensorFlow starts a cluster, nothing written.

The checks run against the real resolver's view of this machine (binding a
socket to the task's host); one binary run shows the line, the exit status and
that nothing was written."""

import json
import os
import socket
import subprocess
import sys

import pytest

from l3.train import cluster
from l3.train import loop as train

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HERE = socket.gethostname()


def _tf_config(cluster_spec, task):
    return json.dumps({"cluster": cluster_spec, "task": task})


GOOD = _tf_config({"worker": ["localhost:2222", "localhost:2223"]}, {"type": "worker", "index": 1})


@pytest.mark.parametrize("text, message", [
    ("{cluster: 1", r"^TF_CONFIG: not JSON \(Expecting property name"),
    ("[1, 2]", r"^TF_CONFIG: must be a JSON object"),
    (json.dumps({"task": {"type": "worker", "index": 0}}), r"^TF_CONFIG: no \"cluster\""),
    (json.dumps({"cluster": {"worker": ["localhost:2222"]}}), r"^TF_CONFIG: no \"task\""),
    (_tf_config({"worker": ["localhost:2222"]}, {"type": "worker"}), r"^TF_CONFIG: no \"task\""),
    (_tf_config({"worker": ["localhost:1", "localhost:2"]}, {"type": "worker", "index": 5}),
     r"^TF_CONFIG: task index 5 is out of range: job 'worker' has 2 task\(s\), indices 0\.\.1$"),
    (_tf_config({"worker": ["localhost:1"]}, {"type": "worker", "index": -1}), "out of range"),
    (_tf_config({"worker": ["localhost:1"]}, {"type": "worker", "index": "one"}),
     "task index 'one' is not a number"),
    (_tf_config({"chief": ["localhost:1"]}, {"type": "worker", "index": 0}),
     r"^TF_CONFIG: task type 'worker' is not a job of the cluster \(jobs: chief\)$"),
    (_tf_config({"ps": ["localhost:1"], "worker": ["localhost:2"]}, {"type": "worker", "index": 0}),
     "job 'ps' is not one l3-train runs"),
    (_tf_config({"chief": ["localhost:1", "localhost:2"]}, {"type": "chief", "index": 0}),
     "2 chief tasks"),
    (_tf_config({"worker": ["localhost"]}, {"type": "worker", "index": 0}),
     "address 'localhost' of job 'worker' is not \"host:port\""),
    (_tf_config({"worker": ["localhost:1", "localhost:1"]}, {"type": "worker", "index": 0}),
     "appears twice"),
    # This host not in the cluster: a TEST-NET address no machine here has, a name that
    # does not resolve.
    (_tf_config({"worker": ["localhost:1", "192.0.2.7:2222"]}, {"type": "worker", "index": 1}),
     r"^TF_CONFIG: this task, worker 1, is at 192\.0\.2\.7:2222, which is not this machine: "
     r"192\.0\.2\.7 \(192\.0\.2\.7\) is not an address of this host$"),
    # A cluster of one whose chief is elsewhere.
    (_tf_config({"chief": ["elsewhere.invalid:2222"]}, {"type": "chief", "index": 0}),
     r"^TF_CONFIG: this task, chief 0 \(the only task of the cluster\), is at "
     r"elsewhere\.invalid:2222, which is not this machine: elsewhere\.invalid does not resolve"),
])
def test_bad_tf_config_is_one_line(text, message):
    with pytest.raises(cluster.ClusterConfigError, match=message) as info:
        cluster.check_environment("auto", "auto", {"TF_CONFIG": text})
    assert "\n" not in str(info.value)


def test_good_tf_configs_pass():
    assert cluster.check_environment("auto", "auto", {"TF_CONFIG": GOOD}) == "tf_config"
    both = _tf_config({"chief": [f"{HERE}:1"], "worker": ["127.0.0.1:2"]},
                      {"type": "chief", "index": "0"})
    assert cluster.check_environment("multi_worker", "auto", {"TF_CONFIG": both}) == "tf_config"
    # Not read at all: one device / mirrored, or no cluster described.
    assert cluster.check_environment("one_device", "auto", {"TF_CONFIG": "not json"}) is None
    assert cluster.check_environment("auto", "auto", {}) is None
    with pytest.raises(cluster.ClusterConfigError, match="TF_CONFIG: not set"):
        cluster.check_environment("multi_worker", "tf_config", {})


SLURM = {"SLURM_PROCID": "1", "SLURM_STEP_NUM_TASKS": "2", "SLURM_STEP_NODELIST": HERE,
         "SLURM_STEP_TASKS_PER_NODE": "2"}


@pytest.mark.parametrize("change, message", [
    ({"SLURM_STEP_NUM_TASKS": "two"}, "^Slurm: SLURM_STEP_NUM_TASKS='two' is not a number$"),
    ({"SLURM_PROCID": "2"}, "SLURM_PROCID=2 is out of range for SLURM_STEP_NUM_TASKS=2"),
    ({"SLURM_PROCID": None}, "SLURM_PROCID is not set"),
    ({"SLURM_STEP_TASKS_PER_NODE": "1"}, "does not add up to SLURM_STEP_NUM_TASKS=2"),
    ({"SLURM_STEP_NODELIST": "node[01-02]", "SLURM_STEP_TASKS_PER_NODE": "1(x2)"},
     f"this host, {HERE}, is not in SLURM_STEP_NODELIST"),
])
def test_bad_slurm_variables_are_one_line(change, message):
    env = {k: v for k, v in {**SLURM, **change}.items() if v is not None}
    with pytest.raises(cluster.ClusterConfigError, match=message):
        cluster.check_environment("auto", "slurm", env)


def test_good_slurm_variables_pass():
    assert cluster.check_environment("auto", "auto", SLURM) == "slurm"
    assert cluster.check_environment("auto", "auto", {"SLURM_NTASKS": "1"}) is None


def test_l3_train_refuses_a_bad_tf_config_before_writing(tmp_path):
    """The binary: one line naming TF_CONFIG, exit 2, no model_dir created. The library
    entry point raises the same error (a UsageError), also before writing."""
    model_dir = tmp_path / "run"
    env = dict(os.environ, TF_CONFIG=_tf_config({"worker": ["localhost:1", "localhost:2"]},
                                                {"type": "worker", "index": 5}),
               PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    proc = subprocess.run([sys.executable, "-m", "l3.bin.train", "--train_pattern=" + __file__,
                           f"--model_dir={model_dir}", "--preset=small", "--train_steps=1"],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines()[-1] == (
        "l3-train: error: TF_CONFIG: task index 5 is out of range: job 'worker' has 2 task(s), "
        "indices 0..1")
    assert "Traceback" not in proc.stderr and not model_dir.exists()
