"""The AVC pair pipeline (`l3.pairs`), checked by decoding pixels and tones back.

The shards come from `tests/fixtures/records.py`: frame hue says (video, frame
index), and each 1-s window is located in its video's track by pitch and
cross-correlation, so alignment is tested on the data itself, not only on the
pipeline's own metadata.
"""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from l3.ops import audio as audio_lib
from l3.ops import image as image_lib
from l3.pairs import sampling as pair_ops, pipeline as pairs
from l3.records import schema as records
from l3.core.presets import PAPER, SMALL
from tests.fixtures.records import SyntheticCorpus

FPS = 4.0
# 9 videos of three classes: ordinary ones, one too short for a window (#3),
# one whose audio starts late and stops early (#5: frames before 0.4 s and
# from 2.9 s have no audio), one whose audio starts at 0.25 s (#7).
CORPUS = SyntheticCorpus(
    num_videos=9, fps=FPS, seed=3,
    seconds=(4.0, 3.0, 4.0, 0.6, 4.0, 4.0, 3.5, 4.0, 2.0),
    audio_start=(0.0, 0.0, 0.0, 0.0, 0.0, 0.4, 0.0, 0.25, 0.0),
    audio_seconds=(4.0, 3.0, 4.0, 0.6, 4.0, 2.5, 3.5, 3.75, 2.0),
    labels=("a", "b", "c"))
SHORT = {CORPUS.video_id(3)}


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return CORPUS.write(str(tmp_path_factory.mktemp("pairs")), num_shards=3)


def take(ds, batches):
    """Concatenates the first `batches` batches: (images, waveforms, labels, metadata)."""
    out = [b for _, b in zip(range(batches), ds)]
    images = np.concatenate([b[0].numpy() for b in out])
    waves = np.concatenate([b[1].numpy() for b in out])
    labels = np.concatenate([b[2].numpy() for b in out])
    meta = {k: np.concatenate([b[3][k].numpy() for b in out]) for k in out[0][3]} if len(out[0]) > 3 else {}
    return images, waves, labels, meta


def _audio_end(i):
    return CORPUS.audio_start[i] + CORPUS.audio_seconds[i]


# --- the fixture itself ------------------------------------------------------------

def test_fixture_decodes_its_own_records(shards):
    for rec in records.read_examples(shards):
        i = CORPUS.video_index(rec["video_id"])
        assert rec["label"].decode() == CORPUS.label(i)
        np.testing.assert_array_equal(rec["frame_times"], CORPUS.frame_times(i))
        for k in (0, len(rec["frames"]) - 1):
            assert CORPUS.decode_frame(tf.io.decode_jpeg(rec["frames"][k]).numpy()) == (i, k)
        if len(rec["audio"]) >= 48000:
            k = (len(rec["audio"]) - 48000) // 2
            video, start, score = CORPUS.decode_audio(0.93 * rec["audio"][k:k + 48000])
            assert video == i and score > 0.99
            assert start == pytest.approx(rec["audio_start"] + k / 48000, abs=1e-6)


# --- alignment: the property earlier L3 reproductions got wrong -----------------------

@pytest.mark.parametrize("preset", [SMALL, PAPER], ids=lambda p: p.name)
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_pairs_decode_to_aligned_positives_and_cross_video_negatives(shards, preset, training):
    ds = pairs.make_dataset(shards, preset, training=training,
                            options=pairs.PipelineOptions(
                                batch_size=16, seed=5, num_pairs=None if training else 32, include_metadata=True))
    images, waves, labels, meta = take(ds, 2)
    if training:  # what the model sees: the step's on-device jitter applied
        assert images.dtype == np.uint8
        images = image_lib.jitter_batch(images, tf.constant([5, 0])).numpy()
    tol = 2.0 / preset.sample_rate  # one output sample either way
    assert len(labels) == 32
    for j in range(len(labels)):
        frame_video, k = CORPUS.decode_frame(images[j])
        audio_video, start, score = CORPUS.decode_audio(waves[j], preset.sample_rate)
        t = CORPUS.frame_times(frame_video)[k]
        assert score > 0.9, j
        # The metadata tells the truth...
        assert meta["frame_video_id"][j].decode() == CORPUS.video_id(frame_video)
        assert meta["audio_video_id"][j].decode() == CORPUS.video_id(audio_video)
        assert meta["frame_time"][j] == t and meta["frame_index"][j] == k
        assert meta["audio_start"][j] == pytest.approx(start, abs=tol)
        assert meta["frame_label"][j].decode() == CORPUS.label(frame_video)
        assert meta["audio_label"][j].decode() == CORPUS.label(audio_video)
        # ...and the data says: positives are one video, the frame inside the
        # window, the window inside the audio; negatives are two videos.
        if labels[j] == 1:
            assert frame_video == audio_video, j
            assert start - tol <= t < start + 1.0 + tol, (j, t, start)
            assert CORPUS.audio_start[audio_video] - tol <= start
            assert start + 1.0 <= _audio_end(audio_video) + tol
        else:
            assert frame_video != audio_video, j
        assert CORPUS.video_id(frame_video) not in SHORT and CORPUS.video_id(audio_video) not in SHORT


