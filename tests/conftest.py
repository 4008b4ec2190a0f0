"""Shared test set-up: quiet TensorFlow, CPU only, fixed seeds."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")


import pytest  # noqa: E402  (after the environment is set)


@pytest.fixture(scope="session")
def learnable_shards(tmp_path_factory):
    """Glob of 2 learnable shards (8 videos of 3 s at 4 fps, 4 classes "a".."d"), shared by
    the training, steps-per-loop and data-service tests (read-only)."""
    from tests.fixtures.records import write_synthetic_shards
    d = tmp_path_factory.mktemp("learnable_shards")
    write_synthetic_shards(str(d), num_videos=8, seconds=3.0, fps=4.0, num_shards=2,
                           labels=["a", "b", "c", "d"], learnable=True)
    return str(d / "*.tfrecord")
