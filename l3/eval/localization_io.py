"""Where the sounding objects are: the box files `l3-localize` reads, and ground-truth maps.

Two inputs, both read by `read_truth(path)` (the format is recognised by its top level):

1. **l3 boxes** (`FORMAT` = "l3-boxes/1"; the demo corpus writes one, `objects.json`;
   `l3-build-tfrecords --boxes` copies the entries of the videos it wrote beside the shards)::

     {"format": "l3-boxes/1",
      "videos": {
        "<video_id>": {                        # the records' video_id
          "frames": [
            {"time": 1.25,                     # seconds, on the records' clock (frame_times);
                                               # null: the frame nearest the audio's middle
             "boxes": [[x1, y1, x2, y2], ...], # the sounding object(s), normalised to [0, 1]
                                               # of the whole frame: x right, y down, x2 > x1
             "mask": {"size": [h, w], "counts": [...]},   # optional: COCO uncompressed RLE
             "distractor_boxes": [[...]]},     # optional: visible things that make no sound
            ...],
          # optional, per video (the demo corpus writes them; used to split the report):
          "label": "dog", "split": "test", "sound_related": true,
          "offscreen": [{"kind": "horn", "start": 0.4, "end": 1.2}],   # seconds
          "silent_gaps": [[2.1, 2.6]]}}}

   A frame with an empty "boxes" list (object out of view) is skipped by the metrics.

2. **VGG-SS** (Chen et al., "Localizing Visual Sounds the Hard Way", CVPR 2021; the
   file EZ-VSL reads as metadata/vggss.json): a JSON list of
   ``{"file": "<youtube_id>_<start:06d>", "class": "...", "bbox": [[x1, y1, x2, y2], ...]}``
   with coordinates normalised to [0, 1]. It annotates the middle frame of each
   10-s clip and names no time: `time` is None here, and the reader takes the frame
   nearest the middle of the record's audio. A VGG-SS "file" id also matches a
   Kinetics-style record id that extends it (`<file>_<end:06d>`).

3. **Flickr-SoundNet** (Senocak et al., CVPR 2018; the test set's Annotations/ folder
   EZ-VSL reads): a folder of ``<id>.xml`` files, one per annotated image, each holding
   the boxes of its annotators as ``<bbox>`` elements whose children after the first
   are xmin, ymin, xmax, ymax in pixels of the 256 x 256 image. Like VGG-SS, one
   timeless frame per id.

Ground-truth maps follow EZ-VSL's `bbox2gtmap` (datasets.py): at the evaluation size
(224), each box becomes ``int(clip(coord, 0, 1) * size)`` and fills
``[ymin:ymax, xmin:xmax]``; VGG-SS takes the union of its boxes; Flickr-SoundNet the
annotators' consensus (the boxes' maps summed, halved, clipped to 1: a pixel two
annotators marked counts 1, one annotator 0.5). A mask is resized to the evaluation size
by nearest neighbour.

numpy and json only: the corpus (`l3.demo.corpus`) writes this format without TensorFlow.
"""

import dataclasses
import json
import os
from typing import Dict, List, Optional, Sequence

import numpy as np

from l3.core import errors

FORMAT = "l3-boxes/1"
VGGSS = "vggss"
FLICKR_SIZE = 256  # Flickr-SoundNet's annotations are pixels of a 256 x 256 image
EVAL_SIZE = 224   # EZ-VSL's evaluation resolution


@dataclasses.dataclass
class FrameTruth:
    """One annotated frame: boxes float [k, 4] (x1, y1, x2, y2 in [0, 1]), time (s or None)."""

    time: Optional[float]
    boxes: np.ndarray
    mask: Optional[dict] = None              # COCO uncompressed RLE, see rle_decode
    distractor_boxes: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros((0, 4)))
    consensus: bool = False                  # several annotators' boxes: `consensus_map`


@dataclasses.dataclass
class VideoTruth:
    """The annotated frames of one video (sorted by time) and its optional attributes."""

    video_id: str
    frames: List[FrameTruth]
    attributes: dict = dataclasses.field(default_factory=dict)

    def at(self, time: float, tolerance: float) -> Optional[FrameTruth]:
        """The annotated frame nearest `time` within `tolerance` seconds; VGG-SS's timeless one."""
        timed = [f for f in self.frames if f.time is not None]
        if not timed:
            return self.frames[0] if self.frames else None
        best = min(timed, key=lambda f: abs(f.time - time))
        return best if abs(best.time - time) <= tolerance + 1e-9 else None


