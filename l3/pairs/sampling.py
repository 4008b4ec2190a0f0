"""The ops behind `l3.pairs`: per-video sampling, frame loading, pairing, scanning.

Every function here runs inside tf.data (graph mode, no py_function) and takes
its randomness from an explicit stateless seed (int64 [2]). Time is measured in
samples of the records' 48 kHz audio: a frame at time t sits at sample
floor((t - audio_start) * 48000), and the window starting at sample k covers
[audio_start + k / 48000, audio_start + (k + 48000) / 48000) on the records' clock.
"""

import dataclasses
import sys
from typing import Dict, Sequence, Tuple

import numpy as np
import tensorflow as tf
from absl import logging

from l3.ops import audio as audio_lib
from l3.core import constants as C
from l3.core import errors
from l3.ops import image as image_lib
from l3.records import schema as records, shard_reader
from l3.core.presets import Preset

RATE = C.SAMPLE_RATE  # the records' rate; the schema fixes it

# The schema's own feature specs (records owns the keys), minus what we never read.
_KEYS = (records.VIDEO_ID, records.LABEL, records.FRAMES, records.FRAME_TIMES, records.AUDIO,
         records.AUDIO_START, records.SAMPLE_RATE)
_SPEC = {key: records.FEATURES[key] for key in _KEYS}


def _parse(serialized) -> Dict[str, tf.Tensor]:
    """Parses one record, checks its rate; audio stays the raw int16 bytes (sliced later)."""
    f = tf.io.parse_single_example(serialized, _SPEC)
    check = tf.debugging.assert_equal(
        f[records.SAMPLE_RATE], tf.constant(RATE, tf.int64),
        message=f"l3.pairs reads {RATE} Hz records (the schema's rate)")
    with tf.control_dependencies([check]):
        f["num_samples"] = tf.cast(tf.strings.length(f[records.AUDIO]), tf.int64) // 2
    return f


def _frame_positions(f, bad=None) -> Tuple[tf.Tensor, tf.Tensor]:
    """(sample index of each frame in the audio, float64 [frames]; frames that can be
    drawn, bool [frames]: inside the audio and whole JPEGs; `bad`: `bad_frames` of the
    record's frames when the caller has it)."""
    if bad is None:
        bad = bad_frames(f[records.FRAMES])
    times = tf.cast(f[records.FRAME_TIMES], tf.float64)
    start = tf.cast(f[records.AUDIO_START], tf.float64)
    position = tf.floor((times - start) * RATE)
    inside = (position >= 0) & (position < tf.cast(f["num_samples"], tf.float64))
    return position, inside & ~bad


EOI_REACH = 64  # bytes from a JPEG's end where its EOI marker must be (trailing padding)


def bad_frames(jpegs: tf.Tensor) -> tf.Tensor:
    """bool [n]: which of the encoded frames `jpegs` (string [n]) are not whole JPEGs: no
    SOI marker at the start (not a JPEG: written by another tool, or damaged before
    framing, so the record's CRC is valid) or no EOI marker (FF D9) in the last
    `EOI_REACH` bytes (cut short: an interrupted write). Entropy-coded data never
    holds FF D9 (a coded FF is followed by 00 or a restart marker), so a JPEG cut
    anywhere in its scan has none there. Such a frame is never drawn; the record's
    `bad_frames` counts them (`l3.pairs.stream` reports them). A frame that passes
    and still fails the decoder is dropped by the stream's `ignore_errors`."""
    length = tf.strings.length(jpegs)
    start = tf.maximum(length - EOI_REACH, 0)
    tail = tf.strings.substr(jpegs, start, tf.fill(tf.shape(start), EOI_REACH))
    has_end = tf.strings.split(tail, sep=b"\xff\xd9").row_lengths() > 1
    return ~(tf.io.is_jpeg(jpegs) & has_end)


BAD_FRAMES_MARK = "frame(s) not JPEG or cut short"


