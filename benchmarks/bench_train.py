"""Training-step throughput: pairs/s, achieved FLOP/s, fraction of matmul peak.

  python benchmarks/bench_train.py --output_json=/tmp/bench_train.json
  python benchmarks/bench_train.py --presets=paper --batch_size=16 --mixed_precision=bf16 \\
      --jit_compile   # one GPU's share of the paper's global batch
  python benchmarks/bench_train.py --presets=paper --batch_size=16 --steps_per_loop=1,8

Measures the real distributed training step (`l3.train.Trainer`: forward,
backward, L2, Adam, metric all-reduce) on one device, fed one synthetic batch
that already sits on the device, so it times the step, not the input
pipeline. FLOPs are counted from the conv and dense shapes (2 per
multiply-add; training = 3 x forward: the forward pass, and the backward pass
for activations and for weights). The spectrogram, batch norm, ReLU and
pooling are left out (well under 1 % of the convolutions). The peak is
measured here, not taken from a data sheet: the best rate of a large square
`tf.matmul` in the step's compute dtype.

With `--steps_per_loop=1,8` it also times the training loop's own function
(`Trainer.make_loop_function`, as `l3-train --steps_per_loop` runs it) for
each loop length over the same number of steps: wall time per step and the
calling (host) thread's CPU time per step, i.e. what one tf.function call
and its host sync cost, spread over the steps of a loop.

`run_benchmark(...)` returns the dict that `--output_json` writes.
"""

import os
import sys
import time
from typing import Dict, Optional, Sequence

from absl import app
from absl import flags
import numpy as np
import tensorflow as tf

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.machine import machine_info  # noqa: E402
from l3.core import fileio
from l3.model import network as model_lib
from l3.train import precision
from l3.core import presets as presets_lib
from l3.train import loop as train_lib

flags.DEFINE_list("presets", ["small", "paper"], "Presets to measure.")
flags.DEFINE_integer("batch_size", None,
                     "Pairs per step (default: small 64, paper 16 = one GPU's share of 256).")
flags.DEFINE_integer("steps", None, "Timed steps (default: enough for ~10 s, at least 3).")
flags.DEFINE_enum("mixed_precision", "none", list(precision.MIXED_PRECISION), "Precision.")
flags.DEFINE_bool("jit_compile", False, "XLA-compile the step.")
flags.DEFINE_integer("matmul_size", None, "Side of the peak-measuring matmul (default: 4096 "
                     "on GPU, 2048 on CPU).")
flags.DEFINE_list("steps_per_loop", [], "Also time the loop function at these loop lengths "
                  "(e.g. 1,8), over the same steps (--loop_steps).")
flags.DEFINE_integer("loop_steps", 8, "Timed steps per loop length (a multiple of each).")
flags.DEFINE_string("output_json", None, "Write the results here.")
FLAGS = flags.FLAGS

DEFAULT_BATCH = {"small": 64, "paper": 16}
COMPUTE_DTYPE = {"none": tf.float32, "bf16": tf.bfloat16, "fp16": tf.float16}


def _layers(model):
    for layer in model.layers:
        yield layer
        if hasattr(layer, "layers"):
            yield from _layers(layer)


def forward_flops(preset) -> Dict[str, int]:
    """FLOPs (2 per multiply-add) of one pair's forward pass, per subnetwork."""
    nets = model_lib.subnetworks(model_lib.build_avc_model(preset))
    counts = {}
    for name, net in nets.items():
        total = 0
        for layer in _layers(net):
            kernel = getattr(layer, "kernel", None)
            if kernel is None:
                continue
            if len(kernel.shape) == 4:  # conv: every output position x kh*kw*cin*cout
                out = layer.output.shape
                total += 2 * int(np.prod(out[1:3])) * int(np.prod(kernel.shape))
            else:  # dense
                total += 2 * int(np.prod(kernel.shape))
        counts[name] = total
    counts["total"] = sum(counts.values())
    return counts


