"""benchmarks/bench_localization.py: its bare trunk (plain TF ops) is the network's own
conv4_2 with trained-looking batch norms, its FLOP count is the paper tower's by hand, and
the benchmark runs end to end on the small preset (no timing claims)."""

import json
import os
import subprocess
import sys

from tests.fixtures.processes import subprocess_env as _env

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# The paper's vision tower to conv4_2 on 224 x 224 x 3, 2 FLOPs per multiply-add of each 3x3
# convolution (conv1_1 of stride 2, 2x2 pools after blocks 1-3): 2 x 9 x positions x C_in x C_out.
PAPER_TRUNK_FLOPS = 2 * 9 * (112 ** 2 * (3 * 64 + 64 * 64) + 56 ** 2 * (64 * 128 + 128 * 128)
                             + 28 ** 2 * (128 * 256 + 256 * 256) + 14 ** 2 * (256 * 512 + 512 * 512))

CODE = """
import json
import keras
import numpy as np
from benchmarks.bench_localization import bare_trunk, measure
from l3.core import presets
from l3.eval import localization as loc
from l3.model import network

keras.utils.set_random_seed(3)
model = network.build_avc_model(presets.SMALL)
vision = network.subnetworks(model)["vision"]
rng = np.random.default_rng(0)
for layer in vision.layers:      # batch norms that are not the identity of a fresh network
    if isinstance(layer, keras.layers.BatchNormalization):
        c = layer.get_weights()[0].shape[0]
        layer.set_weights([rng.uniform(0.5, 1.5, c), rng.normal(0, 0.1, c),
                           rng.normal(0, 0.1, c), rng.uniform(0.5, 2.0, c)])
bare, _ = bare_trunk(vision)
images = rng.random((3, 64, 64, 3), dtype=np.float32)
want = loc.Localizer(model).conv_maps(images)
_, paper = bare_trunk(network.subnetworks(network.build_avc_model(presets.PAPER))["vision"])
print(json.dumps({"err": float(np.abs(bare(images).numpy() - want).max()),
                  "scale": float(np.abs(want).max()), "paper_flops": paper,
                  "report": measure("small", 2, 2, 1, 4)}))
"""


def test_bare_trunk_flops_and_a_small_run():
    proc = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, cwd=ROOT,
                          env=_env(), timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["scale"] > 0.1 and out["err"] < 1e-5 * max(1.0, out["scale"]), out
    assert out["paper_flops"] == PAPER_TRUNK_FLOPS == 5_129_994_240
    r = out["report"]
    assert r["preset"] == "small" and r["frames"] == 2 and r["shifts"] == 2
    assert set(r["seconds_per_frame"]) == {"trunk_pass", "trunk_pass_bare", "dense_maps",
                                           "fusion_map", "gradcam", "dense_maps_two_source"}
    assert all(v > 0 for v in r["seconds_per_frame"].values())
    assert r["dense_maps_bare_limit_s_per_frame"] > 0
    hours = r["vggss_hours_extrapolated"]
    assert hours["defaults"] > hours["nountrained_noduets"] > 0
