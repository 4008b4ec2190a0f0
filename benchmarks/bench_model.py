"""The paper network's throughput under each Keras backend: forward and forward+backward.

  python benchmarks/bench_model.py --quick                 # CPU: batch 16, float32
  python benchmarks/bench_model.py --backends=jax,torch --time_budget_s=270   # a GPU machine

For every installed backend (tensorflow, jax, torch; each in its own process,
since the Keras backend is fixed per process), every batch size (16, 64, 256)
and precision (float32; bf16 = Keras "mixed_bfloat16", front end still
float64 -> float32), it times

  forward   avc model, inference mode: pairs/s of (image, waveform) -> logits
  train     forward + backward: loss and the gradient of every trainable
            variable (training-mode batch norm); no optimiser update

on one synthetic batch that already sits on the device, compiled the way the
backend compiles (TensorFlow: tf.function, XLA with --tf_jit_compile; JAX:
jax.jit of `stateless_call`; PyTorch: eager). FLOPs are counted from the conv
and dense shapes (2 per multiply-add; train = 3 x forward; front end,
batch norm and pooling left out: under 1 %). Beside each rate: the
FLOP-based limit (measured matmul peak / FLOPs per pair) and the achieved
fraction of that peak. The peak is measured here per backend and precision:
the best rate of a chain of n x n matmuls.

Imports no TensorFlow unless the tensorflow backend runs, so it works on a
machine with only JAX or PyTorch and `keras` (benchmarks/device/README.md).
"""

import json
import os
import subprocess
import sys
import time
from importlib.util import find_spec
from typing import Dict, List

from absl import app, flags
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from benchmarks.machine import machine_info  # noqa: E402

BACKENDS = ("tensorflow", "jax", "torch")
DTYPES = ("float32", "bf16")
MODES = ("forward", "train")

flags.DEFINE_list("backends", None, "Backends to measure (default: every installed one).")
flags.DEFINE_string("preset", "paper", "Preset (with an optional front end, e.g. paper-mel128).")
flags.DEFINE_list("batch_sizes", ["16", "64", "256"], "Pairs per call.")
flags.DEFINE_list("dtypes", list(DTYPES), "float32 and/or bf16.")
flags.DEFINE_bool("quick", False, "Batch 16, float32, 2 timed calls: a CPU run of a few minutes.")
flags.DEFINE_float("min_seconds", 2.0, "Timed seconds per measurement (at least 2 calls).")
flags.DEFINE_float("time_budget_s", 270.0, "Stop starting measurements after this many seconds "
                   "(the rest are reported as skipped).")
flags.DEFINE_bool("tf_jit_compile", False, "XLA-compile the TensorFlow functions.")
flags.DEFINE_integer("matmul_size", None, "Side of the peak matmul (default 8192 on GPU, 2048 on CPU).")
flags.DEFINE_string("output_json", None, "Write the report here.")
flags.DEFINE_string("worker", None, "Internal: measure this backend and print JSON.")
FLAGS = flags.FLAGS


def installed_backends() -> List[str]:
    return [b for b in BACKENDS if find_spec(b) is not None]


def forward_flops(avc_model) -> Dict[str, int]:
    """FLOPs of one pair's forward pass per subnetwork (conv + dense; 2 per multiply-add)."""
    from l3.model import network as model_lib  # noqa: PLC0415  (after the backend is chosen)
    counts = {}
    for name, net in model_lib.subnetworks(avc_model).items():
        total = 0
        for layer in net.layers:
            kernel = getattr(layer, "kernel", None)
            if kernel is None:
                continue
            if len(kernel.shape) == 4:  # conv: every output position x kh*kw*cin*cout
                total += 2 * int(np.prod(layer.output.shape[1:3])) * int(np.prod(kernel.shape))
            else:
                total += 2 * int(np.prod(kernel.shape))
        counts[name] = total
    counts["total"] = sum(counts.values())
    return counts


# --- per-backend pieces: device, batch, compiled forward / train, matmul peak -------------

