"""The corpus knows where its objects are (l3.demo.corpus.objects): masks and boxes per frame.

The truth is checked against the video itself: a frame rendered without the
object differs from the real frame exactly where the object's mask says.
"""

import json

import numpy as np
import pytest

from l3.demo import corpus
from l3.demo.corpus import render
from l3.eval import localization_io


def _plans_with_camera_motion():
    plans = [p for p in corpus.plan_corpus(corpus.CorpusParams()) if p.split == "test"]
    shaky = [p for p in plans if p.nuisance["shake"] and p.nuisance["distractor"] is not None][:1]
    moving = [p for p in plans if p.nuisance["pan_amp"] > 3 and not p.nuisance["shake"]][:1]
    return shaky + moving + [plans[0]]


@pytest.mark.parametrize("plan", _plans_with_camera_motion(), ids=lambda p: p.label)
def test_mask_is_where_the_object_changes_the_frame(plan, monkeypatch):
    """Every pixel the object changes has coverage > 0 (so pan and shake are the video's),
    and most mask pixels change."""
    real = render.render_frames(plan).astype(np.int16)
    monkeypatch.setattr(render, "draw_object", lambda *a, **k: None)
    without = render.render_frames(plan).astype(np.int16)
    monkeypatch.undo()
    entry = corpus.video_annotation(plan)
    assert len(entry["frames"]) == len(real)
    for k in range(0, len(real), 5):
        cover = corpus.object_coverage(plan, k)
        changed = np.abs(real[k] - without[k]).max(-1) > 2
        assert changed.any()
        assert not (changed & (cover == 0)).any(), (plan.label, k)
        mask = localization_io.rle_decode(entry["frames"][k]["mask"])
        np.testing.assert_array_equal(mask, cover >= 0.5)
        assert changed[mask].mean() > 0.8, (plan.label, k)
        # The box is the mask's extent, normalised.
        h, w = mask.shape
        ys, xs = np.nonzero(mask)
        x1, y1, x2, y2 = entry["frames"][k]["boxes"][0]
        assert (round(x1 * w), round(y1 * h), round(x2 * w), round(y2 * h)) == \
            (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)


def test_distractor_box_is_the_visible_distractor():
    plan = next(p for p in corpus.plan_corpus(corpus.CorpusParams())
                if p.split == "test" and p.nuisance["distractor"] is not None)
    entry = corpus.video_annotation(plan)
    seen = [f for f in entry["frames"] if f.get("distractor_boxes")]
    assert seen, "the distractor crosses the frame at some point"
    for f in seen:
        (dx1, dy1, dx2, dy2), = f["distractor_boxes"]
        assert 0 <= dx1 < dx2 <= 1 and 0 <= dy1 < dy2 <= 1


def test_rle_is_coco_column_major():
    # Column-major flattening of [[0, 1], [1, 1]] is 0, 1, 1, 1: one 0 then three 1s.
    assert localization_io.rle_encode(np.array([[0, 1], [1, 1]], bool))["counts"] == [1, 3]
    # Starting with a 1: a zero-length run of 0s first.
    assert localization_io.rle_encode(np.array([[1, 0], [0, 0]], bool))["counts"] == [0, 1, 3]
    rng = np.random.default_rng(0)
    mask = rng.random((7, 5)) > 0.6
    rle = localization_io.rle_encode(mask)
    assert rle["size"] == [7, 5] and sum(rle["counts"]) == 35
    np.testing.assert_array_equal(localization_io.rle_decode(rle), mask)


def test_objects_file_is_read_by_the_localization_reader(tmp_path):
    plans = [p for p in corpus.plan_corpus(corpus.CorpusParams(
        num_classes=2, videos_per_class={"train": 0, "val": 0, "test": 1}, seconds=2,
        duration_jitter=0))]
    corpus.objects.write_objects(tmp_path / "objects.json", plans)
    doc = json.loads((tmp_path / "objects.json").read_text())
    assert doc["format"] == localization_io.FORMAT
    truth = localization_io.read_truth(str(tmp_path / "objects.json"))
    assert sorted(truth) == sorted(p.video_id for p in plans)
    for plan in plans:
        v = truth[plan.video_id]
        assert [f.time for f in v.frames] == [k / plan.fps for k in range(plan.duration * plan.fps)]
        assert v.attributes["label"] == plan.label and "frames" not in v.attributes
        assert all(f.boxes.shape == (1, 4) for f in v.frames)
