"""Analysis (section 3.5): NMI, unit preference, items, figures, projector, end to end.

The analysis functions are checked on synthetic data with known structure; the
end-to-end tests run `analyze` and the `l3-analyze` binary on a random-weight
export and a few synthetic labelled videos (about a minute on 2 cores).
"""

import json
import subprocess
import sys
import os
import re

import numpy as np
import pytest
from PIL import Image

from l3.core import constants as C
from l3.records import schema as records
from l3.eval.analysis import clustering, data, figures, projector, synthetic, units
from l3.eval.analysis import run as run_lib
from l3.core.presets import get_preset

SMALL = get_preset("small")


def _png_ok(path):
    assert os.path.getsize(path) > 1000, path
    with Image.open(path) as im:
        assert im.format == "PNG" and min(im.size) > 100, (path, im.size)


# --- clustering ---------------------------------------------------------------

def test_nmi_of_perfect_clusters_is_one():
    labels = np.repeat(np.arange(10), 30)
    relabelled = (labels * 7 + 3) % 10  # any bijection of cluster ids
    assert clustering.nmi(labels, relabelled) == pytest.approx(1.0)


def test_random_assignment_nmi_is_near_zero_on_large_sets():
    labels = np.repeat(np.arange(10), 1000)
    rand = clustering.random_assignment_nmi(labels, k=10, seed=0, repeats=3)
    assert 0 <= rand["mean"] < 0.01


def test_random_assignment_nmi_grows_with_clusters_per_item():
    # The finite-sample bias the paper's 0.165 row reflects: more clusters per item, higher NMI.
    labels = np.repeat(np.arange(34), 56)  # ~1.9k items, 34 classes (Kinetics-Sounds test)
    k64 = clustering.random_assignment_nmi(labels, k=C.KMEANS_CLUSTERS, seed=0, repeats=3)["mean"]
    assert 0.1 < k64 < 0.25


def test_kmeans_recovers_separated_blobs():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(5), 40)
    centres = rng.normal(size=(5, 16)) * 20
    x = centres[labels] + rng.normal(size=(200, 16))
    assert clustering.clustering_nmi(x, labels, k=5, seed=0) == pytest.approx(1.0)


def test_kmeans_caps_clusters_at_items():
    x = np.random.default_rng(0).normal(size=(7, 4))
    assert len(np.unique(clustering.kmeans(x, k=64))) == 7
    report = clustering.nmi_report({"vision": {"trained": x, "untrained": x}},
                                   np.arange(7) % 3, k=64)
    assert report["num_clusters"] == 7 and report["requested_clusters"] == 64
    assert set(report["vision"]) >= {"trained", "untrained", "random_assignment"}


# --- unit preference ------------------------------------------------------------

def _planted(n=300, d=64, classes=6, unit=17, cls=3, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n)
    acts = np.abs(rng.normal(size=(n, d)))
    acts[labels == cls, unit] += 5.0  # the planted unit fires for one class
    return acts, labels


def test_planted_selective_unit_is_found():
    acts, labels = _planted()
    pref = units.unit_preferences(acts, labels, top_k=5, seed=0)
    assert pref.top_items.shape == (64, 5)
    assert pref.majority_class[17] == 3 and pref.majority_count[17] == 5
    assert 3 in units.preferred_classes(pref, 4)
    assert units.most_selective_units(acts, pref, 3)[0] == 17
    report = units.preference_report(pref, [f"c{i}" for i in range(6)])
    assert report["top5_4"] >= 1 and "c3" in report["top5_4_classes"]
    assert report["top5_3"] >= report["top5_4"]
    assert report["num_units"] == 64 and report["dead_units"] == 0


def test_random_activations_prefer_few_classes():
    rng = np.random.default_rng(1)
    labels = np.repeat(np.arange(34), 50)
    acts = rng.normal(size=(len(labels), 512))
    pref = units.unit_preferences(acts, labels)
    # P(4 of 5 in one class) is ~1e-4 per unit with 34 classes: a handful of classes at most.
    assert units.preference_report(pref, [str(i) for i in range(34)])["top5_4"] <= 3
    chance = units.chance_report(acts, labels, repeats=2)
    assert chance["top5_4"] <= 3 and set(chance) == {"top5_4", "top5_3"}


