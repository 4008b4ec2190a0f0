"""AVC accuracy (section 3.1, Table 1) on fixed held-out pairs.

A pair is (frame, 1 s of audio); half correspond. A model scores it with
P(corresponds); the prediction is "corresponds" when that is above 0.5, the
argmax of the 2-way softmax. The pairs are `l3.pairs.make_dataset(...,
training=False, options=PipelineOptions(num_pairs=n, seed=s))`: the same n pairs for a given seed and
data, so checkpoints and exports are compared on identical input.

Sources of the model:
* a training run's `model_dir` (its latest checkpoint, or a named one; the
  preset comes from `train_config.json`);
* an exported `avc` SavedModel (`serving_default(image, waveform) ->
  correspondence [b]`), given as the export directory or its `avc/`; the
  preset comes from `export.json`.

Per-class accuracy groups pairs by the class label of the frame's video
(`frame_label` in the pipeline's metadata), when the records carry labels.
"""

import json
import os
from typing import Callable, Dict, Optional, Tuple

import numpy as np
import tensorflow as tf

from l3.core import errors
from l3.model import network as model_lib
from l3.pairs import evaluation
from l3.pairs import pipeline as pairs
from l3.core import presets as presets_lib
from l3.train import run_dir
from l3.records import shard_reader

DEFAULT_NUM_PAIRS = evaluation.DEFAULT_NUM_PAIRS
DEFAULT_SEED = evaluation.DEFAULT_SEED
avc_metrics = evaluation.avc_metrics        # the one home is l3.pairs.evaluation
evaluate_pairs = evaluation.evaluate_pairs
AVC_EXPORT = "avc"
EXPORT_JSON = "export.json"


def _read_json(path: str) -> Dict:
    with tf.io.gfile.GFile(path) as f:
        return json.load(f)


def load_checkpoint_model(model_dir: str, *, preset: Optional[str] = None,
                          checkpoint: Optional[str] = None):
    """The AVC model of a training run.

    Returns (keras model, Preset, step, checkpoint path). The preset is read
    from `model_dir/train_config.json` unless given.
    """
    preset = presets_lib.get_preset(run_dir.preset_name(model_dir, preset))
    checkpoint = run_dir.checkpoint_path(model_dir, checkpoint)
    avc = model_lib.build_avc_model(preset)
    step = tf.Variable(0, dtype=tf.int64)
    status = tf.train.Checkpoint(model=avc, step=step).restore(checkpoint)
    status.assert_existing_objects_matched().expect_partial()
    return avc, preset, int(step.numpy()), checkpoint


def model_predictor(avc_model) -> Callable:
    """tf.function(image, waveform) -> P(corresponds) [b] of a Keras AVC model."""
    @tf.function
    def predict(image, waveform):
        logits = avc_model({"image": image, "waveform": waveform}, training=False)
        return tf.nn.softmax(tf.cast(logits, tf.float32), axis=-1)[:, 1]
    return predict


def load_saved_model_predictor(export_dir: str) -> Tuple[Callable, Optional[str]]:
    """(predict, preset name or None) of an exported `avc` SavedModel.

    `export_dir` is an `l3-export` directory (with `avc/` and `export.json`)
    or the `avc` SavedModel itself.
    """
    path, info_path = export_dir, os.path.join(export_dir, EXPORT_JSON)
    if tf.io.gfile.exists(os.path.join(export_dir, AVC_EXPORT, "saved_model.pb")):
        path = os.path.join(export_dir, AVC_EXPORT)
    else:
        info_path = os.path.join(os.path.dirname(os.path.normpath(export_dir)), EXPORT_JSON)
    if not tf.io.gfile.exists(os.path.join(path, "saved_model.pb")):
        raise errors.MissingInputError(f"no avc SavedModel in {export_dir}: give an l3-export "
                                       "--output_dir or its avc/ directory")
    loaded = tf.saved_model.load(path)
    serving = loaded.signatures["serving_default"]
    preset = _read_json(info_path).get("preset") if tf.io.gfile.exists(info_path) else None

    def predict(image, waveform):
        return serving(image=tf.cast(image, tf.float32),
                       waveform=tf.cast(waveform, tf.float32))["correspondence"]
    predict.saved_model = loaded  # a signature references its variables only weakly
    return predict, preset


def evaluate_avc(data_pattern: str, *, model_dir: Optional[str] = None,
                 export_dir: Optional[str] = None, checkpoint: Optional[str] = None,
                 preset: Optional[str] = None, num_pairs: int = DEFAULT_NUM_PAIRS,
                 seed: int = DEFAULT_SEED, batch_size: int = 64) -> Dict:
    """AVC accuracy of a checkpoint (`model_dir`) or an export (`export_dir`).

    Returns `avc_metrics`'s dict plus "source", "preset", "seed", and "step"
    for a checkpoint.
    """
    if (model_dir is None) == (export_dir is None):
        raise ValueError("give exactly one of model_dir and export_dir")
    extra = {}
    if model_dir is not None:
        avc, preset_obj, step, path = load_checkpoint_model(model_dir, preset=preset,
                                                            checkpoint=checkpoint)
        predict = model_predictor(avc)
        extra = {"source": path, "step": step}
    else:
        predict, export_preset = load_saved_model_predictor(export_dir)
        preset = preset or export_preset
        if preset is None:
            raise errors.UsageError(f"no export.json beside {export_dir}; pass the preset")
        preset_obj = presets_lib.get_preset(preset)
        extra = {"source": export_dir}
    dataset = evaluation.evaluation_pairs(data_pattern, preset_obj, num_pairs=num_pairs, seed=seed,
                                          batch_size=batch_size, include_metadata=True,
                                          on_damaged_shard="stop")
    try:
        result = evaluate_pairs(predict, dataset)
    except tf.errors.DataLossError as e:
        raise shard_reader.damaged_shard_error(pairs.resolve_files(data_pattern), e) from None
    result.update(extra, preset=preset_obj.name, seed=seed)
    return result
