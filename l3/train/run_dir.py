"""What an `l3-train --model_dir` holds, checked: its preset and its checkpoints.

Export and evaluation read a training run through these, so that a folder of
the wrong kind or a preset that does not match the checkpoint is a one-line
`UsageError` naming the folder, not a restore traceback.
"""

import json
import os
from typing import Optional

import tensorflow as tf

from l3.core import errors

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
