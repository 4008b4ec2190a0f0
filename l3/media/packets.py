"""Per-packet decoding as FFmpeg's command line does it: a packet the decoder rejects is lost,
the stream goes on.

`ffmpeg -i` logs "Error while decoding stream #0:1: Invalid data found when
processing input" (or EINVAL from `avcodec_send_packet`) for each bad packet
and keeps decoding the next ones; a corrupt Ogg page or a damaged mp4 sample
costs that packet's milliseconds, not the file. `PacketDecoder` does the same
for `l3.media.decode` (videos: the builder and the embedding tool) and
`decode_audio` (audio files), and counts the losses per stream for the
video's warnings.
"""

import collections
from typing import Dict, List, Optional, Tuple

import av


class PacketDecoder:
    """`decode(packet)` -> the packet's frames, or [] if its decoder rejected it (counted)."""

    def __init__(self, origin: float = 0.0):
        self.origin = origin
        self.seen: Dict[int, int] = collections.Counter()
        self.lost: Dict[int, int] = collections.Counter()
        self.first_loss: Dict[int, Tuple[Optional[float], str]] = {}
        self.streams: Dict[int, str] = {}

    def decode(self, packet) -> list:
        stream = packet.stream
        self.seen[stream.index] += 1
        try:
            return packet.decode()
        except av.error.FFmpegError as e:
            if isinstance(e, EOFError):
                raise
            self.lost[stream.index] += 1
            if stream.index not in self.first_loss:
                self.streams[stream.index] = f"{stream.type} stream #{stream.index} " \
                                             f"({stream.codec_context.name})"
                self.first_loss[stream.index] = (self._time(packet), _short(e))
            return []

    def _time(self, packet) -> Optional[float]:
        if packet.pts is None or packet.time_base is None:
            return None
        return float(packet.pts * packet.time_base) - self.origin

    def lost_packets(self, kind: str) -> int:
        """Packets lost in streams of `kind` ("audio" or "video")."""
        return sum(n for i, n in self.lost.items() if self.streams[i].startswith(kind))

    def warnings(self) -> List[str]:
        """One line per stream that lost packets, e.g. "lost 40 of 250 packets of audio stream
        #1 (vorbis), the first at 2.1 s (Invalid data ...); decoded the rest"."""
        out = []
        for index in sorted(self.lost):
            t, why = self.first_loss[index]
            at = "" if t is None else f" at {t:.1f} s"
            out.append(f"lost {self.lost[index]} of {self.seen[index]} packets of "
                       f"{self.streams[index]} to decoding errors, the first{at} ({why}); "
                       "decoded the rest")
        return out


def _short(e: BaseException) -> str:
    message = getattr(e, "strerror", None) or str(e) or type(e).__name__
    return message.splitlines()[0][:120]
