"""Sound-source localization (l3.eval.localization, localization_io): cIoU and AUC against
hand-computed values, ground-truth maps, the box formats, and heatmaps of hand-built networks
whose answer depends on one region."""

import json

import numpy as np
import pytest

from l3.core import errors
from l3.eval import localization as loc
from l3.eval import localization_io as lio

RAMP = np.arange(16, dtype=float).reshape(4, 4)   # normalised /15; median index 8 -> value 8


def test_ciou_by_hand():
    # The top half of the values (>= 8) is the bottom two rows: 8 pixels.
    left = np.zeros((4, 4))
    left[:, :2] = 1                                     # 8 pixels, 4 of them predicted
    assert loc.ciou(RAMP, left) == pytest.approx(4 / (8 + 4))
    corner = np.zeros((4, 4))
    corner[2:, 2:] = 1                                  # inside the prediction
    assert loc.ciou(RAMP, corner) == pytest.approx(4 / (4 + 4))
    assert loc.ciou(RAMP * 3 + 7, corner) == loc.ciou(RAMP, corner)   # scale-free
    consensus = corner * 0.5                            # Flickr-style weights
    assert loc.ciou(RAMP, consensus) == pytest.approx(2 / (2 + 4))
    # A constant map (a dead network) predicts everything: cIoU = |G| / all pixels.
    assert loc.ciou(np.ones((4, 4)), corner) == pytest.approx(4 / 16)


def test_success_rate_auc_by_hand():
    s = loc.summarize([0.0, 0.52, 1.0, 0.27])
    assert s["cIoU@0.5"] == 0.5 and s["n"] == 4
    assert s["mean_cIoU"] == pytest.approx((0.52 + 1 + 0.27) / 4)
    # Success rate: 1 at t = 0, 3/4 for t in 0.05..0.25, 1/2 for 0.30..0.50, 1/4 up to 1.0.
    by_hand = (0.05 * (1 + 0.75) / 2 + 4 * 0.05 * 0.75 + 0.05 * (0.75 + 0.5) / 2
               + 4 * 0.05 * 0.5 + 0.05 * (0.5 + 0.25) / 2 + 9 * 0.05 * 0.25)
    assert s["AUC"] == pytest.approx(by_hand) == pytest.approx(0.45625)
    assert loc.summarize([1.0] * 3)["AUC"] == pytest.approx(1.0)


def test_box_map_is_ezvsl_bbox2gtmap():
    g = lio.box_map(np.array([[0.25, 0.5, 0.75, 1.0], [0.0, 0.0, 0.1, 0.1]]), size=8)
    want = np.zeros((8, 8))
    want[4:8, 2:6] = 1          # int(0.25 * 8) = 2 .. int(0.75 * 8) = 6, rows 4..8
    want[0:0, 0:0] = 1          # int(0.1 * 8) = 0: an empty box adds nothing
    np.testing.assert_array_equal(g, want)
    # Coordinates outside [0, 1] are clipped (VGG-SS: np.clip(bbox, 0, 1)).
    np.testing.assert_array_equal(lio.box_map([[-0.5, -1, 2, 0.5]], 4), np.r_[np.ones((2, 4)), np.zeros((2, 4))])


def test_mask_map_and_crop_window():
    mask = np.zeros((4, 8), bool)
    mask[:, 4:] = True                                   # right half
    rle = lio.rle_encode(mask)
    np.testing.assert_array_equal(lio.mask_map(rle, 4)[:, :2], 0)
    np.testing.assert_array_equal(lio.mask_map(rle, 4)[:, 2:], 1)
    # The centre half of the width, as a window: its right half is the mask.
    np.testing.assert_array_equal(lio.mask_map(rle, 4, (0.25, 0, 0.75, 1))[0], [0, 0, 1, 1])
    np.testing.assert_allclose(lio.crop_boxes([[0.5, 0.0, 1.0, 1.0]], (0.25, 0, 0.75, 1)),
                               [[0.5, 0.0, 1.0, 1.0]])
    assert lio.crop_boxes([[0.0, 0.0, 0.2, 1.0]], (0.25, 0, 0.75, 1)).shape == (0, 4)


