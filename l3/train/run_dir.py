"""What an `l3-train --model_dir` holds, checked: its preset, its checkpoints, its model.

Export and evaluation read a training run through these (`restore_model` is
the one restore of a run's AVC model), so that a folder of the wrong kind or
a preset that does not match the checkpoint is a one-line `UsageError` naming
the folder, not a restore traceback.
"""

import dataclasses
import json
import os
import re
from typing import Optional, Union

import keras
import tensorflow as tf

from l3.core import errors
from l3.core import presets as presets_lib
from l3.model import network as model_lib

TRAIN_CONFIG_JSON = "train_config.json"


def preset_name(model_dir: str, preset: Optional[str] = None) -> str:
    """The run's preset: `preset` if given (checked against train_config.json), else the file's."""
    if not tf.io.gfile.isdir(model_dir):
        raise errors.MissingInputError(f"{model_dir} is not a folder (an l3-train --model_dir)")
    config_path = os.path.join(model_dir, TRAIN_CONFIG_JSON)
    recorded = None
    if tf.io.gfile.exists(config_path):
        with tf.io.gfile.GFile(config_path) as f:
            recorded = json.load(f).get("preset")
    if preset is not None and recorded is not None and preset != recorded:
        raise errors.UsageError(f"preset {preset!r} does not match the checkpoint's: {config_path} "
                                f"says {recorded!r}")
    if preset is None and recorded is None:
        raise errors.MissingInputError(f"{config_path} not found; pass the preset explicitly")
    return preset or recorded


def checkpoint_path(model_dir: str, checkpoint: Optional[str] = None) -> str:
    """`checkpoint` if its files exist, else the latest checkpoint in `model_dir`."""
    if checkpoint:
        if not tf.io.gfile.glob(checkpoint + ".index"):
            raise errors.MissingInputError(f"checkpoint {checkpoint} not found ({checkpoint}.index "
                                           "does not exist)")
        return checkpoint
    latest = tf.train.latest_checkpoint(model_dir)
    if not latest:
        raise errors.MissingInputError(f"no checkpoint in {model_dir}: is it an l3-train --model_dir?")
    return latest


@dataclasses.dataclass(frozen=True)
class RestoredModel:
    """A training run's AVC model as restored from one checkpoint."""

    model: keras.Model          # build_avc_model(preset): {image, waveform} -> logits [b, 2]
    preset: presets_lib.Preset
    step: int                   # the optimizer step the checkpoint was written at
    checkpoint: str             # its path (prefix of the .index / .data files)


def restore_model(model_dir: str, *, preset: Union[str, presets_lib.Preset, None] = None,
                  checkpoint: Optional[str] = None) -> RestoredModel:
    """The AVC model of a training run, from its latest checkpoint or `checkpoint`.

    `preset` (a name/key or a Preset) is checked against the run's
    train_config.json; without it the file's is used. Every variable of the
    model must be in the checkpoint (the optimizer and input state may be
    left out); a checkpoint of another architecture is a one-line UsageError.
    """
    given = preset.key if isinstance(preset, presets_lib.Preset) else preset
    name = preset_name(model_dir, given)
    preset = preset if isinstance(preset, presets_lib.Preset) else presets_lib.get_preset(name)
    path = checkpoint_path(model_dir, checkpoint)
    avc = model_lib.build_avc_model(preset)
    step = tf.Variable(0, dtype=tf.int64)
    status = tf.train.Checkpoint(model=avc, step=step).restore(path)
    try:
        status.assert_existing_objects_matched()
    except AssertionError as e:
        status.expect_partial()
        found = re.search(r"Found (\d+) Python objects", str(e))
        what = (f"{found.group(1)} of the model's variables are not in it" if found
                else str(e).strip().splitlines()[0][:120])
        raise errors.UsageError(f"checkpoint {path} does not hold an L3 model of preset "
                                f"{preset.key!r}: {what}") from None
    status.expect_partial()
    return RestoredModel(avc, preset, int(step.numpy()), path)
