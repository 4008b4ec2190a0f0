"""ImageNet linear probe: preprocessing ops, and the whole benchmark on TFDS mock data.

`tfds.testing.mock_data(policy=USE_CODE)` builds `imagenet2012`'s features
from the TFDS code (no metadata download) and serves random JPEGs of random
sizes with random labels; `download_and_prepare` is a no-op under it. So
accuracies here are noise: the tests check the protocol runs end to end and
the output format, not a number.
"""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from l3.export import writer as export
from l3.model import network as model
from l3.core import presets
from l3.eval.transfer import imagenet

SMALL = presets.SMALL
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _jpeg(h, w, seed=0):
    rng = np.random.default_rng(seed)
    return tf.io.encode_jpeg(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))


@pytest.fixture(scope="module")
def small_export(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("probe") / "export")
    export.export_model(model.build_avc_model(SMALL), SMALL, out)
    return out


@pytest.mark.parametrize("shape", [(300, 200), (40, 90), (17, 47)])
def test_inception_crop_eager_and_in_tf_data(shape):
    jpeg = _jpeg(*shape)
    seed = tf.constant([1, 2], tf.int64)
    eager = imagenet.inception_crop(jpeg, 64, seed)
    assert eager.shape == (64, 64, 3) and eager.dtype == tf.float32
    assert 0.0 <= float(tf.reduce_min(eager)) and float(tf.reduce_max(eager)) <= 1.0
    in_data = next(iter(tf.data.Dataset.from_tensors((jpeg, seed)).map(
        lambda j, s: imagenet.inception_crop(j, 64, s))))
    np.testing.assert_allclose(eager.numpy(), in_data.numpy(), atol=1e-6)
    other = imagenet.inception_crop(jpeg, 64, tf.constant([3, 4], tf.int64))
    assert not np.allclose(eager.numpy(), other.numpy())  # the seed moves the crop


def test_center_view_is_the_central_crop():
    jpeg = _jpeg(100, 160)
    view = imagenet.center_view(jpeg, 64, 72)
    assert view.shape == (64, 64, 3)
    # Eager and in tf.data agree.
    in_data = next(iter(tf.data.Dataset.from_tensors(jpeg).map(lambda j: imagenet.center_view(j, 64, 72))))
    np.testing.assert_allclose(view.numpy(), in_data.numpy(), atol=1e-6)


def test_learning_rate_schedule():
    assert imagenet.learning_rate_at(0, 1e-3) == pytest.approx(1e-3)
    assert imagenet.learning_rate_at(1, 1e-3) == pytest.approx(1e-3)
    assert imagenet.learning_rate_at(2, 1e-3) == pytest.approx(0.94e-3)
    assert imagenet.learning_rate_at(5, 1e-3) == pytest.approx(1e-3 * 0.94 ** 2)


def test_trunk_features_match_the_export(small_export):
    features, preset, trunk = imagenet.load_trunk(small_export)
    assert preset.name == "small" and trunk["trunk"] == "export"
    images = np.random.default_rng(0).uniform(0, 1, (2, 64, 64, 3)).astype("float32")
    got = features(tf.constant(images)).numpy()
    want = export.ExportedModel(small_export).embed_images(images)["conv4_2_pooled"]
    assert got.shape == (2, SMALL.vision_transfer_dim)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError):
        imagenet.load_trunk(small_export, preset_name="paper")


def test_probe_end_to_end_on_mock_data(small_export, tmp_path):
    out = str(tmp_path / "imagenet.json")
    config = imagenet.ProbeConfig(epochs=2, batch_size=8, max_train_examples=24,
                                  max_eval_examples=12)
    with tfds.testing.mock_data(num_examples=32, policy=tfds.testing.MockPolicy.USE_CODE):
        result = imagenet.run_probe(export_dir=small_export, data_dir=str(tmp_path / "tfds"),
                                    manual_dir=str(tmp_path / "manual"), output_json=out,
                                    config=config)
    with open(out) as f:
        on_disk = json.load(f)
    for key in ("top1", "top5", "protocol", "trunk", "paper", "num_eval_examples", "train_loss"):
        assert key in on_disk, key
    assert 0.0 <= on_disk["top1"] <= on_disk["top5"] <= 1.0
    assert on_disk["num_eval_examples"] == 12 and on_disk["num_train_examples"] == 24
    assert on_disk["feature_dim"] == SMALL.vision_transfer_dim
    assert on_disk["num_classes"] == 1000
    assert len(on_disk["train_loss"]) == 2 and all(np.isfinite(on_disk["train_loss"]))
    assert on_disk["protocol"]["epochs"] == 2 and "label smoothing 0.1" in on_disk["protocol"]["loss"]
    assert on_disk["paper"]["top1"] == pytest.approx(0.323)
    assert result["top1"] == on_disk["top1"]
    table = imagenet.format_table(result)
    assert "32.3%" in table and "12.9%" in table


def test_binary_random_trunk_on_mock_data(tmp_path):
    """The binary in its own process (absl flags are global), under mock data."""
    out = str(tmp_path / "random.json")
    script = textwrap.dedent("""
        import sys
        import tensorflow_datasets as tfds
        from absl import app
        from l3.bin import imagenet_probe
        with tfds.testing.mock_data(num_examples=16, policy=tfds.testing.MockPolicy.USE_CODE):
            app.run(imagenet_probe.main, argv=["l3-imagenet-probe"] + sys.argv[1:])
        """)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="",
               PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run(
        [sys.executable, "-c", script, "--random_trunk", "--preset=small",
         f"--data_dir={tmp_path / 'tfds'}", f"--output_json={out}", "--epochs=1",
         "--batch_size=8", "--max_train_examples=8", "--max_eval_examples=8"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    with open(out) as f:
        result = json.load(f)
    assert result["trunk"]["trunk"] == "random"
    assert {"top1", "top5", "protocol"} <= set(result)
    assert "Ours random" in proc.stdout


def test_random_paper_trunk_gives_the_papers_8192_features():
    features, preset, trunk = imagenet.load_trunk(random_trunk=True, preset_name="paper")
    assert trunk["trunk"] == "random" and preset.image_size == 224
    assert features(tf.zeros([1, 224, 224, 3])).shape == (1, 8192)
