"""The MLP classifier: its builder and its registry entry.

Keras is imported inside the builder so that the registry (and `--help`) loads
without TensorFlow.
"""

from kerasdl.models.registry import call_builder, register_model


def mlp(
    input_shape,
    num_classes,
    hidden_units=128,
    num_hidden_layers=1,
    dropout_rate=0.0,
    normalization_mean=None,
    normalization_variance=None,
    name="mlp",
):
    """Builds the seed's MLP: `num_hidden_layers` x Dense(relu), then Dense logits.

    The model takes raw features, or raw pixels of any size, which it resizes to
    `input_shape` (see `kerasdl.models.layers.image_input`) and flattens, and returns
    logits; train it with `from_logits=True`. When the normalization statistics
    of the training split are given, a `Normalization` layer applies them inside
    the model, so that an exported model takes raw values.

    Args:
        input_shape: shape of one example, without the batch axis, e.g. `(64,)`.
        num_classes: number of output classes.
        hidden_units: width of each hidden Dense layer.
        num_hidden_layers: how many hidden Dense layers.
        dropout_rate: dropout after each hidden layer; 0 disables it.
        normalization_mean: per-feature (last axis) mean of the training split.
        normalization_variance: per-feature variance of the training split.
        name: the model's name.

    Example:
    >>> model = mlp(input_shape=(64,), num_classes=10)
    >>> model.output_shape
    (None, 10)
    """
    import keras

    from kerasdl.models.layers import image_input, standardization_layer

    # Layers.
    normalization = None
    if normalization_mean is not None:
        normalization = standardization_layer(normalization_mean, normalization_variance, name="normalization")
    flatten = keras.layers.Flatten(name="flatten")
    hidden_layers = []
    for index in range(num_hidden_layers):
        hidden_layers.append(keras.layers.Dense(hidden_units, activation="relu", name=f"hidden_{index}"))
        if dropout_rate > 0:
            hidden_layers.append(keras.layers.Dropout(dropout_rate, name=f"dropout_{index}"))
    logits_layer = keras.layers.Dense(num_classes, name="logits")

    # Functional model.
    inputs, x = image_input(input_shape)
    x = normalization(x) if normalization is not None else x
    x = flatten(x)
    for layer in hidden_layers:
        x = layer(x)
    logits = logits_layer(x)
    return keras.Model(inputs, logits, name=name)


# A shallow network: ONNX Runtime matches it as closely as the SavedModel does.
@register_model("mlp", modalities=("features", "image"), builders=(mlp,), tolerances={"onnx": 1e-5})
def build_from_data(facts, **options):
    """The `mlp` entry: the data's shape, classes and statistics, plus the `model.*` options."""
    return call_builder(
        mlp, options, input_shape=facts.input_shape, num_classes=facts.num_classes,
        normalization_mean=facts.normalization_mean, normalization_variance=facts.normalization_variance,
    )
