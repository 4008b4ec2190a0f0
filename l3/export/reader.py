"""Reading an export directory back: its export.json, its SavedModels, batched encoders.

The directory `l3.export.writer.export_model` writes (docs/DESIGN.md section 5):

  export_dir/audio_encoder/   serving_default(waveform float32 [b, N])
                                -> embedding [b, D], conv4_2_pooled [b, P_audio]
  export_dir/vision_encoder/  serving_default(image float32 [b, S, S, 3] in [0, 1])
                                -> embedding [b, D], conv4_2_pooled [b, P_vision]
  export_dir/avc/             serving_default(image, waveform) -> correspondence [b]
  export_dir/export.json      preset, sizes, step, artifacts

`ExportedModel` is the loader the transfer, embedding and analysis tools use;
`l3.export.predictors.from_export` is the AVC predictor built on it.
"""

import json
import os
from typing import Dict, Optional, Tuple

import numpy as np
import tensorflow as tf

from l3.core import errors

AUDIO_ENCODER = "audio_encoder"
VISION_ENCODER = "vision_encoder"
AVC = "avc"
EXPORT_JSON = "export.json"


def read_export_info(export_dir: str) -> Dict:
    """export.json of an export directory (a MissingInputError, a FileNotFoundError, with a hint)."""
    path = os.path.join(export_dir, EXPORT_JSON)
    if not tf.io.gfile.exists(path):
        raise errors.MissingInputError(f"{path} not found: is {export_dir} an l3-export output "
                                       "directory?")
    with tf.io.gfile.GFile(path) as f:
        return json.load(f)


def locate_avc(path: str) -> Tuple[str, Optional[str]]:
    """(the avc SavedModel folder, the export directory or None) of `path`.

    `path` is an l3-export directory (with `avc/`) or its `avc/` SavedModel
    itself; the export directory is returned when an export.json sits in it.
    """
    if tf.io.gfile.exists(os.path.join(path, AVC, "saved_model.pb")):
        saved, export_dir = os.path.join(path, AVC), path
    elif tf.io.gfile.exists(os.path.join(path, "saved_model.pb")):
        saved, export_dir = path, os.path.dirname(os.path.normpath(path))
    else:
        raise errors.MissingInputError(f"no avc SavedModel in {path}: give an l3-export "
                                       "--output_dir or its avc/ directory")
    if not tf.io.gfile.exists(os.path.join(export_dir, EXPORT_JSON)):
        export_dir = None
    return saved, export_dir


class SavedSignature:
    """The `serving_default` signature of one SavedModel, and the loaded object it needs.

    A signature references its SavedModel's variables only weakly: this keeps
    the loaded object (`.saved_model`) alive as long as the signature.
    Calling it takes keyword tensors and returns the signature's dict.
    """

    def __init__(self, path: str):
        self.path = path
        self.saved_model = tf.saved_model.load(path)
        self.function = self.saved_model.signatures["serving_default"]

    def __call__(self, **inputs) -> Dict[str, tf.Tensor]:
        return self.function(**{k: tf.cast(v, tf.float32) for k, v in inputs.items()})

    @property
    def variables(self):
        """Every variable of the SavedModel (for digests: a frozen trunk stays unchanged)."""
        return list(self.saved_model.variables)


class ExportedModel:
    """Loads an export directory lazily and runs its encoders in batches on numpy input.

    Attributes: `info` (export.json), `sample_rate`, `clip_samples`, `image_size`.
    """

    def __init__(self, export_dir: str):
        self.export_dir = export_dir
        self.info = read_export_info(export_dir)
        self.sample_rate = int(self.info["sample_rate"])
        self.clip_samples = int(self.info["clip_samples"])
        self.image_size = int(self.info["image_size"])
        self._loaded = {}

    def saved(self, name: str) -> SavedSignature:
        """The loaded `audio_encoder`, `vision_encoder` or `avc` SavedModel (once per name)."""
        if name not in self._loaded:
            self._loaded[name] = SavedSignature(os.path.join(self.export_dir, name))
        return self._loaded[name]

    def signature(self, name: str):
        """The `serving_default` concrete function of `audio_encoder`, `vision_encoder` or `avc`."""
        return self.saved(name).function

    def _batched(self, name: str, batch_size: int, **inputs) -> Dict[str, np.ndarray]:
        fn = self.signature(name)
        n = len(next(iter(inputs.values())))
        outputs = {}
        for start in range(0, n, batch_size):
            chunk = {k: tf.constant(v[start:start + batch_size], tf.float32) for k, v in inputs.items()}
            for key, value in fn(**chunk).items():
                outputs.setdefault(key, []).append(value.numpy())
        if not outputs:  # no input rows: empty arrays of the right width
            spec = fn.structured_outputs
            return {k: np.zeros((0,) + tuple(v.shape[1:]), np.float32) for k, v in spec.items()}
        return {k: np.concatenate(v) for k, v in outputs.items()}

    def embed_audio(self, waveforms: np.ndarray, batch_size: int = 64) -> Dict[str, np.ndarray]:
        """float32 [n, clip_samples] at `sample_rate` -> {"embedding": [n, D], "conv4_2_pooled": [n, P]}."""
        waveforms = np.asarray(waveforms, np.float32)
        if waveforms.ndim != 2 or waveforms.shape[1] != self.clip_samples:
            raise ValueError(f"expected waveforms [n, {self.clip_samples}], got {waveforms.shape}")
        return self._batched(AUDIO_ENCODER, batch_size, waveform=waveforms)

    def embed_images(self, images: np.ndarray, batch_size: int = 64) -> Dict[str, np.ndarray]:
        """float32 [n, S, S, 3] in [0, 1] -> {"embedding": [n, D], "conv4_2_pooled": [n, P]}."""
        images = np.asarray(images, np.float32)
        want = (self.image_size, self.image_size, 3)
        if images.ndim != 4 or images.shape[1:] != want:
            raise ValueError(f"expected images [n, {want}], got {images.shape}")
        return self._batched(VISION_ENCODER, batch_size, image=images)

    def correspondence(self, images: np.ndarray, waveforms: np.ndarray,
                       batch_size: int = 64) -> np.ndarray:
        """Probability that each (image, waveform) pair corresponds: float32 [n]."""
        return self._batched(AVC, batch_size, image=np.asarray(images, np.float32),
                             waveform=np.asarray(waveforms, np.float32))["correspondence"]