def test_dead_units_prefer_nothing_even_when_items_are_sorted_by_class():
    labels = np.repeat(np.arange(4), 10)  # grouped by class: index order would fake a preference
    acts = np.zeros((40, 3))
    acts[:, 1] = np.random.default_rng(0).normal(size=40)
    pref = units.unit_preferences(acts, labels, seed=0)
    assert pref.dead.tolist() == [True, False, True]
    assert units.preference_report(pref, list("abcd"))["dead_units"] == 2
    assert 0 not in units.most_selective_units(acts, pref, 3)


def test_top_items_order_and_ties():
    acts = np.array([[1.0], [3.0], [2.0], [3.0]])
    top = units.top_items(acts, top_k=3, seed=0)
    assert set(top[0, :2]) == {1, 3} and top[0, 2] == 2
    assert (units.top_items(acts, 3, seed=5) == units.top_items(acts, 3, seed=5)).all()


def test_paper_numbers_are_wired():
    assert units.paper_units("vision")["trained"] == {"top5_4": 10, "top5_3": 23}
    assert units.paper_units("audio")["untrained"] == {"top5_4": 1, "top5_3": 3}
    assert clustering.paper_nmi("audio") == {"trained": 0.330, "untrained": 0.219,
                                             "random_assignment": 0.165}


# --- items from records ---------------------------------------------------------

def test_frames_for_items_fit_the_audio():
    times = np.arange(20) / 2.0  # 10 s at 2 fps, audio 0..10 s
    assert times[data.frame_times_for_items(times, 0.0, 10.0, 1)] == pytest.approx([5.0])
    picks = times[data.frame_times_for_items(times, 0.0, 10.0, 3)]
    assert len(picks) == 3 and picks.min() >= 0.5 and picks.max() <= 9.5
    # Audio shorter than a clip: the frame nearest its middle.
    assert times[data.frame_times_for_items(times, 2.0, 0.5, 1)] == pytest.approx([2.0])


def test_clip_audio_centres_and_pads():
    audio = np.arange(100, dtype=np.float32)
    clip = data.clip_audio(audio, 0.0, t=0.5, sample_rate=100, clip_samples=20)
    assert clip[0] == 40 and clip[-1] == 59
    clip = data.clip_audio(audio, 0.0, t=0.0, sample_rate=100, clip_samples=20, margin=5)
    assert (clip[:5] == 0).all() and clip[5] == 0 and clip[6] == 1  # clamped to the start


def test_load_items_aligns_audio_with_the_frame(tmp_path):
    import tensorflow as tf
    # One video: frames every 0.5 s, a click in the audio at exactly t = 2.0 s.
    audio = np.zeros(4 * C.SAMPLE_RATE, np.int16)
    audio[2 * C.SAMPLE_RATE] = 30000
    frame = tf.io.encode_jpeg(np.full((80, 100, 3), 128, np.uint8)).numpy()
    times = [0.5 * i for i in range(8)]
    path = str(tmp_path / "test-00000-of-00001.tfrecord")
    with tf.io.TFRecordWriter(path) as w:
        w.write(records.make_example(video_id="v", frames=[frame] * 8, frame_times=times,
                                     audio=audio, label="click").SerializeToString())
        w.write(records.make_example(video_id="u", frames=[frame], frame_times=[0.0],
                                     audio=audio).SerializeToString())  # unlabelled: skipped
    items = data.load_items(str(tmp_path / "test-*.tfrecord"), SMALL)
    assert len(items) == 1 and items.class_names == ["click"] and items.times[0] == 2.0
    assert items.images.shape == (1, 64, 64, 3) and items.waveforms.shape == (1, 16000)
    # Centred clip: the click lands mid-clip, at 16 kHz sample 8000.
    assert abs(int(np.argmax(np.abs(items.waveforms[0]))) - 8000) <= 1


