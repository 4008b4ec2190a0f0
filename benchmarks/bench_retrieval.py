r"""What cross-modal retrieval among N items costs (paper preset by default): l3-retrieval's parts.

  .venv/bin/python benchmarks/bench_retrieval.py --n=1000 --output_json=/tmp/bench_retrieval.json

A paper-preset AVC model with random weights (speed does not depend on them). Timed:

* embed: both towers on N frames (224 x 224) and N 1-s clips (48 kHz), batch 32, once
  (measured on `--embed_items` items, default N; extrapolated linearly when fewer);
* score, factorised (`l3.eval.retrieval.fusion_scores`): all N x N fusion log-odds from the
  embeddings (fc1's two halves once per item, then relu and a dot per pair), median of
  `--repeats`;
* score, bare: the N^2 H part alone in plain TF ops (relu(P_v[:, None] + P_a[None]) @ dw,
  one block), median of `--repeats`: the limit of the factorised route;
* score, unfactorised: the fusion model itself on all N^2 concatenated embedding pairs
  (fc1 on 2D inputs per pair), once;
* whole network per pair: the AVC model on 16 (frame, clip) pairs, median of 3, times
  N^2 / 16: what scoring every pair without embedding once would cost (extrapolated).

Also the matmul peak of this machine (float32, 2048^2, median of 3) and the FLOPs of each
route, so the numbers can be read against the limit. Wall clock drops when other jobs share
the cores (load average reported).
"""

import os
import sys
import time
from typing import Dict

import numpy as np
from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.machine import machine_info, matmul_peak_gflops, median_seconds  # noqa: E402
from l3.core import fileio, presets as presets_lib  # noqa: E402
from l3.eval import retrieval  # noqa: E402
from l3.model import network as model_lib  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_integer("n", 1000, "Items (N frames and N clips).")
flags.DEFINE_integer("embed_items", 0, "Items actually embedded (0: N); fewer: extrapolated.")
flags.DEFINE_string("preset", "paper", "Preset.")
flags.DEFINE_integer("repeats", 5, "Repeats of the scoring timings.")
flags.DEFINE_integer("batch_size", 32, "Encoder batch size.")
flags.DEFINE_string("output_json", None, "Where to write the report.")


def plain_tf_scores(pv: np.ndarray, pa: np.ndarray, dw: np.ndarray, db: float) -> np.ndarray:
    """relu(pv[:, None] + pa[None]) @ dw + db in one block of plain TF ops: [Nv, Na]."""
    import tensorflow as tf  # noqa: PLC0415
    pv, pa, dw = (tf.constant(x) for x in (pv, pa, dw))
    return (tf.linalg.matvec(tf.nn.relu(pv[:, None, :] + pa[None]), dw) + db).numpy()


