"""Localization items: annotated frames of held-out records, each with its sound and truth.

`read_items(pattern, preset, truth)` walks the records (`l3.eval.analysis.data.read_records`)
whose video_id has an entry in `truth` (`localization_io.read_truth`), and for up to
`frames_per_video` frames per video (equally spaced among the frames whose centred 1-s
clip fits in the audio and that have an annotated frame within `tolerance` seconds;
VGG-SS: the frame nearest the middle of the audio) returns:

  images     float32 [n, S, S, 3] in [0, 1]: the network's view of the frame
  display    uint8 [n, 224, 224, 3]: the same view at the evaluation size, for figures
  waveforms  float32 [n, N]: the 1 s of audio centred on the frame, at the preset's rate
  gt         uint8 [n, 224, 224]: the ground-truth map in the view (`localization_io`)
  boxes, distractor_boxes: per item [k, 4], normalised to the view
  video_ids, times, labels, cases (per item, see `item_cases`)

`read_media_items(media_dir, preset, truth)` reads the same from a folder in the layout
of the VGG-SS and Flickr-SoundNet test sets EZ-VSL reads (frames/<id>.jpg, audio/<id>.wav);
the truth comes from an l3-boxes file or vggss.json (Flickr-SoundNet's per-image XML
annotations are not read: convert them to l3-boxes).

Views: "squeeze" (default; the literature's: the whole frame resized to S x S, boxes
scaled with it, as EZ-VSL resizes test frames to 224 x 224) or "center_crop" (the
network's evaluation view, `l3.ops.image.eval_image`: smaller side to the preset's
resize side, central S x S; boxes clipped to it, items whose object falls outside skipped).
"""

import dataclasses
import os
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf
from PIL import Image

from l3.core import constants as C
from l3.core import errors
from l3.core.presets import Preset
from l3 import media
from l3.eval import localization_io as lio
from l3.eval.analysis import data
from l3.ops import image as image_lib
from l3.records import schema as records

VIEWS = ("squeeze", "center_crop")
GT_KINDS = ("box", "mask")
CASES = ("clean", "distractor_visible", "offscreen_sound", "silent_gap", "unrelated_sound")
DISPLAY_SIZE = lio.EVAL_SIZE


@dataclasses.dataclass
class LocalizationItems:
    """See the module docstring for shapes."""

    images: np.ndarray
    display: np.ndarray
    waveforms: np.ndarray
    gt: np.ndarray
    boxes: List[np.ndarray]
    distractor_boxes: List[np.ndarray]
    video_ids: List[str]
    times: np.ndarray
    labels: List[str]
    cases: List[Tuple[str, ...]]
    skipped: Dict[str, int]

    def __len__(self) -> int:
        return len(self.video_ids)


def item_cases(attributes: dict, distractor_boxes: np.ndarray, time: float,
               clip_seconds: float) -> Tuple[str, ...]:
    """What could mislead a localizer on this item, from the truth file's optional fields:
    "unrelated_sound" (the video's sound is not its object's), "offscreen_sound" or
    "silent_gap" (one overlaps the clip [t - c/2, t + c/2]), "distractor_visible" (a
    distractor box in the view); "clean" if none. () when the file says nothing of these."""
    known = {"sound_related", "offscreen", "silent_gaps"} & set(attributes)
    if not known and not len(distractor_boxes):
        return ()
    lo, hi = time - clip_seconds / 2, time + clip_seconds / 2
    cases = []
    if len(distractor_boxes):
        cases.append("distractor_visible")
    if any(o["start"] < hi and o["end"] > lo for o in attributes.get("offscreen") or ()):
        cases.append("offscreen_sound")
    if any(a < hi and b > lo for a, b in attributes.get("silent_gaps") or ()):
        cases.append("silent_gap")
    if attributes.get("sound_related") is False:
        cases.append("unrelated_sound")
    return tuple(cases) or ("clean",)


def _view(frame: tf.Tensor, preset: Preset, view: str):
    """(network input float32 [S, S, 3], display uint8 [224, 224, 3], window (x1, y1, x2, y2))."""
    s = preset.image_size
    if view == "squeeze":
        full = image_lib.to_float(frame)
        image = tf.image.resize(full, [s, s], method="bilinear", antialias=True)
        shown = tf.image.resize(full, [DISPLAY_SIZE] * 2, method="bilinear", antialias=True)
        window = (0.0, 0.0, 1.0, 1.0)
    else:
        resized = image_lib.resize_smaller_side(frame, preset.resize_side)
        h, w = (int(x) for x in resized.shape[:2])
        top, left = (h - s) // 2, (w - s) // 2
        image = image_lib.center_crop(resized, s)
        shown = tf.image.resize(image, [DISPLAY_SIZE] * 2, method="bilinear")
        window = (left / w, top / h, (left + s) / w, (top + s) / h)
    display = tf.cast(tf.round(tf.clip_by_value(shown, 0, 1) * 255), tf.uint8)
    return image.numpy(), display.numpy(), window