def test_frames_that_do_not_decode_are_skipped_counted_and_named(tmp_path, caplog):
    """A record another tool wrote, two of its frames not JPEG or cut short: the analysis,
    retrieval and localization readers skip those frames (not the run), count them, and
    name the first by shard, record, video and frame."""
    import logging

    from tests.fixtures.records import SyntheticCorpus, truncated_jpeg, write_with_bad_frames
    corpus = SyntheticCorpus(num_videos=3, seconds=4.0, fps=4.0, labels=["a", "b", "c"],
                             split="test")
    path = str(tmp_path / "test-00000-of-00001.tfrecord")
    every = range(len(corpus.frame_times(1)))
    write_with_bad_frames(corpus, path, {1: {k: truncated_jpeg if k % 2 else
                                             (lambda jpeg: b"not a jpeg") for k in every}})
    with caplog.at_level(logging.WARNING):
        items = data.load_items(path, SMALL, items_per_video=2)
    assert sorted(set(items.video_ids)) == [corpus.video_id(0), corpus.video_id(2)]
    assert len(items) == 4 and items.bad_frames == 2
    assert f"of video {corpus.video_id(1)} (shard {path} record 1) does not decode" in caplog.text
    assert "2 frame(s) did not decode and were skipped" in caplog.text


@pytest.mark.parametrize("preset_name", ["small", "paper"])
def test_items_pair_each_frame_with_the_audio_centred_on_it(tmp_path, preset_name):
    # The shared coded corpus: frame hue says (video, frame index), audio says (video, time).
    from tests.fixtures.records import SyntheticCorpus
    preset = get_preset(preset_name)
    corpus = SyntheticCorpus(num_videos=4, seconds=4.0, fps=4.0, labels=["b", "a"],
                             audio_start=[0.0, 0.3, 0.0, 0.7], split="test")
    corpus.write(str(tmp_path), num_shards=2)
    items = data.load_items(str(tmp_path / "test-*.tfrecord"), preset, items_per_video=3)
    assert len(items) == 12 and items.class_names == ["a", "b"]
    for i in range(len(items)):
        video = corpus.video_index(items.video_ids[i])
        assert items.class_names[items.labels[i]] == corpus.label(video)
        code, k = corpus.decode_frame(items.images[i])
        assert code == video and k / corpus.fps == pytest.approx(items.times[i])
        found, start, score = corpus.decode_audio(items.waveforms[i], preset.sample_rate)
        assert found == video and score > 0.9
        assert start == pytest.approx(items.times[i] - 0.5, abs=1.5 / preset.sample_rate)


def test_analyze_caps_items_and_sets_clusters(stand_in):
    export_dir, pattern, root = stand_in
    res = run_lib.analyze(export_dir, pattern, str(root / "capped"), analyses=["nmi"],
                          num_items=6, clusters=3)
    assert res["data"]["num_items"] == 6 and res["nmi"]["num_clusters"] == 3
    assert "warning" in res["nmi"]  # 2 items per cluster


# --- figures and projector ------------------------------------------------------

def test_upsample_map_shape_and_constant():
    m = np.arange(6, dtype=float).reshape(2, 3)
    up = figures.upsample_map(m, 4)
    assert up.shape == (8, 12)
    assert up[0, 0] == pytest.approx(0.0) and up[-1, -1] == pytest.approx(5.0)
    assert np.allclose(figures.upsample_map(np.full((4, 4), 2.0), 16), 2.0)


def test_figures_are_written(tmp_path):
    rng = np.random.default_rng(0)
    n, d, k = 30, 16, 5
    labels = np.arange(n) % 3
    names = ["playing accordion", "lawn mowing", "a rather long class name, truncated"]
    images = rng.uniform(size=(n, 32, 32, 3)).astype(np.float32)
    acts, _ = _planted(n=n, d=d, classes=3, unit=4, cls=1)
    pref = units.unit_preferences(acts, labels)
    chosen = units.most_selective_units(acts, pref, 3)
    common = dict(units=chosen, top_items=pref.top_items, labels=labels, class_names=names,
                  majority_class=pref.majority_class, majority_count=pref.majority_count)
    paths = [figures.unit_grid(str(tmp_path / "grid.png"), images, modality="vision", **common)]
    maps = rng.uniform(size=(len(chosen), k, 2, 2))
    paths.append(figures.vision_heatmaps(str(tmp_path / "vh.png"),
                                         images[pref.top_items[chosen]], maps, stride=16, **common))
    specs = rng.normal(size=(len(chosen), k, 129, 199))
    paths.append(figures.audio_heatmaps(str(tmp_path / "ah.png"), specs,
                                        rng.uniform(size=(len(chosen), k, 8, 12)), stride=16,
                                        preset=SMALL, **common))
    pts = {m: {net: figures.tsne_2d(rng.normal(size=(n, d)), seed=0) for net in run_lib.NETWORKS}
           for m in ("vision", "audio")}
    paths.append(figures.tsne_figure(str(tmp_path / "tsne.png"), pts, labels, names))
    for p in paths:
        _png_ok(p)


