"""benchmarks/bench_model.py runs (JAX backend, small preset, no timing claims) and
counts the paper network's FLOPs as docs/DESIGN.md states them (10.3 GFLOP forward)."""

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ENV = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "TF_CPP_MIN_LOG_LEVEL": "2"}


def test_paper_forward_flops():
    code = ("import json; from benchmarks.bench_model import forward_flops; "
            "from l3 import model, presets; "
            "print(json.dumps(forward_flops(model.build_avc_model(presets.PAPER))))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                          env={**ENV, "KERAS_BACKEND": "jax"}, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    flops = json.loads(proc.stdout.strip().splitlines()[-1])
    assert round(flops["total"] / 1e9, 1) == 10.3
    # the towers: 224x224x3 images vs 257x199x1 spectrograms
    assert round(flops["vision"] / 1e9, 2) == 5.13 and round(flops["audio"] / 1e9, 2) == 5.16
    assert flops["fusion"] == 2 * (1024 * 128 + 128 * 2)


def test_bench_model_runs_under_jax(tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, "benchmarks/bench_model.py", "--backends=jax",
                           "--preset=small", "--batch_sizes=2", "--dtypes=float32",
                           "--min_seconds=0", "--time_budget_s=300", f"--output_json={out}"],
                          capture_output=True, text=True, cwd=ROOT, env=ENV, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "of peak" in proc.stdout and "jax" in proc.stdout
    report = json.loads(out.read_text())
    (jax_report,) = report["backends"]
    assert jax_report["backend"] == "jax" and jax_report["preset"] == "small"
    rows = {r["mode"]: r for r in jax_report["results"]}
    assert set(rows) == {"forward", "train"}
    assert rows["train"]["gflop_per_pair"] == 3 * rows["forward"]["gflop_per_pair"] > 0
    peak = jax_report["matmul_peak_gflops"]["float32"]
    for r in rows.values():
        assert r["pairs_per_second"] > 0 and r["calls"] >= 2
        assert abs(r["fraction_of_matmul_peak"] - r["achieved_gflops"] / peak) < 1e-9
        assert abs(r["limit_pairs_per_second"] - peak / r["gflop_per_pair"]) < 1e-6
