"""Held-out items for the analyses of section 3.5: one frame and the 1 s of audio around it.

The paper ranks and clusters *test videos* (3.5: "the network has not seen the
videos during training"), so an item here is a frame of a labelled video and
the one-second audio clip centred on that frame's timestamp (the positive pair
of the AVC task, read deterministically: no crop jitter, no gain). Records are
read straight from the TFRecord schema (`l3.records`), not through the random
pair sampler, so every run sees the same items.

`load_items(pattern, preset)` returns an `Items` with
  images     float32 [n, S, S, 3] in [0, 1]  (`l3.ops.image.eval_image`: centre crop)
  waveforms  float32 [n, N] at preset.sample_rate (N = preset.clip_samples)
  labels     int32 [n], indices into `class_names` (sorted class names)
and per-item `video_ids` and `times` (the frame's timestamp, seconds).

Memory: the paper preset holds 0.6 MB of image and 0.2 MB of audio per item
(about 1.6 GB for the 2000 items of a Kinetics-Sounds-sized test set).
"""

import dataclasses
import logging
from typing import List, Optional, Sequence

import numpy as np
import tensorflow as tf

from l3.ops import audio as audio_lib
from l3.core import constants as C
from l3.ops import image as image_lib
from l3.core import errors
from l3.records import schema as records
from l3.records import shard_reader
from l3.core.presets import Preset

# Half the length of `l3.ops.audio.decimate`'s FIR, in input samples per unit of
# the factor: reading this much extra audio on each side keeps the filter's
# zero-padding outside the clip.
_DECIMATE_MARGIN_PER_FACTOR = 32


@dataclasses.dataclass
class Items:
    """Labelled held-out (frame, 1 s audio) items. See the module docstring for shapes."""

    images: np.ndarray
    waveforms: np.ndarray
    labels: np.ndarray
    class_names: List[str]
    video_ids: List[str]
    times: np.ndarray
    bad_frames: int = 0        # frames that did not decode, skipped (`FrameDecoder`)

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def label_names(self) -> List[str]:
        return [self.class_names[i] for i in self.labels]

    def class_counts(self) -> dict:
        """{class name: number of items}."""
        counts = np.bincount(self.labels, minlength=len(self.class_names))
        return {name: int(c) for name, c in zip(self.class_names, counts)}

    def subset(self, index: Sequence[int]) -> "Items":
        index = np.asarray(index, np.int64)
        return Items(self.images[index], self.waveforms[index], self.labels[index],
                     list(self.class_names), [self.video_ids[i] for i in index],
                     self.times[index])


def frame_times_for_items(frame_times: np.ndarray, audio_start: float, audio_seconds: float,
                          items_per_video: int, clip_seconds: float = C.CLIP_SECONDS) -> np.ndarray:
    """Indices of the frames to use: equally spaced among the frames whose centred clip
    fits in the audio.

    A frame at t "fits" when [t - clip/2, t + clip/2] lies inside the audio. With one
    item per video that is the middle fitting frame. If no frame fits (audio shorter
    than a clip, or frames outside it) the frames nearest the audio's middle are used
    and the clip is clamped / zero-padded by `clip_audio`.
    """
    half = clip_seconds / 2
    lo, hi = audio_start + half, audio_start + audio_seconds - half
    fits = np.flatnonzero((frame_times >= lo - 1e-6) & (frame_times <= hi + 1e-6))
    if len(fits) == 0:
        middle = audio_start + audio_seconds / 2
        fits = np.argsort(np.abs(frame_times - middle), kind="stable")[:1]
    k = min(items_per_video, len(fits))
    # Centres of k equal parts of the fitting range: the middle one when k == 1.
    picks = np.floor((np.arange(k) + 0.5) * len(fits) / k).astype(int)
    return fits[picks]


def clip_audio(audio: np.ndarray, audio_start: float, t: float, sample_rate: int,
               clip_samples: int, margin: int = 0) -> np.ndarray:
    """The `clip_samples` samples centred on time `t` (clamped into the audio), plus
    `margin` samples each side; zero-padded where the audio runs out. float32 [clip + 2 margin]."""
    start = int(round((t - audio_start) * sample_rate)) - clip_samples // 2
    start = min(max(start, 0), max(len(audio) - clip_samples, 0)) - margin
    out = np.zeros(clip_samples + 2 * margin, np.float32)
    src_lo, src_hi = max(start, 0), min(start + len(out), len(audio))
    if src_hi > src_lo:
        out[src_lo - start:src_hi - start] = audio[src_lo:src_hi]
    return out


def clip_margin(preset: Preset) -> int:
    """Extra 48 kHz samples to read on each side of a clip that `to_preset_rate` decimates."""
    return preset.decimation * _DECIMATE_MARGIN_PER_FACTOR if preset.decimation > 1 else 0


