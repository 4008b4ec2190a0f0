"""Shared test set-up: quiet TensorFlow, CPU only, the CPU split into 4 logical devices,
and the learnable shards shared by the training tests."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")


import pytest  # noqa: E402  (after the environment is set)

from l3.train import devices  # noqa: E402

# The multi-replica tests (tests/train/test_step_options.py, `cpu_replicas` runs)
# train with MirroredStrategy over logical CPU devices (`l3.train.devices.split_cpu`,
# what `l3-train --cpu_replicas` does). The split must come before TensorFlow runs
# any op, so it is done here, before any test module is imported, whatever the
# order the tests run in; single-device tests keep using /cpu:0.
CPU_DEVICES = 4
devices.split_cpu(CPU_DEVICES)


@pytest.fixture(scope="session")
def learnable_shards(tmp_path_factory):
    """Glob of 2 learnable shards (8 videos of 3 s at 4 fps, 4 classes "a".."d"), shared by
    the training, steps-per-loop and data-service tests (read-only)."""
    from tests.fixtures.records import write_synthetic_shards
    d = tmp_path_factory.mktemp("learnable_shards")
    write_synthetic_shards(str(d), num_videos=8, seconds=3.0, fps=4.0, num_shards=2,
                           labels=["a", "b", "c", "d"], learnable=True)
    return str(d / "*.tfrecord")
