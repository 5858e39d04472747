"""Image augmentation as Keras preprocessing layers, applied in the tf.data pipeline.

The layers run on whole batches inside `Dataset.map` (vectorized, after `batch`) and on
the training split only. They are never part of the model, so nothing random reaches
an exported graph. They are held by a `keras.layers.Pipeline`, not a `keras.Sequential`:
inside `Dataset.map` a Pipeline runs its layers on TensorFlow whatever the Keras backend
(a Sequential under JAX tries to turn the symbolic tf.Tensor into a JAX array and fails).

The geometric augmentation follows the image size (`kerasdl.config.AugmentConfig`, where
None means "by size"): small images (both sides at most `SMALL_IMAGE_SIDE`) get the
standard CIFAR recipe, pad + random crop (a random shift) + flip; larger ones rotation +
zoom + flip. `SIZE_DEFAULTS` holds both sets and the measurement behind them.
"""

import keras

# The side (px) up to which an image counts as small (issue 14 section 4: CIFAR-size images).
SMALL_IMAGE_SIDE = 64
# What None means for each geometric option, for small and for larger images. Small images:
# rotation and zoom are each a full projective-transform pass (60 % of the augmentation's
# CPU time on CIFAR-10 JPEGs, benchmarks/RESULTS.md), and at 32 px they blur what little
# detail there is; a shift of up to 1/8 of the side (CIFAR's 4 px of 32, pad + crop) is the
# standard recipe. The measured accuracy effect is in benchmarks/small_data.py (`cnn_*` cases).
SIZE_DEFAULTS = {
    "small": {"translation": 0.125, "rotation": 0.0, "zoom": 0.0},
    "large": {"translation": 0.0, "rotation": 0.05, "zoom": 0.1},
}


def size_defaults(image_shape):
    """The geometric options None stands for, for images of `image_shape` (`(height, width, channels)`).

    Example:
    >>> size_defaults((32, 32, 3))["translation"], size_defaults((224, 224, 3))["rotation"]
    (0.125, 0.05)
    """
    small = image_shape is not None and max(image_shape[:2]) <= SMALL_IMAGE_SIDE
    return SIZE_DEFAULTS["small" if small else "large"]


def make_augmenter(flip="horizontal", rotation=None, zoom=None, brightness=0.1, contrast=0.1, translation=None, seed=42, image_shape=None):
    """Returns a `keras.layers.Pipeline` of random layers for raw 0-255 images, or None if all are off.

    Args:
        flip: "horizontal", "vertical", "horizontal_and_vertical" or "none".
        rotation: maximum rotation as a fraction of a full turn; 0 disables it; None
            follows the image size (`size_defaults`).
        zoom: maximum zoom in or out as a fraction of the size; 0 disables it; None by size.
        brightness: maximum brightness shift as a fraction of the 0-255 range; 0 disables it.
        contrast: maximum contrast factor change; 0 disables it.
        translation: maximum shift as a fraction of the height and width, the empty border
            filled with black: pad + random crop, per image; 0 disables it; None by size.
        seed: the seed of every layer, so that a run is repeatable.
        image_shape: `(height, width, channels)`, for the options left None.

    Example:
    >>> augmenter = make_augmenter(rotation=0.1, image_shape=(32, 32, 3))
    >>> augmenter(images, training=True).shape == images.shape
    True
    """
    by_size = size_defaults(image_shape)
    rotation = by_size["rotation"] if rotation is None else rotation
    zoom = by_size["zoom"] if zoom is None else zoom
    translation = by_size["translation"] if translation is None else translation
    layers = []
    if flip and flip != "none":
        layers.append(keras.layers.RandomFlip(flip, seed=seed, name="random_flip"))
    if translation:
        # Keras' RandomCrop draws one offset per batch; RandomTranslation shifts each image
        # on its own, and nearest interpolation keeps pixels whole, as a crop does.
        layers.append(keras.layers.RandomTranslation(
            translation, translation, fill_mode="constant", interpolation="nearest", seed=seed + 5, name="random_translation",
        ))
    if rotation:
        layers.append(keras.layers.RandomRotation(rotation, fill_mode="reflect", seed=seed + 1, name="random_rotation"))
    if zoom:
        layers.append(keras.layers.RandomZoom(zoom, fill_mode="reflect", seed=seed + 2, name="random_zoom"))
    if brightness:
        layers.append(keras.layers.RandomBrightness(brightness, value_range=(0, 255), seed=seed + 3, name="random_brightness"))
    if contrast:
        layers.append(keras.layers.RandomContrast(contrast, value_range=(0, 255), seed=seed + 4, name="random_contrast"))
    if not layers:
        return None
    return keras.layers.Pipeline(layers, name="augmenter")