class _TF:
    def __init__(self, jit):
        import tensorflow as tf  # noqa: PLC0415  (only in the tensorflow worker)
        self.tf, self.jit = tf, jit
        self.gpu = bool(tf.config.list_logical_devices("GPU"))

    def describe(self):
        tf = self.tf
        gpus = [tf.config.experimental.get_device_details(g).get("device_name", g.name)
                for g in tf.config.list_physical_devices("GPU")]
        return {"version": tf.__version__, "device": gpus[0] if gpus else "CPU"}

    def batch(self, preset, n):
        rng = self.tf.random.Generator.from_seed(0)
        return ({"image": rng.uniform([n, preset.image_size, preset.image_size, 3]),
                 "waveform": 0.1 * rng.normal([n, preset.clip_samples])},
                self.tf.range(n, dtype=self.tf.int32) % 2)

    def functions(self, model):
        tf, keras = self.tf, __import__("keras")

        @tf.function(jit_compile=self.jit)
        def forward(x, y):
            return tf.reduce_sum(model(x, training=False))

        @tf.function(jit_compile=self.jit)
        def train(x, y):
            with tf.GradientTape() as tape:
                logits = model(x, training=True)
                loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(
                    y, logits, from_logits=True))
            grads = tape.gradient(loss, model.trainable_variables)
            return loss + tf.add_n([tf.reduce_sum(tf.cast(g, tf.float32)) for g in grads])

        return {"forward": lambda x, y: forward(x, y).numpy(),
                "train": lambda x, y: train(x, y).numpy()}

    def matmul_chain(self, n, dtype, reps):
        tf = self.tf
        a = tf.cast(tf.random.normal([n, n]) / np.sqrt(n), dtype)

        @tf.function(jit_compile=self.jit)
        def chain(c):
            for _ in range(reps):
                c = tf.matmul(c, a)
            return tf.reduce_sum(tf.cast(c[0], tf.float32))

        return lambda: chain(a).numpy()


class _JAX:
    def __init__(self):
        import jax  # noqa: PLC0415  (only in the jax worker)
        self.jax = jax
        self.gpu = jax.default_backend() != "cpu"

    def describe(self):
        d = self.jax.devices()[0]
        return {"version": self.jax.__version__, "device": getattr(d, "device_kind", str(d))}

    def batch(self, preset, n):
        jnp, rng = self.jax.numpy, self.jax.random
        k1, k2 = rng.split(rng.PRNGKey(0))
        return ({"image": rng.uniform(k1, (n, preset.image_size, preset.image_size, 3)),
                 "waveform": 0.1 * rng.normal(k2, (n, preset.clip_samples))},
                jnp.arange(n, dtype=jnp.int32) % 2)

    def functions(self, model):
        jax, jnp = self.jax, self.jax.numpy
        tv = [v.value for v in model.trainable_variables]
        ntv = [v.value for v in model.non_trainable_variables]

        def loss_fn(tv, ntv, x, y):
            logits, ntv = model.stateless_call(tv, ntv, x, training=True)
            logp = jax.nn.log_softmax(logits.astype(jnp.float32))
            return -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=1)), ntv

        grad = jax.value_and_grad(loss_fn, has_aux=True)

        @jax.jit
        def train(tv, ntv, x, y):
            (loss, _), grads = grad(tv, ntv, x, y)
            return loss + sum(jnp.sum(g.astype(jnp.float32)) for g in grads)

        @jax.jit
        def forward(tv, ntv, x):
            return jnp.sum(model.stateless_call(tv, ntv, x, training=False)[0])

        return {"forward": lambda x, y: forward(tv, ntv, x).block_until_ready(),
                "train": lambda x, y: train(tv, ntv, x, y).block_until_ready()}

    def matmul_chain(self, n, dtype, reps):
        jax, jnp = self.jax, self.jax.numpy
        a = (jax.random.normal(jax.random.PRNGKey(1), (n, n)) / np.sqrt(n)).astype(dtype)

        @jax.jit
        def chain(c):
            for _ in range(reps):
                c = c @ a
            return jnp.sum(c[0].astype(jnp.float32))

        return lambda: chain(a).block_until_ready()


class _Torch:
    def __init__(self):
        import torch  # noqa: PLC0415  (only in the torch worker)
        self.torch = torch
        self.gpu = torch.cuda.is_available()
        self.device = "cuda" if self.gpu else "cpu"

    def describe(self):
        t = self.torch
        return {"version": t.__version__,
                "device": t.cuda.get_device_name(0) if self.gpu else "CPU"}

    def sync(self):
        if self.gpu:
            self.torch.cuda.synchronize()

    def batch(self, preset, n):
        t = self.torch
        g = t.Generator(device=self.device).manual_seed(0)
        return ({"image": t.rand((n, preset.image_size, preset.image_size, 3), generator=g,
                                 device=self.device),
                 "waveform": 0.1 * t.randn((n, preset.clip_samples), generator=g, device=self.device)},
                t.arange(n, device=self.device) % 2)

    def functions(self, model):
        t = self.torch

        def forward(x, y):
            with t.no_grad():
                out = model(x, training=False).sum().item()
            self.sync()
            return out

        def train(x, y):
            model.zero_grad(set_to_none=True)
            logits = model(x, training=True)
            loss = t.nn.functional.cross_entropy(logits.float(), y)
            loss.backward()
            self.sync()
            return loss.item()

        return {"forward": forward, "train": train}

    def matmul_chain(self, n, dtype, reps):
        t = self.torch
        a = (t.randn((n, n), device=self.device) / np.sqrt(n)).to(getattr(t, dtype))

        def chain():
            c = a
            with t.no_grad():
                for _ in range(reps):
                    c = c @ a
            self.sync()
            return c

        return chain


