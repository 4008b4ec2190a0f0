"""The seeded model and fixed inputs behind tests/golden/*.npz (see scripts/make_golden.py).

`golden_model(preset)` builds the AVC model after `keras.utils.set_random_seed(SEED)`,
sets every batch norm's moving statistics to the batch statistics of the
golden inputs (one training-mode pass; a fresh network's mean 0 / variance 1
would let activations shrink layer by layer until conv4_2 is nearly the
constant offsets, insensitive to its input) and its scale and offset from a
fixed numpy generator, so batch norm's arithmetic is pinned too. `golden_inputs(preset)` makes the fixed inputs:

  audio  float32 [4, clip_samples]: a log chirp with an envelope, white noise
         (numpy seed 1234), silence, a 16-bit-quantised two-tone clip;
  vision float32 [2, S, S, 3] in [0, 1]: colour gradients with a checkerboard
         and a disc, and its left-right mirror (not symmetric, so a flip shows).

`golden_outputs` runs both encoders (`l3.model.build_encoder`) and returns
{"audio_embedding", "audio_conv4_2_pooled", "vision_embedding",
"vision_conv4_2_pooled"} as float32 arrays.
"""

from typing import Dict

import keras
import numpy as np

from l3 import model as model_lib
from l3.presets import Preset

SEED = 20170801  # the paper's arXiv month; any fixed value
OUTPUT_KEYS = ("audio_embedding", "audio_conv4_2_pooled", "vision_embedding",
               "vision_conv4_2_pooled")


def seeded_model(preset: Preset) -> keras.Model:
    """The AVC model as initialised after `keras.utils.set_random_seed(SEED)`.

    Its `model.weights_digest` is stored as "weights_digest": exact integer-
    seeded initialisation, the same on every machine.
    """
    keras.utils.set_random_seed(SEED)
    return model_lib.build_avc_model(preset)


def golden_model(preset: Preset) -> keras.Model:
    """`seeded_model` with calibrated, non-trivial batch-norm parameters."""
    m = seeded_model(preset)
    rng = np.random.default_rng(SEED)
    inputs = golden_inputs(preset)
    for modality, net in model_lib.subnetworks(m).items():
        if modality not in inputs:
            continue
        bns = [layer for layer in net.layers if isinstance(layer, keras.layers.BatchNormalization)]
        probe = keras.Model(net.input, [bn.input for bn in bns])
        for bn, x in zip(bns, probe(inputs[modality], training=True)):
            x = keras.ops.convert_to_numpy(x).astype(np.float64)
            shape = bn.moving_mean.shape
            bn.moving_mean.assign(x.mean(axis=(0, 1, 2)).astype(np.float32))
            bn.moving_variance.assign(x.var(axis=(0, 1, 2)).astype(np.float32))
            bn.gamma.assign(rng.uniform(0.8, 1.2, shape).astype(np.float32))
            bn.beta.assign(rng.normal(0.0, 0.1, shape).astype(np.float32))
    return m


def golden_inputs(preset: Preset) -> Dict[str, np.ndarray]:
    """{"audio": float32 [4, clip_samples], "vision": float32 [2, S, S, 3]}."""
    sr, n = preset.sample_rate, preset.clip_samples
    t = np.arange(n) / sr
    f0, f1 = 200.0, 0.35 * sr
    phase = 2 * np.pi * f0 * (np.power(f1 / f0, t / t[-1]) - 1) * t[-1] / np.log(f1 / f0)
    chirp = 0.7 * np.sin(np.pi * t / t[-1]) * np.sin(phase)
    noise = 0.25 * np.random.default_rng(1234).standard_normal(n)
    silence = np.zeros(n)
    tones = 0.4 * np.sin(2 * np.pi * 440.0 * t) + 0.2 * np.sin(2 * np.pi * 0.21 * sr * t)
    tones = np.round(tones * 32767) / 32768
    audio = np.stack([chirp, noise, silence, tones]).astype(np.float32)

    s = preset.image_size
    yy, xx = np.meshgrid(np.linspace(0, 1, s), np.linspace(0, 1, s), indexing="ij")
    checker = ((np.arange(s)[:, None] // max(s // 8, 1) + np.arange(s)[None] // max(s // 8, 1)) % 2)
    disc = ((yy - 0.3) ** 2 + (xx - 0.7) ** 2) < 0.04
    img = np.stack([xx, yy * (1 - xx), 0.3 + 0.5 * checker], axis=-1)
    img[disc] = [0.9, 0.1, 0.2]
    vision = np.stack([img, img[:, ::-1]]).astype(np.float32)
    return {"audio": audio, "vision": vision}


def golden_outputs(preset: Preset, m: keras.Model = None) -> Dict[str, np.ndarray]:
    """The four golden arrays of `preset` (of `m`, default the seeded `golden_model`)."""
    m = golden_model(preset) if m is None else m
    nets = model_lib.subnetworks(m)
    inputs = golden_inputs(preset)
    out = {}
    for modality in ("audio", "vision"):
        enc = model_lib.build_encoder(nets[modality], preset, modality)
        for key, value in enc(inputs[modality], training=False).items():
            out[f"{modality}_{key}"] = keras.ops.convert_to_numpy(value).astype(np.float32)
    return out
