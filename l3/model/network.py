"""L3-Net (section 2.1): vision and audio subnetworks, fusion head, AVC model.

Every network is a functional Keras model with named layers, so endpoints
are reachable by name (`model.get_layer("conv4_2_bn")`):

* `conv{b}_{i}` (3x3 conv, no bias: batch norm follows), `conv{b}_{i}_bn`
  (conv4_2_bn is "conv4_2 before ReLU"), `conv{b}_{i}_relu` (after ReLU),
  `pool{b}` (2x2/2 max-pool for b = 1..3; `pool4` is the global max-pool, the
  512-D embedding).

Only Keras layers and `keras.ops` are used (no TensorFlow import), so the
networks build, train and load under the TensorFlow, JAX and PyTorch backends.

Batch norm in training may take its statistics over groups of G examples of
the batch ("ghost" batch norm, `GhostBatchNormalization`, `bn_group_size`):
the training model only; inference uses the moving averages either way, so
encoders are built, exported and loaded with Keras' own BatchNormalization.

Shapes for the paper preset:
  vision: image [b, 224, 224, 3] in [0, 1] -> conv4_2 [b, 14, 14, 512] -> [b, 512]
  audio: waveform [b, 48000] -> spectrogram [b, 257, 199, 1]
         -> conv4_2 [b, 16, 12, 512] -> [b, 512]
  avc: (image, waveform) -> logits [b, 2] (index 1 = "corresponds")
"""

from typing import Dict

import keras
from keras import layers

from l3.core import constants as C
from l3.core import fileio
from l3.model import frontend
from l3.core.presets import Preset

VISION = "vision"
AUDIO = "audio"


@keras.saving.register_keras_serializable(package="l3")
class GhostBatchNormalization(layers.BatchNormalization):
    """Batch norm whose training statistics are those of groups of `group_size` examples.

    Training, input [b, ..., c] with b = n * G (G = min(group_size, b)):
    the batch is cut into n consecutive groups of G examples; each group is
    normalised with its own mean and (biased) variance over its G examples
    and every position, per channel:
      y = gamma * (x - mean_g) / sqrt(var_g + epsilon) + beta.
    The moving averages are updated with the mean of the n group means and
    the mean of the n group variances (Keras 2's `virtual_batch_size` rule).
    With b <= group_size, or in inference, this is Keras' BatchNormalization.
    Same weights as BatchNormalization, so checkpoints load into either.
    """

    def __init__(self, group_size: int, **kwargs):
        super().__init__(**kwargs)
        if group_size < 1:
            raise ValueError(f"group_size must be >= 1, got {group_size}")
        self.group_size = int(group_size)

    def call(self, inputs, training=None, mask=None):
        batch = inputs.shape[0]
        whole = batch is not None and batch <= self.group_size
        if not training or not self.trainable or mask is not None or self.synchronized or whole:
            return super().call(inputs, training=training, mask=mask)
        if batch is not None and batch % self.group_size:
            raise ValueError(f"{self.name}: batch of {batch} is not a multiple of the batch-norm "
                             f"group size {self.group_size}")
        x = keras.ops.cast(inputs, "float32")
        shape = keras.ops.shape(x)
        grouped = keras.ops.reshape(x, (-1, self.group_size, *shape[1:]))
        axes = list(range(1, len(x.shape)))  # group members and positions, not the channel
        mean, variance = keras.ops.moments(grouped, axes=axes, keepdims=True)
        inv = keras.ops.rsqrt(variance + self.epsilon)
        if self.scale:
            inv = inv * keras.ops.cast(self.gamma, "float32")
        offset = -mean * inv
        if self.center:
            offset = offset + keras.ops.cast(self.beta, "float32")
        y = keras.ops.reshape(grouped * inv + offset, shape)
        flat = list(range(len(x.shape)))  # the group axis and the kept singleton axes
        batch_mean = keras.ops.mean(mean, axis=flat)
        batch_variance = keras.ops.mean(variance, axis=flat)
        m = self.momentum
        self.moving_mean.assign(keras.ops.cast(self.moving_mean, "float32") * m
                                + batch_mean * (1.0 - m))
        self.moving_variance.assign(keras.ops.cast(self.moving_variance, "float32") * m
                                    + batch_variance * (1.0 - m))
        return keras.ops.cast(y, self.compute_dtype)

    def get_config(self):
        return {**super().get_config(), "group_size": self.group_size}


def check_bn_group_size(group_size, replica_batch: int) -> None:
    """Raises ValueError unless batch-norm groups of `group_size` (None or 0: the whole
    batch) tile a replica's batch of `replica_batch` examples."""
    if group_size is None or group_size == 0:
        return
    if group_size < 0:
        raise ValueError(f"bn_group_size must be >= 0, got {group_size}")
    if replica_batch > group_size and replica_batch % group_size:
        raise ValueError(f"a replica's batch of {replica_batch} pairs is not a multiple of "
                         f"bn_group_size {group_size}")


