r"""What sound-source localization costs per frame (paper preset by default): l3-localize's parts.

  .venv/bin/python benchmarks/bench_localization.py --frames=8 --output_json=/tmp/bench_loc.json

A paper-preset AVC model with random weights (speed does not depend on them), on `--frames`
random S x S frames with their 1-s clips. Timed, median of `--repeats`, per frame:

* trunk, 1 pass (`Localizer.conv_maps`): the vision network up to conv4_2 after ReLU;
* trunk, bare: the same layers written with plain TF ops in one `tf.function` (conv2d,
  batch norm as a scale and shift, relu, max_pool; the weights read from the model), checked
  equal to the above: the limit of one pass;
* dense maps (`Localizer.dense_maps`, `--shifts` per axis): shifts^2 passes on moved frames,
  interleaved; its limit is shifts^2 bare passes;
* heatmaps from the dense maps and the sounds: fusion_map and Grad-CAM (`Localizer.heatmaps`);
* dense maps of a two-source scene (S x 2S, `l3-localize --duets`).

Also the FLOPs of one pass (2 x outputs x k^2 x C_in for each convolution) and this machine's
matmul peak, so the pass can be read against the limit; and, extrapolated from the per-frame
numbers, what l3-localize costs on VGG-SS's 5,158 test frames with its defaults (trained and
untrained networks, single frames and two-source scenes) and with --nountrained --noduets.
"""

import os
import sys
from typing import Dict

import numpy as np
from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.machine import machine_info, matmul_peak_gflops, median_seconds  # noqa: E402
from l3.core import fileio, presets as presets_lib  # noqa: E402
from l3.eval import localization as loc  # noqa: E402
from l3.model import network as model_lib  # noqa: E402

FLAGS = flags.FLAGS


def _define_flags() -> None:
    """The script's flags; defined only when it runs as a script, so that the tests import
    `bare_trunk` and `measure` beside other modules' flags of the same names."""
    flags.DEFINE_string("preset", "paper", "Preset.")
    flags.DEFINE_integer("frames", 8, "Frames (each with its 1-s clip) timed at once.")
    flags.DEFINE_integer("shifts", loc.DENSE_SHIFTS, "Shift-and-stitch shifts per axis.")
    flags.DEFINE_integer("repeats", 3, "Repeats of each timing (median).")
    flags.DEFINE_integer("batch_size", 32, "Inference batch size.")
    flags.DEFINE_string("output_json", None, "Where to write the report.")


VGGSS_TEST_FRAMES = 5158


