"""The built-in default dataset: scikit-learn's digits (1,797 real 8x8 handwritten digits)."""

import numpy as np

from kerasdl.data.source import splits_from_arrays

DESCRIPTION = "scikit-learn digits: 1,797 real 8x8 handwritten digits (shipped with scikit-learn, no download)"


def load_digits(view, validation_fraction=0.1, test_fraction=0.1, seed=42, image_size=None, channels=None):
    """Loads the digits as images, feature vectors or sequences, split (stratified, seeded).

    Args:
        view: "image" (8x8x1 pixels scaled to 0-255, like any photo), "features" (the 64
            raw values 0-16) or "sequence" (8 time steps of 8 features: the rows).
        validation_fraction: share of each class held out for validation.
        test_fraction: share of each class held out for the test.
        seed: the split's seed.
        image_size: `[height, width]` to resize images to (e.g. `[32, 32]`, the ResNet50
            minimum); None keeps 8x8.
        channels: 3 to repeat the grey channel into RGB; None keeps 1.

    Example:
    >>> splits = load_digits("image", image_size=[32, 32], channels=3)
    >>> splits.input_shape
    (32, 32, 3)
    """
    from sklearn.datasets import load_digits as sklearn_digits

    bunch = sklearn_digits()
    labels = bunch.target.astype(np.int64)
    if view == "features":
        x = bunch.data.astype(np.float32)
    elif view == "sequence":
        x = bunch.images.astype(np.float32)
    elif view == "image":
        # 0-16 becomes 0-255 so that digits look to a model like any other 8-bit image.
        x = (bunch.images[..., None] * (255.0 / 16.0)).astype(np.float32)
        if image_size is not None:
            import tensorflow as tf

            x = tf.image.resize(x, list(image_size), method="bilinear").numpy()
        if channels == 3:
            x = np.repeat(x, 3, axis=-1)
    else:
        raise ValueError(f"unknown digits view {view!r}; use image, features or sequence")
    splits = splits_from_arrays(
        x, labels, [str(digit) for digit in range(10)], view, DESCRIPTION,
        validation_fraction, test_fraction, seed,
    )
    # Mirrored digits are other symbols (or other digits), so flipping would teach wrong labels.
    splits.mirror_symmetric = False
    return splits
