"""The ResNet50 transfer-learning classifier: its builder, its fine-tuning hook and its registry entry.

Keras is imported inside the functions so that the registry (and `--help`)
loads without TensorFlow.
"""

import os
import socket
import warnings

from kerasdl.models.registry import call_builder, register_model
from kerasdl.search_space import Float, Int

# The file Keras downloads for `ResNet50(include_top=False, weights="imagenet")`.
IMAGENET_WEIGHTS_FILE = "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"

# The residual blocks of ResNet50, top first. A block is every base layer whose
# name starts with `<block>_` (e.g. `conv5_block3_1_conv`, `conv5_block3_out`).
RESIDUAL_BLOCKS = tuple(
    f"conv{stage}_block{block}"
    for stage, blocks in ((5, 3), (4, 6), (3, 4), (2, 3))
    for block in range(blocks, 0, -1)
)

# Seconds a stalled ImageNet download may wait on the network before it fails.
DOWNLOAD_TIMEOUT_S = 30


def resnet50(
    input_shape,
    num_classes,
    weights="imagenet",
    image_size: int | None = None,
    dropout_rate=0.2,
    pooling="avg",
    name="resnet50_classifier",
):
    """Builds an ImageNet ResNet50 (no top) with a new Dense head, for transfer learning.

    The model takes raw pixels (float32, 0-255) of any size with 1 or 3
    channels. Inside it a grey image is repeated to 3 channels, resized to
    `image_size` (by default the input's own size) and run through the Caffe-style
    `preprocess_input` of ResNet50; the base model (layer `resnet50`) is always
    called with `training=False`, so its BatchNormalization layers stay in
    inference mode even when they are unfrozen. The output is logits (layer
    `logits`). The base starts frozen (phase 1 of fine-tuning); call
    `set_trainable_blocks` to unfreeze its top blocks for phase 2.

    Args:
        input_shape: `(height, width, channels)` of the raw images, channels 1 or 3.
        num_classes: number of output classes.
        weights: `"imagenet"` (downloaded by Keras into `~/.keras/models/`
            unless already there), `None`/`"none"` for random weights, or the
            path of a `.h5`/`.weights.h5` file that holds the weights of the
            *base* ResNet50 without top: the Keras ImageNet file
            `resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5`, or a file
            written by `model.get_layer("resnet50").save_weights(path)`.
        image_size: the side the images are resized to, at least 32; None (the
            default) keeps the input's height and width, so the model follows
            `data.image_size` and that one setting sizes the whole run.
        dropout_rate: dropout before the logits; 0 disables it.
        pooling: `"avg"` or `"max"` global pooling of the base's features.
        name: the model's name.

    Example:
    >>> model = resnet50(input_shape=(32, 32, 3), num_classes=10, weights=None, image_size=32)
    >>> model.output_shape
    (None, 10)
    """
    import keras

    from kerasdl.models.layers import CaffePreprocessing

    input_shape = tuple(input_shape)
    if len(input_shape) != 3 or input_shape[-1] not in (1, 3):
        raise ValueError(
            f"resnet50 needs images of shape (height, width, 1 or 3 channels), got {input_shape}"
        )
    if image_size is None:
        height, width = input_shape[:2]
        if height is None or width is None or min(height, width) < 32:
            raise ValueError(
                f"resnet50 needs images of at least 32x32 (the base downsamples 32x), got {height}x{width}; "
                "set data.image_size=[32,32] or larger, or model.image_size"
            )
    else:
        if int(image_size) < 32:
            raise ValueError(f"resnet50 needs image_size of at least 32 (the base downsamples 32x), got {image_size}")
        height = width = int(image_size)
    if pooling not in ("avg", "max"):
        raise ValueError(f"pooling must be 'avg' or 'max', got {pooling!r}")

    # Layers.
    grey_to_rgb = None
    if input_shape[-1] == 1:
        grey_to_rgb = keras.layers.Concatenate(axis=-1, name="grey_to_rgb")
    resize = keras.layers.Resizing(height, width, name="resize")
    preprocess = CaffePreprocessing(name="preprocess_input")
    base = _resnet50_base(weights, (height, width), pooling)
    base.trainable = False
    dropout = keras.layers.Dropout(dropout_rate, name="dropout") if dropout_rate > 0 else None
    logits_layer = keras.layers.Dense(num_classes, name="logits")

    # Functional model.
    # Any height and width: the raw pixels are resized inside (`resize`), on every served path alike.
    inputs = keras.Input(shape=(None, None, input_shape[-1]), name="images")
    x = grey_to_rgb([inputs, inputs, inputs]) if grey_to_rgb is not None else inputs
    x = preprocess(resize(x))
    # training=False keeps BatchNormalization in inference mode in both phases:
    # updating its statistics on small fine-tuning batches would wreck the
    # pretrained features.
    x = base(x, training=False)
    if dropout is not None:
        x = dropout(x)
    logits = logits_layer(x)
    return keras.Model(inputs, logits, name=name)


