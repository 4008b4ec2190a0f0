"""The encoders' transfer features against numpy references from the network's own conv4_2.

Audio `conv4_2_pooled` is conv4_2 before ReLU, vision's after ReLU, each
max-pooled with its preset's kernel = stride (tests/fixtures/transfer_reference.py);
both presets, both encoders. conv4_2_bn is shifted so that whole pooling
windows are negative: taking the wrong side of the ReLU then changes values.
"""

import numpy as np
import pytest

from l3.model import network as model
from l3.core import presets
from tests.fixtures import transfer_reference as ref

PAPER_DIMS = {"audio": 6144, "vision": 8192}  # sections 3.3 (4x3x512) and 3.4 (4x4x512)


def _inputs(preset, modality, n=2):
    rng = np.random.default_rng(5)
    if modality == "vision":
        return rng.uniform(0, 1, (n, preset.image_size, preset.image_size, 3)).astype("float32")
    t = np.arange(preset.clip_samples) / preset.sample_rate
    tone = np.sin(2 * np.pi * 700 * t)[None]
    return (0.3 * tone + 0.05 * rng.standard_normal((n, preset.clip_samples))).astype("float32")


@pytest.fixture(scope="module", params=["small", "paper"])
def avc(request):
    preset = presets.get_preset(request.param)
    m = model.build_avc_model(preset)
    ref.shift_conv4_2_bn(m)
    return preset, m


@pytest.mark.parametrize("modality", ["audio", "vision"])
def test_conv4_2_pooled_matches_numpy_reference(avc, modality):
    preset, m = avc
    net = model.subnetworks(m)[modality]
    x = _inputs(preset, modality)
    got = {k: np.asarray(v) for k, v in model.build_encoder(net, preset, modality)(x, training=False).items()}
    want = ref.reference_outputs(net, preset.name, modality, x)
    scale = np.abs(want["conv4_2_pooled"]).max()
    for key in ("embedding", "conv4_2_pooled"):
        assert got[key].shape == want[key].shape
        np.testing.assert_allclose(got[key], want[key], atol=1e-5 * scale, rtol=1e-5)
    if preset.name == "paper":
        assert got["conv4_2_pooled"].shape[1] == PAPER_DIMS[modality]

    # The other side of the ReLU, with the same pool, must differ from what the encoder gave.
    acts = ref.conv4_activations(net, x)
    other = {"audio": "conv4_2_relu", "vision": "conv4_2_bn"}[modality]
    wrong = ref.max_pool(acts[other], ref.TRANSFER_POOLS[preset.name][modality]).reshape(len(x), -1)
    assert np.mean(np.abs(wrong - got["conv4_2_pooled"]) > 1e-3 * scale) > 0.05
    if modality == "audio":
        assert (got["conv4_2_pooled"] < 0).mean() > 0.05  # before ReLU: negatives survive
    else:
        assert got["conv4_2_pooled"].min() >= 0.0


def test_paper_vision_pool_drops_last_rows_and_columns():
    """3x3/3 on 14x14 covers rows/cols 0..11: activity only in row/col 12-13 is invisible."""
    acts = np.zeros((1, 14, 14, 1), np.float32)
    acts[0, 12:, :, 0] = 5.0
    acts[0, :, 13, 0] = 5.0
    assert ref.max_pool(acts, (3, 3)).shape == (1, 4, 4, 1)
    assert ref.max_pool(acts, (3, 3)).max() == 0.0
    acts[0, 11, 11, 0] = 1.0
    assert ref.max_pool(acts, (3, 3))[0, 3, 3, 0] == 1.0
