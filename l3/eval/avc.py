"""AVC accuracy (section 3.1, Table 1) on fixed held-out pairs.

A pair is (frame, 1 s of audio); half correspond. A model scores it with
P(corresponds); the prediction is "corresponds" when that is above 0.5, the
argmax of the 2-way softmax. The pairs are `l3.pairs.make_dataset(...,
training=False, options=PipelineOptions(num_pairs=n, seed=s))`: the same n pairs for a given seed and
data, so checkpoints and exports are compared on identical input.

Sources of the model (`l3.export.predictors`, the one home of P(corresponds)):
* a training run's `model_dir` (its latest checkpoint, or a named one; the
  preset comes from `train_config.json`): `predictors.from_checkpoint`;
* an exported `avc` SavedModel (`serving_default(image, waveform) ->
  correspondence [b]`), given as the export directory or its `avc/`; the
  preset comes from `export.json`: `predictors.from_export`.

Per-class accuracy groups pairs by the class label of the frame's video
(`frame_label` in the pipeline's metadata), when the records carry labels.
"""

from typing import Dict, Optional

import tensorflow as tf

from l3.core import errors
from l3.core import presets as presets_lib
from l3.export import predictors
from l3.pairs import evaluation
from l3.pairs import pipeline as pairs
from l3.pairs import sampling
from l3.records import shard_reader

DEFAULT_NUM_PAIRS = evaluation.DEFAULT_NUM_PAIRS
DEFAULT_SEED = evaluation.DEFAULT_SEED
avc_metrics = evaluation.avc_metrics        # the one home is l3.pairs.evaluation
evaluate_pairs = evaluation.evaluate_pairs


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
    if model_dir is not None:
        predict = predictors.from_checkpoint(model_dir, preset=preset, checkpoint=checkpoint)
        preset_obj = predict.restored.preset
        extra = {"source": predict.source, "step": predict.step}
    else:
        predict = predictors.from_export(export_dir)
        preset = preset or predict.preset
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
    except tf.errors.InvalidArgumentError as e:  # frames that are not whole JPEGs
        raise (sampling.bad_frames_error(e) or e) from None
    result.update(extra, preset=preset_obj.name, seed=seed)
    return result
