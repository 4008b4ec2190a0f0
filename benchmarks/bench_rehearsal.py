"""Rehearse a distributed training job on this machine's CPU, and report what it costs.

  python benchmarks/bench_rehearsal.py --workers=4 --replicas_per_worker=4 \\
      --global_batch_size=256 --train_steps=6          # the paper's 16 replicas of 16 pairs
  python benchmarks/bench_rehearsal.py --workers=2 --replicas_per_worker=2 -- \\
      --mixed_precision=bf16 --sync_batch_norm --steps_per_loop=2   # flags for l3-train

Runs the real job: `launch/local_multiworker.py` with `l3-train --cpu_replicas`
(one process with `--workers=1`), small preset by default, on real shards
(`--train_pattern`, else synthetic builder-like shards), then the same global
batch for the same steps on one device (`l3-train --strategy=one_device`).
Reports:

* steps/s of the rehearsal and of one device: the chief's pairs/s over the
  timed steps (the first loop traces and is not timed) / global batch;
* the all-reduce payload per replica per step, computed from the model's
  variables (not measured on the wire): the gradients (every trainable
  variable, float32), the BN moving statistics (averaged every step unless
  sync BN), sync BN's statistics (forward: sum, squared sum and count per
  channel; backward: the first two again), the step's 5 outputs; and what a
  ring all-reduce sends per replica, 2 (N - 1) / N x payload;
* checkpoint size (the chief's model checkpoint and every worker's input
  position, last step) and write time (median over the run's saves, chief).

The replicas share this machine's cores: the rates say what the job does and
what its overheads are here, not how fast GPUs would run it.
"""

import json
import math
import os
import subprocess
import sys
import tempfile
from typing import Dict, List, Optional, Sequence

from absl import app, flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from benchmarks.machine import machine_info  # noqa: E402
from l3.core import fileio  # noqa: E402

flags.DEFINE_integer("workers", 4, "Worker processes (1: one process, Mirrored).")
flags.DEFINE_integer("replicas_per_worker", 4, "CPU replicas per worker (--cpu_replicas).")
flags.DEFINE_string("preset", "small", "Preset.")
flags.DEFINE_integer("global_batch_size", 256, "Global batch (the paper's: 256).")
flags.DEFINE_integer("train_steps", 6, "Steps of each run.")
flags.DEFINE_integer("checkpoint_every", None, "Steps between saves (default: half the run).")
flags.DEFINE_string("train_pattern", None, "Shards (default: synthetic, written here).")
flags.DEFINE_integer("threads_per_worker", None, "TF threads per worker (default: cores / workers).")
flags.DEFINE_bool("one_device", True, "Also run the same steps on one device.")
flags.DEFINE_string("work_dir", None, "Keep the runs here (default: a temporary folder).")
flags.DEFINE_string("output_json", None, "Write the report here.")
FLAGS = flags.FLAGS