def test_positive_windows_cover_every_offset_not_only_centred(shards):
    ds = pairs.make_dataset(shards, SMALL, training=True,
                            options=pairs.PipelineOptions(
                                batch_size=32, seed=1, include_metadata=True))
    _, _, labels, meta = take(ds, 12)
    pos = labels == 1
    offset = (meta["frame_time"] - meta["audio_start"])[pos]  # where the frame sits in its window
    assert offset.min() >= -1e-4 and offset.max() < 1.0 + 1e-4
    assert offset.min() < 0.1 and offset.max() > 0.9
    hist, _ = np.histogram(offset, bins=4, range=(0, 1))
    assert hist.min() > 0.1 * len(offset), hist
    # Every window lies inside its video's audio.
    for vid, start in zip(meta["audio_video_id"], meta["audio_start"]):
        i = CORPUS.video_index(vid)
        assert CORPUS.audio_start[i] - 1e-4 <= start <= _audio_end(i) - 1.0 + 1e-4
    # Frames without audio at their time (video 5 before 0.4 s and from 2.9 s) are never drawn.
    v5 = meta["frame_video_id"] == CORPUS.video_id(5).encode()
    assert v5.any()
    assert np.all((meta["frame_time"][v5] >= 0.4) & (meta["frame_time"][v5] < 2.9))


# --- several pairs per record read -------------------------------------------------------

def test_k_pairs_from_one_record_are_each_aligned_and_independent(shards):
    """K = 8 with blocks of 4 records: a 16-pair batch holds 4 rounds of the block, so
    several draws of one record; every one decodes to an aligned positive or a
    cross-video negative, and the draws of a record differ (independent frames and
    windows)."""
    ds = pairs.make_dataset(shards, SMALL, training=True, options=pairs.PipelineOptions(
        batch_size=16, seed=4, pairs_per_video=8, open_videos=4, include_metadata=True))
    images, waves, labels, meta = take(ds, 4)
    images = image_lib.jitter_batch(images, tf.constant([1, 0])).numpy()
    tol = 2.0 / SMALL.sample_rate
    for j in range(len(labels)):
        frame_video, k = CORPUS.decode_frame(images[j])
        audio_video, start, score = CORPUS.decode_audio(waves[j], SMALL.sample_rate)
        assert score > 0.9 and meta["frame_index"][j] == k, j
        assert meta["frame_video_id"][j].decode() == CORPUS.video_id(frame_video)
        if labels[j] == 1:
            t = CORPUS.frame_times(frame_video)[k]
            assert frame_video == audio_video and start - tol <= t < start + 1.0 + tol, j
        else:
            assert frame_video != audio_video, j
    frames = {}
    for b in range(4):
        batch = slice(16 * b, 16 * (b + 1))
        for vid, k, start in zip(meta["frame_video_id"][batch], meta["frame_index"][batch],
                                 meta["audio_start"][batch]):
            frames.setdefault((b, vid), []).append((k, start))
    repeated = [draws for draws in frames.values() if len(draws) >= 3]
    assert repeated  # several draws of one record in a batch...
    for draws in repeated:  # ...drawn independently
        assert len({k for k, _ in draws}) >= 2 and len({s for _, s in draws}) >= 2