def test_upsample_keeps_cells_in_place():
    m = np.zeros((4, 4))
    m[1, 2] = 1.0
    up = loc.upsample(m, 224)
    y, x = np.unravel_index(np.argmax(up), up.shape)
    assert 56 <= y < 112 and 112 <= x < 168              # cell (1, 2)'s share of the frame
    np.testing.assert_allclose(loc.upsample(np.full((4, 4), 3.0), 224), 3.0)


def test_read_vggss_and_l3_formats(tmp_path):
    vgg = tmp_path / "vggss.json"
    vgg.write_text(json.dumps([{"file": "abc_000030", "class": "dog barking",
                                "bbox": [[0.1, 0.2, 0.5, 1.2]]}]))
    truth = lio.read_truth(str(vgg))
    frame = lio.match_video(truth, "abc_000030_000040").at(5.0, 0.1)    # Kinetics-style record id
    np.testing.assert_allclose(frame.boxes, [[0.1, 0.2, 0.5, 1.0]])     # clipped to [0, 1]
    assert frame.time is None and truth["abc_000030"].attributes["label"] == "dog barking"
    assert lio.match_video(truth, "abc_000031_000041") is None
    own = tmp_path / "boxes.json"
    lio.write_truth(str(own), {"v1": {"frames": [{"time": 0.5, "boxes": [[0, 0, 0.5, 0.5]]},
                                                 {"time": 0.0, "boxes": []}]}})
    v = lio.read_truth(str(own))["v1"]
    assert [f.time for f in v.frames] == [0.0, 0.5]
    assert v.at(0.45, 0.1).time == 0.5 and v.at(0.3, 0.1) is None