# --- reading -------------------------------------------------------------------------

def _boxes(value, where: str) -> np.ndarray:
    """float [k, 4] from a JSON list of [x1, y1, x2, y2] (None or [] -> [0, 4])."""
    try:
        arr = np.asarray(value if value is not None else [], np.float64)
    except (TypeError, ValueError):
        arr = np.zeros((1, 0))
    if arr.size == 0 and arr.ndim <= 2:
        return np.zeros((0, 4))
    if arr.ndim != 2 or arr.shape[1] != 4 or not np.all(np.isfinite(arr)):
        raise errors.UsageError(f"{where}: boxes must be [[x1, y1, x2, y2], ...]")
    if np.any(arr[:, 2] < arr[:, 0]) or np.any(arr[:, 3] < arr[:, 1]):
        raise errors.UsageError(f"{where}: a box has x2 < x1 or y2 < y1")
    return arr


def _read_l3(doc: dict, path: str) -> Dict[str, VideoTruth]:
    videos = doc.get("videos")
    if not isinstance(videos, dict):
        raise errors.UsageError(f"{path}: no \"videos\" object ({FORMAT})")
    out = {}
    for vid, entry in videos.items():
        frames = []
        for i, f in enumerate(entry.get("frames") or []):
            where = f"{path}: video {vid!r} frame {i}"
            if "boxes" not in f or "time" not in f:
                raise errors.UsageError(f"{where} has no \"boxes\" or \"time\"")
            time = None if f["time"] is None else float(f["time"])
            frames.append(FrameTruth(time=time, boxes=_boxes(f["boxes"], where),
                                     mask=f.get("mask"),
                                     distractor_boxes=_boxes(f.get("distractor_boxes"), where)))
        frames.sort(key=lambda f: -1.0 if f.time is None else f.time)
        out[vid] = VideoTruth(vid, frames, {k: v for k, v in entry.items() if k != "frames"})
    return out


def _read_vggss(doc: list, path: str) -> Dict[str, VideoTruth]:
    out = {}
    for i, entry in enumerate(doc):
        if not isinstance(entry, dict) or "file" not in entry or "bbox" not in entry:
            raise errors.UsageError(f"{path}: entry {i} has no \"file\" or \"bbox\" (VGG-SS format)")
        where = f"{path}: {entry['file']!r}"
        boxes = np.clip(_boxes(entry["bbox"], where), 0.0, 1.0)
        out[str(entry["file"])] = VideoTruth(str(entry["file"]), [FrameTruth(None, boxes)],
                                             {"label": entry.get("class", "")})
    return out


def _read_flickr(folder: str) -> Dict[str, VideoTruth]:
    import xml.etree.ElementTree as ET  # noqa: PLC0415 (only for this format)

    names = sorted(n for n in os.listdir(folder) if n.endswith(".xml"))
    if not names:
        raise errors.UsageError(f"{folder}: a folder, but no <id>.xml annotation in it "
                                "(Flickr-SoundNet's Annotations/)")
    out = {}
    for name in names:
        path = os.path.join(folder, name)
        try:
            root = ET.parse(path).getroot()
            boxes = [[float(c.text) for c in list(box)[1:5]] for box in root.iter("bbox")]
        except (ET.ParseError, TypeError, ValueError) as e:
            raise errors.UsageError(f"{path}: not a Flickr-SoundNet annotation ({e})") from None
        vid = name[:-len(".xml")]
        arr = _boxes(boxes, path) / FLICKR_SIZE if boxes else np.zeros((0, 4))
        out[vid] = VideoTruth(vid, [FrameTruth(None, np.clip(arr, 0.0, 1.0), consensus=True)])
    return out


def read_truth(path: str) -> Dict[str, VideoTruth]:
    """{video_id: VideoTruth} from an l3-boxes file, VGG-SS's annotation list or
    Flickr-SoundNet's annotation folder.

    Raises MissingInputError (nothing there) or UsageError (not one of the formats),
    naming `path`.
    """
    if os.path.isdir(path):
        return _read_flickr(path)
    if not os.path.isfile(path):
        raise errors.MissingInputError(f"{path} does not exist")
    try:
        with open(path) as f:
            doc = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise errors.UsageError(f"{path} is not JSON ({e})") from None
    if isinstance(doc, list):
        return _read_vggss(doc, path)
    if isinstance(doc, dict) and doc.get("format") == FORMAT:
        return _read_l3(doc, path)
    raise errors.UsageError(f"{path}: neither {FORMAT!r} (an object with \"format\") nor a "
                            "VGG-SS annotation list")


