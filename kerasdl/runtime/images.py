"""Image files to pixels without TensorFlow, the same pixels TensorFlow decodes, and batches of any size.

Every kerasdl image model resizes inside itself (a Keras `Resizing` layer, an
ONNX `Resize`, a LiteRT `RESIZE_BILINEAR`), so a path that feeds it only
*decodes*: training and the SavedModel decode with TensorFlow
(`kerasdl.data.image_folder.decode_image_bytes`), the TensorFlow-free paths
(ONNX Runtime, LiteRT, the edge server, `export.predict`) with `decode_image`
here. The two give identical pixels for JPEG and PNG files:

- JPEG: TensorFlow decodes with `dct_method="INTEGER_ACCURATE"`, libjpeg's
  ISLOW DCT, which is what Pillow uses (TensorFlow's default, INTEGER_FAST,
  differs from Pillow by up to 20 levels on real photos). A grey model gets
  libjpeg's own luma (Pillow's `draft("L")`), as TensorFlow's `channels=1` does.
- PNG: 8-bit values are exact; colour to grey uses libpng's weights
  (`png_set_rgb_to_gray(0.299, 0.587)` as fixed point, truncated), which
  TensorFlow's decoder applies; 16-bit samples keep their high byte, as
  `tf.io.decode_image` does.

Pillow cannot reach parity with TensorFlow's decoder by itself on those two
points, which is why this module exists instead of a bare `Image.open`.

Example:
>>> pixels = decode_image(open("photo.jpg", "rb").read(), channels=3)
>>> pixels.dtype, pixels.shape[-1]
(dtype('float32'), 3)
"""

import io

import numpy as np

# A batch of images holds at most about this many pixels per image channel: ResNet50 at
# 224x224 keeps about 0.3 GB of activations per image in TensorFlow and ONNX Runtime,
# so its batches of five (not 32) keep verification and calibration near 1.5 GB;
# CIFAR-size images still run 32 at a time.
PIXELS_PER_BATCH = 2**18

# libpng's fixed-point colour-to-grey weights for (0.299, 0.587), out of 2**15,
# as TensorFlow's PNG decoder sets them; blue takes the rest.
_PNG_GREY_WEIGHTS = (9797, 19234, 32768 - 9797 - 19234)


class ImageDecodeError(ValueError):
    """The bytes are not an image Pillow can decode; the message says why, on one line."""


def decode_image(data, channels):
    """Decodes JPEG/PNG (or BMP/GIF, first frame) bytes into float32 pixels `[H, W, channels]`, 0-255.

    Args:
        data: the encoded file's bytes.
        channels: 1 (grey) or 3 (RGB); alpha is dropped, grey is repeated.

    Raises:
        ImageDecodeError: the bytes do not decode.

    Example:
    >>> decode_image(png_bytes, channels=1).shape
    (28, 28, 1)
    """
    from PIL import Image, UnidentifiedImageError

    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.seek(0)
            if channels == 1 and image.format == "JPEG" and image.mode in ("RGB", "YCbCr"):
                # libjpeg's own grey output (the luma channel), as TensorFlow asks for it.
                image.draft("L", image.size)
            pixels = _pixels(image, channels)
    except UnidentifiedImageError:
        raise ImageDecodeError("not a decodable JPEG/PNG image") from None
    except Image.DecompressionBombError as error:  # Pillow's guard against images too large to hold.
        raise ImageDecodeError(f"too large to decode ({error})") from None
    except (OSError, ValueError, SyntaxError) as error:  # Pillow's errors for truncated or broken files.
        raise ImageDecodeError(f"a broken image ({str(error).strip() or type(error).__name__})") from None
    return pixels.astype(np.float32)


def _pixels(image, channels):
    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16-bit grey: TensorFlow keeps the high byte (uint16 -> uint8 by `>> 8`).
        grey = (np.asarray(image, dtype=np.uint32) >> 8).astype(np.uint8)
        return grey[..., None] if channels == 1 else np.repeat(grey[..., None], 3, axis=-1)
    if channels == 3:
        return np.asarray(image if mode == "RGB" else image.convert("RGB"))
    if mode == "L":
        return np.asarray(image)[..., None]
    if mode in ("LA", "La"):
        return np.asarray(image.getchannel(0))[..., None]
    rgb = np.asarray(image.convert("RGB"), dtype=np.uint32)
    red, green, blue = _PNG_GREY_WEIGHTS
    grey = (rgb[..., 0] * red + rgb[..., 1] * green + rgb[..., 2] * blue) >> 15
    return grey.astype(np.uint8)[..., None]


def shape_groups(examples):
    """Returns `[(shape, [indices])]`: the examples grouped by their array shape, in first-seen order.

    Images of different sizes cannot share one batch tensor; each group can.

    Example:
    >>> shape_groups([np.zeros((2, 3, 1)), np.zeros((4, 4, 1)), np.zeros((2, 3, 1))])
    [((2, 3, 1), [0, 2]), ((4, 4, 1), [1])]
    """
    groups = {}
    for index, example in enumerate(examples):
        groups.setdefault(tuple(np.shape(example)), []).append(index)
    return list(groups.items())


def image_batch_size(shape, limit=32):
    """Returns how many images of `shape` (`[H, W, ...]`) one batch holds: `limit`, fewer for large images.

    Example:
    >>> image_batch_size((224, 224, 3)), image_batch_size((32, 32, 3))
    (5, 32)
    """
    pixels = int(shape[0]) * int(shape[1]) if len(shape) >= 2 else 1
    return max(1, min(int(limit), PIXELS_PER_BATCH // max(1, pixels)))


def run_grouped(examples, run, batch_size=32):
    """Runs `run(stacked float32 batch) -> [b, ...]` on `examples` of any shapes; returns rows in input order.

    Examples that share a shape are stacked into batches of at most `batch_size`
    (fewer for large images, `image_batch_size`).

    Example:
    >>> run_grouped([np.zeros((2, 2, 3)), np.ones((5, 4, 3))], lambda batch: batch.mean(axis=(1, 2)))
    array([[0., 0., 0.], [1., 1., 1.]], dtype=float32)
    """
    rows = [None] * len(examples)
    for shape, indices in shape_groups(examples):
        size = image_batch_size(shape, batch_size) if len(shape) == 3 else batch_size
        for start in range(0, len(indices), size):
            chosen = indices[start : start + size]
            outputs = np.asarray(run(np.stack([np.asarray(examples[index], dtype=np.float32) for index in chosen])))
            for index, row in zip(chosen, outputs):
                rows[index] = row
    if not rows:
        return np.zeros((0,), dtype=np.float32)
    return np.stack(rows)


def check_image_sizes(images, input_shape):
    """Raises `kerasdl.runtime.ArtifactError` when a model of one fixed size (`input_shape` `[H, W, C]`) gets another size.

    kerasdl's image models take any size and resize inside; a model built
    before they did takes one size, and no path resizes behind its back.

    Example:
    >>> check_image_sizes([np.zeros((8, 8, 1))], [None, None, 1])  # any size: nothing to check
    """
    from kerasdl.runtime import ArtifactError

    shape = list(input_shape or [])
    if len(shape) != 3 or shape[0] is None or shape[1] is None:
        return
    for index, image in enumerate(images):
        height, width = np.shape(image)[:2]
        if (height, width) != (shape[0], shape[1]):
            raise ArtifactError(
                f"item {index} is {height}x{width}, but this model takes {shape[0]}x{shape[1]} images only "
                "(it was built before models resized inside); retrain and re-export it, or resize the images first"
            )