def batch_norm(bn_momentum: float, name: str, group_size=None):
    """Keras' BatchNormalization, or `GhostBatchNormalization` for a group size (not 0/None)."""
    if group_size:
        return GhostBatchNormalization(group_size, momentum=bn_momentum, name=name)
    return layers.BatchNormalization(momentum=bn_momentum, name=name)


def conv_block(x, filters: int, block: int, first_stride: int = 1, pool: bool = True,
               bn_momentum: float = 0.99, bn_group_size=None):
    """conv -> BN -> ReLU, twice, then a 2x2/2 valid max-pool (unless `pool` is False).

    [b, h, w, c] -> [b, ceil(h / first_stride) // 2, ceil(w / first_stride) // 2, filters]
    `bn_group_size`: training statistics over groups of that many examples (`batch_norm`).
    """
    for i, stride in ((1, first_stride), (2, 1)):
        name = f"conv{block}_{i}"
        x = layers.Conv2D(filters, C.KERNEL_SIZE, strides=stride, padding="same",
                          use_bias=False, name=name)(x)
        x = batch_norm(bn_momentum, f"{name}_bn", bn_group_size)(x)
        x = layers.ReLU(name=f"{name}_relu")(x)
    if pool:
        x = layers.MaxPooling2D(C.POOL_SIZE, strides=C.POOL_SIZE, padding="valid",
                                name=f"pool{block}")(x)
    return x


def _trunk(x, preset: Preset, bn_group_size=None):
    """Four conv blocks + global max-pool: [b, h, w, c] -> [b, filters[-1]]."""
    for block, filters in enumerate(preset.block_filters, start=1):
        stride = preset.conv1_1_stride if block == 1 else 1
        x = conv_block(x, filters, block, first_stride=stride, pool=block < 4,
                       bn_momentum=preset.bn_momentum, bn_group_size=bn_group_size)
    return layers.GlobalMaxPooling2D(name="pool4")(x)


def build_vision_network(preset: Preset, name: str = "vision_network",
                         bn_group_size=None) -> keras.Model:
    """image float32 [b, S, S, 3] in [0, 1] -> embedding [b, D] (S, D from the preset)."""
    image = keras.Input((preset.image_size, preset.image_size, 3), name="image")
    x = layers.Rescaling(2.0, offset=-1.0, name="to_signed")(image)  # [0, 1] -> [-1, 1]
    return keras.Model(image, _trunk(x, preset, bn_group_size), name=name)


def build_audio_network(preset: Preset, name: str = "audio_network",
                        frontend_precision: str = "float64", frontend_dft: str = "fft",
                        bn_group_size=None) -> keras.Model:
    """waveform float32 [b, N] at preset.sample_rate -> embedding [b, D].

    The front end (`preset.input_repr`: log-spectrogram or log-mel) is the
    first layer ("spectrogram"): [b, N] -> [b, bands, frames, 1], frequency
    as height, time as width. `frontend_precision` "float32" and
    `frontend_dft` "matmul" are for runtimes without float64 or complex
    numbers (the ONNX and LiteRT exports); see `l3.model.frontend`.
    """
    waveform = keras.Input((preset.clip_samples,), name="waveform")
    x = frontend.LogSpectrogram(preset.stft_window, preset.stft_hop, preset.frontend_fft_length,
                                preset.log_offset, input_repr=preset.input_repr,
                                sample_rate=preset.sample_rate, precision=frontend_precision,
                                dft=frontend_dft, name="spectrogram")(waveform)
    return keras.Model(waveform, _trunk(x, preset, bn_group_size), name=name)


def build_fusion(preset: Preset, name: str = "fusion") -> keras.Model:
    """[b, D] vision, [b, D] audio -> logits [b, 2]: concat, fc1 (ReLU), fc2."""
    d = preset.embedding_dim
    v = keras.Input((d,), name="vision_embedding")
    a = keras.Input((d,), name="audio_embedding")
    x = layers.Concatenate(name="concat")([v, a])
    x = layers.Dense(preset.fusion_hidden, activation="relu", name="fc1")(x)
    logits = layers.Dense(C.NUM_OUTPUTS, name="fc2", dtype="float32")(x)
    return keras.Model([v, a], logits, name=name)