def set_trainable_blocks(model, num_blocks):
    """Chooses what fine-tuning trains: the head alone, or the head plus the top `num_blocks` residual blocks.

    A block is one ResNet50 residual block, named by the Keras layer prefix:
    counting down from the top they are `conv5_block3`, `conv5_block2`,
    `conv5_block1`, `conv4_block6`, ... `conv2_block1` (16 in all; the stem
    `conv1` always stays frozen). In an unfrozen block the convolution kernels
    and biases train; every BatchNormalization layer stays frozen (and runs in
    inference mode, see `resnet50`). Layers outside the base (the head) are
    always trainable. Compile the model again after calling this: Keras reads
    the trainable flags when it compiles.

    Args:
        model: a model built by `resnet50`.
        num_blocks: 0 (phase 1: head only) up to 16.

    Returns:
        The list of unfrozen block names, top first.

    Example:
    >>> set_trainable_blocks(model, 2)
    ['conv5_block3', 'conv5_block2']
    """
    import keras

    if not 0 <= int(num_blocks) <= len(RESIDUAL_BLOCKS):
        raise ValueError(f"num_blocks must be between 0 and {len(RESIDUAL_BLOCKS)}, got {num_blocks}")
    base = model.get_layer("resnet50")
    chosen = RESIDUAL_BLOCKS[: int(num_blocks)]
    prefixes = tuple(f"{block}_" for block in chosen)
    # Setting a model's `trainable` flag sets it on every sublayer, so the base
    # is switched on first and then each of its layers is set on its own.
    base.trainable = bool(chosen)
    for layer in base.layers:
        unfrozen = layer.name.startswith(prefixes) and not isinstance(layer, keras.layers.BatchNormalization)
        layer.trainable = unfrozen
    for layer in model.layers:
        if layer is not base:
            layer.trainable = True
    return list(chosen)


def _resnet50_base(weights, size, pooling):
    """Returns `keras.applications.ResNet50` without top, named `resnet50`, for `(height, width)` images, with the requested weights."""
    import keras

    if isinstance(weights, str) and weights.lower() == "none":
        weights = None
    arguments = dict(include_top=False, input_shape=(*size, 3), pooling=pooling, name="resnet50")
    if weights is None:
        return keras.applications.ResNet50(weights=None, **arguments)
    if weights == "imagenet":
        return _imagenet_base(arguments)
    path = os.fspath(weights)
    if not os.path.isfile(path):
        raise ValueError(
            f"resnet50 weights file {path!r} not found; pass 'imagenet', 'none' or the path of a ResNet50 (no top) .h5 file"
        )
    if not path.endswith(".h5"):
        raise ValueError(f"resnet50 weights file {path!r} must end in .h5 or .weights.h5 (ResNet50 base without top)")
    base = keras.applications.ResNet50(weights=None, **arguments)
    try:
        # A mismatched file warns once per layer before Keras raises; the
        # ValueError below says it in one line instead.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            base.load_weights(path)
    except Exception as error:  # Keras raises ValueError/KeyError/OSError on a mismatched file.
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ValueError(
            f"cannot load resnet50 weights from {path!r} ({message}); the file must hold the weights of the ResNet50 "
            f"base without top, e.g. {IMAGENET_WEIGHTS_FILE} or model.get_layer('resnet50').save_weights(...)"
        ) from None
    return base


def _imagenet_base(arguments):
    """Builds the ImageNet base, failing fast with one line when the weights cannot be fetched."""
    import keras

    remedy = (
        f"cannot fetch the ImageNet ResNet50 weights (offline?); use --weights none, or a local file "
        f"(--weights path/to/{IMAGENET_WEIGHTS_FILE}), or place {IMAGENET_WEIGHTS_FILE} in "
        f"{os.path.join(os.environ.get('KERAS_HOME', '~/.keras'), 'models')}/"
    )
    # Keras downloads with urllib, which has no timeout of its own: a network
    # that drops packets instead of refusing would hang. A socket timeout makes
    # it fail within DOWNLOAD_TIMEOUT_S; it is restored at once afterwards.
    previous_timeout = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
    try:
        return keras.applications.ResNet50(weights="imagenet", **arguments)
    except Exception as error:
        if "URL fetch failure" in str(error) or isinstance(error, (OSError, TimeoutError)):
            raise ValueError(remedy) from None
        raise
    finally:
        socket.setdefaulttimeout(previous_timeout)


# The built-in digits are 8x8 grey; ResNet50 needs at least 32x32x3, so they are resized
# to that minimum rather than to ImageNet's 224, which would cost 49x the compute (the
# model follows data.image_size).
# A 50-layer network accumulates more float drift than the small models, so its
# tolerances are ten times the formats' defaults. Static int8: see the cnn entry.
@register_model(
    "resnet50",
    modalities=("image",),
    builders=(resnet50,),
    default_data={"data.image_size": [32, 32], "data.channels": 3},
    tolerances={"savedmodel": 1e-4, "onnx": 1e-3, "litert": 1e-3},
    quantization="static",
    # Convolutional, like cnn, which trains 3.8x faster on TensorFlow (see the cnn entry);
    # not measured itself (benchmarks/backends.py has no resnet50 case: no ImageNet weights here).
    backend="tensorflow",
    set_trainable_blocks=set_trainable_blocks,
    search_space={
        "train.learning_rate": Float(1e-4, 1e-2, log=True, reason="the new head on frozen features trains like a small model"),
        "model.dropout_rate": Float(0.0, 0.5, step=0.1, reason="the head's dropout; 0.2 is the default"),
        "finetune.blocks": Int(0, 3, reason="unfreezing the top residual blocks helps photos unlike ImageNet; 0 keeps the frozen-base result"),
        "finetune.learning_rate": Float(1e-6, 1e-4, log=True, reason="10x-100x below the head's rate adjusts pretrained features without destroying them"),
    },
)
def build_from_data(facts, **options):
    """The `resnet50` entry: ImageNet preprocessing is inside the model, so no statistics; phase 1 freezes the base."""
    model = call_builder(resnet50, options, input_shape=facts.input_shape, num_classes=facts.num_classes)
    set_trainable_blocks(model, 0)
    return model