def _timed(fn, min_seconds: float, min_calls: int = 2) -> Dict[str, float]:
    t = time.perf_counter()
    fn()  # trace / compile / warm up
    compile_s = time.perf_counter() - t
    times, begin = [], time.perf_counter()
    while len(times) < min_calls or time.perf_counter() - begin < min_seconds:
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return {"seconds": float(np.median(times)), "best_seconds": float(min(times)),
            "calls": len(times), "compile_seconds": compile_s}


def run_worker(backend: str, *, preset_name: str, batch_sizes, dtypes, min_seconds: float,
               budget_s: float, tf_jit: bool, matmul_size=None) -> Dict:
    """Measures one backend in this process (KERAS_BACKEND must already be `backend`)."""
    start = time.perf_counter()
    import keras  # noqa: PLC0415  (after KERAS_BACKEND is set)
    from l3.model import network as model_lib  # noqa: PLC0415
    from l3.core import presets
    if keras.backend.backend() != backend:
        raise RuntimeError(f"KERAS_BACKEND is {keras.backend.backend()!r}, not {backend!r}")
    impl = {"tensorflow": lambda: _TF(tf_jit), "jax": _JAX, "torch": _Torch}[backend]()
    preset = presets.get_preset(preset_name)
    n = matmul_size or (8192 if impl.gpu else 2048)
    reps = 10 if impl.gpu else 1
    report = {"backend": backend, **impl.describe(), "preset": preset.key, "results": [],
              "matmul_peak_gflops": {}}
    for dtype in dtypes:
        keras.config.set_dtype_policy("mixed_bfloat16" if dtype == "bf16" else "float32")
        try:
            chain = impl.matmul_chain(n, "bfloat16" if dtype == "bf16" else "float32", reps)
            # the best call: a peak, not a typical rate (other processes may share the machine)
            peak_t = _timed(chain, 1.0 if impl.gpu else 2.0, min_calls=3)
            peak = 2.0 * n ** 3 * reps / peak_t["best_seconds"] / 1e9
            report["matmul_peak_gflops"][dtype] = peak
            keras.utils.set_random_seed(0)
            model = model_lib.build_avc_model(preset)
            flops = forward_flops(model)
            fns = impl.functions(model)
        except Exception as e:  # noqa: BLE001  (a backend without this precision: say so, go on)
            report["results"].append({"dtype": dtype, "error": f"{type(e).__name__}: {e}"[:300]})
            continue
        for batch in batch_sizes:
            x, y = impl.batch(preset, batch)
            for mode in MODES:
                row = {"dtype": dtype, "batch_size": batch, "mode": mode}
                gflop = (1 if mode == "forward" else 3) * flops["total"] / 1e9
                row.update(gflop_per_pair=gflop, limit_pairs_per_second=peak / gflop)
                if time.perf_counter() - start > budget_s:
                    report["results"].append({**row, "skipped": "time budget"})
                    continue
                try:
                    timing = _timed(lambda: fns[mode](x, y), min_seconds)
                except Exception as e:  # noqa: BLE001  (e.g. out of memory at batch 256)
                    report["results"].append({**row, "error": f"{type(e).__name__}: {e}"[:300]})
                    continue
                pairs = batch / timing["seconds"]
                report["results"].append({**row, **timing, "pairs_per_second": pairs,
                                          "achieved_gflops": pairs * gflop,
                                          "fraction_of_matmul_peak": pairs * gflop / peak})
        keras.config.set_dtype_policy("float32")
    report["seconds"] = time.perf_counter() - start
    return report


