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


@pytest.fixture(scope="session", autouse=True)
def jax_compilation_cache(tmp_path_factory):
    """One JAX persistent compilation cache for the JAX processes this run starts
    (tests/model/test_frontend.py, test_backends.py, tests/benchmarks/test_bench_model.py):
    building the small AVC model compiles ~19 small XLA programs, ~16 CPU-seconds, in
    each fresh JAX process; with the cache only the first pays. Every entry is kept
    (JAX's default keeps only those that took over 1 s to compile). In the run's own
    temporary folder, shared by the xdist workers, so that no run sees another's. An
    entry read while another process still writes it fails to decompress, and JAX
    compiles instead (with a warning)."""
    base = tmp_path_factory.getbasetemp()
    run_dir = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    cache = run_dir / "jax-compilation-cache"
    cache.mkdir(exist_ok=True)
    os.environ["JAX_COMPILATION_CACHE_DIR"] = str(cache)
    os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
    yield str(cache)


@pytest.fixture(scope="session")
def learnable_shards(tmp_path_factory):
    """Glob of 2 learnable shards (8 videos of 3 s at 4 fps, 4 classes "a".."d"), shared by
    the training, steps-per-loop and data-service tests (read-only)."""
    from tests.fixtures.records import write_synthetic_shards
    d = tmp_path_factory.mktemp("learnable_shards")
    write_synthetic_shards(str(d), num_videos=8, seconds=3.0, fps=4.0, num_shards=2,
                           labels=["a", "b", "c", "d"], learnable=True)
    return str(d / "*.tfrecord")
