"""The CNN classifier: its builder and its registry entry.

Keras is imported inside the builder so that the registry (and `--help`) loads
without TensorFlow.
"""

from kerasdl.models.registry import call_builder, register_model
from kerasdl.search_space import TRAINING_RANGES, Choice, Float


def cnn(
    input_shape,
    num_classes,
    filters=(32, 64),
    kernel_size=3,
    dense_units=512,
    dropout_rate=0.5,
    batch_norm=False,
    normalization_mean=None,
    normalization_variance=None,
    name="cnn",
):
    """Builds the seed's CNN: [Conv(3x3, same) (+BN) + ReLU + MaxPool] per filter count,
    then Dense(dense_units), Dropout, Dense logits.

    With the defaults it is the seed network: Conv(32)+pool, Conv(64)+pool,
    Dense(512), Dropout(0.5), Dense(num_classes). Convolutions use "same"
    padding (PyTorch's `padding=1`) and pooling rounds up, so any input size
    of at least 1x1 and any channel count work. The model takes raw pixels
    (0-255) of any size, resizes them to `input_shape` inside (see
    `kerasdl.models.layers.image_input`) and returns logits.

    Args:
        input_shape: `(height, width, channels)`.
        num_classes: number of output classes.
        filters: output channels of each convolution block.
        kernel_size: convolution kernel size.
        dense_units: width of the hidden Dense layer.
        dropout_rate: dropout before the logits; 0 disables it.
        batch_norm: add BatchNormalization after each convolution.
        normalization_mean: per-channel mean of the training split.
        normalization_variance: per-channel variance of the training split.
        name: the model's name.

    Example:
    >>> model = cnn(input_shape=(32, 32, 3), num_classes=10)
    >>> model.output_shape
    (None, 10)
    """
    import keras

    from kerasdl.models.layers import image_input, standardization_layer

    # Layers.
    normalization = None
    if normalization_mean is not None:
        normalization = standardization_layer(normalization_mean, normalization_variance, name="normalization")
    blocks = []
    for index, block_filters in enumerate(filters):
        block = [
            keras.layers.Conv2D(
                block_filters,
                kernel_size,
                padding="same",
                # BatchNormalization has its own shift, so the conv bias would be redundant.
                use_bias=not batch_norm,
                name=f"conv_{index}",
            )
        ]
        if batch_norm:
            block.append(keras.layers.BatchNormalization(name=f"batch_norm_{index}"))
        block.append(keras.layers.ReLU(name=f"relu_{index}"))
        block.append(keras.layers.MaxPooling2D(pool_size=2, padding="same", name=f"pool_{index}"))
        blocks.append(block)
    flatten = keras.layers.Flatten(name="flatten")
    dense = keras.layers.Dense(dense_units, activation="relu", name="dense")
    dropout = keras.layers.Dropout(dropout_rate, name="dropout") if dropout_rate > 0 else None
    logits_layer = keras.layers.Dense(num_classes, name="logits")

    # Functional model.
    inputs, x = image_input(input_shape)
    x = normalization(x) if normalization is not None else x
    for block in blocks:
        for layer in block:
            x = layer(x)
    x = dense(flatten(x))
    if dropout is not None:
        x = dropout(x)
    logits = logits_layer(x)
    return keras.Model(inputs, logits, name=name)


# What `python -m training.tune cnn` searches, and why.
SEARCH_SPACE = {
    **TRAINING_RANGES,
    "model.filters": Choice(
        ((32, 64), (32, 64, 128), (64, 128)),
        reason="the seed's two blocks, a third block for 32 px and larger images, or twice the width",
    ),
    "model.dense_units": Choice((128, 256, 512), reason="the seed's 512 holds most of the parameters; narrower heads overfit small sets less"),
    "model.dropout_rate": Float(0.0, 0.6, step=0.1, reason="the seed's 0.5 suits a few thousand images; more data wants less, fewer wants more"),
    "model.batch_norm": Choice((False, True), reason="normalizing each convolution allows higher learning rates and often trains faster"),
}


# Static (calibrated) int8: activations dominate a convolutional network's
# quantization error, and calibrated scales are both accurate and fast.
# TensorFlow (oneDNN convolutions) trains it faster: benchmarks/backends.py --quick (CIFAR-10
# 32x32x3, 1,350 examples, batch 64, spe=16, shared 2-core CPU): 2.8k examples/s against 733
# on JAX (best steady epoch), CPU 0.49 against 1.41 ms/example; test accuracy 0.430 against 0.431.
@register_model("cnn", modalities=("image",), builders=(cnn,), quantization="static", backend="tensorflow", search_space=SEARCH_SPACE)
def build_from_data(facts, **options):
    """The `cnn` entry: the data's shape, classes and statistics, plus the `model.*` options."""
    return call_builder(
        cnn, options, input_shape=facts.input_shape, num_classes=facts.num_classes,
        normalization_mean=facts.normalization_mean, normalization_variance=facts.normalization_variance,
    )
