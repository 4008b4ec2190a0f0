"""Table 1 supervised baselines: pieces, and the whole benchmark on learnable toy shards.

The toy shards (`record_fixtures`, learnable mode) show the class as the
colour of the frame's top band and as the pitch of the audio, so small
classifiers learn them in a few dozen steps. AVC accuracy is capped below
100 % there: a negative pair whose two videos share a class looks like a
positive to any class-based scorer.
"""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from l3.eval import avc as evaluate
from l3.export import writer as export
from l3.model import network as model
from l3.pairs import pipeline as pairs
from l3.core import presets
from l3.records import schema as records
from l3.eval.transfer import kinetics_baselines as kb
from l3.eval.transfer import supervised
from tests.fixtures.records import write_synthetic_shards

SMALL = presets.SMALL
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LABELS = ("bell", "dog", "drum", "siren")


def _shards(root, *, train_videos=24, eval_videos=8, train_shards=3, seconds=3.0):
    train = write_synthetic_shards(os.path.join(root, "train"), num_videos=train_videos,
                                   seconds=seconds, fps=2.0, num_shards=train_shards,
                                   labels=LABELS, seed=0, learnable=True)
    test = write_synthetic_shards(os.path.join(root, "test"), num_videos=eval_videos,
                                  seconds=seconds, fps=2.0, num_shards=1, labels=LABELS,
                                  seed=1, learnable=True, split="test")
    return train, test


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    root = tmp_path_factory.mktemp("kinetics")
    train, test = _shards(str(root))
    return str(root), train, test


# --- pieces ----------------------------------------------------------------------------

def test_best_threshold_matches_brute_force():
    rng = np.random.default_rng(0)
    for _ in range(20):
        labels = rng.integers(0, 2, 50)
        scores = np.round(rng.normal(labels * 0.7, 0.5), 1)  # ties on purpose
        t, acc = kb.best_threshold(scores, labels)
        assert np.mean((scores > t) == labels) == pytest.approx(acc)
        brute = max(np.mean((scores > c) == labels) for c in np.concatenate([scores, [-9.0, 9.0]]))
        assert acc == pytest.approx(brute)
    t, acc = kb.best_threshold(np.array([0.1, 0.2, 0.8, 0.9]), np.array([0, 0, 1, 1]))
    assert acc == 1.0 and 0.2 < t < 0.8


def test_hold_out_validation_by_video_id(tmp_path):
    # One class per shard (video i -> shard i % 4, label i % 4): holding out
    # whole shards would hold out whole classes; the id hash mixes them.
    paths = write_synthetic_shards(str(tmp_path / "data"), num_videos=60, seconds=1.5, fps=1.0,
                                   num_shards=4, labels=LABELS, learnable=True)
    val, threshold, how = kb.hold_out_validation(paths, str(tmp_path / "work"), 0.25)
    held = [r["video_id"] for r in records.read_examples(val)]
    every = [r["video_id"] for r in records.read_examples(paths)]
    want = [v for v in every if bool(supervised.is_held_out(tf.constant(v), threshold))]
    assert sorted(held) == sorted(want) and len(held) == 15 and "15 of 60" in how
    assert len({r["label"] for r in records.read_examples(val)}) > 1
    # The classifiers' data skips exactly those videos.
    ds = supervised.classification_dataset(paths, SMALL, sorted(LABELS), modality="audio",
                                           training=False, batch_size=16, exclude_below=threshold)
    assert sum(int(y.shape[0]) for _, y in ds) == 60 - len(held)
    # Stable: the same split again.
    val2, _, _ = kb.hold_out_validation(paths, str(tmp_path / "work2"), 0.25)
    assert [r["video_id"] for r in records.read_examples(val2)] == held


