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

Front ends (`input_repr`, issue 15): "linear" is the paper's spectrogram and
the default of both presets; "mel128" / "mel256" are log-mel spectrograms
with the same window and hop (`l3.model.frontend`). A preset with a mel front end
is named "<preset>-<input_repr>" (`Preset.key`, e.g. "small-mel128"):
that name is what train_config.json and export.json record, so every tool
that rebuilds a preset from a name (`get_preset`) gets its front end back.
"""

import dataclasses
from typing import Optional, Tuple

from l3.core import constants as C


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
    # Batch-norm statistics in training over groups of this many pairs of a
    # replica's batch ("ghost" batch norm; None: the replica's whole batch).
    # `paper`: 16, the pairs one GPU's batch norm saw in the paper's 16-GPU
    # set-up (16 x 16 = 256), so that any replica count reproduces those
    # statistics (WORKSPACE_NOTES.md, "Batch-norm groups"). `small`: None.
    bn_group_size: Optional[int] = None
    clip_seconds: float = C.CLIP_SECONDS
    log_offset: float = C.LOG_OFFSET
    # Front end (issue 15; not from the paper unless "linear").
    input_repr: str = "linear"
    mel_fft_length: int = C.MEL_FFT_LENGTH

    @property
    def key(self) -> str:
        """The preset's full name: `name`, or "<name>-<input_repr>" for a mel front end."""
        return self.name if self.input_repr == "linear" else f"{self.name}-{self.input_repr}"

    @property
    def frontend_fft_length(self) -> int:
        """FFT points of the front end (`fft_length`, or `mel_fft_length` for mel)."""
        return self.fft_length if self.input_repr == "linear" else self.mel_fft_length

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
        """Height of the audio network's input image: FFT bins or mel bands."""
        if self.input_repr == "linear":
            return self.fft_length // 2 + 1
        return C.MEL_BANDS[self.input_repr]

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
            "preset": self.key,
            "input_repr": self.input_repr,
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
    bn_group_size=C.PER_REPLICA_BATCH,
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
    mel_fft_length=1024,  # 0.064 s at 16 kHz, as 2048 points are at 48 kHz
)

PRESETS = {p.name: p for p in (PAPER, SMALL)}


def with_input_repr(preset: Preset, input_repr: str) -> Preset:
    """`preset` with the front end `input_repr` ("linear", "mel128" or "mel256").

    The audio transfer pool is re-chosen so that conv4_2 still pools to 4x3
    (kernel = stride, sections 3.3): e.g. paper-mel128's conv4_2 is 8x12,
    pooled 2x4.
    """
    if input_repr not in C.INPUT_REPRS:
        raise ValueError(f"unknown input_repr {input_repr!r}; choose one of {list(C.INPUT_REPRS)}")
    base = PRESETS[preset.name]
    if input_repr == "linear":
        return base
    mel = dataclasses.replace(base, input_repr=input_repr)
    h, w, _ = mel.audio_conv4_shape
    return dataclasses.replace(mel, audio_transfer_pool=(max(1, h // 4), max(1, w // 3)))


def preset_key(name: str, input_repr: str = "linear") -> str:
    """The full preset name for a base preset and a front end: "small", "small-mel128"."""
    return with_input_repr(get_preset(name), input_repr).key


def get_preset(name: str, input_repr: Optional[str] = None) -> Preset:
    """Returns the preset called `name`: "paper", "small", or one of them with a
    front-end suffix ("paper-mel128", "small-mel256"); `input_repr`, if given,
    sets the front end (and must agree with a suffix)."""
    base, _, suffix = name.partition("-")
    if base not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}"
                         f" (optionally with a front end: -{'/-'.join(C.INPUT_REPRS[1:])})")
    if suffix and input_repr and suffix != input_repr:
        raise ValueError(f"preset {name!r} has front end {suffix!r}, not {input_repr!r}")
    return with_input_repr(PRESETS[base], input_repr or suffix or "linear")