def allreduce_payload(preset_name: str, replicas: int, sync_batch_norm: bool) -> Dict:
    """Bytes each replica contributes to the step's all-reduces, from the model's variables."""
    import keras  # noqa: PLC0415 (TensorFlow: only here)
    from l3.core import presets  # noqa: PLC0415
    from l3.model import network  # noqa: PLC0415
    model = network.build_avc_model(presets.get_preset(preset_name))
    gradients = 4 * sum(math.prod(v.shape) for v in model.trainable_variables)
    channels = [int(layer.moving_mean.shape[0]) for layer in model._flatten_layers()
                if isinstance(layer, keras.layers.BatchNormalization)]
    bn_moving = 0 if sync_batch_norm or replicas == 1 else 4 * 2 * sum(channels)
    sync = 4 * (3 + 2) * sum(channels) if sync_batch_norm and replicas > 1 else 0
    outputs = 4 * 5
    total = gradients + bn_moving + sync + outputs
    ring = 2 * (replicas - 1) / replicas
    return {"gradients": gradients, "bn_moving_statistics": bn_moving,
            "sync_bn_statistics": sync, "step_outputs": outputs, "total": total,
            "ring_bytes_sent_per_replica": ring * total, "bn_layers": len(channels),
            "trainable_parameters": gradients // 4}


def _files_bytes(paths: Sequence[str]) -> int:
    return sum(os.path.getsize(p) for p in paths if os.path.isfile(p))


def checkpoint_bytes(model_dir: str, step: int) -> Dict[str, int]:
    """Sizes of ckpt-<step> (the chief's model) and of every worker's input position."""
    import glob  # noqa: PLC0415
    model = _files_bytes(glob.glob(os.path.join(model_dir, f"ckpt-{step}.*")))
    inputs = _files_bytes(glob.glob(os.path.join(model_dir, "input_state", "worker-*",
                                                 f"ckpt-{step}.*")))
    return {"model_checkpoint": model, "input_state": inputs, "total": model + inputs}


def _train_args(pattern: str, model_dir: str, steps: int, batch: int, every: int,
                preset: str, summary: str, extra: Sequence[str]) -> List[str]:
    return [f"--train_pattern={pattern}", f"--model_dir={model_dir}", f"--preset={preset}",
            f"--global_batch_size={batch}", f"--train_steps={steps}",
            f"--checkpoint_every={every}", f"--log_every={steps}", f"--output_json={summary}",
            *extra]


def _run(cmd: List[str], log: str, threads: Optional[int] = None) -> None:
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
               TF_CPP_MIN_LOG_LEVEL=os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"))
    if threads:
        env.update(TF_NUM_INTRAOP_THREADS=str(threads), TF_NUM_INTEROP_THREADS=str(threads))
    with open(log, "w") as out:
        proc = subprocess.run(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
    if proc.returncode:
        with open(log) as f:
            tail = f.read()[-3000:]
        raise RuntimeError(f"{' '.join(cmd[:4])} ... exited with {proc.returncode}:\n{tail}")


def rehearse(work_dir: str, pattern: str, *, workers: int, replicas_per_worker: int,
             preset: str = "small", global_batch_size: int = 256, train_steps: int = 6,
             checkpoint_every: Optional[int] = None, threads: Optional[int] = None,
             one_device: bool = True, extra: Sequence[str] = ()) -> Dict:
    """Runs the rehearsal (and the one-device run); returns the report (module docstring)."""
    every = checkpoint_every or max(1, train_steps // 2)
    replicas = workers * replicas_per_worker
    cores = len(os.sched_getaffinity(0))
    threads = threads or max(1, cores // workers)
    model_dir, summary = os.path.join(work_dir, "rehearsal"), os.path.join(work_dir, "rehearsal.json")
    args = _train_args(pattern, model_dir, train_steps, global_batch_size, every, preset, summary,
                       [f"--cpu_replicas={replicas_per_worker}", *extra])
    if workers > 1:
        cmd = [sys.executable, os.path.join(ROOT, "launch", "local_multiworker.py"),
               f"--num_workers={workers}", f"--threads_per_worker={threads}",
               f"--worker_log_dir={os.path.join(work_dir, 'logs')}", "--", *args]
    else:
        cmd = [sys.executable, "-m", "l3.bin.train", *args]
    _run(cmd, os.path.join(work_dir, "rehearsal.log"), threads if workers == 1 else None)
    with open(summary) as f:
        run = json.load(f)
    sync = "--sync_batch_norm" in extra
    report = {
        "workers": workers, "replicas_per_worker": replicas_per_worker, "replicas": replicas,
        "preset": preset, "global_batch_size": global_batch_size,
        "pairs_per_replica": global_batch_size // replicas, "train_steps": train_steps,
        "threads_per_worker": threads, "extra_flags": list(extra),
        "steps_per_second": run["pairs_per_second"] / global_batch_size,
        "pairs_per_second": run["pairs_per_second"],
        "checkpoint_write_seconds": run["checkpoint_write_seconds"],
        "checkpoint_bytes": checkpoint_bytes(model_dir, run["step"]),
        "allreduce_bytes_per_step": allreduce_payload(preset, replicas, sync),
        "weights_sha256": run["weights_sha256"],
    }
    if one_device:
        one_dir, one_summary = os.path.join(work_dir, "one_device"), os.path.join(work_dir, "one.json")
        one_extra = [a for a in extra if not a.startswith(("--sync_batch_norm", "--cpu_replicas"))]
        _run([sys.executable, "-m", "l3.bin.train", "--strategy=one_device",
              *_train_args(pattern, one_dir, train_steps, global_batch_size, every, preset,
                           one_summary, one_extra)],
             os.path.join(work_dir, "one_device.log"), cores)
        with open(one_summary) as f:
            one = json.load(f)
        report["one_device"] = {"steps_per_second": one["pairs_per_second"] / global_batch_size,
                                "pairs_per_second": one["pairs_per_second"],
                                "checkpoint_write_seconds": one["checkpoint_write_seconds"],
                                "checkpoint_bytes": checkpoint_bytes(one_dir, one["step"])}
    return report


def format_table(report: Dict) -> str:
    m, a, c = report["machine"], report["allreduce_bytes_per_step"], report["checkpoint_bytes"]
    mb = lambda n: f"{n / 1e6:.2f} MB" if n >= 1e5 else f"{n / 1e3:.1f} kB"
    lines = [
        f"machine: {m['cpu']} ({m['cores_usable']} cores usable, load {m['load_average']}); "
        f"TensorFlow {m.get('tensorflow')}",
        f"rehearsal: {report['workers']} worker(s) x {report['replicas_per_worker']} CPU "
        f"replica(s) = {report['replicas']} replicas of {report['pairs_per_replica']} pairs "
        f"(global batch {report['global_batch_size']}, {report['preset']} preset, "
        f"{report['train_steps']} steps, flags {' '.join(report['extra_flags']) or 'none'})",
        f"  steps/s {report['steps_per_second']:.3f} ({report['pairs_per_second']:.1f} pairs/s)",
        f"  all-reduce payload per replica per step: {mb(a['total'])} (gradients "
        f"{mb(a['gradients'])} = {a['trainable_parameters']:,} float32; BN moving statistics "
        f"{mb(a['bn_moving_statistics'])}; sync BN {mb(a['sync_bn_statistics'])}; outputs "
        f"{a['step_outputs']} B); ring sends {mb(a['ring_bytes_sent_per_replica'])} per replica",
        f"  checkpoint: {mb(c['total'])} (model+optimizer {mb(c['model_checkpoint'])}, input "
        f"positions of all workers {mb(c['input_state'])}); write "
        f"{report['checkpoint_write_seconds']:.2f} s (median, chief)",
    ]
    one = report.get("one_device")
    if one:
        lines.append(f"one device, same global batch: steps/s {one['steps_per_second']:.3f} "
                     f"({one['pairs_per_second']:.1f} pairs/s); checkpoint "
                     f"{mb(one['checkpoint_bytes']['total'])}, write "
                     f"{one['checkpoint_write_seconds']:.2f} s; rehearsal / one device "
                     f"{report['steps_per_second'] / one['steps_per_second']:.2f}")
    return "\n".join(lines)


def main(argv):
    extra = argv[1:]
    with tempfile.TemporaryDirectory(prefix="l3_rehearsal_") as tmp:
        work_dir = FLAGS.work_dir or tmp
        os.makedirs(work_dir, exist_ok=True)
        pattern = FLAGS.train_pattern
        if not pattern:
            from benchmarks.bench_pipeline import write_benchmark_shards  # noqa: PLC0415
            shards = os.path.join(work_dir, "shards")
            write_benchmark_shards(shards, num_videos=32, seconds=4.0)
            pattern = os.path.join(shards, "*.tfrecord")
        report = rehearse(work_dir, pattern, workers=FLAGS.workers,
                          replicas_per_worker=FLAGS.replicas_per_worker, preset=FLAGS.preset,
                          global_batch_size=FLAGS.global_batch_size,
                          train_steps=FLAGS.train_steps, checkpoint_every=FLAGS.checkpoint_every,
                          threads=FLAGS.threads_per_worker, one_device=FLAGS.one_device,
                          extra=extra)
        report["machine"] = machine_info()
        print(format_table(report))
        if FLAGS.output_json:
            fileio.write_json(FLAGS.output_json, report)


if __name__ == "__main__":
    app.run(main)
