"""What ran a benchmark: one description shared by every benchmark's table and JSON."""

import os
import platform
import statistics
import time
from typing import Callable, Dict


def machine_info(with_tensorflow: bool = True) -> Dict[str, object]:
    """CPU model, logical cores (total, usable by this process), load average,
    Python and (optionally) TensorFlow version with the GPUs it sees.

    Keys: cpu, cpu_count, cores_usable, load_average, python, and with
    TensorFlow: tensorflow, gpus (device names), device ("GPU" or "CPU").
    """
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")), cpu)
    except OSError:
        pass
    info = {
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "python": platform.python_version(),
    }
    if with_tensorflow:
        # TensorFlow only when asked: it costs seconds, and the SVM benchmark
        # (numpy and scikit-learn only) describes its machine without it.
        import tensorflow as tf  # noqa: PLC0415
        gpus = [tf.config.experimental.get_device_details(g).get("device_name", g.name)
                for g in tf.config.list_physical_devices("GPU")]
        info.update(tensorflow=tf.__version__, gpus=gpus, device="GPU" if gpus else "CPU")
    return info



def median_seconds(fn: Callable[[], object], repeats: int) -> float:
    """The median wall-clock seconds of `repeats` calls of fn()."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def matmul_peak_gflops(size: int = 2048) -> float:
    """float32 GFLOP/s of a size x size matmul in TensorFlow (after one warm-up, median of 3):
    this machine's practical peak, the yardstick of the compute-bound benchmarks."""
    import tensorflow as tf  # noqa: PLC0415
    a = tf.random.normal([size, size])
    tf.linalg.matmul(a, a).numpy()
    return 2 * size ** 3 / median_seconds(lambda: tf.linalg.matmul(a, a).numpy(), 3) / 1e9
