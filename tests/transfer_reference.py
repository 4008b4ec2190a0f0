"""numpy references for the encoders' outputs, from the network's own conv4_2 activations.

Independent of `l3.model.build_encoder` (which uses Keras pooling layers): the
pools here are reshapes and maxima written from the paper's description
(sections 3.3, 3.4):

* audio `conv4_2_pooled`: conv4_2 *before* ReLU (`conv4_2_bn`), max-pooled with
  kernel = stride, valid (paper: 16x12x512 -> 4x4/4 -> 4x3x512 = 6144);
* vision `conv4_2_pooled`: conv4_2 *after* ReLU (`conv4_2_relu`), max-pooled
  likewise (paper: 14x14x512 -> 3x3/3 -> 4x4x512 = 8192; the 3x3/3 windows
  cover rows and columns 0..11, so the last two of 14 are dropped);
* `embedding`: the global spatial max of conv4_2 after ReLU.

Flattening is channels-last, row-major: [b, h, w, c] -> [b, h * w * c].
"""

from typing import Dict, Tuple

import keras
import numpy as np

# The pools each preset's transfer features use, as the paper / presets.py state them.
TRANSFER_POOLS = {
    "paper": {"audio": (4, 4), "vision": (3, 3)},
    "small": {"audio": (2, 4), "vision": (1, 1)},
}
CONV4_LAYER = {"audio": "conv4_2_bn", "vision": "conv4_2_relu"}


def max_pool(x: np.ndarray, pool: Tuple[int, int]) -> np.ndarray:
    """Valid max-pool with kernel = stride: [b, h, w, c] -> [b, h // ph, w // pw, c]."""
    b, h, w, c = x.shape
    ph, pw = pool
    ho, wo = h // ph, w // pw
    return x[:, :ho * ph, :wo * pw].reshape(b, ho, ph, wo, pw, c).max(axis=(2, 4))


def conv4_activations(subnetwork: keras.Model, inputs: np.ndarray) -> Dict[str, np.ndarray]:
    """{"conv4_2_bn", "conv4_2_relu"}: float [b, h, w, c] from `subnetwork` (inference mode)."""
    probe = keras.Model(subnetwork.input, [subnetwork.get_layer("conv4_2_bn").output,
                                           subnetwork.get_layer("conv4_2_relu").output])
    bn, relu = probe(inputs, training=False)
    return {"conv4_2_bn": keras.ops.convert_to_numpy(bn),
            "conv4_2_relu": keras.ops.convert_to_numpy(relu)}


def reference_outputs(subnetwork: keras.Model, preset_name: str, modality: str,
                      inputs: np.ndarray) -> Dict[str, np.ndarray]:
    """{"embedding" [b, D], "conv4_2_pooled" [b, P]} computed with numpy from conv4_2."""
    acts = conv4_activations(subnetwork, inputs)
    np.testing.assert_allclose(acts["conv4_2_relu"], np.maximum(acts["conv4_2_bn"], 0), atol=1e-6)
    pooled = max_pool(acts[CONV4_LAYER[modality]], TRANSFER_POOLS[preset_name][modality])
    return {"embedding": acts["conv4_2_relu"].max(axis=(1, 2)),
            "conv4_2_pooled": pooled.reshape(len(pooled), -1)}


def shift_conv4_2_bn(avc_model: keras.Model, seed: int = 0) -> None:
    """Moves half of conv4_2_bn's channels well below zero (beta -= 3), in both subnetworks.

    Max-pooling commutes with ReLU unless a whole window is negative; at
    random initialisation that almost never happens, so "before ReLU" and
    "after ReLU" would give the same pooled features. With these offsets many
    windows are all-negative and the two sides of the ReLU differ.
    """
    rng = np.random.default_rng(seed)
    for name in ("vision_network", "audio_network"):
        bn = avc_model.get_layer(name).get_layer("conv4_2_bn")
        beta = keras.ops.convert_to_numpy(bn.beta)
        channels = rng.permutation(len(beta))[:len(beta) // 2]
        beta[channels] -= 3.0
        bn.beta.assign(beta)