def _chosen_frames(ftimes, start, seconds, video: lio.VideoTruth, frames_per_video: int,
                   tolerance: float, clip_seconds: float):
    """[(frame index, FrameTruth)] for one record (module docstring)."""
    candidates = data.frame_times_for_items(ftimes, start, seconds, len(ftimes), clip_seconds)
    if all(f.time is None for f in video.frames):   # VGG-SS: the frame nearest the middle
        middle = start + seconds / 2
        i = min(candidates, key=lambda j: abs(ftimes[j] - middle))
        return [(i, video.frames[0])]
    annotated = [(i, video.at(ftimes[i], tolerance)) for i in candidates]
    annotated = [(i, f) for i, f in annotated if f is not None]
    k = min(frames_per_video, len(annotated))
    picks = np.floor((np.arange(k) + 0.5) * len(annotated) / k).astype(int) if k else []
    return [annotated[p] for p in picks]


class _Collector:
    """Accumulates items (view, truth map, sound, cases) from frames and their audio."""

    def __init__(self, preset: Preset, view: str, gt: str, eval_size: int, truth_name: str):
        if view not in VIEWS or gt not in GT_KINDS:
            raise errors.UsageError(f"view must be one of {VIEWS} and gt one of {GT_KINDS}")
        self.preset, self.view, self.gt, self.eval_size = preset, view, gt, eval_size
        self.truth_name = truth_name
        self.margin = data.clip_margin(preset)
        self.clip_48k = preset.clip_samples * preset.decimation
        self.out = {k: [] for k in ("images", "display", "waves", "gt", "boxes", "distractor_boxes",
                                    "video_ids", "times", "labels", "cases")}
        self.skipped = {"records_without_truth": 0, "frames_without_truth": 0,
                        "object_out_of_view": 0, "frames_that_do_not_decode": 0}

    def __len__(self) -> int:
        return len(self.out["times"])

    def add(self, frame, audio: np.ndarray, audio_start: float, time: float,
            frame_truth: lio.FrameTruth, video: lio.VideoTruth, vid: str, label: str) -> None:
        """frame uint8 [h, w, 3]; audio 48 kHz mono on the clock of `time` from `audio_start`."""
        image, display, window = _view(frame, self.preset, self.view)
        boxes = lio.crop_boxes(frame_truth.boxes, window)
        if not len(boxes):
            self.skipped["object_out_of_view"] += 1
            return
        if self.gt == "mask":
            if frame_truth.mask is None:
                raise errors.UsageError(f"{self.truth_name}: video {vid!r} at {time:.2f} s has "
                                        "no \"mask\" (use gt=box)")
            gt_map = lio.mask_map(frame_truth.mask, self.eval_size, window)
        elif frame_truth.consensus:
            gt_map = lio.consensus_map(boxes, self.eval_size)
        else:
            gt_map = lio.box_map(boxes, self.eval_size)
        distractors = lio.crop_boxes(frame_truth.distractor_boxes, window)
        out = self.out
        out["images"].append(image)
        out["display"].append(display)
        out["waves"].append(data.clip_audio(audio, audio_start, time, C.SAMPLE_RATE,
                                            self.clip_48k, self.margin))
        out["gt"].append(gt_map.astype(np.float16 if frame_truth.consensus else np.uint8))
        out["boxes"].append(boxes)
        out["distractor_boxes"].append(distractors)
        out["video_ids"].append(vid)
        out["times"].append(float(time))
        out["labels"].append(label or video.attributes.get("label", ""))
        out["cases"].append(item_cases(video.attributes, distractors, float(time),
                                       self.preset.clip_seconds))

    def items(self, where: str, tolerance: float) -> LocalizationItems:
        out = self.out
        if not out["times"]:
            raise errors.UsageError(f"no annotated frame of {where} lies within {tolerance} s of "
                                    f"a frame time in {self.truth_name}, inside the view "
                                    f"({self.skipped})")
        return LocalizationItems(
            images=np.stack(out["images"]).astype(np.float32), display=np.stack(out["display"]),
            waveforms=data.to_preset_rate(np.stack(out["waves"]), self.preset),
            gt=np.stack(out["gt"]), boxes=out["boxes"], distractor_boxes=out["distractor_boxes"],
            video_ids=out["video_ids"], times=np.asarray(out["times"]), labels=out["labels"],
            cases=out["cases"], skipped=self.skipped)