@pytest.mark.parametrize("content, message", [
    ('{"videos": {}}', "neither 'l3-boxes/1'"),
    ('{"format": "l3-boxes/1", "videos": {"v": {"frames": [{"time": 0}]}}}', "has no \"boxes\""),
    ('{"format": "l3-boxes/1", "videos": {"v": {"frames": [{"time": 0, "boxes": [[1, 0, 0, 1]]}]}}}',
     "x2 < x1"),
    ('[{"file": "x"}]', "no \"file\" or \"bbox\""),
    ("not json", "is not JSON"),
])
def test_bad_box_files_are_one_line_usage_errors(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(errors.UsageError, match=message) as e:
        lio.read_truth(str(path))
    assert str(path) in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(errors.MissingInputError):
        lio.read_truth(str(tmp_path / "missing.json"))


# --- heatmaps of hand-built networks -----------------------------------------------------

def _two_colour_avc(fc1_kernel, fc1_bias, size: int = 8, stride: int = 1):
    """An AVC model with L3's layer names on size x size frames: conv4_2 has a red and a
    blue channel (1x1 conv; with `stride`, then averaged over stride x stride windows at
    that stride, as conv4_2's cells see 16 x 16 pixels), pool4 their global max; audio is
    a 2-vector passed through; the fusion's fc1 is given, fc2 says l1 = h0 + h1, l0 = 0."""
    import keras
    from keras import layers
    image = keras.Input((size, size, 3), name="image")
    x = layers.Conv2D(2, 1, use_bias=False, name="conv4_2")(image)
    if stride > 1:
        x = layers.AveragePooling2D(stride, name="cells")(x)
    x = layers.ReLU(name="conv4_2_relu")(x)
    vision = keras.Model(image, layers.GlobalMaxPooling2D(name="pool4")(x), name="vision_network")
    vision.get_layer("conv4_2").set_weights([np.array([[[[1, 0], [0, 0], [0, 1]]]], np.float32)])
    wave = keras.Input((2,), name="waveform")
    audio = keras.Model(wave, layers.Identity(name="pool4")(wave), name="audio_network")
    v, a = keras.Input((2,)), keras.Input((2,))
    h = layers.Dense(2, activation="relu", name="fc1")(layers.Concatenate(name="concat")([v, a]))
    fusion = keras.Model([v, a], layers.Dense(2, name="fc2")(h), name="fusion")
    fusion.get_layer("fc1").set_weights([np.asarray(fc1_kernel, np.float32), np.asarray(fc1_bias, np.float32)])
    fusion.get_layer("fc2").set_weights([np.array([[0, 1], [0, 1]], np.float32), np.zeros(2, np.float32)])
    img_in = keras.Input((size, size, 3), name="image")
    wav_in = keras.Input((2,), name="waveform")
    return keras.Model({"image": img_in, "waveform": wav_in},
                       fusion([vision(img_in), audio(wav_in)]), name="tiny_avc")


def _red_and_blue():
    rng = np.random.default_rng(0)
    img = 0.2 * rng.random((1, 8, 8, 3)).astype(np.float32)   # dim noise everywhere
    img[0, :4, :4, 0] = 1.0      # red, top left
    img[0, 4:, 4:, 2] = 1.0      # blue, bottom right, just as bright
    return img


def test_gradcam_lands_where_the_answer_depends():
    """The answer depends on the red channel only (fc1 reads v_red): Grad-CAM is exactly
    A_red / 64 by hand, high on the red square, noise-level on the equally bright blue
    one; the unconditioned map lights both."""
    model = _two_colour_avc([[1, 0], [0, 0], [0, 0], [0, 0]], [0, 0])
    loc_ = loc.Localizer(model)
    maps = loc_.conv_maps(_red_and_blue())
    a = loc_.audio_embeddings(np.zeros((1, 2), np.float32))
    cam = loc_.heatmaps(maps, a, "gradcam")[0]
    np.testing.assert_allclose(cam, maps[0, :, :, 0] / 64, atol=1e-7)
    assert cam[:4, :4].min() > 5 * cam[4:, 4:].max()
    red = np.zeros((224, 224))
    red[:112, :112] = 1
    # The top half of the map holds the whole red square: cIoU = (1/4) / (1/2).
    assert loc.ciou(loc.upsample(cam), red) == pytest.approx(0.5, abs=0.02)
    plain = loc.unconditioned_map(maps)[0]
    assert plain[4:, 4:].mean() == pytest.approx(plain[:4, :4].mean(), rel=0.05)


def test_relu_ties_would_select_the_whole_frame():
    """Why the metric uses Grad-CAM before its ReLU: a map negative on more than half the
    frame becomes a tie at 0 there, and the median rule (>= median) then keeps everything."""
    cam = -1.0 - np.arange(16.0).reshape(4, 4)           # negative, without ties ...
    cam[:1, :] = [3, 2, 1, 0.5]                          # ... but on a positive quarter
    gt = np.zeros((4, 4))
    gt[:1] = 1
    assert loc.ciou(cam, gt) == pytest.approx(4 / (4 + 4))   # top half: row 0 and row 1
    assert loc.ciou(np.maximum(cam, 0), gt) == pytest.approx(4 / 16)


@pytest.mark.parametrize("method", loc.METHODS)
def test_the_sound_picks_the_region(method):
    """fc1: h0 = relu(v_red + 10 a0 - 10), h1 = relu(v_blue + 10 a1 - 10): sound (1, 0)
    makes the answer depend on red, (0, 1) on blue; the heatmap follows the sound."""
    model = _two_colour_avc([[1, 0], [0, 1], [10, 0], [0, 10]], [-10, -10])
    loc_ = loc.Localizer(model)
    maps = loc_.conv_maps(np.repeat(_red_and_blue(), 2, 0))
    heat = loc_.heatmaps(maps, loc_.audio_embeddings(np.eye(2, dtype=np.float32)), method)
    top_left, bottom_right = heat[:, :2, :2].mean((1, 2)), heat[:, 2:, 2:].mean((1, 2))
    assert top_left[0] > bottom_right[0] and bottom_right[1] > top_left[1]


def test_fusion_map_is_the_fusion_applied_to_each_cell():
    import keras
    from l3.core import presets
    from l3.model import network
    keras.utils.set_random_seed(5)
    model = network.build_avc_model(presets.get_preset("small"))
    loc_ = loc.Localizer(model)
    rng = np.random.default_rng(0)
    images = rng.random((2, 64, 64, 3)).astype(np.float32)
    maps = loc_.conv_maps(images)
    # pool4 is the global max of conv4_2_relu, which Grad-CAM relies on.
    np.testing.assert_allclose(maps.max((1, 2)), network.subnetworks(model)["vision"](images),
                               rtol=1e-5, atol=1e-6)
    a = rng.normal(size=(2, 64)).astype(np.float32)
    fmap = loc_.fusion_map(maps, a)
    cells = maps.reshape(-1, maps.shape[-1])
    logits = np.asarray(network.subnetworks(model)["fusion"]([cells, np.repeat(a, 16, 0)]))
    np.testing.assert_allclose(fmap.ravel(), logits[:, 1] - logits[:, 0], rtol=1e-4, atol=1e-5)


FLICKR_XML = """<annotation>
  <object><bbox><name>0</name><xmin>{0}</xmin><ymin>{1}</ymin><xmax>{2}</xmax><ymax>{3}</ymax></bbox></object>
  <object><bbox><name>1</name><xmin>{4}</xmin><ymin>{5}</ymin><xmax>{6}</xmax><ymax>{7}</ymax></bbox></object>
  <object><bbox><name>2</name><xmin>{8}</xmin><ymin>{9}</ymin><xmax>{10}</xmax><ymax>{11}</ymax></bbox></object>
</annotation>"""


def test_flickr_soundnet_annotations_give_ezvsl_consensus_maps(tmp_path):
    """Flickr-SoundNet's Annotations/ folder (3 annotators, pixels of a 256 x 256 image):
    the map is EZ-VSL's, written here from its description: each box at
    int(224 * pixel / 256) filling [ymin:ymax, xmin:xmax], summed, halved, clipped to 1."""
    pixels = {"1000": [10, 20, 130, 200, 40, 30, 160, 210, 0, 0, 256, 64],
              "1001": [100, 100, 150, 150, 100, 100, 150, 150, 5, 5, 9, 9]}
    folder = tmp_path / "Annotations"
    folder.mkdir()
    for vid, p in pixels.items():
        (folder / f"{vid}.xml").write_text(FLICKR_XML.format(*p))
    truth = lio.read_truth(str(folder))
    assert sorted(truth) == ["1000", "1001"]
    for vid, p in pixels.items():
        (frame,) = truth[vid].frames
        assert frame.time is None and frame.consensus and frame.boxes.shape == (3, 4)
        want = np.zeros((224, 224))
        for k in range(3):
            x1, y1, x2, y2 = (int(224 * v / 256) for v in p[4 * k:4 * k + 4])
            box = np.zeros((224, 224))
            box[y1:y2, x1:x2] = 1
            want += box
        want = np.minimum(want / 2, 1)
        np.testing.assert_array_equal(lio.consensus_map(frame.boxes), want)
        assert set(np.unique(want)) <= {0, 0.5, 1} and (want == 0.5).any() and (want == 1).any()
    with pytest.raises(errors.UsageError, match="no <id>.xml"):
        lio.read_truth(str(tmp_path))
    (folder / "bad.xml").write_text("<annotation><bbox><a/>")
    with pytest.raises(errors.UsageError, match="bad.xml: not a Flickr-SoundNet annotation"):
        lio.read_truth(str(folder))


def test_gradcam_is_autodiffs_gradcam_on_a_random_network():
    """The closed-form Grad-CAM equals Grad-CAM by automatic differentiation (written
    here with a GradientTape through the fusion model on max-pooled maps), on a random
    small network, with ties in the max (a constant channel) and units at zero."""
    import keras
    import tensorflow as tf
    from l3.core import presets
    from l3.model import network
    keras.utils.set_random_seed(3)
    model = network.build_avc_model(presets.get_preset("small"))
    loc_ = loc.Localizer(model)
    rng = np.random.default_rng(1)
    maps = loc_.conv_maps(rng.random((3, 64, 64, 3)).astype(np.float32))
    maps[:, :, :, 0] = 0.5                      # a channel whose maximum is every cell
    audio = loc_.audio_embeddings(rng.normal(size=(3, 16000)).astype(np.float32))
    fusion = network.subnetworks(model)["fusion"]
    m = tf.constant(maps)
    with tf.GradientTape() as tape:
        tape.watch(m)
        logits = fusion([tf.reduce_max(m, axis=[1, 2]), tf.constant(audio)], training=False)
        y = logits[:, 1] - logits[:, 0]
    alpha = tf.reduce_mean(tape.gradient(y, m), axis=[1, 2], keepdims=True)
    want = tf.reduce_sum(alpha * m, axis=-1).numpy()
    got = loc_.gradcam(maps, audio)
    assert np.abs(want).max() > 0
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6 * np.abs(want).max())
    np.testing.assert_allclose(loc_.gradcam(maps, audio, relu=True), np.maximum(want, 0),
                               rtol=1e-4, atol=1e-6 * np.abs(want).max())