def measure(n: int, preset_name: str, embed_items: int, repeats: int, batch_size: int) -> Dict:
    import keras  # noqa: PLC0415
    preset = presets_lib.get_preset(preset_name)
    keras.utils.set_random_seed(0)
    avc = model_lib.build_avc_model(preset)
    nets = model_lib.subnetworks(avc)
    rng = np.random.default_rng(0)
    m = embed_items or n
    images = rng.random((m, preset.image_size, preset.image_size, 3), dtype=np.float32)
    waves = (0.1 * rng.standard_normal((m, preset.clip_samples))).astype(np.float32)
    retrieval.embed(nets["vision"], images[:batch_size], batch_size)       # warm-up
    retrieval.embed(nets["audio"], waves[:batch_size], batch_size)
    start = time.perf_counter()
    v = retrieval.embed(nets["vision"], images, batch_size)
    vision_s = time.perf_counter() - start
    start = time.perf_counter()
    a = retrieval.embed(nets["audio"], waves, batch_size)
    audio_s = time.perf_counter() - start
    scale = n / m
    if m < n:   # embeddings of the other items: repeat what was measured (timing only)
        v, a = np.resize(v, (n, v.shape[1])), np.resize(a, (n, a.shape[1]))

    parts = retrieval.fusion_parts(nets["fusion"])
    factorised_s = median_seconds(lambda: retrieval.fusion_scores(v, a, parts), repeats)
    pv, pa = v @ parts.w_vision + parts.bias, a @ parts.w_audio
    plain_tf_s = median_seconds(lambda: plain_tf_scores(pv, pa, parts.delta_w, parts.delta_b), repeats)
    np.testing.assert_allclose(plain_tf_scores(pv, pa, parts.delta_w, parts.delta_b),
                               retrieval.fusion_scores(v, a, parts), rtol=1e-4, atol=1e-4)

    fusion = nets["fusion"]
    fusion_call = keras.Model(fusion.inputs, fusion.outputs)
    chunk = 16384

    def unfactorised():
        for r in range(0, n * n, chunk):
            idx = np.arange(r, min(r + chunk, n * n))
            fusion_call([v[idx // n], a[idx % n]], training=False)
    unfactorised()   # warm-up (traces)
    start = time.perf_counter()
    unfactorised()
    unfactorised_s = time.perf_counter() - start

    k = 16
    pair = {"image": images[:k], "waveform": waves[:k]}
    avc(pair, training=False)
    whole_pair_s = median_seconds(lambda: avc(pair, training=False), 3) / k

    d, h = v.shape[1], parts.bias.shape[0]
    return {
        "preset": preset.name, "n": n, "embedded_items": m, "embedding_dim": d, "fusion_hidden": h,
        "embed_vision_s": round(vision_s * scale, 2), "embed_audio_s": round(audio_s * scale, 2),
        "embed_extrapolated": m < n,
        "score_factorised_s": round(factorised_s, 3),
        "score_plain_tf_s": round(plain_tf_s, 3),
        "score_unfactorised_s": round(unfactorised_s, 3),
        "whole_network_all_pairs_s_extrapolated": round(whole_pair_s * n * n, 0),
        "flops": {"factorised": 2 * 2 * n * d * h + 3 * n * n * h,
                  "unfactorised": n * n * (2 * 2 * d * h + 3 * h)},
    }


def main(argv):
    del argv
    report = {"machine": machine_info(), "matmul_peak_gflops": round(matmul_peak_gflops(), 1),
              **measure(FLAGS.n, FLAGS.preset, FLAGS.embed_items, FLAGS.repeats, FLAGS.batch_size)}
    r = report
    total = r["embed_vision_s"] + r["embed_audio_s"] + r["score_factorised_s"]
    print(f"{r['machine']['cpu']} ({r['machine']['cores_usable']} cores, load "
          f"{r['machine']['load_average']}), matmul peak {r['matmul_peak_gflops']} GFLOP/s")
    print(f"retrieval among N = {r['n']} {r['preset']}-preset items (D = {r['embedding_dim']}, "
          f"H = {r['fusion_hidden']}):")
    ext = " (extrapolated)" if r["embed_extrapolated"] else ""
    print(f"  embed N frames            {r['embed_vision_s']:10.2f} s{ext}")
    print(f"  embed N clips             {r['embed_audio_s']:10.2f} s{ext}")
    print(f"  score N x N, factorised   {r['score_factorised_s']:10.3f} s  (bare N^2 H part in "
          f"plain TF: {r['score_plain_tf_s']:.3f} s)")
    print(f"  score N x N, unfactorised {r['score_unfactorised_s']:10.3f} s  (fusion model on N^2 pairs)")
    print(f"  whole network on N^2 pairs {r['whole_network_all_pairs_s_extrapolated']:9.0f} s "
          "(extrapolated from 16 pairs)")
    print(f"  total with factorised scoring {total:.1f} s")
    if FLAGS.output_json:
        fileio.write_json(FLAGS.output_json, report)


if __name__ == "__main__":
    app.run(main)