def read_items(pattern: str, preset: Preset, truth: Dict[str, lio.VideoTruth], *,
               frames_per_video: int = 1, view: str = "squeeze", gt: str = "box",
               tolerance: float = 0.1, max_items: Optional[int] = None,
               eval_size: int = lio.EVAL_SIZE, truth_name: str = "the box file") -> LocalizationItems:
    """Annotated items of the records matching `pattern` (module docstring).

    Raises UsageError when no record has an entry in `truth` (naming an id of each),
    or when no annotated frame remains.
    """
    items = _Collector(preset, view, gt, eval_size, truth_name)
    seen_ids: List[str] = []
    decode = data.FrameDecoder()
    for rec in data.read_records(pattern):
        vid = rec[records.VIDEO_ID].decode()
        seen_ids.append(vid)
        video = lio.match_video(truth, vid)
        if video is None:
            items.skipped["records_without_truth"] += 1
            continue
        audio, rate = rec[records.AUDIO], int(rec[records.SAMPLE_RATE])
        if rate != C.SAMPLE_RATE:
            raise errors.UsageError(f"record {vid!r} has audio at {rate} Hz; the schema stores "
                                    f"{C.SAMPLE_RATE} Hz")
        start = float(rec[records.AUDIO_START])
        ftimes = np.asarray(rec[records.FRAME_TIMES], np.float64)
        chosen = _chosen_frames(ftimes, start, len(audio) / rate, video, frames_per_video,
                                tolerance, preset.clip_seconds)
        if not chosen:
            items.skipped["frames_without_truth"] += 1
        for i, frame_truth in chosen:
            frame = decode(rec, i)
            if frame is None:
                items.skipped["frames_that_do_not_decode"] += 1
                continue
            items.add(frame, audio, start, ftimes[i], frame_truth, video, vid,
                      rec[records.LABEL].decode())
            if max_items is not None and len(items) >= max_items:
                break
        if max_items is not None and len(items) >= max_items:
            break
    if len(seen_ids) == items.skipped["records_without_truth"]:
        example = next(iter(truth), None)
        raise errors.UsageError(
            f"none of the {len(seen_ids)} video ids in {pattern} is in {truth_name} "
            f"(records e.g. {seen_ids[0] if seen_ids else None!r}, boxes e.g. {example!r})")
    return items.items(pattern, tolerance)


AUDIO_SUFFIXES = (".wav", ".flac", ".mp3", ".ogg", ".m4a")


def read_media_items(media_dir: str, preset: Preset, truth: Dict[str, lio.VideoTruth], *,
                     view: str = "squeeze", gt: str = "box", max_items: Optional[int] = None,
                     eval_size: int = lio.EVAL_SIZE,
                     truth_name: str = "the box file") -> LocalizationItems:
    """Items of a folder in the VGG-SS / Flickr-SoundNet test layout EZ-VSL reads:
    media_dir/frames/<id>.jpg (the annotated frame) and media_dir/audio/<id>.wav (or
    .flac, .mp3, ...), for every id of `truth` with both files, in sorted id order. The
    1 s of audio is centred on the annotated frame's time, or on the middle of the audio
    when the truth gives none (VGG-SS: the frame is the clip's middle one). Audio is
    decoded to 48 kHz mono, then brought to the preset's rate like the records'.

    Ids of `truth` without both files are counted in skipped["ids_without_media"].
    Raises MissingInputError when frames/ or audio/ is missing, UsageError when no id
    has both files or a frame or sound cannot be read (naming the file).
    """
    frames_dir, audio_dir = os.path.join(media_dir, "frames"), os.path.join(media_dir, "audio")
    for d in (frames_dir, audio_dir):
        if not os.path.isdir(d):
            raise errors.MissingInputError(f"{d} does not exist (expected {media_dir}/frames/<id>.jpg "
                                           f"and {media_dir}/audio/<id>.wav)")
    items = _Collector(preset, view, gt, eval_size, truth_name)
    items.skipped = {"ids_without_media": 0, "object_out_of_view": 0}
    for vid in sorted(truth):
        frame_path = os.path.join(frames_dir, vid + ".jpg")
        audio_path = next((os.path.join(audio_dir, vid + s) for s in AUDIO_SUFFIXES
                           if os.path.exists(os.path.join(audio_dir, vid + s))), None)
        if not os.path.exists(frame_path) or audio_path is None:
            items.skipped["ids_without_media"] += 1
            continue
        frame, (audio, start) = _read_frame(frame_path), _read_audio(audio_path)
        video = truth[vid]
        frame_truth = video.frames[0]
        time = frame_truth.time if frame_truth.time is not None else start + len(audio) / C.SAMPLE_RATE / 2
        items.add(frame, audio, start, time, frame_truth, video, vid, "")
        if max_items is not None and len(items) >= max_items:
            break
    if items.skipped["ids_without_media"] == len(truth):
        raise errors.UsageError(f"none of the {len(truth)} ids in {truth_name} has both "
                                f"{frames_dir}/<id>.jpg and {audio_dir}/<id>.wav")
    return items.items(media_dir, 0.0)


def _read_frame(path: str) -> np.ndarray:
    """uint8 [h, w, 3] of an image file; a UsageError naming it if it cannot be read."""
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except (OSError, ValueError) as e:
        raise errors.UsageError(f"cannot read the frame {path}: {e}") from e


def _read_audio(path: str):
    """(float32 mono [samples] at 48 kHz, start seconds); a UsageError naming the file."""
    try:
        return media.decode_audio(path, sample_rate=C.SAMPLE_RATE)
    except media.MediaError as e:
        raise errors.UsageError(f"cannot read the sound {path}: {e}") from e


def case_index(cases: Sequence[Tuple[str, ...]]) -> Dict[str, np.ndarray]:
    """{case: indices of the items in it}, for the cases that occur, in CASES order."""
    return {c: np.array([i for i, cs in enumerate(cases) if c in cs], np.int64)
            for c in CASES if any(c in cs for cs in cases)}