def bare_trunk(vision):
    """(fn, flops): the vision network's layers up to conv4_2_relu in plain TF ops inside one
    tf.function (fn: float32 [n, S, S, 3] -> [n, h, w, C]), and the FLOPs of one pass on one
    S x S frame (convolutions only: 2 x output positions x k^2 x C_in x C_out)."""
    import tensorflow as tf  # noqa: PLC0415
    ops, flops = [], 0
    shape = vision.input.shape[1:3]
    for layer in vision.layers[1:]:
        kind, config = type(layer).__name__, layer.get_config()
        if kind == "Rescaling":
            ops.append(lambda x, s=config["scale"], o=config["offset"]: x * s + o)
        elif kind == "Conv2D":
            kernel = tf.constant(layer.get_weights()[0])
            stride, pad = config["strides"][0], config["padding"].upper()
            ops.append(lambda x, k=kernel, s=stride, p=pad: tf.nn.conv2d(x, k, s, p))
            shape = [-(-d // stride) for d in shape]   # "same" padding
            kh, kw, cin, cout = kernel.shape
            flops += 2 * shape[0] * shape[1] * kh * kw * cin * cout
        elif kind == "BatchNormalization":
            gamma, beta, mean, var = layer.get_weights()
            scale = gamma / np.sqrt(var + config["epsilon"])
            ops.append(lambda x, a=tf.constant(scale), b=tf.constant(beta - mean * scale): x * a + b)
        elif kind == "ReLU":
            ops.append(tf.nn.relu)
        elif kind == "MaxPooling2D":
            size = config["pool_size"][0]
            ops.append(lambda x, k=size: tf.nn.max_pool2d(x, k, k, "VALID"))
            shape = [d // size for d in shape]
        else:
            raise ValueError(f"bare_trunk does not know layer {layer.name} ({kind})")
        if layer.name == "conv4_2_relu":
            break

    @tf.function(reduce_retracing=True)
    def fn(x):
        for op in ops:
            x = op(x)
        return x
    return fn, flops


def _sig(x: float, digits: int = 4) -> float:
    """x to `digits` significant digits (per-frame seconds span 1e-5 to 10)."""
    return float(f"{x:.{digits}g}")


def measure(preset_name: str, frames: int, shifts: int, repeats: int, batch_size: int) -> Dict:
    import keras  # noqa: PLC0415
    preset = presets_lib.get_preset(preset_name)
    keras.utils.set_random_seed(0)
    avc = model_lib.build_avc_model(preset)
    localizer = loc.Localizer(avc, batch_size)
    rng = np.random.default_rng(0)
    s = preset.image_size
    images = rng.random((frames, s, s, 3), dtype=np.float32)
    wide = rng.random((frames, s, 2 * s, 3), dtype=np.float32)
    waves = (0.1 * rng.standard_normal((frames, preset.clip_samples))).astype(np.float32)
    sounds = localizer.audio_embeddings(waves)

    bare, flops = bare_trunk(model_lib.subnetworks(avc)[model_lib.VISION])
    np.testing.assert_allclose(bare(images).numpy(), localizer.conv_maps(images),
                               rtol=1e-4, atol=1e-4)
    dense = localizer.dense_maps(images, shifts)       # warm-up: every input and batch shape
    localizer.dense_maps(wide, shifts)                  # is traced before it is timed
    t = {
        "trunk_pass": median_seconds(lambda: localizer.conv_maps(images), repeats),
        "trunk_pass_bare": median_seconds(lambda: bare(images).numpy(), repeats),
        "dense_maps": median_seconds(lambda: localizer.dense_maps(images, shifts), repeats),
        "fusion_map": median_seconds(lambda: localizer.heatmaps(dense, sounds, "fusion_map"), repeats),
        "gradcam": median_seconds(lambda: localizer.heatmaps(dense, sounds, "gradcam"), repeats),
        "dense_maps_two_source": median_seconds(lambda: localizer.dense_maps(wide, shifts), repeats),
    }
    per_frame = {k: v / frames for k, v in t.items()}
    single = per_frame["dense_maps"] + per_frame["fusion_map"] + per_frame["gradcam"]
    duet = per_frame["dense_maps_two_source"]
    return {
        "preset": preset.name, "image_size": s, "frames": frames, "shifts": shifts,
        "seconds_per_frame": {k: _sig(v) for k, v in per_frame.items()},
        "dense_maps_bare_limit_s_per_frame": _sig(shifts ** 2 * per_frame["trunk_pass_bare"]),
        "trunk_gflop_per_pass": round(flops / 1e9, 3),
        "trunk_gflops_achieved": round(flops / per_frame["trunk_pass"] / 1e9, 1),
        "trunk_gflops_achieved_bare": round(flops / per_frame["trunk_pass_bare"] / 1e9, 1),
        # Extrapolated: trained rows on single frames (dense maps, both methods), the same on
        # two-source scenes, and the untrained network's dense maps of both (l3-localize's
        # defaults); the item reading and scoring are not included.
        "vggss_hours_extrapolated": {
            "defaults": round(VGGSS_TEST_FRAMES * (single + duet + per_frame["dense_maps"]
                                                   + duet) / 3600, 2),
            "nountrained_noduets": round(VGGSS_TEST_FRAMES * single / 3600, 2),
        },
    }


def main(argv):
    del argv
    r = {"machine": machine_info(), "matmul_peak_gflops": round(matmul_peak_gflops(), 1),
         **measure(FLAGS.preset, FLAGS.frames, FLAGS.shifts, FLAGS.repeats, FLAGS.batch_size)}
    f = r["seconds_per_frame"]
    print(f"{r['machine']['cpu']} ({r['machine']['cores_usable']} cores, load "
          f"{r['machine']['load_average']}), matmul peak {r['matmul_peak_gflops']} GFLOP/s")
    print(f"localization, {r['preset']} preset ({r['image_size']} x {r['image_size']}), "
          f"{r['frames']} frames, {r['shifts']} shifts per axis; time per frame (median of "
          f"{FLAGS.repeats}):")
    ms = {k: f"{1000 * v:9.4g} ms" for k, v in f.items()}
    print(f"  trunk to conv4_2, 1 pass   {ms['trunk_pass']}  ({r['trunk_gflop_per_pass']} GFLOP: "
          f"{r['trunk_gflops_achieved']} GFLOP/s)")
    print(f"  the same, bare TF ops      {ms['trunk_pass_bare']}  "
          f"({r['trunk_gflops_achieved_bare']} GFLOP/s)")
    print(f"  dense maps, {r['shifts'] ** 2:2d} passes      {ms['dense_maps']}  (bare limit "
          f"{1000 * r['dense_maps_bare_limit_s_per_frame']:.4g} ms)")
    print(f"  fusion_map from dense maps {ms['fusion_map']}")
    print(f"  Grad-CAM from dense maps   {ms['gradcam']}")
    print(f"  dense maps, S x 2S scene   {ms['dense_maps_two_source']}")
    v = r["vggss_hours_extrapolated"]
    print(f"  VGG-SS test set ({VGGSS_TEST_FRAMES} frames), extrapolated: {v['defaults']} h with "
          f"l3-localize's defaults, {v['nountrained_noduets']} h with --nountrained --noduets")
    if FLAGS.output_json:
        fileio.write_json(FLAGS.output_json, r)


if __name__ == "__main__":
    _define_flags()
    app.run(main)
