"""Pairs per second through the tf.data service against in-process input, in one run.

    .venv/bin/python benchmarks/bench_data_service.py --output_json=/tmp/bench_data_service.json
    # quick look: --num_videos=8 --measure_batches=4
    # real shards: --data_pattern='/data/records/train-*.tfrecord'

Rows, all on the same shards and training pipeline (`l3.pairs.make_dataset`,
batch `--batch_size`, after `--warmup_batches` that fill the shuffle buffer):

* **in-process**: the pipeline runs in this process, as in `l3-train` without
  the service;
* **service, 1 / 2 workers**: the same definition sent to a real local
  service (`l3.pairs.local_service`: an `l3-data-service` dispatcher and 1, then 2
  input-worker subprocesses), read by this process as a trainer would;
* **transport only**: one finished batch, cached and repeated, in-process and
  through the service: the cost of moving a batch over gRPC alone. Its
  difference, divided by the pairs, is the service's per-pair overhead.
  The service rows send raw tensors (`l3.pairs.data_service.COMPRESSION`, what
  `l3-train` uses); one more row uses TensorFlow's default ("AUTO").

On one machine the input workers and the reader share the same cores, so the
service cannot be faster here than in-process input: what this measures is
the overhead a trainer pays to have its pairs made elsewhere. On a shared
machine, numbers move with the load: the load average is recorded.
"""

import os
import sys
import tempfile
import time
from typing import Dict, Optional

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import app, flags  # noqa: E402

from benchmarks.bench_pipeline import write_benchmark_shards  # noqa: E402
from benchmarks.machine import machine_info  # noqa: E402
from l3.pairs import data_service, pipeline as pairs  # noqa: E402
from l3.core import fileio, presets
from l3.pairs.local_service import LocalDataService  # noqa: E402


def _time_batches(dataset, warmup: int, batches: int, batch_size: int) -> Dict[str, float]:
    iterator = iter(dataset)
    for _ in range(warmup):
        next(iterator)
    begin = time.perf_counter()
    for _ in range(batches):
        tf.nest.map_structure(lambda t: t.numpy(), next(iterator))  # the bytes reach the host
    seconds = time.perf_counter() - begin
    return {"batches": batches, "seconds": seconds, "pairs_per_second": batches * batch_size / seconds}


def _bytes_per_pair(dataset) -> int:
    spec = dataset.element_spec
    return sum(int(np.prod(s.shape[1:])) * s.dtype.size for s in tf.nest.flatten(spec))


def run_benchmark(data_pattern: Optional[str] = None, preset_name: str = "paper", *,
                  batch_size: int = 32, num_videos: int = 16, warmup_batches: int = 4,
                  measure_batches: int = 16) -> Dict:
    """Measures every row (see the module docstring); returns the JSON-able report."""
    preset = presets.get_preset(preset_name)
    tmp = tempfile.TemporaryDirectory(prefix="bench_data_service_")
    with tmp:
        files = (pairs.resolve_files(data_pattern) if data_pattern
                 else write_benchmark_shards(os.path.join(tmp.name, "shards"), num_videos))
        options = pairs.PipelineOptions(batch_size=batch_size, seed=0)

        def pipeline():
            return pairs.make_dataset(files, preset, training=True, options=options)

        def transport():
            return pipeline().take(1).cache().repeat()

        rows, bytes_per_pair = [], _bytes_per_pair(pipeline())

        def measure(name, dataset, workers):
            timing = _time_batches(dataset, warmup_batches, measure_batches, batch_size)
            rows.append({"input": name, "input_workers": workers, **timing})
            print(f"  {name}: {timing['pairs_per_second']:.1f} pairs/s", flush=True)

        measure("in-process", pipeline(), 0)
        measure("transport only, in-process", transport(), 0)
        service = LocalDataService(1, os.path.join(tmp.name, "logs"))
        with service:
            service.wait_for_workers(1)
            for workers in (1, 2):
                if workers == 2:
                    service.start_worker()
                    service.wait_for_workers(2)
                job = f"bench-{workers}"
                measure(f"service, {workers} worker(s)",
                        data_service.distribute_dataset(pipeline(), service.address, job), workers)
                measure(f"transport only, service, {workers} worker(s)",
                        data_service.distribute_dataset(transport(), service.address, job + "-t"),
                        workers)
                if workers == 1:  # TensorFlow's default compression, for comparison
                    measure("transport only, service, 1 worker(s), AUTO compression",
                            data_service.distribute_dataset(transport(), service.address,
                                                            job + "-auto", compression="AUTO"), 1)
    by_name = {r["input"]: r for r in rows}
    local_t = by_name["transport only, in-process"]["pairs_per_second"]
    svc_t = by_name["transport only, service, 1 worker(s)"]["pairs_per_second"]
    return {"machine": machine_info(), "preset": preset_name, "batch_size": batch_size,
            "bytes_per_pair": bytes_per_pair, "rows": rows,
            "service_overhead_us_per_pair": 1e6 * (1.0 / svc_t - 1.0 / local_t),
            "files": len(files), "data_pattern": data_pattern}


def format_table(report: Dict) -> str:
    m = report["machine"]
    lines = [f"machine: {m['cpu']} ({m['cores_usable']} cores available, load "
             f"{', '.join(f'{x:.1f}' for x in m['load_average'] or [])}), TensorFlow {m['tensorflow']}",
             f"preset {report['preset']}, batch {report['batch_size']}, {report['files']} shards; "
             f"{report['bytes_per_pair'] / 1e3:.0f} KB per pair on the wire (uncompressed)",
             f"{'input':56s} {'workers':>7s} {'pairs/s':>9s} {'ratio':>6s}"]
    base = report["rows"][0]["pairs_per_second"]
    for r in report["rows"]:
        ratio = r["pairs_per_second"] / base if not r["input"].startswith("transport") else float("nan")
        lines.append(f"{r['input']:56s} {r['input_workers']:7d} {r['pairs_per_second']:9.1f} "
                     f"{ratio:6.2f}")
    lines.append(f"service overhead per pair (transport only, 1 worker): "
                 f"{report['service_overhead_us_per_pair']:.0f} us")
    return "\n".join(lines)


def main(argv):
    del argv
    report = run_benchmark(FLAGS.data_pattern, FLAGS.preset, batch_size=FLAGS.batch_size,
                           num_videos=FLAGS.num_videos, warmup_batches=FLAGS.warmup_batches,
                           measure_batches=FLAGS.measure_batches)
    print(format_table(report))
    if FLAGS.output_json:
        fileio.write_json(FLAGS.output_json, report)


if __name__ == "__main__":
    flags.DEFINE_string("data_pattern", None, "Shards to read (default: synthetic builder-like shards).")
    flags.DEFINE_enum("preset", "paper", ["paper", "small"], "Pipeline sizes.")
    flags.DEFINE_integer("batch_size", 32, "Pairs per batch.")
    flags.DEFINE_integer("num_videos", 16, "Synthetic videos (10 s each) when no --data_pattern.")
    flags.DEFINE_integer("warmup_batches", 4, "Batches before timing (fills the shuffle buffer).")
    flags.DEFINE_integer("measure_batches", 16, "Timed batches per row.")
    flags.DEFINE_string("output_json", None, "Write every number here.")
    FLAGS = flags.FLAGS
    app.run(main)
