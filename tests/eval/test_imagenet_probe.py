"""ImageNet linear probe: preprocessing ops, and the whole benchmark on TFDS mock data.

`tfds.testing.mock_data(policy=USE_CODE)` builds `imagenet2012`'s features
from the TFDS code (no metadata download); `download_and_prepare` is a no-op
under it. By default it serves random JPEGs with random labels (the protocol
and output format tests); `_colour_classes` serves instead JPEGs whose label
is their colour, so a probe that learns must get them right, and a frozen
trunk must come out of training unchanged.
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

from l3 import export
from l3.core import fileio, presets
from l3.eval.transfer import imagenet
from l3.model import network as model

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


def _band_jpeg(h, w, top, left, size):
    """A black h x w JPEG with a white size x size square at (top, left) (quality 100)."""
    frame = np.zeros((h, w, 3), np.uint8)
    frame[top:top + size, left:left + size] = 255
    return tf.io.encode_jpeg(frame, quality=100)


def test_center_view_on_a_centred_band():
    # Smaller side already 72 (no resize): the view must be the white square at the
    # hand-computed centre offsets ((72 - 64) // 2, (120 - 64) // 2) = (4, 28).
    view = imagenet.center_view(_band_jpeg(72, 120, 4, 28, 64), 64, 72).numpy()
    assert view.min() > 0.8, view.min()  # any offset error brings in a black row or column
    # A frame twice as large: resized to 72 x 120 first; a vertical white band 160 px
    # wide (80 after the resize) spans the central 64 columns with 8 to spare each side.
    view = imagenet.center_view(_band_jpeg(144, 240, 0, 40, 160), 64, 72).numpy()
    assert view.min() > 0.9, view.min()
    # The same view in tf.data.
    jpeg = _band_jpeg(72, 120, 4, 28, 64)
    in_data = next(iter(tf.data.Dataset.from_tensors(jpeg).map(lambda j: imagenet.center_view(j, 64, 72))))
    np.testing.assert_array_equal(in_data.numpy(), imagenet.center_view(jpeg, 64, 72).numpy())
    # Off centre, the black border shows: the test above can fail.
    off = _band_jpeg(72, 120, 4, 20, 64)
    assert imagenet.center_view(off, 64, 72).numpy().min() < 0.1


COLOURS = np.array([[230, 30, 30], [30, 200, 40], [40, 60, 230], [220, 210, 40]], np.float64)


def _colour_classes(num_train=96, num_eval=48):
    """A TFDS `as_dataset_fn`: JPEGs of random sizes whose label (0..3) is their colour
    (plus pixel noise); the same data for a split every time."""
    def jpegs(n, seed):
        rng = np.random.default_rng(seed)
        labels = np.arange(n) % len(COLOURS)
        images = []
        for label in labels:
            h, w = rng.integers(60, 140, 2)
            pixels = COLOURS[label] + rng.normal(0, 25, (h, w, 3))
            images.append(tf.io.encode_jpeg(np.clip(pixels, 0, 255).astype(np.uint8)).numpy())
        return {"image": np.array(images, object), "label": labels.astype(np.int64)}

    data = {imagenet.TRAIN_SPLIT: jpegs(num_train, 0), imagenet.EVAL_SPLIT: jpegs(num_eval, 1)}

    def as_dataset(self, split, decoders=None, read_config=None, shuffle_files=False, **kwargs):
        del self, decoders, read_config, shuffle_files, kwargs  # images stay JPEG (SkipDecoding)
        return tf.data.Dataset.from_tensor_slices(data[str(split)])

    return as_dataset


def _digest(features):
    return fileio.arrays_digest(v.numpy() for v in features.variables)


@pytest.mark.parametrize("trunk", ["random", "export"])
def test_probe_learns_colour_labels_and_leaves_the_trunk_as_it_was(trunk, small_export, tmp_path):
    """Labels are the images' colours: well above the 25 % of chance among the four,
    so gradients reach the linear layer; the trunk's weights and batch-norm statistics
    are bit-identical after training (frozen, inference mode)."""
    if trunk == "random":
        features, preset, _ = imagenet.load_trunk(random_trunk=True, preset_name="small", seed=3)
    else:
        features, preset, _ = imagenet.load_trunk(small_export)
    assert len(features.variables) > 20
    before = _digest(features)
    config = imagenet.ProbeConfig(epochs=3, batch_size=16, learning_rate=0.1)
    with tfds.testing.mock_data(policy=tfds.testing.MockPolicy.USE_CODE,
                                as_dataset_fn=_colour_classes()):
        builder = imagenet.load_builder(str(tmp_path / "tfds"), str(tmp_path / "manual"))
        result = imagenet.train_and_evaluate(builder, features, preset, config)
    assert result["num_eval_examples"] == 48 and result["num_train_examples"] == 96
    # Measured: 1.0 for both trunks. A probe that never learns scores ~0 (1000-way
    # argmax), class-blind guessing among the four colours 0.25.
    assert result["top1"] >= 0.7, result
    assert result["train_loss"][-1] < result["train_loss"][0]
    assert _digest(features) == before


def test_probe_resumes_from_its_checkpoints(tmp_path):
    """Two epochs with checkpoints, then the same run asked for three: only the third is
    trained, the first two epochs' losses come back from the checkpoint."""
    features, preset, _ = imagenet.load_trunk(random_trunk=True, preset_name="small", seed=3)
    ckpt = str(tmp_path / "ckpt")
    runs = {}
    with tfds.testing.mock_data(policy=tfds.testing.MockPolicy.USE_CODE,
                                as_dataset_fn=_colour_classes(num_train=32, num_eval=8)):
        builder = imagenet.load_builder(str(tmp_path / "tfds"), str(tmp_path / "manual"))
        for epochs in (2, 3):
            config = imagenet.ProbeConfig(epochs=epochs, batch_size=16, learning_rate=0.1)
            runs[epochs] = imagenet.train_and_evaluate(builder, features, preset, config,
                                                       checkpoint_dir=ckpt)
    assert tf.train.latest_checkpoint(ckpt).endswith("ckpt-6")  # 3 epochs x 2 steps
    assert runs[3]["train_loss"][:2] == runs[2]["train_loss"]
    assert np.isfinite(runs[3]["train_loss"][2]) and runs[3]["num_train_examples"] == 32


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
