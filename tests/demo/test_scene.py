"""The corpus's scene split (l3.demo.corpus.plan.scene_params): two objects of different
classes, each in its half of the frame, the sound of one; the truth is the sounding one.

Checked against the rendered video itself (what each object changes in the frame), and
against the plan: which half, which class, and that the second object makes no sound.
"""

import dataclasses
import json

import numpy as np
import pytest

from l3.demo import corpus
from l3.demo.corpus import objects, render
from l3.eval import localization_io


@pytest.fixture(scope="module")
def scene_plans():
    return [p for p in corpus.plan_corpus(corpus.CorpusParams()) if p.split == "scene"]


def _changed(plan, hide):
    """bool [T, H, W]: where the frames change when `render.<hide>` draws nothing."""
    real = render.render_frames(plan).astype(np.int16)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(render, hide, lambda *a, **k: None)
        without = render.render_frames(plan).astype(np.int16)
    return np.abs(real - without).max(-1) > 2


def test_each_object_stays_in_its_half_and_the_other_is_of_another_class(scene_plans):
    """The sounding object changes the frame only in its half, the bystander only in the
    other (the halves meet at W / 2 of the padded canvas: within the camera's margin of
    the frame's middle), and the bystander's label differs from the video's."""
    for plan in scene_plans[::10][:4]:
        scene = plan.nuisance["scene"]
        assert scene["label_index"] != plan.label_index and plan.nuisance["distractor"] is None
        h, w = plan.size
        m = render.canvas_margin(plan)
        cols = np.arange(w)
        for hide, side in (("draw_object", scene["side"]),
                           ("draw_bystander", "left" if scene["side"] == "right" else "right")):
            changed = _changed(plan, hide)
            assert changed.any(axis=(1, 2)).all(), (plan.video_id, hide)
            xs = cols[changed.any(axis=(0, 1))]
            if side == "left":
                assert xs.max() < w / 2 + m, (plan.video_id, hide)
            else:
                assert xs.min() >= w / 2 - m, (plan.video_id, hide)


def test_the_truth_is_the_sounding_object_and_the_bystander_is_a_distractor(scene_plans):
    """objects.json of a scene: the box and mask are where the sounding object changes the
    frame; the bystander's visible part is the distractor box, on the other side."""
    plan = scene_plans[23]
    entry = corpus.video_annotation(plan)
    obj, other = _changed(plan, "draw_object"), _changed(plan, "draw_bystander")
    h, w = plan.size
    for k in range(0, len(obj), 7):
        mask = localization_io.rle_decode(entry["frames"][k]["mask"])
        np.testing.assert_array_equal(mask, corpus.object_coverage(plan, k) >= 0.5)
        # Most of the mask changes; outside it only soft edges and the ball's shadow do.
        assert obj[k][mask].mean() > 0.8 and (obj[k] & ~mask).sum() <= 0.5 * mask.sum()
        (x1, y1, x2, y2), = entry["frames"][k]["distractor_boxes"]
        ys, xs = np.nonzero(other[k])
        # The bystander's box holds the pixels it changes (its faint edges aside).
        inside = ((xs >= x1 * w - 1) & (xs < x2 * w + 1) & (ys >= y1 * h - 1) & (ys < y2 * h + 1))
        assert inside.mean() > 0.95
        (bx1, _, bx2, _), = entry["frames"][k]["boxes"]
        sounding_left = plan.nuisance["scene"]["side"] == "left"
        assert (bx2 <= x1 + 0.1) if sounding_left else (x2 <= bx1 + 0.1)
    assert entry["scene"]["bystander"] != entry["label"]


def test_the_bystander_is_silent(scene_plans):
    """The soundtrack of a scene is the one of the same plan without the bystander."""
    plan = scene_plans[41]
    alone = dataclasses.replace(plan, nuisance=dict(plan.nuisance, scene=None))
    np.testing.assert_array_equal(render.render_audio(plan), render.render_audio(alone))
    assert not np.array_equal(render.render_frames(plan), render.render_frames(alone))


def test_sides_are_a_fair_coin_and_boxes_can_reach_the_median_rule(scene_plans):
    """The sounding object is on the left in about half of the 100 scenes (binomial, 3.5
    sigma), and enough scene boxes cover a quarter of the frame (what cIoU >= 0.5 under
    EZ-VSL's median rule needs) while the test split's mostly do not."""
    left = sum(p.nuisance["scene"]["side"] == "left" for p in scene_plans)
    assert len(scene_plans) == 100 and 32 <= left <= 68
    test_plans = [p for p in corpus.plan_corpus(corpus.CorpusParams()) if p.split == "test"]

    def reachable(plans):
        areas = []
        for plan in plans[::5]:
            offsets = render.frame_offsets(plan)
            for k in range(0, len(offsets), 12):
                mask = objects._coverage(render.draw_object, plan, k / plan.fps, offsets[k]) >= 0.5
                areas.append(_box_area(mask) if mask.any() else 0.0)
        return np.mean(np.array(areas) >= 0.25)

    assert reachable(scene_plans) > 0.4 and reachable(test_plans) < 0.3


def _box_area(mask):
    ys, xs = np.nonzero(mask)
    return (xs.max() + 1 - xs.min()) * (ys.max() + 1 - ys.min()) / mask.size


def test_a_corpus_gains_the_scene_split_and_keeps_its_videos(tmp_path):
    """A corpus from before the scene split (videos_per_class without "scene") is extended:
    its files are not rewritten; any other change of parameters still refuses."""
    params = dict(num_classes=2, seconds=2, duration_jitter=0, fps=4, size=(64, 80))
    old = corpus.generate_corpus(tmp_path, progress=False,
                                 videos_per_class={"train": 1, "test": 1}, **params)
    stamps = {p: p.stat().st_mtime_ns for p in old.paths()}
    new = corpus.generate_corpus(tmp_path, progress=False,
                                 videos_per_class={"train": 1, "test": 1, "scene": 1}, **params)
    assert {p: p.stat().st_mtime_ns for p in old.paths()} == stamps
    assert len(new.split("scene")) == 2 and all(p.exists() for p in new.paths())
    boxes = json.loads((tmp_path / corpus.OBJECTS_NAME).read_text())["videos"]
    assert sorted(boxes) == sorted(v["video_id"] for v in new.split("test") + new.split("scene"))
    with pytest.raises(FileExistsError):
        corpus.generate_corpus(tmp_path, progress=False,
                               videos_per_class={"train": 2, "test": 1, "scene": 1}, **params)


def test_one_class_has_no_scene_split():
    """A scene needs a bystander of another class: with one class the default has no scene
    split, and asking for one is a clear error, not a failure deep in the planner."""
    from l3.demo.corpus import plan
    assert plan.default_videos_per_class(1) == {"train": 32, "val": 6, "test": 10}
    assert plan.default_videos_per_class(2) == corpus.DEFAULT_VIDEOS_PER_CLASS
    with pytest.raises(ValueError, match="scene split needs at least two classes"):
        corpus.CorpusParams(num_classes=1)
