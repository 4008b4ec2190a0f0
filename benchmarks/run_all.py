"""The benchmark suite: builder, pair pipeline, training step and embedding, one table.

    .venv/bin/python -m benchmarks.run_all --output_json=bench.json          # full
    .venv/bin/python -m benchmarks.run_all --quick                           # ~3 min on 2 cores

Each row comes from the benchmark module of its stage (`bench_builder`,
`bench_pipeline`, `bench_train`, `bench_embed`), which also runs alone with
more options. On a GPU machine run the same command after
`L3_REQUIREMENTS=requirements-gpu.txt bash scripts/setup_env.sh`; the
training rows then use the GPU (add `--mixed_precision=bf16` for the
accelerator's fast path) and the table names the device.

Printed: videos/s (builder), pairs/s, the ratio to the bare rate of the
unavoidable work and the read amplification (pipeline), training pairs/s, pairs/s per core, achieved GFLOP/s
and its fraction of the machine's measured matmul peak (training step), audio
seconds/s and images/s (embedding), and the peak resident memory of the run.
"""

import json
import os
import resource
import subprocess
import sys
import tempfile
import time

from absl import app, flags

from l3.core import fileio

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

FLAGS = flags.FLAGS
flags.DEFINE_list("presets", ["small", "paper"], "Presets for the pipeline, training and embedding rows.")
flags.DEFINE_bool("quick", False, "Fewer videos, batches and steps (a smoke run of the suite).")
flags.DEFINE_enum("mixed_precision", "none", ["none", "bf16", "fp16"], "Training-step precision.")
flags.DEFINE_string("output_json", None, "Write every number here.")


def _run_benchmark(module: str, args, out_dir: str) -> dict:
    """Runs `benchmarks/<module>.py` in its own process (each defines its own absl
    flags, and a process of its own gives each its own peak memory); returns its JSON."""
    out = os.path.join(out_dir, module + ".json")
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", module + ".py"),
                    f"--output_json={out}", *args], check=True, cwd=ROOT)
    with open(out) as f:
        result = json.load(f)
    # ru_maxrss of children is the largest child so far (KB on Linux).
    result["peak_memory_mb"] = max(before, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) / 1024
    return result


def run_suite(presets, *, quick: bool, mixed_precision: str = "none") -> dict:
    """Runs the four benchmarks; returns {"builder", "pipeline", "train", "embed", "machine", ...}."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    plist = ",".join(presets)
    jobs = {
        "builder": ("bench_builder", [f"--num_videos={4 if quick else 16}", f"--workers={cores}"]),
        "pipeline": ("bench_pipeline", [f"--presets={plist}", "--parallel_calls=1,2",
                                        f"--num_videos={16 if quick else 48}",
                                        f"--rounds={2 if quick else 5}",
                                        f"--seconds={1 if quick else 3}"]),
        "train": ("bench_train", [f"--presets={plist}", f"--mixed_precision={mixed_precision}"]
                  + (["--steps=3"] if quick else [])),
        "embed": ("bench_embed", [f"--presets={plist}", f"--audio_seconds={5 if quick else 30}",
                                  f"--images={16 if quick else 64}"]),
    }
    report, seconds = {"cores": cores}, {}
    with tempfile.TemporaryDirectory(prefix="l3_bench_") as tmp:
        for name, (module, args) in jobs.items():
            print(f"--- {name}: {module} {' '.join(args)}", flush=True)
            start = time.perf_counter()
            report[name] = _run_benchmark(module, args, tmp)
            seconds[name] = round(time.perf_counter() - start, 1)
    report["machine"] = report["train"]["machine"]
    report["peak_memory_mb"] = {k: round(report[k]["peak_memory_mb"], 1) for k in jobs}
    report["seconds"] = seconds
    return report


def format_table(report: dict) -> str:
    cores = report["cores"]
    b = report["builder"]
    rows = [("builder", "-", "videos/s (10-s clips)", b["videos_per_second"]),
            ("builder", "-", "videos/s per core (CPU time)", b["cpu_videos_per_second_per_core"])]
    for row in report["pipeline"]["rows"]:
        rows.append(("pipeline", row["preset"], f"pairs/s, {row['parallel_calls']} parallel call(s)",
                     row["pairs_per_s"]))
        rows.append(("pipeline", row["preset"], "  ratio to the bare rate", row["ratio"]))
        rows.append(("pipeline", row["preset"], "  bytes read / bytes a pair uses",
                     row["read_amplification"]))
    train = report["train"]
    for r in train["results"]:
        rows += [("train", r["preset"], f"pairs/s (batch {r['batch_size']})", r["pairs_per_second"]),
                 ("train", r["preset"], "pairs/s per core", r["pairs_per_second"] / cores),
                 ("train", r["preset"], "achieved GFLOP/s", r["achieved_gflops"]),
                 ("train", r["preset"], "fraction of matmul peak", r["fraction_of_matmul_peak"])]
    for r in report["embed"]["results"]:
        rows += [("embed", r["preset"], "audio seconds/s (1-s hop)", r["audio_seconds_per_second_at_1s_hop"]),
                 ("embed", r["preset"], "images/s", r["images_per_second"])]
    m = report["machine"]
    lines = [f"machine: {json.dumps(m, default=str)}",
             f"matmul peak: {train['matmul_peak_gflops']:.1f} GFLOP/s ({train['matmul_dtype']}); "
             f"peak memory: {max(report['peak_memory_mb'].values()):.0f} MB",
             f"| {'stage':8s} | {'preset':6s} | {'measure':34s} | {'value':>10s} |",
             f"|{'-' * 10}|{'-' * 8}|{'-' * 36}|{'-' * 12}|"]
    for stage, preset, measure, value in rows:
        lines.append(f"| {stage:8s} | {preset:6s} | {measure:34s} | {value:10.2f} |")
    return "\n".join(lines)


def main(argv):
    del argv
    report = run_suite(FLAGS.presets, quick=FLAGS.quick, mixed_precision=FLAGS.mixed_precision)
    print(format_table(report))
    if FLAGS.output_json:
        fileio.write_json(FLAGS.output_json, report)


if __name__ == "__main__":
    app.run(main)