def report_bad_frames(counts, paths, indices, video_ids, on_damage: str,
                      where: str = "") -> tf.Tensor:
    """int32 []: sum(counts), the frames that are not whole JPEGs in n records (`counts`
    int32 [n], with the records' shard `paths`, record `indices` and `video_ids`, [n]
    each). When any: with on_damage "skip", prints one warning naming the first record
    that holds some (its shard, record index and video id); with "stop", fails there
    with that line (`bad_frames_error` turns it into a one-line error)."""
    total = tf.reduce_sum(counts)
    i = tf.argmax(counts)
    message = tf.strings.join([
        "WARNING: ", tf.strings.as_string(total), f" {BAD_FRAMES_MARK} {where}".rstrip(),
        ", never drawn; first: shard ", paths[i], " record ", tf.strings.as_string(indices[i]),
        " video ", video_ids[i], " (", tf.strings.as_string(counts[i]),
        " frame(s); l3-verify-tfrecords --deep names every one)"])
    if on_damage == "stop":
        check = tf.debugging.Assert(tf.equal(total, 0), [message], summarize=1,
                                    name="undecodable_frames")
        with tf.control_dependencies([check]):
            return tf.identity(total)

    def warn():
        with tf.control_dependencies([tf.print(message, output_stream=sys.stderr)]):
            return tf.constant(True)

    warned = tf.cond(total > 0, warn, lambda: tf.constant(False))
    with tf.control_dependencies([warned]):
        return tf.identity(total)


def bad_frames_error(error: BaseException):
    """The one-line `errors.DamagedShardError` of a stop at frames that are not whole JPEGs
    (`report_bad_frames`), or None when `error` is another error."""
    text = str(getattr(error, "message", error))
    at = text.find(BAD_FRAMES_MARK)
    if at < 0:
        return None
    line = text[text.rfind("WARNING: ", 0, at) + len("WARNING: "):].splitlines()[0]
    line = line.split("}}")[0].rstrip("]").replace(", never drawn;", ";")
    return errors.DamagedShardError(f"damaged frames: {line} (--on_damaged_shard=skip never "
                                    "draws them)")


def _uniform(seed, shape=()) -> tf.Tensor:
    return tf.random.stateless_uniform(shape, seed, dtype=tf.float64)


def _choice(candidates, seed, count: int) -> tf.Tensor:
    """int64 [count]: independent uniform draws from int64 [n] candidates (0s when n == 0)."""
    n = tf.size(candidates, out_type=tf.int64)
    i = tf.cast(tf.floor(_uniform(seed, [count]) * tf.cast(n, tf.float64)), tf.int64)
    i = tf.clip_by_value(i, 0, tf.maximum(n - 1, 0))
    return tf.gather(tf.concat([candidates, tf.zeros([1], tf.int64)], 0), i)


@dataclasses.dataclass(frozen=True)
class VideoStats:
    """What `scan_videos` found."""
    num_videos: int
    num_usable: int
    num_usable_ids: int                       # distinct video ids among the usable
    excluded: Tuple[Tuple[str, str], ...]     # (video id, reason)


def _summary(serialized, window: int):
    f = _parse(serialized)
    _, inside = _frame_positions(f)
    return {"video_id": f[records.VIDEO_ID], "long_enough": f["num_samples"] >= window,
            "frames_inside": tf.reduce_sum(tf.cast(inside, tf.int32))}


@tf.autograph.experimental.do_not_convert
def scan_videos(files: Sequence[str], clip_seconds: float = C.CLIP_SECONDS,
                log: bool = True) -> VideoStats:
    """Reads every record once; counts the videos the sampler can use and why the rest cannot.

    Usable: at least `clip_seconds` of audio and at least one frame inside the
    audio's extent. Logs the count of excluded videos (and a few ids).
    """
    window = int(round(clip_seconds * RATE))
    ds = shard_reader.read_shards(files).map(lambda r: _summary(r, window),
                                                  num_parallel_calls=tf.data.AUTOTUNE)
    num, usable_ids, num_usable, excluded = 0, set(), 0, []
    for s in ds.as_numpy_iterator():
        num += 1
        video_id = s["video_id"].decode()
        if not s["long_enough"]:
            excluded.append((video_id, f"audio shorter than {clip_seconds:g} s"))
        elif not s["frames_inside"]:
            excluded.append((video_id, "no frame inside the audio's time span"))
        else:
            num_usable += 1
            usable_ids.add(video_id)
    stats = VideoStats(num, num_usable, len(usable_ids), tuple(excluded))
    if log:
        logging.info("l3.pairs: %d videos in %d files, %d usable, %d excluded", num, len(files),
                     num_usable, len(excluded))
        if excluded:
            logging.warning("l3.pairs: excluded %d of %d videos (too short for a %g-s window or no "
                            "frame inside the audio), e.g. %s", len(excluded), num, clip_seconds,
                            ", ".join(f"{v} ({why})" for v, why in excluded[:5]))
    return stats