def run_benchmark(backends, *, preset_name="paper", batch_sizes=(16, 64, 256), dtypes=DTYPES,
                  min_seconds=2.0, time_budget_s=270.0, tf_jit=False, matmul_size=None) -> Dict:
    """Runs one worker process per backend within the time budget; returns the report."""
    start = time.perf_counter()
    reports = []
    for i, backend in enumerate(backends):
        # an equal share of what is left for each backend still to run
        left = (time_budget_s - (time.perf_counter() - start)) / (len(backends) - i)
        cmd = [sys.executable, os.path.abspath(__file__), f"--worker={backend}",
               f"--preset={preset_name}", f"--batch_sizes={','.join(map(str, batch_sizes))}",
               f"--dtypes={','.join(dtypes)}", f"--min_seconds={min_seconds}",
               f"--time_budget_s={max(left, 0.0)}", f"--tf_jit_compile={tf_jit}"]
        if matmul_size:
            cmd.append(f"--matmul_size={matmul_size}")
        env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "2"}
        try:
            # the worker stops starting measurements at the budget; one may still be running
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env,
                                  timeout=max(left, 0.0) + 120)
        except subprocess.TimeoutExpired:
            reports.append({"backend": backend, "error": "timed out"})
            continue
        if proc.returncode != 0:
            reports.append({"backend": backend, "error": proc.stderr.strip().splitlines()[-1:]})
            continue
        reports.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    return {"machine": machine_info(with_tensorflow=False), "backends": reports,
            "seconds": time.perf_counter() - start}


def format_table(report: Dict) -> str:
    m = report["machine"]
    lines = [f"machine: {m['cpu']} ({m['cores_usable']} cores usable), load {m['load_average']}",
             f"{'backend':10s} {'device':>14s} {'dtype':>7s} {'batch':>5s} {'mode':>7s} "
             f"{'ms/call':>9s} {'pairs/s':>9s} {'limit':>9s} {'GFLOP/s':>9s} {'of peak':>8s}"]
    for b in report["backends"]:
        if "error" in b and "results" not in b:
            lines.append(f"{b['backend']:10s} error: {b['error']}")
            continue
        peaks = ", ".join(f"{k} {v:.0f}" for k, v in b["matmul_peak_gflops"].items())
        lines.append(f"{b['backend']} {b['version']} on {b['device']}; preset {b['preset']}; "
                     f"measured matmul peak GFLOP/s: {peaks}")
        for r in b["results"]:
            head = f"{b['backend']:10s} {b['device'][:14]:>14s} {r['dtype']:>7s} "
            if "mode" not in r:
                lines.append(head + f"error: {r['error']}")
                continue
            head += f"{r['batch_size']:5d} {r['mode']:>7s} "
            limit = f"{r['limit_pairs_per_second']:9.1f}"
            if "pairs_per_second" not in r:
                lines.append(head + f"{r.get('skipped') or r.get('error')}  (limit {limit.strip()})")
                continue
            lines.append(head + f"{1e3 * r['seconds']:9.1f} {r['pairs_per_second']:9.1f} {limit} "
                         f"{r['achieved_gflops']:9.1f} {100 * r['fraction_of_matmul_peak']:7.1f}%")
    lines.append("limit = measured matmul peak / GFLOP per pair (forward 1x, train 3x the "
                 "forward FLOPs); of peak = achieved GFLOP/s / that peak")
    return "\n".join(lines)


def main(argv):
    del argv
    batch_sizes = [16] if FLAGS.quick else [int(b) for b in FLAGS.batch_sizes]
    dtypes = ["float32"] if FLAGS.quick else FLAGS.dtypes
    min_seconds = 0.0 if FLAGS.quick else FLAGS.min_seconds
    bad = [d for d in dtypes if d not in DTYPES]
    if bad:
        raise app.UsageError(f"--dtypes: unknown {bad}; choose from {list(DTYPES)}")
    if FLAGS.worker:
        report = run_worker(FLAGS.worker, preset_name=FLAGS.preset, batch_sizes=batch_sizes,
                            dtypes=dtypes, min_seconds=min_seconds, budget_s=FLAGS.time_budget_s,
                            tf_jit=FLAGS.tf_jit_compile, matmul_size=FLAGS.matmul_size)
        print(json.dumps(report))
        return
    backends = FLAGS.backends or installed_backends()
    missing = [b for b in backends if b not in BACKENDS or find_spec(b) is None]
    if missing:
        raise app.UsageError(f"--backends: {missing} not installed (installed: {installed_backends()})")
    report = run_benchmark(backends, preset_name=FLAGS.preset, batch_sizes=batch_sizes,
                           dtypes=dtypes, min_seconds=min_seconds, time_budget_s=FLAGS.time_budget_s,
                           tf_jit=FLAGS.tf_jit_compile, matmul_size=FLAGS.matmul_size)
    print(format_table(report))
    if FLAGS.output_json:
        from l3.core import fileio  # noqa: PLC0415  (keeps --help free of the l3 import)
        fileio.write_json(FLAGS.output_json, report)


if __name__ == "__main__":
    app.run(main)