def to_preset_rate(clips: np.ndarray, preset: Preset) -> np.ndarray:
    """48 kHz clips [n, clip_samples * decimation + 2 clip_margin] -> [n, clip_samples] at the
    preset's rate: decimated with the margin, which is then dropped (the FIR sees real audio
    at the edges). Unchanged (float32) for 48 kHz presets."""
    factor = preset.decimation
    clips = np.asarray(clips, np.float32)
    if factor > 1:
        keep = clip_margin(preset) // factor
        clips = audio_lib.decimate(clips, factor).numpy()[:, keep:keep + preset.clip_samples]
    return np.ascontiguousarray(clips, np.float32)


@tf.autograph.experimental.do_not_convert
def read_records(pattern: str):
    """Parsed records (numpy dicts, `l3.records.schema`, plus "shard": its path and
    "record": its index there) of the shards matching `pattern`, interleaved one
    record per shard in turn (up to 64 shards open)."""
    paths = sorted(tf.io.gfile.glob(pattern))
    if not paths:
        raise errors.MissingInputError(f"no files match {pattern!r}")

    def parse(record, path, index):
        return dict(records.parse_example(record), shard=path, record=index)

    ds = tf.data.Dataset.from_tensor_slices(shard_reader.shard_table(paths)).interleave(
        lambda path, size: shard_reader.read_shard_positions(path, size, "skip").map(  # warns,
            lambda record, index, _: (record, path, index)),                            # names it
        cycle_length=min(len(paths), 64), block_length=1,
        num_parallel_calls=1, deterministic=True).map(parse)
    return ds.as_numpy_iterator()


class FrameDecoder:
    """A record's stored frames -> uint8 [H, W, 3], one at a time (eager tools).

    A frame that does not decode (not a JPEG, cut short: a record another tool
    wrote) is skipped as a damaged shard's rest is in these tools: `__call__`
    returns None, `bad` counts it, and the first one is named in a warning (its
    shard, record index, video id and frame index).
    """

    def __init__(self):
        self.bad = 0

    def __call__(self, rec, i: int) -> Optional[tf.Tensor]:
        try:
            return tf.io.decode_jpeg(rec[records.FRAMES][i], channels=3)
        except tf.errors.InvalidArgumentError as e:
            self.bad += 1
            if self.bad == 1:
                logging.warning(
                    "frame %d of video %s (shard %s record %d) does not decode (%s); skipped, "
                    "as are any others (their count is in the summary; l3-verify-tfrecords "
                    "--deep names every one)", i, _text(rec[records.VIDEO_ID]),
                    _text(rec.get("shard", b"?")), int(rec.get("record", -1)),
                    str(e.message).splitlines()[0][:80])
            return None

    def report(self) -> None:
        if self.bad:
            logging.warning("%d frame(s) did not decode and were skipped", self.bad)


def _text(value) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def load_items(pattern: str, preset: Preset, *, max_items: Optional[int] = 2000,
               items_per_video: int = 1, labelled_only: bool = True) -> Items:
    """Reads labelled items from the TFRecord shards matching `pattern`.

    Shards are interleaved (one record from each of up to 64 open shards in turn), so
    a capped read is not dominated by the first shard. Videos with an empty label are
    skipped (they cannot be scored against classes) unless `labelled_only` is False
    (then their items carry the label ""). Raises UsageError if nothing usable is found.
    """
    margin, clip_48k = clip_margin(preset), preset.clip_samples * preset.decimation
    images, waves, names, vids, times = [], [], [], [], []
    skipped = 0
    decode = FrameDecoder()
    for rec in read_records(pattern):
        label = rec[records.LABEL].decode()
        if not label and labelled_only:
            skipped += 1
            continue
        rate = int(rec[records.SAMPLE_RATE])
        if rate != C.SAMPLE_RATE:
            raise ValueError(f"record {rec[records.VIDEO_ID]!r} has audio at {rate} Hz; "
                             f"the schema stores {C.SAMPLE_RATE} Hz")
        audio = rec[records.AUDIO]
        start = float(rec[records.AUDIO_START])
        ftimes = np.asarray(rec[records.FRAME_TIMES], np.float64)
        for i in frame_times_for_items(ftimes, start, len(audio) / rate, items_per_video,
                                       preset.clip_seconds):
            frame = decode(rec, i)
            if frame is None:
                continue
            images.append(image_lib.eval_image(frame, resize_side=preset.resize_side,
                                               image_size=preset.image_size).numpy())
            waves.append(clip_audio(audio, start, ftimes[i], rate, clip_48k, margin))
            names.append(label)
            vids.append(rec[records.VIDEO_ID].decode())
            times.append(ftimes[i])
            if max_items is not None and len(names) >= max_items:
                break
        if max_items is not None and len(names) >= max_items:
            break
    decode.report()
    if skipped:
        logging.info("skipped %d unlabelled videos", skipped)
    if not names:
        raise errors.UsageError(f"no usable videos in {pattern!r} ({skipped} without a label)")

    waves = to_preset_rate(np.stack(waves), preset)
    class_names = sorted(set(names))
    index = {name: i for i, name in enumerate(class_names)}
    return Items(images=np.stack(images).astype(np.float32),
                 waveforms=np.ascontiguousarray(waves, np.float32),
                 labels=np.array([index[n] for n in names], np.int32),
                 class_names=class_names, video_ids=vids,
                 times=np.asarray(times, np.float64), bad_frames=decode.bad)
