"""Image augmentation as Keras preprocessing layers, applied in the tf.data pipeline.

The layers run on whole batches inside `Dataset.map` (vectorized, after `batch`) and on
the training split only. They are never part of the model, so nothing random reaches
an exported graph.
"""

import keras


def make_augmenter(flip="horizontal", rotation=0.05, zoom=0.1, brightness=0.1, contrast=0.1, seed=42):
    """Returns a `keras.Sequential` of random layers for raw 0-255 images, or None if all are off.

    Args:
        flip: "horizontal", "vertical", "horizontal_and_vertical" or "none".
        rotation: maximum rotation as a fraction of a full turn; 0 disables it.
        zoom: maximum zoom in or out as a fraction of the size; 0 disables it.
        brightness: maximum brightness shift as a fraction of the 0-255 range; 0 disables it.
        contrast: maximum contrast factor change; 0 disables it.
        seed: the seed of every layer, so that a run is repeatable.

    Example:
    >>> augmenter = make_augmenter(rotation=0.1)
    >>> augmenter(images, training=True).shape == images.shape
    True
    """
    layers = []
    if flip and flip != "none":
        layers.append(keras.layers.RandomFlip(flip, seed=seed, name="random_flip"))
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
    return keras.Sequential(layers, name="augmenter")
