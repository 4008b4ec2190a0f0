"""Frame preprocessing (section 2.2): resize, crop, flip, brightness/saturation jitter.

Every op takes one image [height, width, 3] and works eagerly and inside
tf.data. Images come out float32 in [0, 1]. Randomness comes in through an
explicit stateless seed (int [2]), so a pipeline is reproducible.

Jitter ranges (the paper names the augmentations but not their ranges): the
Inception/slim preprocessing of the time, brightness delta up to 32/255 and
saturation factor in [0.5, 1.5] (`constants.BRIGHTNESS_MAX_DELTA`,
`constants.SATURATION_RANGE`).
"""

import tensorflow as tf

from l3 import constants as C


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


def center_crop(image, size: int):
    """The central size x size window: [h, w, 3] -> [size, size, 3]."""
    shape = tf.shape(image)
    top = (shape[0] - size) // 2
    left = (shape[1] - size) // 2
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
