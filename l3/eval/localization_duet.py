"""Two-source scenes ("duets"): which of two objects is sounding.

A frame with one object near its centre cannot show whether a heatmap follows the sound:
the demo corpus draws each object's centre within 12 % of the width and 10 % of the
height of the frame's centre, and there a centred Gaussian beats every map on cIoU@0.5
(WORKSPACE_NOTES, "Cross-modal retrieval and sound-source localization"). Multi-source
localization benchmarks put frames of different videos together (e.g. the MUSIC-Synthetic
set of DSOL, Hu et al., NeurIPS 2020: solo frames in a 2 x 2 grid); here two frames side
by side with the sound of one: the sound decides where the source is, and neither a
centre prior nor a sound-free map can know.

`make_duets(items, seed)`: for item i, a partner j of another label (of another video
when the items have no labels), and a fair coin for i's side (both from `seed`); the
sound is i's:

  images        float32 [n, S, 2S, 3]: the two network views side by side (the vision
                trunk is convolutional up to conv4_2 and runs on it at its own scale);
                this and the next three are `SideBySide`, made row by row when indexed
  display       uint8 [n, E, 2E, 3] (E = 224, the evaluation size of one frame)
  gt            uint8 [n, E, 2E]: the sounding frame, i.e. i's half of the composite
  gt_box        i's own truth map (`localization_data`), in its half
  boxes         per item [k, 4]: i's boxes, normalised to the composite
  partner_boxes per item [k, 4]: j's boxes (the silent object), normalised likewise
  left          bool [n]: i's frame on the left
  item, partner int [n]: i and j, indices into the items (items without a partner are left out)

Scored with the single-frame rule unchanged (`localization.ciou`: the min-max normalised
map, the pixels >= its median, i.e. half of the composite, one frame's worth). With `gt`
the sounding frame, a share x of the composite predicted inside it gives cIoU
x / (1 - x): >= 0.5 when the map's top half holds two thirds of the sounding frame;
a map the same on both frames (the centre prior, an untrained network on average) gets
1/3. Against `gt_box` (one object, at most ~1/5 of the composite on the demo) cIoU
stays below 0.5 whatever the map, so only its AUC and mean cIoU say anything.

Rows (`score_duets`): trained (own sound), trained_partner_sound (the partner's
sound, the other frame's: a map that follows the sound moves to the other half),
untrained, unconditioned (the sound-free mean of conv4_2), center_prior (the
single-frame centred Gaussian in each frame).
"""

import dataclasses
from typing import Dict, List, Optional

import numpy as np

from l3.eval import localization as loc

ROWS = ("trained", "trained_partner_sound", "untrained", "unconditioned", "center_prior")
PROTOCOL = ("duets: item i's frame beside a frame of another label (side by a fair coin), "
            "i's sound; EZ-VSL cIoU on the composite, truth = i's frame (rows) or its "
            "object's box (rows_box)")


class SideBySide:
    """A lazy array [n, H, 2W, ...]: row k is a[ia[k]] beside b[ib[k]], a on the left where
    left[k]. Rows are made when indexed (an int, a slice, a list or an index array), so
    the composites of thousands of items never sit in memory at once."""

    def __init__(self, a: np.ndarray, ia, b: np.ndarray, ib, left):
        self.a, self.b = a, b
        self.ia, self.ib, self.left = np.asarray(ia), np.asarray(ib), np.asarray(left, bool)

    def __len__(self) -> int:
        return len(self.left)

    @property
    def shape(self):
        return (len(self), self.a.shape[1], 2 * self.a.shape[2]) + tuple(self.a.shape[3:])

    def __getitem__(self, k):
        rows = np.arange(len(self))[k]
        many = np.atleast_1d(rows)
        out = _side_by_side(self.a[self.ia[many]], self.b[self.ib[many]], self.left[many])
        return out if np.ndim(rows) else out[0]


@dataclasses.dataclass
class Duets:
    """See the module docstring for shapes (images, display, gt, gt_box: `SideBySide`)."""

    images: SideBySide
    display: SideBySide
    gt: SideBySide
    gt_box: SideBySide
    boxes: List[np.ndarray]
    partner_boxes: List[np.ndarray]
    left: np.ndarray
    item: np.ndarray
    partner: np.ndarray

    def __len__(self) -> int:
        return len(self.left)


