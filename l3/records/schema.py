"""The TFRecord schema: one `tf.train.Example` per video, written by the
builder (`tfrecords/`) and read by the pair pipeline. Feature keys live here
and nowhere else.

A record holds the pre-decoded first seconds of one video:

* `frames`: JPEG-encoded RGB frames, smaller side 256 (`constants.RESIZE_SMALLER_SIDE`),
  in presentation order, with `frame_times` their timestamps in seconds from
  the start of the video;
* `audio`: mono PCM, int16 little-endian, at `sample_rate` (48 kHz), whose
  first sample plays at `audio_start` seconds (same clock as `frame_times`);
* `video_id`, `label` (class name, "" if unknown), `split` ("" if unknown),
  `source` (the path it was decoded from).
"""

from typing import Dict, Optional, Sequence

import numpy as np
import tensorflow as tf

from l3.core import constants as C
from l3.records import shard_reader

VIDEO_ID = "video_id"
LABEL = "label"
SPLIT = "split"
SOURCE = "source"
FRAMES = "frames"
FRAME_TIMES = "frame_times"
AUDIO = "audio"
AUDIO_START = "audio_start"
SAMPLE_RATE = "sample_rate"

SHARD_SUFFIX = ".tfrecord"


def shard_name(split: str, index: int, count: int) -> str:
    """`{split}-{index:05d}-of-{count:05d}.tfrecord`."""
    return f"{split}-{index:05d}-of-{count:05d}{SHARD_SUFFIX}"


def _bytes(values: Sequence[bytes]) -> tf.train.Feature:
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=list(values)))


def _floats(values: Sequence[float]) -> tf.train.Feature:
    return tf.train.Feature(float_list=tf.train.FloatList(value=list(values)))


def _ints(values: Sequence[int]) -> tf.train.Feature:
    return tf.train.Feature(int64_list=tf.train.Int64List(value=list(values)))


def make_example(*, video_id: str, frames: Sequence[bytes], frame_times: Sequence[float],
                 audio: np.ndarray, audio_start: float = 0.0,
                 sample_rate: int = C.SAMPLE_RATE, label: str = "", split: str = "",
                 source: str = "") -> tf.train.Example:
    """Builds one video's Example.

    Args:
      frames: JPEG bytes, one per frame, in time order.
      frame_times: seconds, one per frame, non-decreasing.
      audio: int16 mono PCM, shape [samples].
    """
    if len(frames) != len(frame_times):
        raise ValueError(f"{len(frames)} frames but {len(frame_times)} timestamps")
    if not frames:
        raise ValueError("a record needs at least one frame")
    audio = np.asarray(audio)
    if audio.dtype != np.int16 or audio.ndim != 1:
        raise ValueError(f"audio must be 1-D int16, got {audio.dtype} {audio.shape}")
    feature = {
        VIDEO_ID: _bytes([video_id.encode()]),
        LABEL: _bytes([label.encode()]),
        SPLIT: _bytes([split.encode()]),
        SOURCE: _bytes([source.encode()]),
        FRAMES: _bytes(frames),
        FRAME_TIMES: _floats(frame_times),
        AUDIO: _bytes([audio.astype("<i2").tobytes()]),
        AUDIO_START: _floats([audio_start]),
        SAMPLE_RATE: _ints([sample_rate]),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature))


FEATURES = {
    VIDEO_ID: tf.io.FixedLenFeature([], tf.string),
    LABEL: tf.io.FixedLenFeature([], tf.string, default_value=""),
    SPLIT: tf.io.FixedLenFeature([], tf.string, default_value=""),
    SOURCE: tf.io.FixedLenFeature([], tf.string, default_value=""),
    FRAMES: tf.io.RaggedFeature(tf.string),
    FRAME_TIMES: tf.io.RaggedFeature(tf.float32),
    AUDIO: tf.io.FixedLenFeature([], tf.string),
    AUDIO_START: tf.io.FixedLenFeature([], tf.float32, default_value=0.0),
    SAMPLE_RATE: tf.io.FixedLenFeature([], tf.int64, default_value=C.SAMPLE_RATE),
}


def parse_example(serialized: tf.Tensor) -> Dict[str, tf.Tensor]:
    """Parses one serialized record; works eagerly and inside tf.data.

    Returns a dict with the schema's keys:
      frames: string [num_frames] (JPEG bytes); frame_times: float32 [num_frames];
      audio: float32 [samples] in [-1, 1); audio_start: float32 []; sample_rate: int64 [];
      video_id, label, split, source: string [].
    """
    parsed = tf.io.parse_single_example(serialized, FEATURES)
    pcm = tf.io.decode_raw(parsed[AUDIO], tf.int16, little_endian=True)
    parsed[AUDIO] = tf.cast(pcm, tf.float32) / 32768.0
    return parsed


@tf.autograph.experimental.do_not_convert
def read_examples(paths: Sequence[str], limit: Optional[int] = None, on_damage: str = "stop"):
    """Yields parsed records (numpy values) from TFRecord files; for tools and tests.

    Shards are read by `l3.records.shard_reader.read_shards` (`on_damage`:
    "stop" raises at a damaged record, "skip" warns and skips the shard's rest).
    """
    ds = shard_reader.read_shards(list(paths), on_damage).map(parse_example)
    if limit is not None:
        ds = ds.take(limit)
    for record in ds.as_numpy_iterator():
        yield record
