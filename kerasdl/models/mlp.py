"""The MLP classifier: its builder and its registry entry.

Keras is imported inside the builder so that the registry (and `--help`) loads
without TensorFlow.
"""

from kerasdl.models.registry import call_builder, register_model
from kerasdl.search_space import TRAINING_RANGES, Choice, Float, Int


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

    The model takes raw features (or raw pixels, which it flattens) and returns
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

    from kerasdl.models.layers import standardization_layer

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
    inputs = keras.Input(shape=tuple(input_shape), name="inputs")
    x = normalization(inputs) if normalization is not None else inputs
    x = flatten(x)
    for layer in hidden_layers:
        x = layer(x)
    logits = logits_layer(x)
    return keras.Model(inputs, logits, name=name)


# What `python -m training.tune mlp` searches, and why.
SEARCH_SPACE = {
    **TRAINING_RANGES,
    "model.hidden_units": Choice((64, 128, 256, 512), reason="the seed's 128 for 64 features; raw pixels and larger sets use wider layers"),
    "model.num_hidden_layers": Int(1, 3, reason="one hidden layer is the seed's; a second or third helps pixels more than features"),
    "model.dropout_rate": Float(0.0, 0.5, step=0.1, reason="0 is the seed's; wider layers on small sets need some"),
}


# A shallow network: ONNX Runtime matches it as closely as the SavedModel does.
@register_model("mlp", modalities=("features", "image"), builders=(mlp,), tolerances={"onnx": 1e-5}, search_space=SEARCH_SPACE)
def build_from_data(facts, **options):
    """The `mlp` entry: the data's shape, classes and statistics, plus the `model.*` options."""
    return call_builder(
        mlp, options, input_shape=facts.input_shape, num_classes=facts.num_classes,
        normalization_mean=facts.normalization_mean, normalization_variance=facts.normalization_variance,
    )
