"""Golden outputs: a seeded model on fixed inputs vs tests/fixtures/golden/{small,paper}.npz.

Pins the numbers end to end (spectrogram front end, layers, pooling, batch
norm, initialisation, and the fusion head through the AVC logits): a change
that moves the embeddings or the logits fails here. The
files are written only by scripts/make_golden.py (its docstring says when).
Tolerance: 1e-4 of each output's largest magnitude (float32 conv arithmetic
differs across CPUs by ~1e-6 of it).
"""

import os

import numpy as np
import pytest

from l3.model import network as model
from l3.core import presets
from tests.fixtures import golden_reference

GOLDEN_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fixtures",
                          "golden")
RTOL_OF_SCALE = 1e-4


def _max_relative_difference(got, stored):
    return {k: float(np.abs(got[k] - stored[k]).max() / np.abs(stored[k]).max())
            for k in golden_reference.OUTPUT_KEYS}


@pytest.fixture(scope="module", params=["small", "paper"])
def golden(request):
    preset = presets.get_preset(request.param)
    with np.load(os.path.join(GOLDEN_DIR, f"{preset.name}.npz")) as f:
        stored = {k: f[k] for k in f.files}
    m = golden_reference.golden_model(preset)
    return preset, m, stored


def test_seeded_weights_are_the_golden_ones(golden):
    preset, _, stored = golden
    assert model.weights_digest(golden_reference.seeded_model(preset)) == str(stored["weights_digest"]), (
        "the seeded model's weights changed (initialisers, layer order or seeding); "
        "see scripts/make_golden.py")


def test_encoder_outputs_match_the_golden_files(golden):
    preset, m, stored = golden
    got = golden_reference.golden_outputs(preset, m)
    for k in golden_reference.OUTPUT_KEYS:
        assert got[k].shape == stored[k].shape, k
        assert np.all(np.isfinite(got[k])) and np.abs(stored[k]).max() > 0, k
    diff = _max_relative_difference(got, stored)
    assert max(diff.values()) <= RTOL_OF_SCALE, diff


def test_the_golden_test_sees_a_small_change(golden):
    """conv1_1's kernels of both networks scaled by 1 + 1e-3: every output moves past the tolerance."""
    preset, m, stored = golden
    for name in ("vision_network", "audio_network"):
        kernel = m.get_layer(name).get_layer("conv1_1").kernel
        original = np.array(kernel.numpy())
        kernel.assign(original * (1 + 1e-3))
    try:
        diff = _max_relative_difference(golden_reference.golden_outputs(preset, m), stored)
    finally:
        for name in ("vision_network", "audio_network"):
            kernel = m.get_layer(name).get_layer("conv1_1").kernel
            kernel.assign(kernel.numpy() / (1 + 1e-3))
    assert min(diff.values()) > RTOL_OF_SCALE, diff