def test_projector_files(tmp_path):
    rng = np.random.default_rng(0)
    emb = {"vision_trained": rng.normal(size=(10, 8)), "audio_trained": rng.normal(size=(10, 4))}
    images = rng.uniform(size=(10, 32, 32, 3))
    meta = {"class": ["a\tb"] * 5 + ["c"] * 5, "video_id": [f"v{i}" for i in range(10)]}
    out = projector.export_projector(str(tmp_path / "p"), emb, meta, images)
    assert np.loadtxt(out["vision_trained"], delimiter="\t").shape == (10, 8)
    rows = open(out["metadata"]).read().splitlines()
    assert rows[0] == "class\tvideo_id" and len(rows) == 11 and rows[1] == "a b\tv0"
    with Image.open(out["sprite"]) as im:
        assert im.size == (4 * 32, 4 * 32)  # ceil(sqrt(10)) = 4 thumbnails a side
    text = open(out["config"]).read()
    assert text.count("embeddings {") == 2 and 'tensor_path: "audio_trained.tsv"' in text
    assert re.search(r'image_path: "sprite.png"\s+single_image_dim: 32\s+single_image_dim: 32',
                     text)
    try:  # the real parser, where TensorBoard is installed
        from google.protobuf import text_format
        from tensorboard.plugins.projector import projector_config_pb2
    except ImportError:
        return
    cfg = text_format.Parse(text, projector_config_pb2.ProjectorConfig())
    assert [e.tensor_name for e in cfg.embeddings] == ["vision_trained", "audio_trained"]


# --- end to end -------------------------------------------------------------------

@pytest.fixture(scope="module")
def stand_in(tmp_path_factory):
    """A random-weight small export (seed 1) and 18 synthetic labelled videos."""
    root = tmp_path_factory.mktemp("analysis")
    synthetic.random_export(str(root / "export"), "small", seed=1)
    synthetic.write_labelled_shards(str(root / "tfrecords"), num_videos=18, num_shards=2)
    return str(root / "export"), str(root / "tfrecords" / "test-*.tfrecord"), root


def test_analyze_end_to_end(stand_in):
    export_dir, pattern, root = stand_in
    out = str(root / "out")
    res = run_lib.analyze(export_dir, pattern, out, num_items=None, seed=0)
    with open(os.path.join(out, run_lib.RESULTS_JSON)) as f:
        saved = json.load(f)
    assert saved["data"]["num_items"] == 18 and saved["data"]["num_classes"] == 6
    # k = n = 18: k-means puts every item in a cluster of its own, so the clusters
    # determine the class: MI = H(classes), and arithmetic NMI = 2 H(Y) / (H(Y) + log 18),
    # whatever the embeddings (hand-computed, not sklearn's).
    counts = np.array(list(saved["data"]["class_counts"].values()), np.float64)
    assert counts.sum() == 18
    h_classes = -np.sum(counts / 18 * np.log(counts / 18))
    own_cluster_nmi = 2 * h_classes / (h_classes + np.log(18))
    for m in ("vision", "audio"):
        for key in ("trained", "untrained"):
            assert saved["nmi"][m][key] == pytest.approx(own_cluster_nmi, abs=1e-9), (m, key)
        # Random assignments of 18 items to 18 clusters collide: less information.
        assert 0.0 < saved["nmi"][m]["random_assignment"] < own_cluster_nmi - 0.05
        for net in ("trained", "untrained"):
            for key in ("top5_4", "top5_3"):
                assert isinstance(saved["unit_preference"][m][net][key], int)
        assert saved["selected_units"][m] and len(saved["selected_units"][m][0]["top_items"]) == 5
    assert saved["nmi"]["num_clusters"] == 18  # 64 capped at the 18 items
    assert set(saved["figures"]) == set(run_lib.FIGURE_FILES)
    for rel in saved["figures"].values():
        _png_ok(os.path.join(out, rel))
    for rel in saved["projector"].values():
        assert os.path.getsize(os.path.join(out, rel)) > 0
    assert saved["nmi"]["vision"] == res["nmi"]["vision"]  # the JSON is the returned dict
    table = run_lib.format_table(res)
    assert "Table 4" in table and "0.409" in table and "3.5.3" in table