def test_baseline_reads_go_through_the_damaged_shard_policy(toy, tmp_path, capfd):
    """A training shard cut inside its last record: "skip" keeps the records before the
    damage and names the shard (class names, held-out split, classifier data, read_examples);
    "stop" raises DataLossError. Raw TFRecordDataset reads would raise in every case."""
    _, train, _ = toy
    damaged = str(tmp_path / os.path.basename(train[0]))
    with open(train[0], "rb") as f:
        data = f.read()
    with open(damaged, "wb") as f:
        f.write(data[:-10])  # the last record loses its tail
    files = [damaged] + list(train[1:])
    every = [r["video_id"] for r in records.read_examples(train)]
    kept = [r["video_id"] for r in records.read_examples(files, on_damage="skip")]
    first = [r["video_id"] for r in records.read_examples(train[:1])]
    assert kept == [v for v in every if v != first[-1]]
    assert f"WARNING: damaged shard {damaged} at byte" in capfd.readouterr().err
    assert supervised.read_class_names(files, "skip") == sorted(LABELS)
    _, threshold, how = kb.hold_out_validation(files, str(tmp_path / "work"), 0.25, "skip")
    assert f"of {len(kept)} training videos" in how
    ds = supervised.classification_dataset(files, SMALL, sorted(LABELS), modality="audio",
                                           training=False, batch_size=16, on_damage="skip")
    assert sum(int(y.shape[0]) for _, y in ds) == len(kept)
    for read in (lambda: list(records.read_examples(files)),
                 lambda: supervised.read_class_names(files, "stop"),
                 lambda: list(supervised.classification_dataset(
                     files, SMALL, sorted(LABELS), modality="audio", training=False,
                     batch_size=16, on_damage="stop"))):
        with pytest.raises(tf.errors.DataLossError):
            read()


@pytest.mark.parametrize("modality", ["vision", "audio"])
def test_classification_dataset_shapes_and_fixed_eval(toy, modality):
    _, train, test = toy
    names = supervised.read_class_names(train)
    assert names == sorted(LABELS)
    ds = supervised.classification_dataset(train, SMALL, names, modality=modality, training=True,
                                           batch_size=8, shuffle_buffer=16)
    x, y = next(iter(ds))
    want = (8, 64, 64, 3) if modality == "vision" else (8, SMALL.clip_samples)
    assert x.shape == want and x.dtype == tf.float32 and y.dtype == tf.int32
    assert set(y.numpy()) <= set(range(len(names)))
    ev = supervised.classification_dataset(test, SMALL, names, modality=modality, training=False,
                                           batch_size=3)
    first = np.concatenate([b[0].numpy() for b in ev])
    again = np.concatenate([b[0].numpy() for b in ev])
    assert first.shape[0] == 8
    np.testing.assert_array_equal(first, again)


def test_classifier_architecture_and_frozen_pretraining_trunks():
    v = supervised.build_classifier(SMALL, "vision", 5)
    a = supervised.build_classifier(SMALL, "audio", 5)
    assert v.output_shape == (None, 5) and a.output_shape == (None, 5)
    assert v.get_layer("fc1").kernel.shape == (SMALL.embedding_dim, SMALL.fusion_hidden)
    assert v.get_layer("fc2").kernel.shape == (SMALL.fusion_hidden, 5)
    avc = kb.build_pretraining_model(v, a, SMALL)
    for name, clf in (("vision_network", v), ("audio_network", a)):
        for w_avc, w_clf in zip(avc.get_layer(name).weights, supervised.trunk_of(clf).weights):
            np.testing.assert_array_equal(w_avc.numpy(), w_clf.numpy())
    fusion = {id(w) for w in avc.get_layer("fusion").trainable_variables}
    assert fusion and {id(w) for w in avc.trainable_variables} == fusion


def test_recalibrate_batch_norm_is_the_mean_of_batch_statistics():
    x = keras.Input((3,))
    bn = keras.layers.BatchNormalization(name="bn")
    net = keras.Model(x, bn(x))
    rng = np.random.default_rng(0)
    batches = [rng.normal(i, 1 + i, (16, 3)).astype("float32") for i in range(4)]
    n = supervised.recalibrate_batch_norm(net, tf.data.Dataset.from_tensor_slices(np.stack(batches)), 10)
    assert n == 4 and bn.momentum == pytest.approx(0.99)
    np.testing.assert_allclose(bn.moving_mean.numpy(), np.mean([b.mean(0) for b in batches], 0), rtol=1e-5)
    np.testing.assert_allclose(bn.moving_variance.numpy(), np.mean([b.var(0) for b in batches], 0),
                               rtol=1e-4)


