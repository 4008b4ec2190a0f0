"""Presets: the faithful `paper` configuration and a `small` one for CPUs.

Both share every line of model, pipeline and training code; only these
numbers differ. `small` exists so that training learns something in minutes
on a 2-core CPU (tests, the demo, laptops):

* audio at 16 kHz (decimated by 3 from the 48 kHz records, inside the
  pipeline) with the paper's 0.01 s window and half-window hop: 160 / 80
  samples, 256-point FFT, so still 199 frames, now 129 bands;
* frames resized to 72 on the smaller side and cropped to 64x64;
* block widths 8, 16, 32, 64 (an eighth of the paper's), embedding 64-D:
  2.6x faster per pair on 2 CPU cores than 16..128, and on the demo corpus
  it reaches ~80 % held-out AVC accuracy in 900 steps of 64 pairs.

The same four conv+conv+pool blocks, the stride-2 conv1_1, batch norm, global
max-pool and fusion head are kept, so the architecture family is unchanged.
The transfer max-pool kernels are chosen, as in the paper, so that conv4_2
pools to 4x4 (vision) and 4x3 (audio).
"""

import dataclasses
from typing import Tuple

from l3 import constants as C


@dataclasses.dataclass(frozen=True)
class Preset:
    """Every size that differs between presets. Read-only."""

    name: str
    # Audio front end (section 2.2). `sample_rate` is the encoder's input rate.
    sample_rate: int
    stft_window: int
    stft_hop: int
    fft_length: int
    # Frames (section 2.2).
    resize_side: int
    image_size: int
    # Networks (section 2.1).
    block_filters: Tuple[int, int, int, int]
    conv1_1_stride: int
    fusion_hidden: int
    # Transfer pooling of conv4_2 (sections 3.3, 3.4): kernel = stride.
    vision_transfer_pool: Tuple[int, int]
    audio_transfer_pool: Tuple[int, int]
    # Training (section 2.2).
    global_batch_size: int
    learning_rate: float
    weight_decay: float
    # Not from the paper (it gives no batch-norm settings): the moving-average
    # momentum of batch norm. Keras' 0.99 for `paper`; 0.9 for `small`, whose
    # short, fast-moving runs otherwise evaluate with statistics that lag the
    # weights (held-out AVC accuracy ~10 points below the training accuracy).
    bn_momentum: float = 0.99
    clip_seconds: float = C.CLIP_SECONDS
    log_offset: float = C.LOG_OFFSET

    @property
    def clip_samples(self) -> int:
        """Samples in one audio clip at `sample_rate` (48000 for `paper`)."""
        return int(round(self.clip_seconds * self.sample_rate))

    @property
    def decimation(self) -> int:
        """Integer factor from the records' 48 kHz to `sample_rate`."""
        if C.SAMPLE_RATE % self.sample_rate:
            raise ValueError(f"{self.sample_rate} Hz does not divide {C.SAMPLE_RATE} Hz")
        return C.SAMPLE_RATE // self.sample_rate

    @property
    def spectrogram_frames(self) -> int:
        return 1 + (self.clip_samples - self.stft_window) // self.stft_hop

    @property
    def spectrogram_bands(self) -> int:
        return self.fft_length // 2 + 1

    @property
    def embedding_dim(self) -> int:
        return self.block_filters[-1]

    @property
    def vision_conv4_shape(self) -> Tuple[int, int, int]:
        """conv4_2 of the vision network: [height, width, channels]."""
        s = _conv_trunk_size(self.image_size, self.conv1_1_stride)
        return (s, s, self.block_filters[-1])

    @property
    def audio_conv4_shape(self) -> Tuple[int, int, int]:
        """conv4_2 of the audio network: [bands, frames, channels]."""
        return (_conv_trunk_size(self.spectrogram_bands, self.conv1_1_stride),
                _conv_trunk_size(self.spectrogram_frames, self.conv1_1_stride),
                self.block_filters[-1])

    @property
    def vision_transfer_dim(self) -> int:
        h, w, c = self.vision_conv4_shape
        ph, pw = self.vision_transfer_pool
        return (h // ph) * (w // pw) * c

    @property
    def audio_transfer_dim(self) -> int:
        h, w, c = self.audio_conv4_shape
        ph, pw = self.audio_transfer_pool
        return (h // ph) * (w // pw) * c

    def sizes(self) -> dict:
        """The sizes an exported encoder's user needs (goes in export.json)."""
        return {
            "preset": self.name,
            "sample_rate": self.sample_rate,
            "clip_samples": self.clip_samples,
            "image_size": self.image_size,
            "spectrogram": [self.spectrogram_bands, self.spectrogram_frames],
            "embedding_dim": self.embedding_dim,
            "audio_transfer_dim": self.audio_transfer_dim,
            "vision_transfer_dim": self.vision_transfer_dim,
        }


def _conv_trunk_size(n: int, conv1_stride: int) -> int:
    """Spatial size at conv4_2: "same" conv1_1 with stride, then 3 valid 2x2 pools."""
    n = -(-n // conv1_stride)  # ceil: "same" padding
    for _ in range(3):
        n //= C.POOL_SIZE
    return n


PAPER = Preset(
    name="paper",
    sample_rate=C.SAMPLE_RATE,
    stft_window=C.STFT_WINDOW,
    stft_hop=C.STFT_HOP,
    fft_length=C.FFT_LENGTH,
    resize_side=C.RESIZE_SMALLER_SIDE,
    image_size=C.IMAGE_SIZE,
    block_filters=C.BLOCK_FILTERS,
    conv1_1_stride=C.CONV1_1_STRIDE,
    fusion_hidden=C.FUSION_HIDDEN,
    vision_transfer_pool=C.VISION_TRANSFER_POOL,
    audio_transfer_pool=C.AUDIO_TRANSFER_POOL,
    global_batch_size=C.GLOBAL_BATCH,
    learning_rate=C.LEARNING_RATE,
    weight_decay=C.WEIGHT_DECAY,
)

SMALL = Preset(
    name="small",
    sample_rate=16_000,
    stft_window=160,   # 0.01 s, as in the paper
    stft_hop=80,       # half-window hop, as in the paper
    fft_length=256,
    resize_side=72,
    image_size=64,
    block_filters=(8, 16, 32, 64),
    conv1_1_stride=C.CONV1_1_STRIDE,
    fusion_hidden=C.FUSION_HIDDEN,
    vision_transfer_pool=(1, 1),   # conv4_2 4x4 -> 4x4
    audio_transfer_pool=(2, 4),    # conv4_2 8x12 -> 4x3
    global_batch_size=64,
    learning_rate=1e-3,  # a 100x shorter run; see WORKSPACE_NOTES.md
    weight_decay=C.WEIGHT_DECAY,
    bn_momentum=0.9,
)

PRESETS = {p.name: p for p in (PAPER, SMALL)}


def get_preset(name: str) -> Preset:
    """Returns the preset called `name` ("paper" or "small")."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}") from None
