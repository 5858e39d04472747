"""The size of an image folder's images: the first one's shape, and the check that they share it.

Headers only, where that is enough (Pillow reads a JPEG's or PNG's size without decoding
it), so that a folder of thousands of photos is sized in milliseconds.
"""

import numpy as np

from kerasdl.data.source import DataError


def native_shape(files, root):
    """`(height, width, channels)` of the first file that decodes (channels 1 for grey, else 3).

    Args:
        files: image paths, tried in order; a file that does not decode is passed over.
        root: the data folder, for the message when none decodes.

    Example:
    >>> native_shape(["../shared/data/hymenoptera/val/ants/Hormiga.jpg"], "hymenoptera")[2]
    3
    """
    import tensorflow as tf

    for path in files:
        try:
            image = tf.io.decode_image(tf.io.read_file(path), channels=0, expand_animations=False)
        except (tf.errors.InvalidArgumentError, tf.errors.NotFoundError):
            continue  # A bad file: the pre-check names it.
        height, width, channels = (int(size) for size in image.shape)
        return height, width, 1 if channels <= 2 else 3
    raise DataError(f"{root}: none of the training images decodes; check the files (e.g. open a few in an image viewer)")


# Image headers read to tell a uniformly-sized set (CIFAR-10, MNIST) from mixed photos: 64
# evenly spaced files take milliseconds and catch any set whose sizes vary more than rarely.
_SIZE_SAMPLE = 64


def check_one_size(files, native_size, root):
    """Fails in one line when the images differ in size and no `data.image_size` is set.

    Without a size every image takes the first one's; for mixed photos that is an accident
    (hymenoptera's first photo, 768x512, gave the CNN 805M parameters), so the user picks one.

    Args:
        files: the files of every split.
        native_size: `(height, width)` of the first image that decodes.
        root: the data folder, for the message.

    Example:
    >>> check_one_size(np.array(["../shared/data/hymenoptera/val/ants/Hormiga.jpg"]), (534, 800), "hymenoptera")
    >>> check_one_size(np.array(["../shared/data/hymenoptera/val/ants/Hormiga.jpg"]), (32, 32), "hymenoptera")
    Traceback (most recent call last):
    kerasdl.data.source.DataError: hymenoptera: the images differ in size (32x32, 800x534); set one size for all of them, ...
    """
    from PIL import Image

    sizes = {tuple(native_size)}
    for path in files[np.linspace(0, len(files) - 1, min(len(files), _SIZE_SAMPLE)).astype(int)]:
        try:
            with Image.open(path) as image:  # Reads the header only.
                sizes.add((image.height, image.width))
        except Exception:  # noqa: BLE001 - an unreadable file is the pre-check's to name.
            continue
    if len(sizes) > 1:
        shown = ", ".join(f"{width}x{height}" for height, width in sorted(sizes)[:3])
        raise DataError(
            f"{root}: the images differ in size ({shown}{', ...' if len(sizes) > 3 else ''}); "
            "set one size for all of them, e.g. --set data.image_size=[128,128] (the model resizes to it inside too)"
        )