# --- dense maps (shift and stitch) -------------------------------------------------------

def test_shift_and_stitch_gives_each_cell_its_own_window():
    """Through a real strided network (cells = means of 16 x 16 windows at stride 16 on 64 x
    64 frames): the 4x finer map's cell (k, l) is the mean of the window starting at
    (4 k - 6, 4 l - 6) of the edge-padded frame, written out here in numpy. Swapped shift
    axes, a missing centring offset or a wrong interleave all fail."""
    model = _two_colour_avc(np.eye(4, 2), np.zeros(2), size=64, stride=16)
    rng = np.random.default_rng(1)
    images = rng.random((2, 64, 64, 3)).astype(np.float32)
    images[1, 10:30, 40:50, 0] = 3.0                  # an object, off the 16-pixel grid
    localizer = loc.Localizer(model)
    plain = localizer.conv_maps(images)
    assert plain.shape == (2, 4, 4, 2)
    np.testing.assert_array_equal(localizer.dense_maps(images, 1), plain)
    dense = localizer.dense_maps(images, 4)
    assert dense.shape == (2, 16, 16, 2)
    np.testing.assert_allclose(dense, _dense_windows(images), rtol=1e-5, atol=1e-6)


def _dense_windows(images):
    """The 4x finer map of the strided two-colour network, in numpy: cell (k, l) is the mean
    red and blue of the 16 x 16 window starting at (4 k - 6, 4 l - 6) of the edge-padded
    frame. images [n, H, W, 3] -> [n, H / 4, W / 4, 2]."""
    n, height, width = images.shape[:3]
    margin = 32
    padded = np.pad(images, ((0, 0), (margin, margin), (margin, margin), (0, 0)), mode="edge")
    want = np.zeros((n, height // 4, width // 4, 2), np.float32)
    for k in range(height // 4):
        for l in range(width // 4):
            y, x = margin + 4 * k - 6, margin + 4 * l - 6
            want[:, k, l] = padded[:, y:y + 16, x:x + 16][..., [0, 2]].mean(axis=(1, 2))
    return want


def test_dense_fusion_map_finds_an_object_between_the_cells():
    """A red square of 16 pixels straddling four conv4_2 cells, the sound asking for red:
    the plain 4 x 4 map splits it over four cells; the dense map's peak lands inside the
    square and its top pixels cover it."""
    model = _two_colour_avc([[1, 0], [0, 1], [10, 0], [0, 10]], [-10, -10], size=64, stride=16)
    rng = np.random.default_rng(2)
    images = 0.2 * rng.random((1, 64, 64, 3)).astype(np.float32)
    images[0, 18:34, 42:58, 0] = 1.0                  # red, across cells (1..2, 2..3)
    images[0, 48:64, 0:16, 2] = 1.0                   # blue elsewhere, as bright
    localizer = loc.Localizer(model)
    sound = localizer.audio_embeddings(np.array([[1, 0]], np.float32))
    truth = lio.box_map(np.array([[42 / 64, 18 / 64, 58 / 64, 34 / 64]]), 224)
    heat = {shifts: loc.upsample(localizer.fusion_map(localizer.dense_maps(images, shifts),
                                                      sound)[0]) for shifts in (1, 4)}
    y, x = np.unravel_index(np.argmax(heat[4]), heat[4].shape)
    assert truth[y, x] == 1, (y, x)
    # The median rule's cIoU cannot tell them apart (the square is 1/16 of the frame, inside
    # either top half: 2 x 1/16); the IoU of the map's top 1/16 of pixels with it can.
    top = {k: loc.binarize(loc.normalize(h), 1 - 1 / 16) for k, h in heat.items()}
    iou = {k: np.sum(t & (truth == 1)) / np.sum(t | (truth == 1)) for k, t in top.items()}
    assert iou[4] > 0.5 and iou[4] > iou[1] + 0.2, iou


# --- two-source scenes (l3.eval.localization_duet) ----------------------------------------

def _items(n_per_label: int = 10, labels=("red", "blue", "green"), e: int = 16):
    """LocalizationItems by hand: item k's image is filled with k (so a half of a composite
    says which item it is), its box a band whose left edge moves with k."""
    from l3.eval import localization_data as ldata
    n = n_per_label * len(labels)
    images = np.arange(n, dtype=np.float32)[:, None, None, None] * np.ones((n, 8, 8, 3), np.float32)
    boxes = [np.array([[0.05 * (k % 10), 0.25, 0.5 + 0.05 * (k % 10), 0.75]]) for k in range(n)]
    return ldata.LocalizationItems(
        images=images, display=images.astype(np.uint8).repeat(2, 1).repeat(2, 2),
        waveforms=np.zeros((n, 2), np.float32),
        gt=np.stack([lio.box_map(b, e) for b in boxes]).astype(np.uint8), boxes=boxes,
        distractor_boxes=[np.zeros((0, 4))] * n, video_ids=[f"v{k // 2}" for k in range(n)],
        times=np.zeros(n), labels=[labels[k % len(labels)] for k in range(n)],
        cases=[("clean",)] * n, skipped={})


def test_duets_put_the_sounding_frame_on_either_side_with_its_truth():
    """Each duet: the item's own frame on the side `left` says, a frame of another label on
    the other; the truth is exactly the item's half, its box shifted into it; both sides
    occur; the same seed gives the same duets."""
    from l3.eval import localization_duet as duet
    items = _items()
    d = duet.make_duets(items, seed=3)
    n = len(items)
    assert len(d) == n and d.images.shape == (n, 8, 16, 3) and d.gt.shape == (n, 16, 32)
    assert 5 < d.left.sum() < n - 5
    for k in range(n):
        i, j = d.item[k], d.partner[k]
        assert i == k and items.labels[j] != items.labels[i]
        own, other = (slice(0, 8), slice(8, 16)) if d.left[k] else (slice(8, 16), slice(0, 8))
        assert (d.images[k][:, own] == i).all() and (d.images[k][:, other] == j).all()
        half = (slice(0, 16), slice(0, 16)) if d.left[k] else (slice(0, 16), slice(16, 32))
        want = np.zeros((16, 32), np.uint8)
        want[half] = 1
        np.testing.assert_array_equal(d.gt[k], want)
        want[half] = items.gt[i]
        np.testing.assert_array_equal(d.gt_box[k], want)
        x1, y1, x2, y2 = items.boxes[i][0]
        o = 0 if d.left[k] else 0.5
        np.testing.assert_allclose(d.boxes[k], [[x1 / 2 + o, y1, x2 / 2 + o, y2]])
    again = duet.make_duets(items, seed=3)
    np.testing.assert_array_equal(again.partner, d.partner)
    np.testing.assert_array_equal(again.left, d.left)
    assert not np.array_equal(duet.make_duets(items, seed=4).left, d.left)


def test_duet_partners_without_labels_come_from_other_videos_and_none_is_none():
    from l3.eval import localization_duet as duet
    p = duet.partners([""] * 6, ["a", "a", "b", "b", "c", "c"], seed=0)
    assert all(p[k] // 2 != k // 2 for k in range(6))
    assert (duet.partners(["x"] * 3, ["a"] * 3, seed=0) == -1).all()
    items = _items(n_per_label=3, labels=("one",))
    items.video_ids = ["same"] * len(items)
    assert duet.make_duets(items) is None


def test_duet_partners_are_uniform_over_the_other_labels_items():
    """Item 0's partner over 2,000 seeds is uniform over the 20 items of other labels
    (chi-square, p > 1e-3), and within one seed the 100 items of a label have many different
    partners: a fixed choice (the first item of another label) or one draw per label fails."""
    from scipy import stats
    from l3.eval import localization_duet as duet
    labels, ids = [("red", "blue", "green")[k % 3] for k in range(30)], [str(k) for k in range(30)]
    first = [duet.partners(labels, ids, seed)[0] for seed in range(2000)]
    others = [k for k in range(30) if labels[k] != "red"]
    counts = np.array([first.count(k) for k in others])
    assert counts.sum() == 2000
    assert stats.chisquare(counts).pvalue > 1e-3
    many = duet.partners([("red", "blue", "green")[k % 3] for k in range(300)],
                         [str(k) for k in range(300)], seed=0)
    assert len(set(many[0::3].tolist())) > 50       # ~79 expected of 100 draws among 200


def test_the_sound_lights_its_own_frame_of_a_duet():
    """The two-colour network on a red frame beside a blue one: with the red sound the
    fusion map's top half is the red frame (cIoU 1 against it), with the blue sound the
    blue one; the unconditioned map and the per-frame centre prior cannot choose (the
    prior scores exactly 1/3: its half ellipse, half in each frame)."""
    from l3.eval import localization_duet as duet
    model = _two_colour_avc([[1, 0], [0, 1], [10, 0], [0, 10]], [-10, -10])
    localizer = loc.Localizer(model)
    rng = np.random.default_rng(0)
    red, blue = 0.1 * rng.random((2, 1, 8, 8, 3)).astype(np.float32)
    red[..., 0], blue[..., 2] = 1.0, 1.0                          # each object fills its frame
    composite = np.concatenate([red, blue], axis=2)               # [1, 8, 16, 3]
    maps = localizer.conv_maps(np.repeat(composite, 2, 0))
    assert maps.shape == (2, 8, 16, 2)
    # A 1x1 network: the composite's maps are the two frames' maps side by side.
    np.testing.assert_allclose(maps[0], np.concatenate(
        [localizer.conv_maps(red)[0], localizer.conv_maps(blue)[0]], axis=1), atol=1e-6)
    sounds = localizer.audio_embeddings(np.eye(2, dtype=np.float32))  # red, then blue
    heat = localizer.fusion_map(maps, sounds)
    left, right = np.zeros((224, 448)), np.zeros((224, 448))
    left[:, :224], right[:, 224:] = 1, 1
    assert loc.ciou(loc.upsample(heat[0], (224, 448)), left) == pytest.approx(1.0, abs=0.01)
    assert loc.ciou(loc.upsample(heat[1], (224, 448)), right) == pytest.approx(1.0, abs=0.01)
    scores = [loc.ciou(loc.upsample(loc.unconditioned_map(maps)[0], (224, 448)), g)
              for g in (left, right)]
    assert max(scores) < 0.5
    prior = duet.center_prior(224)
    assert loc.ciou(prior, left) == pytest.approx(1 / 3, abs=0.01)
    assert loc.ciou(prior, right) == pytest.approx(1 / 3, abs=0.01)


def test_the_trunk_rebuilt_for_another_input_size_is_the_networks_own():
    """conv_maps on a size other than the network's input runs the network's own layers on
    a new input: rebuilt at the network's own size it gives the network's conv4_2 exactly
    (a layer left out, or applied twice, fails); on S x 2S it is Keras's own clone of the
    trunk on that input (`keras.models.clone_model`, the weights copied), and not the two
    S x S halves' maps side by side (the halves' receptive fields meet at the seam)."""
    import keras
    from l3.core import presets
    from l3.model import network
    keras.utils.set_random_seed(7)
    model = network.build_avc_model(presets.get_preset("small"))
    vision = network.subnetworks(model)["vision"]
    want = keras.Model(vision.input, vision.get_layer("conv4_2_relu").output)
    images = np.random.default_rng(0).random((2, 64, 64, 3)).astype(np.float32)
    localizer = loc.Localizer(model)
    localizer._trunks.clear()                       # force the rebuild at 64 x 64
    np.testing.assert_allclose(localizer.conv_maps(images), want(images, training=False),
                               rtol=1e-5, atol=1e-5)
    wide_images = np.concatenate([images, images[::-1]], axis=2)      # [2, 64, 128, 3]
    wide = localizer.conv_maps(wide_images)
    assert wide.shape == (2, 4, 8, want.output.shape[-1])
    # Also a size that is no multiple of the stride (80 x 100: 5 x 6 cells, the third pool
    # flooring 25 columns to 12), where a trunk wrong only away from S x kS would show.
    odd_images = np.random.default_rng(1).random((2, 80, 100, 3)).astype(np.float32)
    for x, cells in ((wide_images, (4, 8)), (odd_images, (5, 6))):
        got = localizer.conv_maps(x)
        assert got.shape[1:3] == cells
        clone = keras.models.clone_model(want, input_tensors=keras.Input(x.shape[1:]))
        clone.set_weights(want.get_weights())
        np.testing.assert_allclose(got, clone(x, training=False), rtol=1e-5, atol=1e-6)
    halves = np.concatenate([want(images, training=False), want(images[::-1], training=False)],
                            axis=2)
    assert np.abs(wide - halves).max() > 0.1 * np.abs(wide).max()


def test_shift_and_stitch_on_a_wide_frame():
    """The numpy window reference of the square test, on a 64 x 128 frame (h != w)."""
    model = _two_colour_avc(np.eye(4, 2), np.zeros(2), size=64, stride=16)
    images = np.random.default_rng(3).random((1, 64, 128, 3)).astype(np.float32)
    dense = loc.Localizer(model).dense_maps(images, 4)
    assert dense.shape == (1, 16, 32, 2)
    np.testing.assert_allclose(dense, _dense_windows(images), rtol=1e-5, atol=1e-6)


def test_score_duets_counts_the_sounding_frame_and_its_box():
    """A map hot on the left half only, whatever the sound: cIoU 1 against the frame where
    the left frame sounds, 0 where the right one does (truth taken from the partner's side
    or from the other row's truth would fail); against the box, the left item's box over
    the predicted half (the box is a whole quarter-width band here: cIoU = box / half)."""
    from l3.eval import localization_duet as duet
    items = _items(e=64)
    d = duet.make_duets(items, seed=5)
    n = len(d)
    left_hot = np.zeros((n, 4, 8))
    left_hot[:, :, :4] = 1.0
    scored = duet.score_duets(d, {"trained": left_hot})
    c = scored["cious"]["trained"]
    np.testing.assert_allclose(c, np.where(d.left, 1.0, 0.0), atol=1e-9)
    assert scored["rows"]["trained"]["cIoU@0.5"] == pytest.approx(d.left.mean())
    np.testing.assert_allclose(scored["cious"]["center_prior"], 1 / 3, atol=0.02)
    box = scored["rows_box"]["trained"]["mean_cIoU"]
    gt_share = np.array([items.gt[i].mean() for i in d.item])     # of one frame
    assert box == pytest.approx(np.mean(np.where(d.left, gt_share, 0.0)), abs=0.01)


def test_figure_rows_fill_up_with_other_labels_when_few_frames_are_clean():
    """The figure shows clean frames of distinct labels plus the first of each other case;
    on the scene split (a bystander in every frame, so no clean frame) the rows left over
    go to the first frame of each label, not to nothing (it once drew 3 rows of 6)."""
    from l3.eval.localization_run import _figure_items
    labels = list("aabbccddee")
    mixed = [("clean",)] * 5 + [("distractor_visible",)] + [("clean",)] * 3 + [("offscreen_sound",)]
    assert _figure_items(mixed, labels, 6) == [0, 2, 4, 5, 6, 9]
    scenes = [("distractor_visible",)] * 8 + [("distractor_visible", "offscreen_sound")] * 2
    assert _figure_items(scenes, labels, 6) == [0, 1, 2, 4, 6, 8]
    assert _figure_items([()] * 3, list("abc"), 6) == [0, 1, 2]