def test_l3_export_of_another_preset_is_refused(toy, tmp_path):
    _, train, test = toy
    out = tmp_path / "export"
    out.mkdir()
    (out / "export.json").write_text(json.dumps(SMALL.sizes()))  # all the check reads
    with pytest.raises(ValueError, match="preset"):
        kb.run_baselines(train_pattern=train, eval_pattern=test, l3_export_dir=out,
                         config=kb.BaselineConfig(preset="paper"))


# --- end to end ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def end_to_end(toy, tmp_path_factory):
    root, _, _ = toy
    work = tmp_path_factory.mktemp("baselines")
    export_dir = str(work / "l3_export")
    keras.utils.set_random_seed(0)
    export.export_model(model.build_avc_model(SMALL), SMALL, export_dir)  # an untrained L3
    out = str(work / "baselines.json")
    # As users run it (and so that no other binary's absl flags share the process).
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="",
               PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([
        sys.executable, "-m", "l3.bin.kinetics_baselines",
        f"--train_pattern={root}/train/*.tfrecord", f"--eval_pattern={root}/test/*.tfrecord",
        "--preset=small", f"--l3_export_dir={export_dir}", f"--output_json={out}",
        f"--model_dir={work / 'models'}", "--classifier_steps=100", "--pretraining_steps=80",
        "--val_fraction=0.25", "--batch_size=16", "--num_val_pairs=64", "--num_eval_pairs=128",
        "--bn_batches=10", "--log_every=20"], cwd=REPO, env=env, capture_output=True, text=True,
        timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "Supervised pretraining" in proc.stdout and "results:" in proc.stdout
    with open(out) as f:
        result = json.load(f)
    l3_eval = evaluate.evaluate_avc(f"{root}/test/*.tfrecord", export_dir=export_dir, num_pairs=128)
    return result, work, l3_eval


def test_end_to_end_json(end_to_end):
    result, work, _ = end_to_end
    for key in ("avc", "rows", "classification", "class_names", "num_classes", "num_eval_pairs",
                "protocol", "paper"):
        assert key in result, key
    assert result["class_names"] == sorted(LABELS) and result["num_classes"] == 4
    assert [r["key"] for r in result["rows"]] == [kb.DIRECT, kb.PRETRAINING, kb.L3]
    assert result["num_eval_pairs"] == 128 and result["eval_positive_fraction"] == 0.5
    assert [r["accuracy"] for r in result["rows"]] == [result["avc"][r["key"]]["accuracy"]
                                                      for r in result["rows"]]
    assert result["paper"][kb.DIRECT] == 0.65 and result["paper"][kb.L3] == 0.74
    assert "precise BN" in result["protocol"]["batch_norm"]
    for name in ("vision_classifier.keras", "audio_classifier.keras",
                 "supervised_pretraining_avc.keras"):
        assert os.path.exists(work / "models" / name)
    assert "Supervised direct" in kb.format_table(result)


def _softmax(logits):
    logits = np.asarray(logits, np.float64)
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_end_to_end_rows_are_the_saved_models_scored_in_numpy(end_to_end, toy):
    """The AVC rows recomputed from the models the run saved: the direct score
    <softmax(vision), softmax(audio)> against the saved threshold, the pretraining
    fusion's softmax[:, 1] against 0.5, on the fixed evaluation pairs; accuracies
    by hand, AUC by sklearn. A wrong score, threshold, label side or pair set fails."""
    from sklearn import metrics
    result, work, _ = end_to_end
    root = toy[0]
    load = lambda name: keras.models.load_model(str(work / "models" / name), compile=False)
    vision, audio = load("vision_classifier.keras"), load("audio_classifier.keras")
    avc = load("supervised_pretraining_avc.keras")
    ds = kb.pair_dataset(f"{root}/test/*.tfrecord", SMALL, batch_size=16,
                         seed=kb.BaselineConfig().eval_seed, num_pairs=128)
    direct, fused, labels = [], [], []
    for image, waveform, label in ds:
        direct.append(np.sum(_softmax(vision(image, training=False))
                             * _softmax(audio(waveform, training=False)), axis=1))
        fused.append(_softmax(avc({"image": image, "waveform": waveform}, training=False))[:, 1])
        labels.append(label.numpy())
    y = np.concatenate(labels)
    assert len(y) == 128 and y.mean() == 0.5
    for key, scores, threshold in (
            (kb.DIRECT, np.concatenate(direct), result["avc"][kb.DIRECT]["threshold"]),
            (kb.PRETRAINING, np.concatenate(fused), 0.5)):
        row = result["avc"][key]
        right = (scores > threshold) == (y == 1)
        assert row["accuracy"] == pytest.approx(right.mean(), abs=1.5 / 128), key
        assert row["accuracy_positive"] == pytest.approx(right[y == 1].mean(), abs=1.5 / 64), key
        assert row["accuracy_negative"] == pytest.approx(right[y == 0].mean(), abs=1.5 / 64), key
        assert row["auc"] == pytest.approx(metrics.roc_auc_score(y, scores), abs=1e-3), key


def test_end_to_end_l3_row_is_l3_eval_avc(end_to_end):
    result, _, l3_eval = end_to_end
    assert result["avc"][kb.L3]["accuracy"] == pytest.approx(l3_eval["accuracy"])
    assert result["avc"][kb.L3]["accuracy_positive"] == pytest.approx(l3_eval["accuracy_positive"])


def test_end_to_end_supervised_beats_chance(end_to_end):
    result, _, _ = end_to_end
    for modality in ("vision", "audio"):
        cls = result["classification"][modality]
        assert cls["num_examples"] == 8
        assert cls["accuracy"] >= cls["chance"] + 0.25, (modality, cls)
    # Class-based scoring on class-coded toy data: well above the 50 % of chance.
    assert result["avc"][kb.DIRECT]["accuracy"] > 0.6, result["avc"]
    # Supervised pretraining (frozen supervised trunks, only the fusion trained) learns
    # AVC too. Chance is 0.5 (balanced pairs); 128 pairs: 0.5 + 3.5 standard deviations
    # ~ 0.65. (Formerly its own run in test_kinetics_baselines_fast.py.)
    assert result["avc"][kb.PRETRAINING]["accuracy"] > 0.65, result["avc"]


def test_eval_pairs_are_the_pipelines_fixed_pairs(toy):
    """kb.pair_dataset gives the pairs l3-eval-avc scores (evaluate.evaluate_avc's options):
    the same frames, waveforms and labels, whatever the batch size."""
    _, _, test = toy
    a = list(kb.pair_dataset(test, SMALL, batch_size=16, seed=0, num_pairs=32))
    b = list(pairs.make_dataset(test, SMALL, training=False, options=pairs.PipelineOptions(
        batch_size=8, seed=0, num_pairs=32, include_metadata=True)))
    for i in range(3):  # image, waveform, label
        np.testing.assert_array_equal(np.concatenate([x[i].numpy() for x in a]),
                                      np.concatenate([x[i].numpy() for x in b]))
    meta = {k: np.concatenate([x[3][k].numpy() for x in b]) for k in b[0][3]}
    labels = np.concatenate([x[2].numpy() for x in b])
    # The contents are real pairs: positives share a video, negatives do not.
    np.testing.assert_array_equal(meta["frame_video_id"] == meta["audio_video_id"], labels == 1)
    assert len(set(meta["frame_video_id"].tolist())) >= 4
    # Another seed gives other pairs (so equality above is not trivial).
    c = list(kb.pair_dataset(test, SMALL, batch_size=16, seed=1, num_pairs=32))
    assert not np.array_equal(np.concatenate([x[1].numpy() for x in a]),
                              np.concatenate([x[1].numpy() for x in c]))


def _sgd_step_difference(build, batches, train_fn, weight_decay, lr=0.1):
    """Weights after one SGD step with and without weight decay, from equal starts.

    Returns (start kernels, {variable path: w(wd) - w(0)}, decayed paths).
    """
    m0 = build()
    m1 = build()
    m1.set_weights(m0.get_weights())
    start = {v.path: np.array(v.numpy()) for v in m0.trainable_variables}
    ds = tf.data.Dataset.from_tensors(batches)
    train_fn(m0, ds, steps=1, learning_rate=lr, weight_decay=0.0,
             optimizer=keras.optimizers.SGD(lr))
    train_fn(m1, ds, steps=1, learning_rate=lr, weight_decay=weight_decay,
             optimizer=keras.optimizers.SGD(lr))
    after0 = {v.path: v.numpy() for v in m0.trainable_variables}
    diff = {v.path: v.numpy() - after0[v.path] for v in m1.trainable_variables}
    decayed = {v.path for v in model.weight_decay_variables(m1)}
    return start, diff, decayed


def _check_half_wd_sum_squares(start, diff, decayed, wd, lr=0.1):
    """The decay's gradient is wd * w, i.e. the loss term is 0.5 * wd * sum(w^2)."""
    assert decayed
    for path, d in diff.items():
        want = -lr * wd * start[path] if path in decayed else np.zeros_like(d)
        np.testing.assert_allclose(d, want, atol=1e-6 + 1e-4 * np.abs(want).max(), err_msg=path)


def test_supervised_weight_decay_is_half_wd_sum_of_squares():
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 1, (4, 64, 64, 3)).astype("float32")
    labels = np.array([0, 1, 2, 3], np.int32)
    wd = 0.5
    start, diff, decayed = _sgd_step_difference(
        lambda: supervised.build_classifier(SMALL, "vision", 4), (images, labels),
        supervised.train_classifier, wd)
    _check_half_wd_sum_squares(start, diff, decayed, wd)
    # The term itself, against numpy.
    m = supervised.build_classifier(SMALL, "audio", 4)
    ws = model.weight_decay_variables(m)
    want = 0.5 * wd * sum(float(np.sum(np.square(v.numpy(), dtype=np.float64))) for v in ws)
    np.testing.assert_allclose(float(model.l2_penalty(m, wd)), want, rtol=1e-5)


