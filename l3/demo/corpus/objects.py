"""Where each video's object is, frame by frame: the truth for sound-source localization.

The object of a video is rendered *alone*, on the padded canvas the frame is cut
from, and cropped where the camera put that frame (`render.frame_offsets`: the
same pan and shake as the video). Painting blends a shape of coverage m over
whatever is below as (1 - m) below + m colour, so the object drawn on a white and
on a black canvas differs by prod(1 - m_i): its coverage is
1 - (white - black), exact whatever its colours. The mask is coverage >= 0.5
(the ball's soft floor shadow, at most 0.45, stays out); the box is the mask's
extent. The passing distractor shape, and a scene's silent bystander (an object of
another class in the other half of the frame), get the same treatment, minus what
the object hides; both are stored as `distractor_boxes`.

`video_annotation(plan)` gives one video's entry of the l3-boxes format
(`l3.eval.localization_io`); `write_objects(root, plans)` writes
`root/objects.json` for the given videos (the corpus writes it for the test and scene
splits).
"""

from typing import Dict, Sequence

import numpy as np

from l3.demo.corpus.plan import VideoPlan
from l3.demo.corpus.render import (canvas_margin, draw_bystander, draw_distractor, draw_object,
                                   frame_offsets)
from l3.eval import localization_io

OBJECTS_NAME = "objects.json"
OBJECT_SPLITS = ("test", "scene")
COVERAGE_THRESHOLD = 0.5


def _coverage(draw, plan: VideoPlan, t: float, offset) -> np.ndarray:
    """float32 [H, W]: coverage of what `draw(img, plan, t, margin)` paints, in the frame."""
    h, w = plan.size
    m = canvas_margin(plan)
    black = np.zeros((h + 2 * m, w + 2 * m, 3), np.float32)
    white = np.ones_like(black)
    draw(black, plan, t, m)
    draw(white, plan, t, m)
    oy, ox = offset
    cover = 1.0 - (white - black).max(-1)
    return np.clip(cover[oy:oy + h, ox:ox + w], 0.0, 1.0)


def object_coverage(plan: VideoPlan, k: int) -> np.ndarray:
    """float32 [H, W] in [0, 1]: how much of each pixel of frame k the object covers."""
    return _coverage(draw_object, plan, k / plan.fps, frame_offsets(plan)[k])


def _box(mask: np.ndarray) -> list:
    """[x1, y1, x2, y2] normalised, covering the mask's pixels (x2, y2 exclusive); [] if empty."""
    ys, xs = np.nonzero(mask)
    if not len(ys):
        return []
    h, w = mask.shape
    return [round(float(xs.min()) / w, 5), round(float(ys.min()) / h, 5),
            round(float(xs.max() + 1) / w, 5), round(float(ys.max() + 1) / h, 5)]


def video_annotation(plan: VideoPlan) -> dict:
    """One video's entry of the l3-boxes format: per frame its time, the object's box and
    mask (COCO RLE at the video's size) and the visible part of the distractor, if any."""
    offsets = frame_offsets(plan)
    # A video has at most one distractor: a scene's bystander (scenes have no passing
    # shape), or the passing shape.
    other = (draw_bystander if plan.nuisance.get("scene") is not None
             else draw_distractor if plan.nuisance["distractor"] is not None else None)
    frames = []
    for k, offset in enumerate(offsets):
        t = k / plan.fps
        obj = _coverage(draw_object, plan, t, offset) >= COVERAGE_THRESHOLD
        box = _box(obj)
        frame = {"time": round(t, 6), "boxes": [box] if box else [],
                 "mask": localization_io.rle_encode(obj), "area": round(float(obj.mean()), 5)}
        if other is not None:
            dis = (_coverage(other, plan, t, offset) >= COVERAGE_THRESHOLD) & ~obj
            frame["distractor_boxes"] = [_box(dis)] if dis.any() else []
        frames.append(frame)
    meta = plan.meta()
    keep = ("label", "split", "sound_related", "soundtrack", "offscreen", "silent_gaps",
            "distractor_object", "scene", "width", "height", "fps")
    return {**{k: meta[k] for k in keep}, "frames": frames}


def write_objects(path, plans: Sequence[VideoPlan]) -> Dict[str, dict]:
    """Writes the l3-boxes file of `plans` to `path` (atomically); returns its "videos"."""
    videos = {plan.video_id: video_annotation(plan) for plan in plans}
    localization_io.write_truth(str(path), videos)
    return videos