@tf.autograph.experimental.do_not_convert
def check_two_videos(files: Sequence[str], clip_seconds: float = C.CLIP_SECONDS) -> None:
    """Raises ValueError unless the files hold two usable videos with different ids.

    Reads only until it finds them (usually the first two records), so it is
    cheap on a training set; without it a single-video pipeline would never
    produce a batch (negatives need a second video).
    """
    window = int(round(clip_seconds * RATE))
    seen = set()
    for s in shard_reader.read_shards(files).map(lambda r: _summary(r, window)).as_numpy_iterator():
        if s["long_enough"] and s["frames_inside"]:
            seen.add(s["video_id"])
            if len(seen) >= 2:
                return
    raise ValueError(f"{list(files)[:3]}...: {len(seen)} usable video(s); AVC negatives need two")


class PairSampler:
    """The stages of `l3.pairs.make_dataset` for one preset (see the comments there).

    `pairs_per_video` (K): independent (frame, window) draws per record read.
    """

    def __init__(self, preset: Preset, training: bool, pairs_per_video: int = 1):
        if pairs_per_video < 1:
            raise ValueError(f"pairs_per_video must be >= 1, got {pairs_per_video}")
        self.preset, self.training, self.pairs_per_video = preset, training, pairs_per_video
        self.factor = preset.decimation
        self.window = int(round(preset.clip_seconds * RATE))  # samples at 48 kHz
        if preset.clip_samples * self.factor != self.window:
            raise ValueError(f"{preset.name}: {preset.clip_samples} x {self.factor} != {self.window}")
        # Half the anti-alias filter, rounded up to a multiple of the factor:
        # enough context that the decimated clip has no zero-padding edge.
        if self.factor == 1:
            self.margin = 0
        else:
            half = audio_lib.decimation_margin(self.factor)
            self.margin = -(-half // self.factor) * self.factor
        self.sliced = self.window + 2 * self.margin

    # --- stage 1: one record -> K frames and their windows (~130 KB a pair) ----------
    def sample_video(self, serialized, seed) -> Dict[str, tf.Tensor]:
        """serialized record, seed int64 [2] -> K light pairs (leading axis K).

        Keys: usable (bool scalar), bad_frames (int32 scalar: frames that are not
        whole JPEGs, never drawn), frame (JPEG string [K]), frame_index (int32
        [K]), frame_time (float32 [K] s), video_id, label (string [K]), pcm
        (int16 [K, sliced]: a window containing the frame's time, with its
        decimation margins), audio_start (float32 [K] s, the window's first
        sample), image_seed and pair_seed (int64 [K, 2]). The K draws are
        independent: a frame uniform among those inside the audio, a window
        uniform among those containing its time.
        """
        video = self.sample_draws(serialized, seed)
        video["pcm"] = self.window_pcm(video.pop("track"), video.pop("begin"))
        return video

    def sample_draws(self, serialized, seed) -> Dict[str, tf.Tensor]:
        """`sample_video` with the windows not yet cut: instead of pcm, track (string
        []: the record's int16 audio framed by `sliced` zero samples on each side) and
        begin (int64 [K]: each window's first sample in that track); `window_pcm`
        cuts them. The training stream cuts each window only when its draw is dealt,
        so a window's samples are copied once, not with every block operation."""
        k = self.pairs_per_video
        f = _parse(serialized)
        num_samples = f["num_samples"]
        bad = bad_frames(f[records.FRAMES])
        position, inside = _frame_positions(f, bad)
        usable = (num_samples >= self.window) & tf.reduce_any(inside)
        candidates = tf.where(inside)[:, 0]
        seeds = tf.random.experimental.stateless_split(seed, 4)
        frame = _choice(candidates, seeds[0], k)
        start = self._window_start(tf.gather(position, frame), num_samples, seeds[1])
        audio_start = tf.cast(f[records.AUDIO_START], tf.float64)
        seconds = tf.cast(audio_start + tf.cast(start, tf.float64) / RATE, tf.float32)
        repeat = lambda x: tf.fill([k], x)
        total = self.sliced
        zeros = tf.constant(b"\0" * (2 * total))
        return {
            "usable": usable,
            "bad_frames": tf.reduce_sum(tf.cast(bad, tf.int32)),
            "frame": tf.gather(f[records.FRAMES], frame),
            "frame_index": tf.cast(frame, tf.int32),
            "frame_time": tf.gather(f[records.FRAME_TIMES], frame),
            "video_id": repeat(f[records.VIDEO_ID]),
            "label": repeat(f[records.LABEL]),
            "track": tf.strings.join([zeros, f[records.AUDIO], zeros]),
            "begin": tf.clip_by_value(start - self.margin, -total, num_samples) + total,
            "audio_start": seconds,
            "image_seed": tf.random.experimental.stateless_split(seeds[2], k),
            "pair_seed": tf.random.experimental.stateless_split(seeds[3], k),
        }

    def _window_start(self, position, num_samples, seed) -> tf.Tensor:
        """int64 [K]: uniform k with k <= position < k + window and 0 <= k <= num_samples - window."""
        position = tf.cast(position, tf.int64)
        low = tf.maximum(position - (self.window - 1), 0)
        high = tf.maximum(tf.minimum(position, num_samples - self.window), low)
        u = _uniform(seed, tf.shape(position))
        k = low + tf.cast(tf.floor(u * tf.cast(high - low + 1, tf.float64)), tf.int64)
        return tf.minimum(k, high)

    def window_pcm(self, track, begin) -> tf.Tensor:
        """int16 [..., sliced]: the samples [begin, begin + sliced) of `track`
        (`sample_draws`'s; begin int64 [...]): the window [start - margin, start +
        window + margin) of the record's audio, zeros outside it. One fixed-length
        substring per window."""
        total = self.sliced
        pcm = tf.io.decode_raw(tf.strings.substr(track, 2 * begin, tf.fill(tf.shape(begin), tf.constant(2 * total, tf.int64))),
                               tf.int16, little_endian=True)
        return tf.ensure_shape(pcm, begin.shape.concatenate([total]))

    # --- stage 2: decode the one JPEG, augment --------------------------------------
    def load_frame(self, video: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
        """Replaces `frame` (JPEG) by `image` [S, S, 3]: training, the uint8 view
        (`l3.ops.image.train_view`: crop, flip; the step on the device adds the jitter,
        `l3.ops.image.jitter_batch`); evaluation, `eval_image` (float32 in [0, 1])."""
        video = dict(video)
        jpeg, seed = video.pop("frame"), video.pop("image_seed")
        shape = tf.io.extract_jpeg_shape(jpeg)
        already_sized = tf.minimum(shape[0], shape[1]) == self.preset.resize_side
        video["image"] = tf.cond(already_sized, lambda: self._crop_decode(jpeg, shape, seed),
                                 lambda: self._decode_resize_crop(jpeg, seed))
        return video

    def _decode_resize_crop(self, jpeg, seed) -> tf.Tensor:
        image, p = self._decode(jpeg), self.preset
        if self.training:
            return image_lib.train_view(image, seed, resize_side=p.resize_side, image_size=p.image_size)
        return image_lib.eval_image(image, resize_side=p.resize_side, image_size=p.image_size)

    def _crop_decode(self, jpeg, shape, seed) -> tf.Tensor:
        """The same views when the frame is already at `resize_side` (the builder
        writes the paper's 256): the resize is an identity, so decode only the
        crop window (`decode_and_crop_jpeg`), then flip as `train_view` does,
        with the same seeds; crop offsets are uniform, as `train_view`'s. Saves
        ~40 % of the paper preset's per-frame work; no float conversion at all."""
        size = self.preset.image_size
        if self.training:
            seeds = tf.random.experimental.stateless_split(seed, 3)  # as train_view
            corner = tf.random.stateless_uniform([2], seeds[0], 0, tf.int32.max, tf.int32)
            top, left = corner[0] % (shape[0] - size + 1), corner[1] % (shape[1] - size + 1)
        else:
            top, left = image_lib.center_offsets(shape[0], shape[1], size)  # as center_crop
        image = tf.io.decode_and_crop_jpeg(jpeg, tf.stack([top, left, size, size]), channels=3)
        if self.training:
            image = tf.image.stateless_random_flip_left_right(image, seeds[1])
        else:
            image = image_lib.to_float(image)
        return tf.ensure_shape(image, [size, size, 3])

    def _decode(self, jpeg) -> tf.Tensor:
        """uint8 [h, w, 3], downscaled in the DCT domain (1/2, 1/4, 1/8) while the
        smaller side stays >= resize_side: much less decoding for the small preset."""
        shape = tf.io.extract_jpeg_shape(jpeg)
        side = tf.minimum(shape[0], shape[1])
        branch = tf.add_n([tf.cast((side + r - 1) // r >= self.preset.resize_side, tf.int32)
                           for r in (2, 4, 8)])
        return tf.switch_case(branch, [
            (lambda r=r: tf.io.decode_jpeg(jpeg, channels=3, ratio=r)) for r in (1, 2, 4, 8)])

    # --- stage 3: a batch of videos -> a batch of pairs -----------------------------
    def make_pairs(self, videos: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
        """Batched draws (leading axis n; several may come from one video) -> n pairs.

        Pair i is frame i with its own window (label 1), or (label 0) with the
        window of a donor of another video id, taken among the *negatives* (their
        own windows are otherwise unused). When no video holds more than half of
        the negatives, donors are an assignment: the negatives grouped by video
        (groups in a random order), each takes the window of the negative m
        places further on, cyclically (m = the largest group), so every
        negative's window is used exactly once and never by its own video: no
        window appears twice in a batch. Otherwise (one video holds most
        negatives: a repeat is then unavoidable) each takes the next draw, in
        cyclic order, of another video, preferring negatives. Adds `ok`: False
        when a negative found no donor (one id only).

        The batch's randomness (labels, gains) comes from its first video's
        `pair_seed`: unique per batch, and no dataset op (an `enumerate` after the
        shuffle breaks chained symbolic-checkpoint restores in TF 2.21).
        """
        ids = videos["video_id"]
        n = tf.shape(ids)[0]
        index = tf.range(n)
        seeds = tf.random.experimental.stateless_split(videos["pair_seed"][0], 2)
        if self.training:
            label = _balanced_labels(n, seeds[0])
        else:
            label = tf.cast(index % 2 == 0, tf.int32)  # every even prefix is exactly balanced
        # candidates[i] = i+1, ..., i+n-1, i (mod n); the last (itself) never differs.
        candidates = (index[:, None] + tf.range(1, n + 1)[None, :]) % n
        differs = tf.not_equal(tf.gather(ids, candidates), ids[:, None])
        positive = label == 1
        preference = tf.cast(differs, tf.int32) * (1 + tf.gather(1 - label, candidates))
        first = tf.argmax(preference, axis=1, output_type=tf.int32)  # the first best
        donor = (index + 1 + first) % n
        donor = _assigned_donors(ids, positive, donor,
                                 tf.random.experimental.stateless_fold_in(seeds[0], 1))
        ok = tf.reduce_all(positive | tf.reduce_any(differs, axis=1))
        source = tf.where(positive, index, donor)
        pcm = tf.gather(videos["pcm"], source)
        waveform = tf.cast(pcm, tf.float32) / 32768.0  # as records.parse_example
        waveform = decimate_blocks(waveform, self.factor)
        cut = self.margin // self.factor
        waveform = waveform[:, cut:cut + self.preset.clip_samples]
        if self.training:
            waveform = audio_lib.random_gain(waveform, seeds[1])
        return {
            "ok": ok,
            "image": videos["image"],
            "waveform": tf.ensure_shape(waveform, [None, self.preset.clip_samples]),
            "label": label,
            "frame_video_id": ids,
            "audio_video_id": tf.gather(ids, source),
            "frame_label": videos["label"],
            "audio_label": tf.gather(videos["label"], source),
            "frame_time": videos["frame_time"],
            "audio_start": tf.gather(videos["audio_start"], source),
            "frame_index": videos["frame_index"],
        }


def _assigned_donors(ids, positive, scanned, seed) -> tf.Tensor:
    """int32 [n]: each negative's donor as `make_pairs` describes (a shift by the
    largest group among the negatives grouped by video), or `scanned` where one
    video holds more than half of the negatives; positives keep `scanned` (unused)."""
    negatives = tf.cast(tf.where(~positive)[:, 0], tf.int32)                 # [k]
    k = tf.size(negatives)
    _, group, counts = tf.unique_with_counts(tf.gather(ids, negatives))
    largest = tf.reduce_max(tf.concat([counts, [0]], 0))
    rank = tf.argsort(tf.argsort(tf.random.stateless_uniform(tf.shape(counts), seed)))
    order = tf.gather(negatives, tf.argsort(tf.gather(rank, group) * k + tf.range(k)))
    shift = tf.maximum(largest, 1)
    donors = tf.gather(order, (tf.range(k) + shift) % tf.maximum(k, 1))
    assigned = tf.tensor_scatter_nd_update(scanned, order[:, None], donors)
    return tf.cond(2 * largest <= k, lambda: assigned, lambda: scanned)


def _balanced_labels(n, seed) -> tf.Tensor:
    """int32 [n], n // 2 ones at random places (one more for half the seeds when n is odd)."""
    seeds = tf.random.experimental.stateless_split(seed, 2)
    coin = tf.cast(tf.random.stateless_uniform([], seeds[1]) < 0.5, tf.int32)
    positives = n // 2 + (n % 2) * coin
    rank = tf.argsort(tf.argsort(tf.random.stateless_uniform([n], seeds[0])))
    return tf.cast(rank < positives, tf.int32)


def decimate_blocks(waveform, factor: int, block: int = 32) -> tf.Tensor:
    """`l3.ops.audio.decimate` (the same filter, the same output) computed as one dense
    convolution over blocks of `factor * block` samples.

    float32 [batch, samples] (samples a multiple of `factor`) -> [batch, samples // factor].
    A single-channel strided conv1d (`l3.ops.audio.decimate`) runs at ~14 ms a 1-s
    window on this machine's cores, the small preset's largest cost per pair;
    as blocks (`block` outputs per step from `factor * block` input channels,
    ~1.5x the multiply-adds but matrix-shaped) it is ~6x faster.
    """
    if factor == 1:
        return waveform
    taps = audio_lib._lowpass_taps(factor).astype(np.float32)  # pylint: disable=protected-access
    length, half, width = len(taps), len(taps) // 2, factor * block
    samples = waveform.shape[-1]
    out = samples // factor
    blocks_per_kernel = -(-(factor * (block - 1) + length) // width)
    blocks = -(-out // block) + blocks_per_kernel - 1
    # kernel[w, c, q] = taps[w * width + c - factor * q] (0 outside the filter)
    w, c, q = np.meshgrid(np.arange(blocks_per_kernel), np.arange(width), np.arange(block), indexing="ij")
    index = w * width + c - factor * q
    kernel = np.where((index >= 0) & (index < length), taps[np.clip(index, 0, length - 1)], 0.0)
    x = tf.pad(waveform, [[0, 0], [half, blocks * width - samples - half]])
    y = tf.nn.conv1d(tf.reshape(x, [-1, blocks, width]), tf.constant(kernel, tf.float32), stride=1,
                     padding="VALID")
    return tf.reshape(y, [tf.shape(waveform)[0], -1])[:, :out]


METADATA_KEYS = ("frame_video_id", "audio_video_id", "frame_label", "audio_label",
                 "frame_time", "audio_start", "frame_index")


def as_tuple(pairs: Dict[str, tf.Tensor], include_metadata: bool):
    """(image, waveform, label) or (image, waveform, label, metadata dict)."""
    out = (pairs["image"], pairs["waveform"], pairs["label"])
    if include_metadata:
        out += ({key: pairs[key] for key in METADATA_KEYS},)
    return out
