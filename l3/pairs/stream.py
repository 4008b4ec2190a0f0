"""The training pair stream: a pure function of (seed, worker, position).

One stream per input pipeline (a trainer worker), over that worker's shards:

  epoch e = 0, 1, 2, ...
    shard order  a stateless permutation of the files, keyed by (seed, worker, e)
    lanes        L = min(cycle_length, files, open_videos); lane l reads the
                 shards order[l], order[l + L], ... one after the other
    records      one from each lane in turn (a lane that runs out drops out), each
                 with its coordinates: lane, shard ordinal in the lane, index in
                 the shard, byte offset
    draws        each record gives K draws (frame, window, crop/flip and pair
                 seeds) from stateless seeds keyed by (seed, worker, e, lane,
                 ordinal, index): the record's place, never a carried state
    blocks       R = open_videos consecutive records (the epoch's last block may
                 be shorter); their draws are dealt in K rounds, round k a
                 stateless shuffle of the block's usable records keyed by
                 (seed, worker, e, block, k): a batch inside one round never
                 holds two draws of one record, and batches mix other videos
                 each round. The deal moves only the draws' light fields;
                 each draw then takes its own JPEG from the block, decodes
                 it (crop window, flip) and cuts its window from its record's
                 track, in one map: its pixels and samples are copied once
                 before the batch (the block's frames and tracks are not
                 copied again)
    batches      B consecutive draws; labels, donors and gains from the
                 batch's first draw's seed

**Position.** Every batch carries where the stream stands after it
(`StreamPosition`, int64 [6 + 3 L]): epoch, block, draws of the block
consumed, the lane of the block's first record, the stream's seed, a
fingerprint of the stream's definition (files, sizes, seed, K, ...), and
per lane its next record at the block's start (shard ordinal, index, byte
offset; ordinal -1: the lane had finished). That vector is all a
checkpoint keeps of the input (a few hundred bytes). `dataset(position)`
rebuilds the stream there: it re-reads the block's records once (the lanes
restart at their shard and record, `TFRecordDataset.skip` over the framing)
and starts its dealing order at the first draw not yet consumed (never
decoding the others), so a resumed run sees exactly the pairs an
uninterrupted one would.

**Damage.** Shards: `on_damage` as in `l3.records.shard_reader` (skip the
rest of a damaged shard with a warning naming it, or stop naming the byte
offset); the skipped part is never read, so the stream stays a function of
the files. Frames that are not whole JPEGs (a record written by another tool,
or a frame damaged or cut short before framing: the record's CRC is valid)
are never drawn (`l3.pairs.sampling.bad_frames`); a block that holds any
prints one warning naming the shard, record index and video id of the first,
and its count travels with the batches (`bad_frames`, summed in the run's
summary); with "stop" the stream stops there with that line.
"""

import dataclasses
import hashlib
import json
import os
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf

from l3.core.presets import Preset
from l3.pairs import options as options_lib
from l3.pairs import sampling
from l3.records import shard_reader

HEADER = ("epoch", "block", "consumed", "phase", "seed", "fingerprint")
LANE_FIELDS = ("ordinal", "index", "offset")
_EPOCH_STREAM, _RECORD_STREAM, _DEAL_STREAM = 0x51, 0x52, 0x53  # seed streams apart


@dataclasses.dataclass(frozen=True)
class StreamPosition:
    """Where a training stream stands (see the module docstring); `vector()` is its
    int64 [6 + 3 L] form, the one a checkpoint holds."""

    epoch: int
    block: int
    consumed: int
    phase: int
    seed: int
    fingerprint: int
    lanes: Tuple[Tuple[int, int, int], ...]   # (shard ordinal, record index, byte offset)

    def vector(self) -> np.ndarray:
        head = [self.epoch, self.block, self.consumed, self.phase, self.seed, self.fingerprint]
        return np.array(head + [v for lane in self.lanes for v in lane], np.int64)

    @classmethod
    def from_vector(cls, vector) -> "StreamPosition":
        v = [int(x) for x in np.asarray(vector, np.int64).reshape(-1)]
        if len(v) < len(HEADER) or (len(v) - len(HEADER)) % len(LANE_FIELDS):
            raise ValueError(f"not a stream position: {len(v)} values")
        lanes = [tuple(v[i:i + 3]) for i in range(len(HEADER), len(v), len(LANE_FIELDS))]
        return cls(*v[:len(HEADER)], lanes=tuple(lanes))


