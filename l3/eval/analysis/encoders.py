"""The networks the analyses probe: the exported (trained) encoders and an untrained twin.

Both come as `Probe`s with the same two views of one subnetwork:

  embed(x)  -> pool4 [n, D]: the embedding, whose component k is "unit k" of 3.5;
  maps(x)   -> {"conv4_2": [n, h, w, D] after ReLU (channel k is the map whose
               spatial max is unit k, 3.5.1), and for audio "spectrogram":
               [n, bands, frames, 1], the network's own input image}.

Inputs are the encoders' (vision: float32 [n, S, S, 3] in [0, 1]; audio: float32
[n, N] waveform at the preset's rate). The trained probe is read from the
export's `.keras` files (SavedModels expose no conv4_2 channel maps); its
`embed` equals the SavedModel's `embedding` output. The untrained probe is the
same architecture from `l3.model`, randomly initialised with a seed, so the two
differ in their weights only (3.5.3's "random network").
"""

import os
from typing import Dict

import numpy as np
import keras

from l3.model import frontend as _frontend  # noqa: F401  (registers LogSpectrogram for .keras loading)
from l3.core import constants as C
from l3.core import errors
from l3.export import writer as export_lib
from l3.model import network as model_lib
from l3.core.presets import Preset, get_preset

MODALITIES = (model_lib.VISION, model_lib.AUDIO)


class Probe:
    """Embeddings and conv4_2 channel maps of one subnetwork (see module docstring)."""

    def __init__(self, network: keras.Model, modality: str, batch_size: int = 32):
        self.modality = modality
        self.batch_size = batch_size
        self._embed = keras.Model(network.input, network.get_layer("pool4").output)
        outputs = {"conv4_2": network.get_layer("conv4_2_relu").output}
        if modality == model_lib.AUDIO:
            outputs["spectrogram"] = network.get_layer("spectrogram").output
        self._maps = keras.Model(network.input, outputs)

    def _run(self, model: keras.Model, x: np.ndarray):
        x = np.asarray(x, np.float32)
        outs = [model(x[i:i + self.batch_size], training=False)
                for i in range(0, len(x), self.batch_size)]
        if isinstance(outs[0], dict):
            return {k: np.concatenate([np.asarray(o[k]) for o in outs]) for k in outs[0]}
        return np.concatenate([np.asarray(o) for o in outs])

    def embed(self, x: np.ndarray) -> np.ndarray:
        """pool4 activations float32 [n, D]."""
        return self._run(self._embed, x)

    def maps(self, x: np.ndarray) -> Dict[str, np.ndarray]:
        """{"conv4_2": [n, h, w, D]} (+ "spectrogram" [n, bands, frames, 1] for audio)."""
        return self._run(self._maps, x)


def export_preset(export_dir: str) -> Preset:
    """The preset named in an export's export.json."""
    return get_preset(export_lib.read_export_info(export_dir)["preset"])


def trained_probes(export_dir: str, batch_size: int = 32) -> Dict[str, Probe]:
    """{"vision": Probe, "audio": Probe} of an `l3-export` directory."""
    probes = {}
    for modality, name in ((model_lib.VISION, export_lib.VISION_ENCODER),
                           (model_lib.AUDIO, export_lib.AUDIO_ENCODER)):
        path = os.path.join(export_dir, name + ".keras")
        if not os.path.exists(path):
            raise FileNotFoundError(f"{path} not found: the analysis needs the export's .keras "
                                    "encoders (written by l3-export) for conv4_2 maps")
        probes[modality] = Probe(keras.models.load_model(path, compile=False), modality,
                                 batch_size)
    return probes


def untrained_probes(preset: Preset, seed: int = 0, batch_size: int = 32) -> Dict[str, Probe]:
    """Probes of a freshly initialised AVC model of `preset` (Keras seeded with `seed`).

    Batch norm keeps its initial statistics (mean 0, variance 1), so in inference
    mode it is the identity up to epsilon: the untrained net is conv + ReLU + pool.
    """
    keras.utils.set_random_seed(seed)
    nets = model_lib.subnetworks(model_lib.build_avc_model(preset, name="l3_untrained"))
    return {m: Probe(model_lib.build_encoder(nets[m], preset, m), m, batch_size)
            for m in MODALITIES}


def total_stride(preset: Preset) -> int:
    """Input pixels (or spectrogram cells) per conv4_2 cell: conv1_1 stride x three 2x2 pools."""
    return preset.conv1_1_stride * C.POOL_SIZE ** 3


def exported_avc_model(export_dir: str) -> keras.Model:
    """The whole AVC model of an `l3-export` directory (its `avc.keras`), with the
    sub-models "vision_network", "audio_network" and "fusion" (`l3.model.network.subnetworks`)."""
    path = os.path.join(export_dir, export_lib.AVC + ".keras")
    if not os.path.exists(path):
        raise errors.MissingInputError(f"{path} not found: retrieval and localization need the "
                                "export's avc.keras (written by l3-export)")
    return keras.models.load_model(path, compile=False)


def untrained_avc_model(preset: Preset, seed: int = 0) -> keras.Model:
    """A freshly initialised AVC model of `preset` (Keras seeded with `seed`): the
    "untrained network" row of every comparison."""
    keras.utils.set_random_seed(seed)
    return model_lib.build_avc_model(preset, name="l3_untrained")