def matmul_peak(dtype=tf.float32, n: Optional[int] = None, seconds: float = 3.0) -> float:
    """Best achieved GFLOP/s of an n x n x n matmul in `dtype` on the default device."""
    gpu = bool(tf.config.list_logical_devices("GPU"))
    n = n or (4096 if gpu else 2048)
    a = tf.random.normal([n, n], dtype=tf.float32)
    a, b = tf.cast(a, dtype), tf.cast(tf.transpose(a), dtype)
    reps = 10 if gpu else 1

    @tf.function
    def run():
        acc = tf.zeros([], tf.float32)
        for _ in range(reps):  # unrolled: no host round trip between matmuls
            acc += tf.cast(tf.matmul(a, b)[0, 0], tf.float32)
        return acc

    run().numpy()  # trace, warm up
    best, begin = 0.0, time.perf_counter()
    while time.perf_counter() - begin < seconds:
        t = time.perf_counter()
        run().numpy()
        best = max(best, 2.0 * n ** 3 * reps / (time.perf_counter() - t) / 1e9)
    return best


def _synthetic_batch(preset, batch_size: int):
    """A training batch as the pipeline emits it: uint8 frames (the step scales and jitters
    them on the device), float32 waveforms, balanced labels."""
    rng = tf.random.Generator.from_seed(0)
    image = tf.cast(rng.uniform([batch_size, preset.image_size, preset.image_size, 3],
                                maxval=256.0), tf.uint8)
    waveform = 0.1 * rng.normal([batch_size, preset.clip_samples])
    label = tf.range(batch_size, dtype=tf.int32) % 2
    return image, waveform, label


def _trainer_and_batch(preset, batch_size: int, mixed_precision: str, jit_compile: bool):
    """A fresh `Trainer` on the first GPU (else the CPU) and a synthetic batch on that device."""
    strategy = tf.distribute.OneDeviceStrategy(
        "/gpu:0" if tf.config.list_logical_devices("GPU") else "/cpu:0")
    trainer = train_lib.Trainer(preset, strategy, global_batch_size=batch_size,
                                learning_rate=preset.learning_rate,
                                weight_decay=preset.weight_decay,
                                mixed_precision=mixed_precision, jit_compile=jit_compile)
    with tf.device(strategy.extended.worker_devices[0]):
        batch = _synthetic_batch(preset, batch_size)
    return trainer, batch


def step_throughput(preset, batch_size: int, *, mixed_precision: str = "none",
                    jit_compile: bool = False, steps: Optional[int] = None,
                    min_seconds: float = 10.0) -> Dict:
    """Times the training step; returns pairs/s and seconds per step."""
    trainer, batch = _trainer_and_batch(preset, batch_size, mixed_precision, jit_compile)
    step = trainer.make_train_function(lambda: batch)
    stop = tf.constant(0.0)
    t = time.perf_counter()
    step(stop)["cross_entropy"].numpy()  # trace and compile
    compile_seconds = time.perf_counter() - t
    t = time.perf_counter()
    step(stop)["cross_entropy"].numpy()  # warm-up
    estimate = time.perf_counter() - t
    steps = steps or max(3, int(min_seconds / max(estimate, 1e-3)))
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        step(stop)["cross_entropy"].numpy()  # the training loop also syncs every step
        times.append(time.perf_counter() - t)
    seconds = float(np.median(times))
    return {"batch_size": batch_size, "steps": steps, "seconds_per_step": seconds,
            "pairs_per_second": batch_size / seconds, "compile_seconds": compile_seconds}


