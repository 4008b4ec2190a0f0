"""TFRecord framing in Python: records, their masked CRC32C, and where a shard is damaged.

A TFRecord file is a sequence of

    uint64 length | uint32 masked_crc32c(length bytes) | data | uint32 masked_crc32c(data)

(little-endian), the mask being crc rotated right by 15 bits plus 0xa282ead8.
This reads it independently of TensorFlow's reader: the verifier
(`l3_tfrecords.integrity`) walks every record, and `locate_damage` turns
TensorFlow's "corrupted record at N" (no file name) into the shard it means.
No TensorFlow here.
"""

import os
import re
import struct
from typing import Iterator, Optional, Sequence, Tuple

import google_crc32c

MASK_DELTA = 0xA282EAD8
HEADER = 12   # uint64 length + uint32 masked crc of it
FOOTER = 4    # uint32 masked crc of the data


def masked_crc32c(data: bytes) -> int:
    """TFRecord's CRC: crc32c rotated right by 15 bits plus a constant (mod 2**32)."""
    crc = google_crc32c.value(bytes(data))
    return (((crc >> 15) | (crc << 17)) + MASK_DELTA) & 0xFFFFFFFF


class FramingError(Exception):
    """A record that cannot be read; `offset` is the byte where the record starts."""

    def __init__(self, offset: int, what: str):
        super().__init__(f"{what} at byte {offset}")
        self.offset, self.what = offset, what


def read_record(f, offset: int, file_size: int) -> Optional[bytes]:
    """The data of the record starting at `offset` (None at the end); FramingError if damaged."""
    f.seek(offset)
    header = f.read(HEADER)
    if not header:
        return None
    if len(header) < HEADER:
        raise FramingError(offset, f"truncated record header ({len(header)} of {HEADER} bytes)")
    length, length_crc = struct.unpack("<QI", header)
    if masked_crc32c(header[:8]) != length_crc:
        raise FramingError(offset, "length CRC mismatch (corrupted length field)")
    if offset + HEADER + length + FOOTER > file_size:
        raise FramingError(offset, f"truncated record ({file_size - offset - HEADER} of "
                           f"{length + FOOTER} bytes after the header)")
    data = f.read(length)
    (data_crc,) = struct.unpack("<I", f.read(FOOTER))
    if masked_crc32c(data) != data_crc:
        raise FramingError(offset, "data CRC mismatch (corrupted record)")
    return data


def iter_records(path: str) -> Iterator[Tuple[int, bytes]]:
    """(byte offset, data) of each record; raises `FramingError` at the first bad one."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        offset = 0
        while True:
            data = read_record(f, offset, size)
            if data is None:
                return
            yield offset, data
            offset += HEADER + len(data) + FOOTER


_TF_OFFSET = re.compile(r"(corrupted|truncated) record at (\d+)")


def locate_damage(files: Sequence[str], message: str) -> Optional[Tuple[str, FramingError]]:
    """(shard, error) for TensorFlow's DataLossError `message` among `files`, or None.

    TensorFlow names the offset only ("corrupted record at N", "truncated
    record at N"). The shard is the one with a record there that is damaged
    in that way, the offset being a record start (found by walking the
    length fields: a read per record before it, no data read).
    """
    match = _TF_OFFSET.search(message)
    if not match:
        return None
    at = int(match.group(2))
    # TensorFlow's record reader: a bad length CRC is reported at the record's start, a bad
    # data CRC at start + HEADER, a short read at the start: (start, what it must find there).
    if match.group(1) == "corrupted":
        candidates = ((at - HEADER, "data CRC"), (at, "length CRC"))
    else:
        candidates = ((at, "truncated"),)
    for path in files:
        try:
            size = os.path.getsize(path)
            with open(path, "rb") as f:
                for start, expected in candidates:
                    if 0 <= start < size and _is_record_start(f, start):
                        try:
                            read_record(f, start, size)
                        except FramingError as e:
                            if e.what.startswith(expected):
                                return path, e
        except OSError:
            continue
    return None


def _is_record_start(f, offset: int) -> bool:
    """Whether walking the length fields from byte 0 lands on `offset` (header reads only)."""
    position = 0
    while position < offset:
        f.seek(position)
        header = f.read(8)
        if len(header) < 8:
            return False
        position += HEADER + struct.unpack("<Q", header)[0] + FOOTER
    return position == offset
