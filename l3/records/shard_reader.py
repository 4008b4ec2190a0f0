"""Reading TFRecord shards with damage handling: the first stage of the pair pipeline.

A shard damaged on disk (truncated by an interrupted copy, a flipped byte
failing a record's CRC) makes `tf.data.TFRecordDataset` raise `DataLossError`
at the damaged record, naming neither the file nor what is lost. Two ways:

  on_damage="skip" (default for a long job: it loses the rest of one shard,
      not the night): each shard is read through `ignore_errors` (which ends
      that shard at its first error) while a `scan` adds up the bytes of the
      records read (12 + len + 4 each); at the end of the shard, fewer bytes
      than the file's size means it was cut short at byte `consumed`, and a
      warning on stderr names the shard, the offset, the records kept and the
      bytes lost. Reading goes on with the next shard. Pure graph ops, so a
      resumed run meets the same damage the same way; but tf.data cannot hold
      `ignore_errors` in a *symbolic* iterator checkpoint, so such pipelines
      checkpoint in full.
  on_damage="stop": the plain reader; `DataLossError` propagates and
      `damaged_shard_error` (called by `l3.train.train` and
      `l3.eval.avc.evaluate_avc`) turns it into a one-line
      `errors.DamagedShardError` naming the shard and the byte offset.
"""

import sys
from typing import List, Sequence, Tuple

import tensorflow as tf

from l3.core import errors
from l3.records import framing

ON_DAMAGE = ("skip", "stop")
REMOTE_READ_BUFFER = 256 * 1024  # TFRecordDataset's own default


def read_buffer(path: tf.Tensor) -> tf.Tensor:
    """int64 []: TFRecordDataset's read buffer for `path` (string []): none for a local
    file (each record is read straight into its string: 1.1 vs 1.6-2.0 ms CPU a
    2.26-MB record here), TensorFlow's default 256 KB for a URL (gs://, s3://, ...),
    where unbuffered reads would be three requests a record."""
    remote = tf.strings.regex_full_match(path, "[A-Za-z][A-Za-z0-9+.-]*://.*")
    return tf.where(remote, tf.constant(REMOTE_READ_BUFFER, tf.int64), tf.constant(0, tf.int64))


def file_sizes(files: Sequence[str]) -> List[int]:
    """Sizes in bytes (one stat per shard, at pipeline build time)."""
    return [int(tf.io.gfile.stat(f).length) for f in files]


def shard_table(files: Sequence[str]) -> Tuple[tf.Tensor, tf.Tensor]:
    """(paths string [n], sizes int64 [n]): what `from_tensor_slices` takes for `read_shard`."""
    return (tf.constant(list(files), tf.string),
            tf.constant(file_sizes(files), tf.int64))


@tf.autograph.experimental.do_not_convert
def read_shard(path: tf.Tensor, size: tf.Tensor, on_damage: str = "skip") -> tf.data.Dataset:
    """Serialized records (string []) of one shard of `size` bytes, damage handled as told."""
    return read_shard_positions(path, size, on_damage).map(lambda record, index, offset: record)


@tf.autograph.experimental.do_not_convert
def read_shard_positions(path: tf.Tensor, size: tf.Tensor, on_damage: str = "skip",
                         start_index=0, start_offset=0) -> tf.data.Dataset:
    """(record string [], index int64 [], offset int64 []) of one shard of `size` bytes:
    each record with its index in the shard and the byte offset where its framing starts.

    Reading starts at record `start_index`, which begins at byte `start_offset`
    (0, 0: the whole shard): the records before it are skipped by
    `TFRecordDataset.skip` (framing only, no parsing), which is how a resumed
    training stream goes back to where it was (`l3.pairs.stream`). Damage as
    `on_damage` says (the module docstring); the skip policy's end-of-shard
    check counts bytes from `start_offset`.
    """
    if on_damage not in ON_DAMAGE:
        raise ValueError(f"on_damage must be one of {ON_DAMAGE}, got {on_damage!r}")
    start = (tf.cast(start_offset, tf.int64), tf.cast(start_index, tf.int64))
    raw = tf.data.TFRecordDataset(path, buffer_size=read_buffer(path)).skip(
        tf.cast(start_index, tf.int64))
    if on_damage == "stop":
        return raw.scan(start, _advance).map(lambda record, is_end, offset, index:
                                              (record, index, offset))
    records = raw.ignore_errors()
    marked = records.map(lambda r: (r, tf.constant(False)))
    ends = tf.data.Dataset.from_tensors((tf.constant(b""), tf.constant(True)))

    def count(state, element):
        record, is_end = element
        new_state = tf.cond(is_end, lambda: state, lambda: _grown(state, record))
        return new_state, (record, is_end, state[0], state[1])

    scanned = marked.concatenate(ends).scan(start, count)

    def check(record, is_end, consumed, kept):
        n = tf.strings.as_string
        message = tf.strings.join([
            "WARNING: damaged shard ", path, " at byte ", n(consumed), " of ", n(size),
            ": kept its first ", n(kept), " records, skipped the remaining ", n(size - consumed),
            " bytes (l3-verify-tfrecords lists every damaged shard)"])
        warned = tf.cond(tf.logical_and(is_end, consumed < size),
                         lambda: _warn(message), lambda: tf.constant(False))
        with tf.control_dependencies([warned]):
            return tf.identity(record), is_end, consumed, kept

    return (scanned.map(check)
            .filter(lambda record, is_end, offset, index: tf.logical_not(is_end))
            .map(lambda record, is_end, offset, index: (record, index, offset)))


def _grown(state, record):
    """(offset, index) after `record`: its framing is 12 + len + 4 bytes."""
    offset, index = state
    return (offset + tf.cast(tf.strings.length(record), tf.int64) + framing.HEADER
            + framing.FOOTER, index + 1)


def _advance(state, record):
    return _grown(state, record), (record, tf.constant(False), state[0], state[1])


def _warn(message: tf.Tensor) -> tf.Tensor:
    with tf.control_dependencies([tf.print(message, output_stream=sys.stderr)]):
        return tf.constant(True)


@tf.autograph.experimental.do_not_convert
def read_shards(files: Sequence[str], on_damage: str = "skip") -> tf.data.Dataset:
    """Serialized records of `files` in order, each shard read by `read_shard`."""
    return tf.data.Dataset.from_tensor_slices(shard_table(files)).flat_map(
        lambda path, size: read_shard(path, size, on_damage))


def damaged_shard_error(files: Sequence[str], error: BaseException) -> errors.DamagedShardError:
    """A one-line error naming the shard and offset of TensorFlow's DataLossError `error`."""
    found = framing.locate_damage(files, str(error))
    if found is None:
        first = str(getattr(error, "message", error)).strip().splitlines()[0]
        return errors.DamagedShardError(f"damaged input record in one of {len(files)} shards: "
                                        f"{first} (l3-verify-tfrecords finds which)")
    path, problem = found
    return errors.DamagedShardError(f"damaged shard {path}: {problem} (--on_damaged_shard=skip "
                                    "skips the rest of a damaged shard)")
