"""P(corresponds) from an in-memory model, a training run's checkpoint or an export.

Every tool that scores (image, waveform) pairs gets its function here:
`l3-eval-avc` (checkpoint or export), the Kinetics baselines (an in-memory
AVC model and the L3 export), tests. A predictor is called as

    predict(image float32 [b, S, S, 3] in [0, 1], waveform float32 [b, N]) -> float32 [b]

and carries `preset` (the preset's key, or None when an export does not say),
`source` (what it was loaded from) and `step` (the training step, when known).
The probability is `l3.model.network.correspondence` (softmax of the two
logits, index 1) for a model or checkpoint, and the `avc` signature's
`correspondence` output for an export, which the writer traces from that
same function; the training loop's evaluation uses it too
(`Trainer.make_predict_function`).
"""

from typing import Callable, Optional

import keras
import tensorflow as tf

from l3.export import reader
from l3.model import network as model_lib
from l3.train import run_dir


class Predictor:
    """A callable (image, waveform) -> P(corresponds) float32 [b], with where it came from."""

    def __init__(self, fn: Callable, *, preset: Optional[str], source: str,
                 step: Optional[int] = None, keep=None):
        self._fn = fn
        self.preset, self.source, self.step = preset, source, step
        self._keep = keep  # what the function needs alive (a model, a loaded SavedModel)

    def __call__(self, image, waveform) -> tf.Tensor:
        return self._fn(image, waveform)


def model_function(avc_model: keras.Model, jit_compile: bool = False) -> Callable:
    """tf.function(image, waveform) -> P(corresponds) float32 [b] of a Keras AVC model (inference mode)."""
    @tf.function(jit_compile=jit_compile)
    def predict(image, waveform):
        return model_lib.correspondence(avc_model, image, waveform, training=False)
    return predict


def from_model(avc_model: keras.Model, *, preset: Optional[str] = None, source: str = "model",
               step: Optional[int] = None, jit_compile: bool = False) -> Predictor:
    """The predictor of an in-memory AVC model (`l3.model.network.build_avc_model`'s)."""
    return Predictor(model_function(avc_model, jit_compile), preset=preset, source=source,
                     step=step, keep=avc_model)


def from_checkpoint(model_dir: str, *, preset: Optional[str] = None,
                    checkpoint: Optional[str] = None) -> Predictor:
    """The predictor of a training run's latest checkpoint (or `checkpoint`), restored by
    `l3.train.run_dir.restore_model`; `.restored` holds the model, preset and step."""
    restored = run_dir.restore_model(model_dir, preset=preset, checkpoint=checkpoint)
    predictor = from_model(restored.model, preset=restored.preset.key, source=restored.checkpoint,
                           step=restored.step)
    predictor.restored = restored
    return predictor


def from_export(path: str) -> Predictor:
    """The predictor of an export's `avc` SavedModel (`path`: the export directory or its avc/).

    `preset` comes from export.json when there is one beside the SavedModel.
    """
    saved_path, export_dir = reader.locate_avc(path)
    info = reader.read_export_info(export_dir) if export_dir is not None else {}
    signature = reader.SavedSignature(saved_path)

    def predict(image, waveform):
        return signature(image=image, waveform=waveform)["correspondence"]

    return Predictor(predict, preset=info.get("preset"), source=path, step=info.get("step"),
                     keep=signature)