def test_evaluation_draws_one_pair_per_record(shards):
    with pytest.raises(ValueError, match="evaluation draws one pair"):
        pairs.make_dataset(shards, SMALL, training=False,
                           options=pairs.PipelineOptions(batch_size=4, pairs_per_video=4))
    with pytest.raises(ValueError, match="pairs_per_video must be >= 1"):
        pairs.make_dataset(shards, SMALL, training=True,
                           options=pairs.PipelineOptions(batch_size=4, pairs_per_video=0))
    assert pairs.pairs_per_video(pairs.PipelineOptions(), training=True) == pairs.DEFAULT_PAIRS_PER_VIDEO


def test_within_batch_same_video_fraction_stays_under_the_bound(tmp_path):
    """The documented bound (WORKSPACE_NOTES.md, "Pairs per record read": under 1 %
    of a batch at the defaults), scaled down: 96 videos, K = 4, batches of 8, blocks
    of 48 records dealt in 4 shuffled rounds: a batch inside a round holds 8
    different records, so only batches across a round's seam may share a video
    (independent draws of 96 videos would share at 7/96 = 7.3 %). With blocks of one
    record the same K fills batches with draws of one video: the measure sees
    correlation."""
    corpus = SyntheticCorpus(num_videos=96, seconds=1.5, fps=4.0, frame_size=(72, 96), seed=8)
    paths = corpus.write(str(tmp_path), num_shards=4)

    def fraction(**options):
        ds = pairs.make_dataset(paths, SMALL, training=True, options=pairs.PipelineOptions(
            batch_size=8, seed=1, pairs_per_video=4, include_metadata=True, **options))
        shared = []
        for _, batch in zip(range(60), ds):
            ids = list(batch[3]["frame_video_id"].numpy())
            shared += [ids.count(v) > 1 for v in ids]
        return np.mean(shared[8 * 10:])  # past the round-robin's filling

    assert fraction(open_videos=48) < 0.03
    assert fraction(open_videos=1) > 0.5


# --- balance --------------------------------------------------------------------------

def test_training_batches_are_exactly_balanced(shards):
    ds = pairs.make_dataset(shards, SMALL, training=True,
                            options=pairs.PipelineOptions(batch_size=16, seed=2))
    sums = [int(b[2].numpy().sum()) for _, b in zip(range(20), ds)]
    assert sums == [8] * 20
    odd = pairs.make_dataset(shards, SMALL, training=True,
                             options=pairs.PipelineOptions(batch_size=7, seed=2))
    sums = {int(b[2].numpy().sum()) for _, b in zip(range(30), odd)}
    assert sums == {3, 4}


def test_negatives_never_pair_a_video_with_itself_even_with_two_videos(tmp_path):
    corpus = SyntheticCorpus(num_videos=2, seconds=2.0, fps=2.0)
    paths = corpus.write(str(tmp_path), num_shards=1)
    ds = pairs.make_dataset(paths, SMALL, training=True,
                            options=pairs.PipelineOptions(
                                batch_size=4, seed=0, shuffle_pairs=8, include_metadata=True))
    _, _, labels, meta = take(ds, 40)
    neg = labels == 0
    assert np.all(meta["frame_video_id"][neg] != meta["audio_video_id"][neg])
    assert np.all(meta["frame_video_id"][~neg] == meta["audio_video_id"][~neg])
    assert labels.mean() == 0.5


def test_a_single_video_is_refused(tmp_path):
    paths = SyntheticCorpus(num_videos=1, seconds=2.0).write(str(tmp_path))
    for training in (True, False):
        with pytest.raises(ValueError, match="need two"):
            pairs.make_dataset(paths, SMALL, training=training,
                               options=pairs.PipelineOptions(batch_size=4))


# --- evaluation pairs are fixed, training is reproducible ------------------------------------

