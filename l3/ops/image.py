"""Frame preprocessing (section 2.2): resize, crop, flip, brightness/saturation jitter.

Every op takes one image [height, width, 3] and works eagerly and inside
tf.data. Images come out float32 in [0, 1]. Randomness comes in through an
explicit stateless seed (int [2]), so a pipeline is reproducible.

Training frames travel to the accelerator as uint8: the host makes the view
(`train_view`: resize, crop, flip) and the training step finishes it on the
device (`jitter_batch`: [0, 1] scaling, then brightness and saturation with
per-image factors drawn as `color_jitter` draws them). `train_image` is the
same augmentation in one float32 function, the reference.

Jitter ranges (the paper names the augmentations but not their ranges): the
Inception/slim preprocessing of the time, brightness delta up to 32/255 and
saturation factor in [0.5, 1.5] (`constants.BRIGHTNESS_MAX_DELTA`,
`constants.SATURATION_RANGE`).
"""

import tensorflow as tf

from l3.core import constants as C


def to_float(image):
    """uint8 [h, w, 3] (or float already in [0, 1]) -> float32 [h, w, 3] in [0, 1]."""
    return tf.image.convert_image_dtype(image, tf.float32)


def resize_smaller_side(image, side: int):
    """Scales uniformly so that min(height, width) == side (bilinear, antialiased).

    [h, w, 3] -> float32 [h', w', 3] with min(h', w') == side.
    """
    image = to_float(image)
    shape = tf.cast(tf.shape(image)[:2], tf.float32)
    scale = tf.cast(side, tf.float32) / tf.reduce_min(shape)
    new_size = tf.maximum(tf.cast(tf.round(shape * scale), tf.int32), side)
    return tf.image.resize(image, new_size, method="bilinear", antialias=True)


def random_crop(image, size: int, seed):
    """A uniformly placed size x size crop: [h, w, 3] -> [size, size, 3]."""
    return tf.image.stateless_random_crop(image, [size, size, 3], seed)


def center_offsets(height, width, size: int):
    """(top, left) of the central size x size window of a height x width image.

    ((height - size) // 2, (width - size) // 2): an odd slack leaves the extra
    row / column at the bottom / right. Python ints or int tensors (for
    `tf.io.decode_and_crop_jpeg`'s window, which decodes only the crop).
    """
    return (height - size) // 2, (width - size) // 2


def center_crop(image, size: int):
    """The central size x size window (`center_offsets`): [h, w, c] -> [size, size, c].

    The one centre crop of the project: evaluation views (`eval_image`), the
    embedding tool's video frames, the ImageNet probe's validation view.
    Any dtype; numpy or tensor input; eager and inside tf.data.
    """
    shape = tf.shape(image)
    top, left = center_offsets(shape[0], shape[1], size)
    return tf.image.crop_to_bounding_box(image, top, left, size, size)


def color_jitter(image, seed, brightness: float = C.BRIGHTNESS_MAX_DELTA,
                 saturation=C.SATURATION_RANGE):
    """Brightness then saturation jitter, clipped to [0, 1]. float [h, w, 3] in [0, 1]."""
    seeds = tf.random.experimental.stateless_split(seed, 2)
    image = tf.image.stateless_random_brightness(image, brightness, seeds[0])
    image = tf.image.stateless_random_saturation(image, saturation[0], saturation[1], seeds[1])
    return tf.clip_by_value(image, 0.0, 1.0)


def train_image(image, seed, *, resize_side: int = C.RESIZE_SMALLER_SIDE,
                image_size: int = C.IMAGE_SIZE):
    """The paper's training augmentation.

    [h, w, 3] uint8 or float -> float32 [image_size, image_size, 3] in [0, 1]:
    smaller side to `resize_side`, random crop, random horizontal flip,
    brightness and saturation jitter.
    """
    seeds = tf.random.experimental.stateless_split(seed, 3)
    image = resize_smaller_side(image, resize_side)
    image = random_crop(image, image_size, seeds[0])
    image = tf.image.stateless_random_flip_left_right(image, seeds[1])
    image = color_jitter(image, seeds[2])
    return tf.ensure_shape(image, [image_size, image_size, 3])


