"""Media I/O with PyAV (FFmpeg): decode videos and audio files, write test media.

Shared by the TFRecord builder, the embedding tool, the audio-transfer tools
and the tests. Nothing here imports TensorFlow, so builder worker processes
stay light.

Clock: every time returned is in seconds on the *container's* clock, shifted so
that the container's start time is 0. Frame times and the audio start are on
that same clock, which is what keeps frames and audio aligned in the records.

Frame sampling (`decode_video`): target times t_k = k / fps from 0; for each,
the latest frame whose presentation time is <= t_k is kept (once: a frame that
is the latest for several targets is stored once), with *its own* presentation
time. This is correct for variable-frame-rate videos, where frame i is not at
i / rate.

Default frame rate: `DEFAULT_FPS` = 4. The paper does not say how frames were
sampled ("a random frame" from the first 10 s). A positive pair is a frame
inside a 1 s audio clip, so anything finer than ~1 s only buys visual
diversity, and frames a few hundred ms apart are near duplicates. At 4 fps every
1 s audio window still contains 4 candidate frames, and the JPEG frames of a
10 s clip (~40 x 25 KB at quality 90, smaller side 256) take about as much
space as its 48 kHz int16 audio (960 KB): ~2 MB a video, ~0.8 TB for the
paper's 400k videos. 25-30 fps would be ~7x that for near-duplicate frames.

Modules:

    source        opening a file, `MediaError` and its `REASONS`, the container clock
    audio_stream  audio frames -> float32 mono [samples]: mixdown, gaps, resampling; `decode_audio`
    video_frames  display geometry and the frame sampler (the rule above)
    decode        `decode_video`: a decoder with one method per stage -> `DecodedVideo`
    write         `write_video`, `write_wav`: test media in many containers and codecs
"""

from l3.media.audio_stream import decode_audio, mixdown_weights
from l3.media.decode import DEFAULT_FPS, DecodedVideo, decode_video
from l3.media.source import REASONS, MediaError
from l3.media.write import CONTAINER_CODECS, container_codecs, write_video, write_wav

__all__ = [
    "CONTAINER_CODECS", "DEFAULT_FPS", "DecodedVideo", "MediaError", "REASONS", "container_codecs",
    "decode_audio", "decode_video", "mixdown_weights", "write_video", "write_wav",
]