def test_analyze_binary_subset(stand_in):
    # A subprocess: absl flags are process-global, and other tests import
    # binaries that define flags of the same names.
    export_dir, pattern, root = stand_in
    out = str(root / "bin_out")
    proc = subprocess.run([
        sys.executable, "-m", "l3.bin.analyze", f"--export_dir={export_dir}",
        f"--data_pattern={pattern}", f"--output_dir={out}", "--analyses=nmi,units",
        "--num_clusters=4", "--max_items=12"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    printed = proc.stdout
    assert "Table 4" in printed and "random assignment" in printed
    saved = json.load(open(os.path.join(out, run_lib.RESULTS_JSON)))
    assert saved["data"]["num_items"] == 12 and saved["nmi"]["num_clusters"] == 4
    assert saved["analyses"] == ["nmi", "units"] and "selected_units" not in saved
    assert set(saved["figures"]) == {"summary"}
    for m in ("vision", "audio"):
        assert set(saved["unit_preference"][m]) == {"trained", "untrained", "chance"}


def test_unknown_analysis_is_rejected(stand_in):
    export_dir, pattern, root = stand_in
    with pytest.raises(ValueError, match="unknown analyses"):
        run_lib.analyze(export_dir, pattern, str(root / "x"), analyses="nmi,heatmapz")


def test_chance_row_takes_top_items_from_distinct_videos():
    """Class 0's videos have 40 frames each, the others 2: shuffling *frame* labels
    makes most top-5 sets class 0 (chance "top5_4" ~1), while the paper's rule
    (top 5 from 5 distinct videos, video labels shuffled) gives ~0.1."""
    rng = np.random.default_rng(3)
    videos, classes, units_ = 60, 12, 32
    video_labels = np.arange(videos) % classes
    frames = np.where(video_labels == 0, 40, 2)
    video_ids = np.repeat([f"v{i}" for i in range(videos)], frames)
    labels = np.repeat(video_labels, frames)
    video_acts = rng.normal(size=(videos, units_))
    acts = np.repeat(video_acts, frames, axis=0) + 1e-3 * rng.normal(size=(len(labels), units_))
    grouped = units.chance_report(acts, labels, groups=video_ids, repeats=50, seed=1)
    # Independent reference: each unit's 5 best videos, video labels permuted among videos.
    top_videos = np.argsort(-video_acts, axis=0)[:5].T  # [D, 5] video indices
    perm_rng = np.random.default_rng(7)
    counts = [np.stack([np.bincount(r, minlength=classes)
                        for r in perm_rng.permutation(video_labels)[top_videos]])
              for _ in range(400)]
    ref4 = np.mean([len(set(c.argmax(1)[c.max(1) >= 4])) for c in counts])
    assert ref4 < 0.5
    assert abs(grouped["top5_4"] - ref4) < 0.25
    frame_level = units.chance_report(acts, labels, repeats=20, seed=1)
    assert frame_level["top5_4"] >= 0.9  # the rule this guards against
    bad = labels.copy()
    bad[0] = (bad[0] + 1) % classes  # a video with two labels: no video-level shuffle
    with pytest.raises(ValueError, match="group"):
        units.chance_report(acts, bad, groups=video_ids)