def partners(labels, video_ids, seed: int) -> np.ndarray:
    """int [n]: for each item, a random item of another label (another video where every
    label is the same or missing); -1 where there is none."""
    rng = np.random.default_rng(seed)
    labels, video_ids = np.asarray(labels, object), np.asarray(video_ids, object)
    key = labels if len(set(labels.tolist()) - {""}) > 1 else video_ids
    out = np.full(len(key), -1, np.int64)
    for i in range(len(key)):
        others = np.flatnonzero(key != key[i])
        if len(others):
            out[i] = rng.choice(others)
    return out


def _side_by_side(a: np.ndarray, b: np.ndarray, left: np.ndarray) -> np.ndarray:
    """[n, H, W, ...] twice -> [n, H, 2W, ...]: a on the left where `left`, else on the right."""
    shape = (-1,) + (1,) * (a.ndim - 1)
    pair = np.concatenate([a, b], axis=2), np.concatenate([b, a], axis=2)
    return np.where(left.reshape(shape), *pair)


def _to_composite(boxes: np.ndarray, on_left: bool) -> np.ndarray:
    """Boxes [k, 4] (x1, y1, x2, y2) normalised to one frame -> normalised to the composite."""
    out = np.array(boxes, np.float64).reshape(-1, 4)
    out[:, [0, 2]] = out[:, [0, 2]] / 2 + (0 if on_left else 0.5)
    return out


def make_duets(items, seed: int = 0) -> Optional[Duets]:
    """Duets of `localization_data.LocalizationItems` (module docstring); None when no item
    has a partner (one label and one video)."""
    partner = partners(items.labels, items.video_ids, seed)
    keep = partner >= 0
    if not keep.any():
        return None
    idx, partner = np.flatnonzero(keep), partner[keep]
    left = np.random.default_rng([seed, 1]).random(len(idx)) < 0.5
    zero = np.zeros(len(idx), np.int64)
    one_frame = np.ones((1,) + items.gt.shape[1:], items.gt.dtype)
    return Duets(
        images=SideBySide(items.images, idx, items.images, partner, left),
        display=SideBySide(items.display, idx, items.display, partner, left),
        gt=SideBySide(one_frame, zero, 0 * one_frame, zero, left),
        gt_box=SideBySide(items.gt, idx, 0 * one_frame, zero, left),
        boxes=[_to_composite(items.boxes[i], lf) for i, lf in zip(idx, left)],
        partner_boxes=[_to_composite(items.boxes[j], not lf) for j, lf in zip(partner, left)],
        left=left, item=idx, partner=partner)


def center_prior(size: int = loc.EVAL_SIZE) -> np.ndarray:
    """The single-frame centre prior in each frame: float64 [size, 2 size]."""
    one = loc.center_prior(size)
    return np.concatenate([one, one], axis=1)


def score_duets(duets: Duets, heat: Dict[str, np.ndarray]) -> Dict:
    """cIoU rows of heatmaps {row: [n, h, w]} on the duets (the centre prior added here):
    {"rows": against the sounding frame, "rows_box": against its object's box,
    "cious": {row: float [n]} against the frame}."""
    n, height, width = duets.gt.shape
    prior = center_prior(height)
    names = list(heat) + ["center_prior"]
    cious = {name: np.zeros(n) for name in names}
    cious_box = {name: np.zeros(n) for name in names}
    for k in range(n):
        gt, gt_box = duets.gt[k], duets.gt_box[k]
        maps = {name: loc.upsample(m[k], (height, width)) for name, m in heat.items()}
        for name, up in dict(maps, center_prior=prior).items():
            cious[name][k], cious_box[name][k] = loc.ciou(up, gt), loc.ciou(up, gt_box)
    order = [r for r in ROWS if r in cious]
    return {"rows": {r: loc.summarize(cious[r]) for r in order},
            "rows_box": {r: loc.summarize(cious_box[r]) for r in order},
            "cious": {r: cious[r] for r in order}}