def test_eval_pairs_are_fixed_by_seed_and_files(shards):
    def pairs_of(seed, batch_size, files=shards, **kw):
        ds = pairs.make_dataset(files, SMALL, training=False, options=pairs.PipelineOptions(
            seed=seed, batch_size=batch_size, include_metadata=True, **kw))
        return take(ds, 1000)

    a = pairs_of(7, 16)
    usable = CORPUS.num_videos - len(SHORT)
    assert len(a[2]) == usable  # num_pairs=None: one pair per usable video
    assert sorted(a[3]["frame_video_id"]) == sorted(
        CORPUS.video_id(i).encode() for i in range(CORPUS.num_videos) if CORPUS.video_id(i) not in SHORT)
    for other in (pairs_of(7, 3), pairs_of(7, 16, files=list(reversed(shards))),
                  pairs_of(7, 5, files=os.path.join(os.path.dirname(shards[0]), "*.tfrecord"))):
        for x, y in zip(a[:3], other[:3]):
            np.testing.assert_array_equal(x, y)
        for key in a[3]:
            np.testing.assert_array_equal(a[3][key], other[3][key])
    b = pairs_of(8, 16)
    assert not np.array_equal(a[1], b[1])
    # The same dataset object iterated twice: the same pairs.
    ds = pairs.make_dataset(shards, SMALL, training=False,
                            options=pairs.PipelineOptions(seed=7, batch_size=16))
    np.testing.assert_array_equal(take(ds, 100)[1], take(ds, 100)[1])
    # More pairs than videos: balanced, and still a function of the seed.
    many = pairs_of(7, 16, num_pairs=50)
    assert len(many[2]) == 50 and many[2].sum() == 25
    np.testing.assert_array_equal(many[1], pairs_of(7, 10, num_pairs=50)[1])


def test_training_is_reproducible(shards):
    def batches(seed):
        ds = pairs.make_dataset(shards, SMALL, training=True,
                                options=pairs.PipelineOptions(batch_size=8, seed=seed))
        return take(ds, 3)

    a, b, c = batches(4), batches(4), batches(5)
    for x, y in zip(a[:3], b[:3]):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a[1], c[1])


# --- what the pipeline does to the data --------------------------------------------------

@pytest.mark.parametrize("preset", [SMALL, PAPER], ids=lambda p: p.name)
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_shapes_and_dtypes(shards, preset, training):
    ds = pairs.make_dataset(shards, preset, training=training,
                            options=pairs.PipelineOptions(batch_size=4, include_metadata=True))
    s = preset.image_size
    assert ds.element_spec[0].shape.as_list() == [4 if training else None, s, s, 3]
    image, wave, label, meta = next(iter(ds))
    # Training frames travel as uint8 (the step finishes them on the device).
    assert image.dtype == (tf.uint8 if training else tf.float32) and image.shape == (4, s, s, 3)
    assert wave.dtype == tf.float32 and wave.shape == (4, preset.clip_samples)
    assert label.dtype == tf.int32 and label.shape == (4,)
    if not training:
        assert 0.0 <= image.numpy().min() and image.numpy().max() <= 1.0
    assert np.abs(wave.numpy()).max() < 1.0
    for key in ("frame_video_id", "audio_video_id", "frame_label", "audio_label"):
        assert meta[key].dtype == tf.string and meta[key].shape == (4,)
    for key in ("frame_time", "audio_start"):
        assert meta[key].dtype == tf.float32 and meta[key].shape == (4,)