def build_avc_model(preset: Preset, name: str = "l3_avc", bn_group_size=None) -> keras.Model:
    """The whole L3-Net: {image, waveform} -> logits float32 [b, 2].

    Sub-models are reachable as layers "vision_network", "audio_network", "fusion".
    `bn_group_size` (training; `l3.train.Trainer`): batch-norm statistics over
    groups of that many examples (`GhostBatchNormalization`); None or 0: Keras'
    BatchNormalization. Both hold the same weights: a checkpoint of one loads into the other.
    """
    vision = build_vision_network(preset, bn_group_size=bn_group_size)
    audio = build_audio_network(preset, bn_group_size=bn_group_size)
    fusion = build_fusion(preset)
    image = keras.Input(vision.input_shape[1:], name="image")
    waveform = keras.Input(audio.input_shape[1:], name="waveform")
    logits = fusion([vision(image), audio(waveform)])
    return keras.Model({"image": image, "waveform": waveform}, logits, name=name)


def subnetworks(avc_model: keras.Model) -> Dict[str, keras.Model]:
    """{"vision": ..., "audio": ..., "fusion": ...} of an AVC model."""
    return {VISION: avc_model.get_layer("vision_network"),
            AUDIO: avc_model.get_layer("audio_network"),
            "fusion": avc_model.get_layer("fusion")}


def build_encoder(subnetwork: keras.Model, preset: Preset, modality: str) -> keras.Model:
    """An encoder with the export contract's outputs, sharing `subnetwork`'s weights.

    Returns a model: input as the subnetwork's -> {"embedding": [b, D],
    "conv4_2_pooled": [b, P]}, where conv4_2_pooled is conv4_2 max-pooled with
    kernel = stride (sections 3.3 and 3.4) and flattened:
      vision: after ReLU, 14x14 -> 4x4 (paper; P = 8192);
      audio: before ReLU, 16x12 -> 4x3 (paper; P = 6144).
    """
    if modality == VISION:
        conv4 = subnetwork.get_layer("conv4_2_relu").output
        pool = preset.vision_transfer_pool
    elif modality == AUDIO:
        conv4 = subnetwork.get_layer("conv4_2_bn").output
        pool = preset.audio_transfer_pool
    else:
        raise ValueError(f"modality must be {VISION!r} or {AUDIO!r}, got {modality!r}")
    pooled = layers.MaxPooling2D(pool, strides=pool, padding="valid",
                                 name="conv4_2_transfer_pool")(conv4)
    pooled = layers.Flatten(name="conv4_2_pooled")(pooled)
    outputs = {"embedding": subnetwork.output, "conv4_2_pooled": pooled}
    return keras.Model(subnetwork.input, outputs, name=f"{modality}_encoder")


def weight_decay_variables(model: keras.Model):
    """The variables L2 weight decay applies to: conv and dense kernels (not BN, not biases)."""
    return [v for v in model.trainable_variables if v.path.endswith("kernel")]


def correspondence_probability(logits):
    """AVC logits [b, 2] (any float dtype) -> P(corresponds) float32 [b]: softmax(logits)[:, 1].

    Works on tensors of any backend and on symbolic Keras tensors (a
    functional model's output).
    """
    logits = keras.ops.cast(logits, "float32")
    return keras.ops.softmax(logits, axis=-1)[:, 1]


def correspondence(avc_model: keras.Model, image, waveform, training: bool = False):
    """P(corresponds) float32 [b] of an AVC model for image [b, S, S, 3] in [0, 1] and waveform [b, N].

    The one definition every tool uses (training-time evaluation, l3-eval-avc,
    the Kinetics baselines, the exported `avc` signature): the softmax of the
    model's two logits, index 1 ("corresponds"). Backend-neutral (`keras.ops`).
    """
    logits = avc_model({"image": image, "waveform": waveform}, training=training)
    return correspondence_probability(logits)


def l2_penalty(model: keras.Model, weight_decay: float):
    """The L2 weight-decay term: 0.5 * weight_decay * sum ||w||^2 over `weight_decay_variables`.

    float32 scalar; its gradient adds weight_decay * w to each conv and dense
    kernel and nothing elsewhere (2017 TensorFlow's `wd * tf.nn.l2_loss(w)`;
    Keras' `regularizers.l2(wd)` is twice this). 0.0 when `weight_decay` is 0
    or the model has no trainable kernels.
    """
    variables = weight_decay_variables(model)
    if not weight_decay or not variables:
        return keras.ops.convert_to_tensor(0.0, "float32")
    squares = [keras.ops.sum(keras.ops.square(keras.ops.cast(v.value, "float32"))) for v in variables]
    return 0.5 * weight_decay * keras.ops.sum(keras.ops.stack(squares))


def weights_digest(model: keras.Model) -> str:
    """sha256 of every model variable's bytes, in order (equal digests: equal weights)."""
    return fileio.arrays_digest(keras.ops.convert_to_numpy(v) for v in model.weights)