def eval_image(image, *, resize_side: int = C.RESIZE_SMALLER_SIDE,
               image_size: int = C.IMAGE_SIZE):
    """Deterministic evaluation view: smaller side to `resize_side`, centre crop.

    [h, w, 3] -> float32 [image_size, image_size, 3] in [0, 1].
    """
    image = resize_smaller_side(image, resize_side)
    image = center_crop(image, image_size)
    return tf.ensure_shape(image, [image_size, image_size, 3])


def to_uint8(image):
    """float [h, w, 3] in [0, 1] -> uint8, rounded to the nearest level (an error
    of at most 1/510); uint8 passes through."""
    if image.dtype == tf.uint8:
        return image
    return tf.cast(tf.round(tf.clip_by_value(image, 0.0, 1.0) * 255.0), tf.uint8)


def train_view(image, seed, *, resize_side: int = C.RESIZE_SMALLER_SIDE,
               image_size: int = C.IMAGE_SIZE):
    """`train_image` without the jitter, as uint8, with `train_image`'s seeds.

    [h, w, 3] uint8 or float -> uint8 [image_size, image_size, 3]: smaller side
    to `resize_side`, random crop, random horizontal flip. `jitter_batch` on the
    device adds what `train_image` adds after that (up to the uint8 rounding
    of a resized frame, at most 1/510).
    """
    seeds = tf.random.experimental.stateless_split(seed, 3)
    image = resize_smaller_side(image, resize_side)
    image = random_crop(image, image_size, seeds[0])
    image = tf.image.stateless_random_flip_left_right(image, seeds[1])
    return tf.ensure_shape(to_uint8(image), [image_size, image_size, 3])


def jitter_parameters(batch, seed, brightness: float = C.BRIGHTNESS_MAX_DELTA,
                      saturation=C.SATURATION_RANGE):
    """(brightness delta float32 [batch] uniform in [-brightness, brightness),
    saturation factor float32 [batch] uniform in [saturation[0], saturation[1])):
    the draws `stateless_random_brightness` and `stateless_random_saturation` make."""
    seeds = tf.random.experimental.stateless_split(seed, 2)
    delta = tf.random.stateless_uniform([batch], seeds[0], -brightness, brightness)
    factor = tf.random.stateless_uniform([batch], seeds[1], saturation[0], saturation[1])
    return delta, factor


def adjust_saturation_batch(images, factor):
    """`tf.image.adjust_saturation` with one factor per image, in closed form.

    float32 [b, h, w, 3], factor [b] -> [b, h, w, 3]. In HSV, hue and value stay
    and saturation s becomes min(s * factor, 1): each channel c moves away from
    (or towards) the value v = max(r, g, b) as v - (v - c) * min(factor, v / (v - min)).
    Pixels with v <= 0 have saturation 0 in TF's HSV (they become grey at v), as
    do grey pixels (unchanged).
    """
    factor = tf.reshape(tf.cast(factor, images.dtype), [-1, 1, 1, 1])
    v = tf.reduce_max(images, axis=-1, keepdims=True)
    spread = v - tf.reduce_min(images, axis=-1, keepdims=True)
    limit = tf.math.divide_no_nan(v, spread)  # 1 / s
    scaled = v - (v - images) * tf.minimum(factor, limit)
    return tf.where(v <= 0.0, tf.broadcast_to(v, tf.shape(images)),
                    tf.where(spread > 0.0, scaled, images))


def jitter_batch(images, seed, brightness: float = C.BRIGHTNESS_MAX_DELTA,
                 saturation=C.SATURATION_RANGE):
    """The training step's end of the augmentation, on the device.

    uint8 (or float in [0, 1]) [b, S, S, 3], seed int [2] -> float32 [b, S, S, 3]
    in [0, 1]: `color_jitter` of every image, each with its own delta and factor.
    """
    images = tf.image.convert_image_dtype(images, tf.float32)
    delta, factor = jitter_parameters(tf.shape(images)[0], seed, brightness, saturation)
    images = images + tf.reshape(delta, [-1, 1, 1, 1])
    return tf.clip_by_value(adjust_saturation_batch(images, factor), 0.0, 1.0)