@pytest.mark.parametrize("preset", [SMALL, PAPER], ids=lambda p: p.name)
def test_eval_clip_is_the_track_slice_and_the_frame_unaugmented(shards, preset):
    """Evaluation: the waveform is exactly the window of the (decimated) track, with
    no gain and no decimation edge effect; the image is `eval_image` of the frame."""
    ds = pairs.make_dataset(shards, preset, training=False,
                            options=pairs.PipelineOptions(
                                batch_size=16, num_pairs=48, include_metadata=True, seed=11))
    images, waves, labels, meta = take(ds, 3)
    frames = {CORPUS.video_id(i): CORPUS.example(i) for i in range(CORPUS.num_videos)}
    factor, checked = preset.decimation, 0
    for j in range(len(labels)):
        i = CORPUS.video_index(meta["audio_video_id"][j])
        track = CORPUS.audio(i).astype(np.float32) / 32768.0
        k = int(round((meta["audio_start"][j] - CORPUS.audio_start[i]) * 48000))
        if k % factor == 0 and k >= 200 and k + 48200 <= len(track):
            whole = np.asarray(audio_lib.decimate(track[:len(track) // factor * factor], factor))
            np.testing.assert_allclose(waves[j], whole[k // factor:k // factor + preset.clip_samples],
                                       atol=2e-6)
            checked += 1
        if j < 6:
            example = frames[meta["frame_video_id"][j].decode()]
            jpeg = example.features.feature[records.FRAMES].bytes_list.value[meta["frame_index"][j]]
            expected = image_lib.eval_image(tf.io.decode_jpeg(jpeg, channels=3),
                                            resize_side=preset.resize_side, image_size=preset.image_size)
            np.testing.assert_allclose(images[j], expected.numpy(), atol=1e-5)
    assert checked >= 5


def test_training_augments_frames_and_gain(shards):
    ds = pairs.make_dataset(shards, PAPER, training=True,
                            options=pairs.PipelineOptions(
                                batch_size=16, include_metadata=True, seed=3))
    images, waves, labels, meta = take(ds, 2)
    images = image_lib.jitter_batch(images, tf.constant([3, 0])).numpy()  # the step's half
    gains, differs = [], 0
    for j in range(len(labels)):
        i = CORPUS.video_index(meta["audio_video_id"][j])
        track = CORPUS.audio(i).astype(np.float32) / 32768.0
        k = int(round((meta["audio_start"][j] - CORPUS.audio_start[i]) * 48000))
        clean = track[k:k + 48000]
        gains.append(float(np.dot(waves[j], clean) / np.dot(clean, clean)))
        np.testing.assert_allclose(waves[j], gains[-1] * clean, atol=1e-4)
        example = CORPUS.example(CORPUS.video_index(meta["frame_video_id"][j]))
        jpeg = example.features.feature[records.FRAMES].bytes_list.value[meta["frame_index"][j]]
        plain = image_lib.eval_image(tf.io.decode_jpeg(jpeg, channels=3)).numpy()
        differs += not np.allclose(images[j], plain, atol=1e-3)
    assert 0.9 - 1e-3 <= min(gains) and max(gains) <= 1.1 + 1e-3 and np.std(gains) > 0.01
    assert differs >= len(labels) - 1


@pytest.mark.parametrize("frame_size", [(256, 320), (72, 96)], ids=["dct_downscale", "crop_decode"])
def test_frame_fast_paths_match_the_plain_views(tmp_path, frame_size):
    """Small preset (resize 72, crop 64). Frames of 256: decoded at 1/2 scale in the
    DCT domain, then resized. Frames already at 72: only the crop window is decoded
    (the resize would be an identity). Both give what decode + eval_image gives,
    and training views still decode to the right video and frame."""
    corpus = SyntheticCorpus(num_videos=3, seconds=2.0, fps=2.0, frame_size=frame_size)
    paths = corpus.write(str(tmp_path))
    for training in (False, True):
        images, _, _, meta = take(pairs.make_dataset(paths, SMALL, training=training,
                                                     options=pairs.PipelineOptions(
                                                         batch_size=6, include_metadata=True, num_pairs=6)), 1)
        for j in range(len(images)):
            i, k = corpus.video_index(meta["frame_video_id"][j]), meta["frame_index"][j]
            assert corpus.decode_frame(images[j]) == (i, k)
            if not training:
                plain = image_lib.eval_image(corpus.frame(i, k), resize_side=72, image_size=64).numpy()
                assert np.abs(images[j] - plain).mean() < 0.02


def test_too_short_videos_are_counted_and_logged(shards, caplog):
    with caplog.at_level("WARNING"):
        stats = pair_ops.scan_videos(shards)
    assert (stats.num_videos, stats.num_usable, stats.num_usable_ids) == (9, 8, 8)
    assert [v for v, _ in stats.excluded] == sorted(SHORT)
    assert "excluded 1 of 9" in caplog.text and CORPUS.video_id(3) in caplog.text


# --- distribution and checkpoints ---------------------------------------------------------

def test_input_context_shards_files_and_batches_per_replica(shards):
    seen = []
    for pipeline in range(2):
        ctx = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=pipeline,
                                         num_replicas_in_sync=2)
        ds = pairs.make_dataset(shards[:2], SMALL, training=True, input_context=ctx,
                                options=pairs.PipelineOptions(batch_size=16, include_metadata=True))
        _, _, labels, meta = take(ds, 4)
        assert labels.shape == (32,) and labels.sum() == 16
        seen.append(set(meta["frame_video_id"]) | set(meta["audio_video_id"]))
    assert seen[0] and seen[1] and not seen[0] & seen[1]
    with pytest.raises(ValueError, match="input pipelines"):
        pairs.make_dataset(shards[:1], SMALL, training=True,
                           input_context=tf.distribute.InputContext(2, 0, 2),
                           options=pairs.PipelineOptions(batch_size=8))


def test_mirrored_strategy_on_two_logical_cpus(shards, tmp_path):
    """In a subprocess: logical devices must be set before TensorFlow initialises."""
    script = textwrap.dedent(f"""
        import tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        from l3.train import distribute
        from l3.pairs import pipeline as pairs
        from l3.core.presets import SMALL
        strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
        assert strategy.num_replicas_in_sync == 2

        def dataset_fn(**options):  # as l3.train.default_dataset_fn: global batch 16
            return lambda ctx: pairs.make_dataset({shards!r}, SMALL, training=True,
                input_context=ctx, options=pairs.PipelineOptions(batch_size=16, **options))

        dist = strategy.distribute_datasets_from_function(dataset_fn())

        @tf.function
        def step(batch):
            def replica(image, waveform, label):
                return tf.shape(image)[0], tf.shape(waveform)[1], tf.reduce_sum(label)
            return strategy.run(replica, args=batch)

        it = iter(dist)
        for _ in range(3):
            sizes, samples, positives = (strategy.experimental_local_results(x) for x in step(next(it)))
            assert [int(s) for s in sizes] == [8, 8], sizes
            assert [int(s) for s in samples] == [16000, 16000], samples
            assert [int(p) for p in positives] == [4, 4], positives

        # TF 2.21: the DistributedIterator cannot be checkpointed...
        try:
            tf.train.Checkpoint(iterator=it)
            print("DISTRIBUTED_ITERATOR_TRACKABLE")
        except ValueError:
            pass
        # ...so training's WorkerInput feeds the replicas from a plain one, and keeps
        # the stream's position after each step (what a checkpoint holds).
        from l3.pairs import stream as stream_lib
        files = pairs.resolve_files({shards!r})
        ctx = distribute.input_context(strategy)
        stream = stream_lib.stream_for(files, SMALL, pairs.PipelineOptions(batch_size=16), ctx)

        def make(position):
            return distribute.WorkerInput(strategy, lambda _: stream.dataset(position),
                                          stream_state=True, start_position=position.vector())
        worker_input = make(stream.start())

        @tf.function
        def train_step():  # as l3.train.Trainer.make_loop_function
            return step(worker_input.next())

        sizes, samples, positives = (strategy.experimental_local_results(x) for x in train_step())
        assert [int(s) for s in sizes] == [8, 8] and [int(p) for p in positives] == [4, 4]
        position = stream_lib.StreamPosition.from_vector(worker_input.position.numpy())
        assert position.consumed == 16  # both replicas' batches
        want = [strategy.experimental_local_results(x) for x in worker_input.next()]
        restored = make(position)
        got = [strategy.experimental_local_results(x) for x in restored.next()]
        for w, g in zip(want, got):
            assert [v.device for v in w] == [v.device for v in g]
            for a, b in zip(w, g):
                assert (a.numpy() == b.numpy()).all()
        assert not (want[0][0].numpy() == want[0][1].numpy()).all()  # replicas get different pairs
        print("MIRRORED_OK")
    """)
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env,
                            timeout=600)
    assert "MIRRORED_OK" in result.stdout, result.stderr[-3000:]
    # If this fails, TF made distributed iterators checkpointable: use them directly.
    assert "DISTRIBUTED_ITERATOR_TRACKABLE" not in result.stdout


# --- the benchmark runs -------------------------------------------------------------------------

def _bench_module():
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__)))), "benchmarks"))
    import bench_pipeline
    return bench_pipeline


