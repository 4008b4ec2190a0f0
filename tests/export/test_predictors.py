"""P(corresponds): one definition (`l3.model.network.correspondence`), one predictor per
source (`l3.export.predictors`: model, checkpoint, export), one checkpoint restore
(`l3.train.run_dir.restore_model`), all equal to numpy's softmax of the model's logits."""

import json
import math
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from l3 import export
from l3.core import errors, presets
from l3.export import predictors
from l3.model import network
from l3.train import run_dir
from tests.fixtures.embeddings import make_small_export

SMALL = presets.SMALL


def _softmax1(logits):
    """numpy reference: softmax over the last axis, index 1 ("corresponds")."""
    z = np.asarray(logits, np.float64)
    e = np.exp(z - z.max(-1, keepdims=True))
    return e[:, 1] / e.sum(-1)


def _inputs(n=5, seed=0):
    rng = np.random.default_rng(seed)
    image = rng.uniform(0, 1, (n, SMALL.image_size, SMALL.image_size, 3)).astype("float32")
    waveform = rng.normal(0, 0.3, (n, SMALL.clip_samples)).astype("float32")
    return image, waveform


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """(export dir, the same weights as an in-memory model, a model_dir with their checkpoint)."""
    exported = make_small_export(tmp_path_factory)
    m = network.build_avc_model(SMALL)
    m.set_weights(keras.models.load_model(os.path.join(exported.export_dir, "avc.keras")).get_weights())
    run = tmp_path_factory.mktemp("run")
    tf.train.Checkpoint(model=m, step=tf.Variable(13, dtype=tf.int64)).save(str(run / "ckpt"))
    (run / "train_config.json").write_text(json.dumps({"preset": "small"}))
    return exported.export_dir, m, str(run)


def test_probability_is_softmax_index_1_on_hand_logits():
    # softmax([1, 1]) = 0.5; softmax([2, 2 + ln 3])[1] = 3/4; a sigmoid of logit 1 gives
    # 0.73 and 0.92 instead, index 0 gives 0.5 and 0.25.
    logits = np.array([[1.0, 1.0], [2.0, 2.0 + math.log(3.0)], [0.0, -50.0]], np.float32)
    got = keras.ops.convert_to_numpy(network.correspondence_probability(logits))
    np.testing.assert_allclose(got, [0.5, 0.75, math.exp(-50.0)], rtol=1e-5, atol=1e-12)
    assert got.dtype == np.float32
    half = network.correspondence_probability(logits.astype(np.float16))  # mixed precision
    assert keras.ops.convert_to_numpy(half).dtype == np.float32


def test_model_checkpoint_and_export_give_the_same_probability(source):
    export_dir, m, run = source
    image, waveform = _inputs()
    want = _softmax1(m({"image": image, "waveform": waveform}, training=False))
    assert np.std(want) > 1e-4  # distinct values: a swapped index or a constant would show
    from_model = predictors.from_model(m)
    from_ckpt = predictors.from_checkpoint(run)
    from_export = predictors.from_export(export_dir)
    from_avc_dir = predictors.from_export(os.path.join(export_dir, "avc"))
    for p in (from_model, from_ckpt, from_export, from_avc_dir):
        got = np.asarray(p(tf.constant(image), tf.constant(waveform)))
        assert got.shape == (5,) and got.dtype == np.float32
        np.testing.assert_allclose(got, want, atol=2e-6, err_msg=p.source)
    direct = network.correspondence(m, image, waveform)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(direct), want, atol=2e-6)
    assert from_ckpt.step == 13 and from_ckpt.preset == "small"
    assert from_ckpt.source.endswith("ckpt-1")
    assert from_export.preset == "small" and from_avc_dir.preset == "small"
    # The numpy loader of the export agrees as well.
    np.testing.assert_allclose(export.ExportedModel(export_dir).correspondence(image, waveform,
                                                                               batch_size=2),
                               want, atol=2e-6)


def test_training_loops_predict_function_is_the_same_probability(source):
    from l3.train import loop
    _, m, _ = source
    trainer = loop.Trainer(SMALL, tf.distribute.get_strategy(), global_batch_size=4,
                           learning_rate=1e-3, weight_decay=0.0)
    trainer.model.set_weights(m.get_weights())
    image, waveform = _inputs(seed=1)
    want = _softmax1(m({"image": image, "waveform": waveform}, training=False))
    got = trainer.make_predict_function()(tf.constant(image), tf.constant(waveform)).numpy()
    np.testing.assert_allclose(got, want, atol=2e-6)


def test_restore_model_checks_the_run(source, tmp_path):
    _, m, run = source
    restored = run_dir.restore_model(run)
    assert restored.step == 13 and restored.preset.name == "small"
    for a, b in zip(restored.model.weights, m.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert run_dir.restore_model(run, preset=SMALL).preset is SMALL
    with pytest.raises(errors.UsageError, match="does not match"):
        run_dir.restore_model(run, preset="paper")
    # A checkpoint of another model: one line naming it, not a restore traceback.
    other = tmp_path / "other"
    dense = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    tf.train.Checkpoint(model=dense).save(str(other / "ckpt"))
    (other / "train_config.json").write_text(json.dumps({"preset": "small"}))
    with pytest.raises(errors.UsageError, match=r"other/ckpt-1 does not hold an L3 model of preset 'small': 85 of"):
        run_dir.restore_model(str(other))
    with pytest.raises(errors.MissingInputError, match="train_config.json not found"):
        run_dir.restore_model(str(tmp_path))
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "train_config.json").write_text(json.dumps({"preset": "small"}))
    with pytest.raises(errors.MissingInputError, match="no checkpoint in"):
        run_dir.restore_model(str(empty))


def test_export_predictor_errors(tmp_path):
    with pytest.raises(errors.MissingInputError, match="no avc SavedModel"):
        predictors.from_export(str(tmp_path))