class TrainingStream:
    """The training pairs of one input pipeline (see the module docstring).

    Args:
      files: this pipeline's shards (sorted; `options_lib.shard_files` picks them).
      preset: sizes.
      options: `PipelineOptions` (seed, K, block records, lanes, parallelism,
        damage policy, metadata; `batch_size` is not read: see `batch_size`).
      batch_size: pairs per batch (one replica's).
      worker: the input pipeline's index (part of every seed).
    """

    def __init__(self, files: Sequence[str], preset: Preset, options, *, batch_size: int,
                 worker: int = 0):
        self.files, self.preset, self.options = list(files), preset, options
        self.batch_size, self.worker = batch_size, worker
        self.k = options_lib.pairs_per_video(options, training=True)
        self.records_per_block = options.open_videos
        if self.records_per_block < 1:
            raise ValueError(f"open_videos must be >= 1, got {self.records_per_block}")
        self.num_lanes = min(options.cycle_length or options_lib.DEFAULT_CYCLE_LENGTH,
                             len(self.files), self.records_per_block)
        self.on_damage = options_lib.on_damage(options, "skip")
        self.sampler = sampling.PairSampler(preset, training=True, pairs_per_video=self.k)
        self._sizes = shard_reader.file_sizes(self.files)
        self._paths_t = tf.constant(self.files, tf.string)
        self._sizes_t = tf.constant(self._sizes, tf.int64)
        self._seed = tf.constant([options.seed, worker], tf.int64)
        self.fingerprint = self._fingerprint()

    # --- the position ------------------------------------------------------------------
    @property
    def position_size(self) -> int:
        return len(HEADER) + len(LANE_FIELDS) * self.num_lanes

    def start(self) -> StreamPosition:
        """The position before the first pair."""
        return StreamPosition(0, 0, 0, 0, self.options.seed, self.fingerprint,
                              ((0, 0, 0),) * self.num_lanes)

    def _fingerprint(self) -> int:
        """int64 naming what a position means: the files (names, sizes), seed, worker, K,
        block records and lanes. A position of another stream is not resumed."""
        what = json.dumps([[os.path.basename(f) for f in self.files], self._sizes,
                           self.options.seed, self.worker, self.k, self.records_per_block,
                           self.num_lanes, self.preset.name])
        return int.from_bytes(hashlib.sha256(what.encode()).digest()[:8], "big", signed=True)

    def accepts(self, position: Optional[StreamPosition]) -> bool:
        """Whether `position` is one of this stream's (same files, seed, sizes)."""
        return (position is not None and position.fingerprint == self.fingerprint
                and position.seed == self.options.seed and len(position.lanes) == self.num_lanes)

    # --- the stream ---------------------------------------------------------------------
    @tf.autograph.experimental.do_not_convert
    def dataset(self, position: Optional[StreamPosition] = None,
                include_metadata: bool = False) -> tf.data.Dataset:
        """Batches from `position` (default: the start), forever.

        Elements: (image uint8 [B, S, S, 3], waveform float32 [B, N], label int32
        [B], [metadata dict of [B]], state) with state = {"position": int64
        [6 + 3 L] after the batch, "bad_frames": int32 [] frames found not whole
        JPEGs in the blocks this batch opened}.
        """
        position = position or self.start()
        if not self.accepts(position):
            raise ValueError("the position is not one of this stream's (other files, seed or "
                             "sizes): start a new stream")
        sampling.check_two_videos(self.files)
        parallel = self.options.num_parallel_calls
        lanes = [(lane, *position.lanes[lane])
                 for lane in (list(range(position.phase, self.num_lanes))
                              + list(range(position.phase)))
                 if position.lanes[lane][0] >= 0]
        lane_starts = tuple(tf.constant([row[i] for row in lanes], tf.int64) for i in range(4))
        first = self._epoch_draws(tf.constant(position.epoch, tf.int64), lane_starts,
                                  position.block, position.consumed)
        fresh = tuple(tf.constant(v, tf.int64) for v in
                      (list(range(self.num_lanes)), [0] * self.num_lanes, [0] * self.num_lanes,
                       [0] * self.num_lanes))
        later = tf.data.Dataset.range(position.epoch + 1, 1 << 62).flat_map(
            lambda epoch: self._epoch_draws(epoch, fresh, 0))
        ds = first.concatenate(later)
        ds = ds.batch(self.batch_size, drop_remainder=True)
        ds = ds.map(lambda draws: (self.sampler.make_pairs(draws), _state(draws)),
                    num_parallel_calls=parallel, deterministic=True)
        ds = ds.filter(lambda pairs, state: pairs["ok"])
        ds = ds.map(lambda pairs, state: sampling.as_tuple(pairs, include_metadata) + (state,))
        if self.options.num_pairs is not None:
            ds = ds.take(-(-self.options.num_pairs // self.batch_size))
        if self.options.prefetch:
            ds = ds.prefetch(self.options.prefetch)
        tf_options = tf.data.Options()
        tf_options.deterministic = True
        return ds.with_options(tf_options)

    def _epoch_draws(self, epoch, lane_starts, first_block: int, consumed: int = 0) -> tf.data.Dataset:
        """The draws of epoch `epoch` (int64 scalar) whose lanes start at `lane_starts`
        = (lane ids in visiting order, shard ordinals, record indices, byte offsets),
        int64 [n] each; blocks numbered from `first_block`, whose first `consumed`
        draws are left out. Each draw: the sampler's fields with its frame decoded
        (image, `PairSampler.load_frame`) and its window cut (pcm int16 [sliced]) +
        position (int64 [6 + 3 L], after it) + bad_frames (int32 [])."""
        records = self._epoch_records(epoch, lane_starts)
        parallel = self.options.num_parallel_calls

        def sample(lane, ordinal, index, offset, path, record):
            seed = self._seed
            for part in (_RECORD_STREAM, epoch, lane, ordinal, index):
                seed = tf.random.experimental.stateless_fold_in(seed, tf.cast(part, tf.int64))
            video = self.sampler.sample_draws(record, seed)
            video.update(lane=lane, ordinal=ordinal, index=index, offset=offset, path=path)
            return video

        draws = records.map(sample, num_parallel_calls=parallel, deterministic=True)
        blocks = draws.batch(self.records_per_block).enumerate(start=first_block)
        dealt = blocks.map(lambda block, videos: (videos, self._deal(epoch, block, videos)),
                           num_parallel_calls=parallel, deterministic=True)
        skip = lambda block: tf.where(tf.equal(block, first_block), tf.constant(consumed, tf.int64),
                                      tf.constant(0, tf.int64))
        return dealt.flat_map(lambda videos, deal: self._dealt_draws(videos, deal,
                                                                    skip(deal["block"])))

    def _dealt_draws(self, videos, deal, skip) -> tf.data.Dataset:
        """A dealt block's draws (`_deal`) from draw `skip` on, each with its frame
        taken from the block and decoded (`PairSampler.load_frame`) and its window cut
        from its record's track (`PairSampler.window_pcm`): the only copies of its
        pixels and samples before the batch."""
        frames, tracks = tf.reshape(videos["frame"], [-1]), videos["track"]

        def draw(fields):
            out = dict(fields)
            out["frame"] = tf.gather(frames, out.pop("draw"))
            out["pcm"] = self.sampler.window_pcm(tf.gather(tracks, out.pop("record")),
                                                 out.pop("begin"))
            return self.sampler.load_frame(out)

        ds = tf.data.Dataset.from_tensor_slices({key: value[skip:] for key, value in deal.items()
                                                 if key != "block"})
        ds = ds.map(draw, num_parallel_calls=self.options.num_parallel_calls, deterministic=True)
        if self.on_damage == "skip":
            ds = ds.ignore_errors(log_warning=True)  # a JPEG that passes the marker check but not
            #                                         the decoder: dropped, deterministically
        return ds

    def _epoch_records(self, epoch, lane_starts) -> tf.data.Dataset:
        """(lane, ordinal, index, offset, path, serialized record) of one epoch, the lanes
        visited in turn from their starts."""
        files, lanes = len(self.files), self.num_lanes
        seed = tf.random.experimental.stateless_fold_in(
            tf.random.experimental.stateless_fold_in(self._seed, _EPOCH_STREAM), epoch)
        order = tf.cast(tf.argsort(tf.random.stateless_uniform([files], seed)), tf.int64)
        on_damage = self.on_damage

        def lane_records(lane, ordinal, index, offset):
            ordinals = tf.range(ordinal, (files - lane + lanes - 1) // lanes, dtype=tf.int64)
            chosen = tf.gather(order, lane + lanes * ordinals)
            first = tf.equal(ordinals, ordinal)
            shards = tf.data.Dataset.from_tensor_slices((
                ordinals, tf.gather(self._paths_t, chosen), tf.gather(self._sizes_t, chosen),
                tf.where(first, index, 0), tf.where(first, offset, 0)))
            return shards.flat_map(lambda o, path, size, i0, b0: shard_reader.read_shard_positions(
                path, size, on_damage, i0, b0).map(
                    lambda record, i, b: (lane, o, i, b, path, record)))

        return tf.data.Dataset.from_tensor_slices(lane_starts).interleave(
            lane_records, cycle_length=lanes, block_length=1,
            num_parallel_calls=self.options.num_parallel_calls, deterministic=True)

    def _deal(self, epoch, block, videos: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
        """A block of n records' draws ([n, K, ...]) -> its usable draws' light fields
        in dealing order ([u K, ...]: K rounds, each a shuffle of the u usable
        records), each with the position after it, `draw` (its index in the block's
        [n K] frames), `record` (its record in the block) and `begin` (its window in
        that record's track); + block (int64 []). Frames and tracks stay in the block
        until `_dealt_draws` takes each draw's own."""
        k, lanes = self.k, self.num_lanes
        lane = videos["lane"]
        # Each lane's next record at the block's start: its first record in the block.
        mine = tf.equal(lane[None, :], tf.range(lanes, dtype=tf.int64)[:, None])     # [L, n]
        first = tf.argmax(tf.cast(mine, tf.int32), axis=1)
        present = tf.reduce_any(mine, axis=1)
        starts = tf.stack([tf.where(present, tf.gather(videos[f], first), tf.constant(v, tf.int64))
                           for f, v in (("ordinal", -1), ("index", 0), ("offset", 0))], axis=1)
        usable = tf.cast(tf.where(videos["usable"])[:, 0], tf.int32)                 # [u]
        u = tf.size(usable)
        seed = self._seed
        for part in (_DEAL_STREAM, epoch, block):
            seed = tf.random.experimental.stateless_fold_in(seed, tf.cast(part, tf.int64))
        rounds = tf.argsort(tf.random.stateless_uniform([k, u], seed), axis=1)       # [K, u]
        order = tf.reshape(tf.gather(usable, rounds) * k + tf.range(k)[:, None], [-1])
        out = {key: tf.gather(tf.reshape(videos[key], tf.concat([[-1], tf.shape(videos[key])[2:]], 0)),
                              order) for key in _DRAW_KEYS}
        out["draw"], out["record"] = order, order // k
        head = tf.stack([epoch, tf.cast(block, tf.int64), tf.constant(0, tf.int64),
                         lane[0], tf.constant(self.options.seed, tf.int64),
                         tf.constant(self.fingerprint, tf.int64)])
        vector = tf.concat([head, tf.reshape(starts, [-1])], 0)
        count = tf.shape(order, out_type=tf.int64)[0]
        consumed = tf.one_hot(2, tf.size(vector), dtype=tf.int64)                    # column 2
        out["position"] = vector[None, :] + tf.range(1, count + 1)[:, None] * consumed[None, :]
        out["bad_frames"] = tf.one_hot(0, tf.cast(count, tf.int32), on_value=self._bad_frames(videos),
                                       off_value=0, dtype=tf.int32)
        out["block"] = tf.cast(block, tf.int64)
        return out

    def _bad_frames(self, videos) -> tf.Tensor:
        """int32 []: the block's frames that are not whole JPEGs; warns (or stops) naming the
        first record that holds any."""
        return sampling.report_bad_frames(videos["bad_frames"], videos["path"], videos["index"],
                                          videos["video_id"][:, 0], self.on_damage,
                                          "in this block of records")


_DRAW_KEYS = ("frame_index", "frame_time", "video_id", "label", "begin", "audio_start",
              "image_seed", "pair_seed")  # the light fields a block's draws carry from `_deal` on


def _state(draws: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
    """A batch's stream state: the position after its last draw and the bad frames it carries."""
    return {"position": draws["position"][-1], "bad_frames": tf.reduce_sum(draws["bad_frames"])}


def stream_for(files: List[str], preset: Preset, options, input_context=None) -> TrainingStream:
    """The training stream of this input pipeline (files sharded, batch per replica)."""
    mine = options_lib.shard_files(files, input_context)
    worker = input_context.input_pipeline_id if input_context is not None else 0
    return TrainingStream(mine, preset, options, worker=worker,
                          batch_size=options_lib.batch_size(options, preset, input_context))