def loop_timing(preset, batch_size: int, steps_per_loop: Sequence[int], *, steps: int = 8,
                mixed_precision: str = "none", jit_compile: bool = False) -> list:
    """Per loop length: wall and host-thread CPU seconds per step over `steps` timed steps."""
    rows = []
    for n in steps_per_loop:
        if steps % n:
            raise ValueError(f"--loop_steps={steps} is not a multiple of steps_per_loop {n}")
        trainer, batch = _trainer_and_batch(preset, batch_size, mixed_precision, jit_compile)
        loop = trainer.make_loop_function(lambda: batch)
        stop, length = tf.constant(0.0), tf.constant(n, tf.int32)
        loop(stop, length)["cross_entropy"].numpy()  # trace, compile, warm up
        wall, cpu = time.perf_counter(), time.thread_time()
        for _ in range(steps // n):
            loop(stop, length)["cross_entropy"].numpy()  # the training loop syncs once per loop
        wall, cpu = time.perf_counter() - wall, time.thread_time() - cpu
        rows.append({"steps_per_loop": n, "steps": steps, "seconds_per_step": wall / steps,
                     "host_cpu_seconds_per_step": cpu / steps})
    return rows


def run_benchmark(presets: Sequence[str] = ("small", "paper"), *,
                  batch_sizes: Optional[Dict[str, int]] = None, mixed_precision: str = "none",
                  jit_compile: bool = False, steps: Optional[int] = None,
                  matmul_size: Optional[int] = None, steps_per_loop: Sequence[int] = (),
                  loop_steps: int = 8) -> Dict:
    """Measures every preset; returns {"machine", "matmul_peak_gflops", "results": [...]}."""
    peak = matmul_peak(COMPUTE_DTYPE[mixed_precision], matmul_size)
    results = []
    for name in presets:
        preset = presets_lib.get_preset(name)
        batch = (batch_sizes or {}).get(name) or DEFAULT_BATCH.get(name, preset.global_batch_size)
        flops = forward_flops(preset)
        timing = step_throughput(preset, batch, mixed_precision=mixed_precision,
                                 jit_compile=jit_compile, steps=steps)
        train_gflop = 3 * flops["total"] / 1e9
        achieved = timing["pairs_per_second"] * train_gflop
        loops = (loop_timing(preset, batch, steps_per_loop, steps=loop_steps,
                             mixed_precision=mixed_precision, jit_compile=jit_compile)
                 if steps_per_loop else [])
        results.append({
            "preset": name, **timing, "loops": loops,
            "forward_gflop_per_pair": {k: v / 1e9 for k, v in flops.items()},
            "train_gflop_per_pair": train_gflop,
            "achieved_gflops": achieved,
            "fraction_of_matmul_peak": achieved / peak,
        })
    return {"machine": machine_info(), "mixed_precision": mixed_precision, "jit_compile": jit_compile,
            "matmul_peak_gflops": peak, "matmul_dtype": COMPUTE_DTYPE[mixed_precision].name,
            "results": results}


def format_table(report: Dict) -> str:
    m = report["machine"]
    lines = [f"machine: {m['cpu']} ({m['cores_usable']} cores available), "
             f"GPUs: {', '.join(m['gpus']) or 'none'}; TensorFlow {m['tensorflow']}",
             f"precision {report['mixed_precision']}, jit {report['jit_compile']}; measured "
             f"{report['matmul_dtype']} matmul peak {report['matmul_peak_gflops']:.1f} GFLOP/s",
             f"{'preset':8s} {'batch':>5s} {'step ms':>9s} {'pairs/s':>9s} "
             f"{'GFLOP/pair':>10s} {'GFLOP/s':>9s} {'of peak':>8s}"]
    for r in report["results"]:
        lines.append(f"{r['preset']:8s} {r['batch_size']:5d} {1e3 * r['seconds_per_step']:9.1f} "
                     f"{r['pairs_per_second']:9.1f} {r['train_gflop_per_pair']:10.2f} "
                     f"{r['achieved_gflops']:9.1f} {100 * r['fraction_of_matmul_peak']:7.1f}%")
    loops = [(r, row) for r in report["results"] for row in r.get("loops", [])]
    if loops:
        lines.append(f"{'preset':8s} {'batch':>5s} {'steps/loop':>10s} {'ms/step':>9s} "
                     f"{'host CPU ms/step':>16s}")
        for r, row in loops:
            lines.append(f"{r['preset']:8s} {r['batch_size']:5d} {row['steps_per_loop']:10d} "
                         f"{1e3 * row['seconds_per_step']:9.1f} "
                         f"{1e3 * row['host_cpu_seconds_per_step']:16.2f}")
    return "\n".join(lines)


def main(argv):
    del argv
    batch_sizes = {name: FLAGS.batch_size for name in FLAGS.presets} if FLAGS.batch_size else None
    report = run_benchmark(FLAGS.presets, batch_sizes=batch_sizes,
                           mixed_precision=FLAGS.mixed_precision, jit_compile=FLAGS.jit_compile,
                           steps=FLAGS.steps, matmul_size=FLAGS.matmul_size,
                           steps_per_loop=[int(n) for n in FLAGS.steps_per_loop],
                           loop_steps=FLAGS.loop_steps)
    print(format_table(report))
    if FLAGS.output_json:
        fileio.write_json(FLAGS.output_json, report)


if __name__ == "__main__":
    app.run(main)