def test_benchmark_reports_pipeline_and_bare_rates_bytes_and_memory(tmp_path):
    bench_pipeline = _bench_module()
    result = bench_pipeline.run_benchmark(preset_names=("small",), parallel_calls=(1,),
                                          pairs_per_video=(4,), batch_size=4, num_videos=4, rounds=1,
                                          seconds=0.5, work_dir=str(tmp_path))
    (row,) = result["rows"]
    assert row["pairs_per_video"] == 4 and row["pairs_per_s"] > 0 and row["bare_pairs_per_s"] > 0
    # Bytes read: the synthetic records are ~2.3 MB and K = 4 draws share one, so a pair
    # reads about a quarter of a record (a wrong counter, or reading per pair, is far off).
    per_record = result["data"]["bytes_per_record"]
    assert 0.15 * per_record < row["bytes_read_per_pair"] < 0.5 * per_record, row
    assert row["peak_rss_mb"] > 100 and row["bytes_per_pair_used"] > 96_000
    ids = np.array([[b"a", b"b", b"a", b"c"], [b"a", b"b", b"c", b"d"]])
    assert bench_pipeline.same_video_fraction(ids) == pytest.approx((2 / 4 + 0) / 2)


def test_benchmark_bare_side_does_the_whole_per_pair_work():
    """The limit's bare side (plain TF ops) returns real crops of the stored frames, at
    random offsets and flips, and 1-s slices of the tracks: a bare side that skipped
    the decode, or always cropped one place, would make the ratio look better."""
    bench_pipeline = _bench_module()
    rng = np.random.default_rng(0)
    frames = [np.clip(rng.normal(128, 60, (256, 300, 3)), 0, 255).astype(np.uint8) for _ in range(2)]
    jpegs = [tf.io.encode_jpeg(f, quality=95).numpy() for f in frames]
    decoded = [tf.io.decode_jpeg(j, channels=3).numpy().astype(np.int16) for j in jpegs]
    tracks = rng.integers(-2 ** 15, 2 ** 15, (2, 3 * 48000)).astype(np.int16)
    ds = bench_pipeline.bare_dataset(jpegs, tracks, PAPER, 8, 1)
    images, audio = next(iter(ds))
    assert images.dtype == tf.uint8 and images.shape == (8, 224, 224, 3)
    assert audio.shape == (8, 48000)
    places = set()
    for image, clip in zip(images.numpy().astype(np.int16), audio.numpy()):
        found = None
        for f, full in enumerate(decoded):
            for flip in (False, True):
                view = image[:, ::-1] if flip else image
                for top in range(256 - 224 + 1):
                    rows = full[top, :, :]
                    for left in range(300 - 224 + 1):
                        if np.abs(rows[left:left + 224] - view[0]).mean() < 3 and np.abs(
                                full[top:top + 224, left:left + 224] - view).mean() < 3:
                            found = (f, flip, top, left)
                            break
                    if found:
                        break
                if found:
                    break
            if found:
                break
        assert found, "a bare image is not a crop of a stored frame"
        places.add(found)
        pcm = np.round(clip * 32768.0).astype(np.int16)
        assert any(np.array_equal(t[s:s + 48000], pcm) for t in tracks
                   for s in np.flatnonzero((t[:-1] == pcm[0]) & (t[1:] == pcm[1]))), \
            "the audio is not a 1-s slice of a track"
    assert len(places) >= 6  # random offsets and flips, not one place


@pytest.mark.parametrize("factor", [2, 3])
def test_block_decimation_equals_the_audio_module_decimation(factor):
    rng = np.random.default_rng(factor)
    x = rng.standard_normal((3, 48000 + 2 * 99 * factor // 3 * 3)).astype(np.float32)
    x = x[:, :x.shape[1] // factor * factor]
    x[1, :500] = 0.0
    want = audio_lib.decimate(x, factor).numpy()
    got = pair_ops.decimate_blocks(tf.constant(x), factor).numpy()
    assert got.shape == want.shape == (3, x.shape[1] // factor)
    np.testing.assert_allclose(got, want, rtol=2e-6, atol=1e-6)  # float32 sums: a few ulps
