"""benchmarks/bench_localization.py: its bare trunk (plain TF ops) is the network's own
conv4_2 with trained-looking batch norms, its FLOP count is the paper tower's by hand, and
the benchmark runs end to end on the small preset (no timing claims)."""

import keras
import numpy as np
import pytest

from benchmarks.bench_localization import bare_trunk, measure
from l3.core import presets
from l3.eval import localization as loc
from l3.model import network

# The paper's vision tower to conv4_2 on 224 x 224 x 3, 2 FLOPs per multiply-add of each 3x3
# convolution (conv1_1 of stride 2, 2x2 pools after blocks 1-3): 2 x 9 x positions x C_in x C_out.
PAPER_TRUNK_FLOPS = 2 * 9 * (112 ** 2 * (3 * 64 + 64 * 64) + 56 ** 2 * (64 * 128 + 128 * 128)
                             + 28 ** 2 * (128 * 256 + 256 * 256) + 14 ** 2 * (256 * 512 + 512 * 512))


def test_bare_trunk_is_the_networks_conv4_2_with_real_batch_norms():
    keras.utils.set_random_seed(3)
    model = network.build_avc_model(presets.SMALL)
    vision = network.subnetworks(model)["vision"]
    rng = np.random.default_rng(0)
    for layer in vision.layers:      # batch norms that are not a fresh network's identity
        if isinstance(layer, keras.layers.BatchNormalization):
            c = layer.get_weights()[0].shape[0]
            layer.set_weights([rng.uniform(0.5, 1.5, c), rng.normal(0, 0.1, c),
                               rng.normal(0, 0.1, c), rng.uniform(0.5, 2.0, c)])
    bare, _ = bare_trunk(vision)
    images = rng.random((3, 64, 64, 3), dtype=np.float32)
    want = loc.Localizer(model).conv_maps(images)
    assert np.abs(want).max() > 0.1

    def no_keras(*args, **kwargs):
        raise AssertionError("the bare trunk called a Keras layer")
    with pytest.MonkeyPatch.context() as mp:   # plain TF ops only: the limit has no Keras cost
        mp.setattr(keras.layers.Layer, "__call__", no_keras)
        got = bare(images).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_bare_trunk_counts_the_paper_towers_flops():
    _, flops = bare_trunk(network.subnetworks(network.build_avc_model(presets.PAPER))["vision"])
    assert flops == PAPER_TRUNK_FLOPS == 5_129_994_240


def test_a_small_run_reports_every_part():
    r = measure("small", frames=2, shifts=2, repeats=1, batch_size=4)
    assert r["preset"] == "small" and r["frames"] == 2 and r["shifts"] == 2
    assert set(r["seconds_per_frame"]) == {"trunk_pass", "trunk_pass_bare", "dense_maps",
                                           "fusion_map", "gradcam", "dense_maps_two_source"}
    assert all(v > 0 for v in r["seconds_per_frame"].values())
    assert r["dense_maps_bare_limit_s_per_frame"] > 0
    hours = r["vggss_hours_extrapolated"]
    assert hours["defaults"] > hours["nountrained_noduets"] > 0
