"""Audio feature extractors for the transfer benchmarks: an export, a random network, a callable.

An `Encoder` maps float32 waveforms [m, clip_samples] at `sample_rate` to
float32 features [m, P]; the paper's feature is `conv4_2_pooled`: conv4_2
*before* ReLU max-pooled to 4x3x512 = 6144-D (1536-D for the small preset).
"""

import dataclasses
import os
from typing import Callable, Optional

import numpy as np

from l3.core import fileio
from l3.eval.transfer.subclips import SUBCLIP_SECONDS

FEATURE = "conv4_2_pooled"
DEFAULT_BATCH_SIZE = 64  # subclips per encoder call

# An encoder function: float32 [m, clip_samples] waveforms -> float32 [m, P] features.
EncoderFn = Callable[[np.ndarray], np.ndarray]


@dataclasses.dataclass
class Encoder:
    """An audio feature extractor: `fn` maps float32 [m, clip_samples] at
    `sample_rate` to float32 [m, P]. `description` goes into results."""

    fn: EncoderFn
    sample_rate: int
    clip_samples: int
    description: dict
    fingerprint: str = ""  # identifies the weights, for feature caches ("" = do not cache)


def exported_encoder(exported, feature: str = FEATURE,
                     batch_size: int = DEFAULT_BATCH_SIZE) -> Encoder:
    """An `Encoder` from an `l3.export.ExportedModel` or an export directory path."""
    # Function-local: l3.export imports TensorFlow (seconds), needed only when an export is used.
    from l3.export import writer as export_lib

    if isinstance(exported, (str, os.PathLike)):
        exported = export_lib.ExportedModel(os.fspath(exported))
    variables = os.path.join(exported.export_dir, export_lib.AUDIO_ENCODER, "variables")
    files = ([os.path.join(variables, f) for f in os.listdir(variables)]
             if os.path.isdir(variables) else [])
    fingerprint = fileio.files_digest(
        files + [os.path.join(exported.export_dir, export_lib.EXPORT_JSON)])
    info = exported.info
    description = {"export_dir": os.path.abspath(exported.export_dir), "preset": info.get("preset"),
                   "step": info.get("step"), "source_checkpoint": info.get("source_checkpoint"),
                   "feature": feature, "weights_sha1": fingerprint}

    def fn(waveforms: np.ndarray) -> np.ndarray:
        return exported.embed_audio(waveforms, batch_size=batch_size)[feature]

    return Encoder(fn, exported.sample_rate, exported.clip_samples, description,
                   f"{fingerprint}-{feature}")


def as_encoder(encoder, *, sample_rate: Optional[int] = None, clip_samples: Optional[int] = None,
               feature: str = FEATURE, batch_size: int = DEFAULT_BATCH_SIZE) -> Encoder:
    """Accepts an `Encoder`, an `ExportedModel`, an export directory, or a callable.

    A callable (e.g. a Keras audio encoder from `l3.model.build_encoder`, or a
    numpy function) takes float32 [m, clip_samples] and returns an array
    [m, P] or a dict holding `feature`; it needs `sample_rate` and
    `clip_samples` (default: one second).
    """
    if isinstance(encoder, Encoder):
        return encoder
    if isinstance(encoder, (str, os.PathLike)) or hasattr(encoder, "embed_audio"):
        return exported_encoder(encoder, feature, batch_size)
    if not callable(encoder):
        raise TypeError(f"cannot use {type(encoder).__name__} as an audio encoder")
    if sample_rate is None:
        raise ValueError("a callable encoder needs its sample_rate")
    clip_samples = int(clip_samples or round(SUBCLIP_SECONDS * sample_rate))

    def fn(waveforms: np.ndarray) -> np.ndarray:
        out = []
        for i in range(0, len(waveforms), batch_size):
            y = encoder(waveforms[i:i + batch_size])
            if isinstance(y, dict):
                y = y[feature]
            out.append(np.asarray(y, np.float32).reshape(len(waveforms[i:i + batch_size]), -1))
        return np.concatenate(out)

    name = getattr(encoder, "name", None) or getattr(encoder, "__name__", type(encoder).__name__)
    return Encoder(fn, int(sample_rate), clip_samples, {"callable": str(name), "feature": feature})


def random_encoder(preset_name: str, *, seed: int = 0, feature: str = FEATURE,
                   batch_size: int = DEFAULT_BATCH_SIZE) -> Encoder:
    """The paper's "Ours random": the audio network of `preset_name` with random weights.

    In memory, no export; Keras initialisers seeded with `seed`.
    """
    # Function-local: Keras and l3.model import TensorFlow (seconds), needed only here.
    import keras
    from l3.model import network as model_lib
    from l3.core import presets

    preset = presets.get_preset(preset_name)
    keras.utils.set_random_seed(seed)
    avc = model_lib.build_avc_model(preset)
    net = model_lib.build_encoder(model_lib.subnetworks(avc)[model_lib.AUDIO], preset,
                                  model_lib.AUDIO)

    def fn(waveforms: np.ndarray) -> np.ndarray:
        out = [np.asarray(net.predict_on_batch(waveforms[i:i + batch_size])[feature], np.float32)
               for i in range(0, len(waveforms), batch_size)]
        return np.concatenate(out)

    digest = model_lib.weights_digest(net)
    return Encoder(fn, preset.sample_rate, preset.clip_samples,
                   {"random_weights": True, "preset": preset.name, "seed": seed, "feature": feature,
                    "weights_sha256": digest},
                   f"{digest}-{feature}")