def test_fusion_weight_decay_is_half_wd_sum_of_squares():
    rng = np.random.default_rng(1)
    batch = (rng.uniform(0, 1, (4, 64, 64, 3)).astype("float32"),
             rng.normal(0, 0.1, (4, SMALL.clip_samples)).astype("float32"),
             np.array([0, 1, 0, 1], np.int32))

    def build():
        avc = model.build_avc_model(SMALL)
        for name in ("vision_network", "audio_network"):
            avc.get_layer(name).trainable = False  # as kb.build_pretraining_model: fusion only
        return avc

    wd = 0.5
    start, diff, decayed = _sgd_step_difference(build, batch, kb.train_fusion, wd)
    assert decayed and all("fc" in p for p in decayed)
    _check_half_wd_sum_squares(start, diff, decayed, wd)


@pytest.mark.slow
def test_longer_run_supervised_pretraining_learns_avc(tmp_path):
    train, test = _shards(str(tmp_path), train_videos=48, eval_videos=16, train_shards=4)
    config = kb.BaselineConfig(preset="small", classifier_steps=200, pretraining_steps=300,
                               batch_size=16, num_val_pairs=128, num_eval_pairs=256,
                               bn_batches=20, log_every=50)
    result = kb.run_baselines(train_pattern=train, eval_pattern=test, config=config)
    assert result["avc"][kb.DIRECT]["accuracy"] > 0.75, result["avc"]
    assert result["avc"][kb.PRETRAINING]["accuracy"] > 0.7, result["avc"]