def match_video(truth: Dict[str, VideoTruth], video_id: str) -> Optional[VideoTruth]:
    """The truth of a record's `video_id`: exact, or a VGG-SS id it extends (`<id>_<end>`)."""
    if video_id in truth:
        return truth[video_id]
    head, _, tail = video_id.rpartition("_")
    return truth.get(head) if head and tail.isdigit() else None


def write_truth(path: str, videos: Dict[str, dict]) -> None:
    """Writes an l3-boxes file atomically; `videos` is the "videos" object (plain JSON)."""
    from l3.core import fileio  # noqa: PLC0415 (keeps the reader importable alone)
    with fileio.atomic_write(path, "w") as f:
        json.dump({"format": FORMAT, "videos": videos}, f, separators=(",", ":"))


# --- masks: COCO uncompressed RLE ----------------------------------------------------

def rle_encode(mask: np.ndarray) -> dict:
    """bool [h, w] -> {"size": [h, w], "counts": [...]}: COCO's uncompressed RLE.

    Runs of the column-major (Fortran-order) flattening, alternating 0s and 1s,
    starting with the number of 0s (possibly 0).
    """
    mask = np.asarray(mask, bool)
    flat = mask.ravel(order="F").astype(np.int8)
    change = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat.size and flat[0]:
        counts = [0] + counts
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": [int(c) for c in counts]}


def rle_decode(rle: dict) -> np.ndarray:
    """COCO uncompressed RLE -> bool [h, w]."""
    h, w = (int(x) for x in rle["size"])
    counts = np.asarray(rle["counts"], np.int64)
    if counts.sum() != h * w:
        raise errors.UsageError(f"RLE counts sum to {counts.sum()}, not {h} x {w}")
    values = np.arange(len(counts)) % 2 == 1
    return np.repeat(values, counts).reshape((h, w), order="F")


# --- ground-truth maps ----------------------------------------------------------------

def box_map(boxes: np.ndarray, size: int = EVAL_SIZE) -> np.ndarray:
    """float [size, size] in {0, 1}: the union of `boxes` (normalised), as EZ-VSL's
    bbox2gtmap for VGG-SS: int(clip(coord, 0, 1) * size), filling [ymin:ymax, xmin:xmax]."""
    out = np.zeros((size, size))
    for x1, y1, x2, y2 in (np.clip(np.asarray(boxes, np.float64), 0, 1) * size).astype(int):
        out[y1:y2, x1:x2] = 1
    return out


def consensus_map(boxes: np.ndarray, size: int = EVAL_SIZE) -> np.ndarray:
    """float [size, size] in {0, 0.5, 1}: several annotators' `boxes` (normalised), as
    EZ-VSL's bbox2gtmap for Flickr-SoundNet: each box's map (as `box_map`) summed,
    halved, clipped to 1."""
    out = np.zeros((size, size))
    for box in np.asarray(boxes, np.float64).reshape(-1, 4):
        out += box_map(box[None], size)
    return np.minimum(out / 2, 1.0)


def mask_map(rle: dict, size: int = EVAL_SIZE, window: Sequence[float] = (0, 0, 1, 1)) -> np.ndarray:
    """float [size, size] in {0, 1}: the RLE mask over `window` (normalised x1, y1, x2, y2 of
    the frame; default all of it), sampled by nearest neighbour at the output pixel centres."""
    mask = rle_decode(rle)
    h, w = mask.shape
    x1, y1, x2, y2 = window
    centres = (np.arange(size) + 0.5) / size
    rows = np.clip(((y1 + centres * (y2 - y1)) * h).astype(int), 0, h - 1)
    cols = np.clip(((x1 + centres * (x2 - x1)) * w).astype(int), 0, w - 1)
    return mask[rows][:, cols].astype(np.float64)


def crop_boxes(boxes: np.ndarray, window: Sequence[float]) -> np.ndarray:
    """Boxes (normalised to the frame) in the coordinates of `window` = (x1, y1, x2, y2),
    a normalised sub-rectangle of the frame; clipped to it, empty ones dropped. [k', 4]."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    x1, y1, x2, y2 = window
    out = np.stack([(boxes[:, 0] - x1) / (x2 - x1), (boxes[:, 1] - y1) / (y2 - y1),
                    (boxes[:, 2] - x1) / (x2 - x1), (boxes[:, 3] - y1) / (y2 - y1)], -1)
    out = np.clip(out, 0, 1)
    return out[(out[:, 2] > out[:, 0]) & (out[:, 3] > out[:, 1])]
