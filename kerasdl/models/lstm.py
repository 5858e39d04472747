"""The LSTM classifier builder for numeric sequences."""

import keras
import numpy as np


def lstm(
    input_shape,
    num_classes,
    hidden_size=64,
    num_layers=1,
    dropout_rate=0.2,
    bidirectional=False,
    normalization_mean=None,
    normalization_variance=None,
    use_cudnn=False,
    name="lstm",
):
    """Builds a stacked (bi)LSTM that classifies zero-padded numeric sequences.

    The model takes raw float32 sequences `[batch, T, F]` padded with 0.0 after
    their end; `T` may be `None` (any length). A `Masking(mask_value=0.0)` layer
    on the raw input marks the padding, so a time step whose features are all
    exactly 0.0 counts as padding, also inside a sequence; data where such steps
    carry meaning should be shifted first. The mask then follows through the
    per-feature `Normalization` (which would otherwise turn padding into
    non-zero values) and the LSTMs, so the last LSTM returns the state of each
    sequence's last valid step: padding never changes a prediction.

    The LSTMs use the generic (non-cuDNN) kernel by default: with
    `use_cudnn="auto"` Keras picks the cuDNN kernel on a GPU, and a model traced
    that way holds `CudnnRNNV3` ops that ONNX cannot convert. The generic kernel
    computes the same function, slower on a GPU.

    Args:
        input_shape: `(T, F)`; `T` may be `None` for variable-length sequences.
        num_classes: number of output classes.
        hidden_size: units of each LSTM (per direction).
        num_layers: stacked LSTM layers; all but the last return sequences.
        dropout_rate: dropout after each LSTM layer; 0 disables it.
        bidirectional: wrap each LSTM in `Bidirectional` (concatenated outputs).
        normalization_mean: per-feature mean of the training split (valid steps only).
        normalization_variance: per-feature variance of the training split.
        use_cudnn: passed to every `keras.layers.LSTM`; keep False for ONNX export.
        name: the model's name.

    Example:
    >>> model = lstm(input_shape=(None, 1), num_classes=2, hidden_size=16)
    >>> model.output_shape
    (None, 2)
    """
    input_shape = tuple(input_shape)
    if len(input_shape) != 2:
        raise ValueError(f"lstm needs sequences of shape (time steps or None, features), got {input_shape}")
    if num_layers < 1:
        raise ValueError(f"num_layers must be at least 1, got {num_layers}")

    # Layers.
    masking = keras.layers.Masking(mask_value=0.0, name="masking")
    normalization = None
    if normalization_mean is not None:
        normalization = standardization_layer(normalization_mean, normalization_variance, name="normalization")
    recurrent_layers = recurrent_stack(hidden_size, num_layers, bidirectional, dropout_rate, use_cudnn)
    logits_layer = keras.layers.Dense(num_classes, name="logits")

    # Functional model.
    inputs = keras.Input(shape=input_shape, name="sequences")
    x = masking(inputs)
    if normalization is not None:
        x = normalization(x)
    for layer in recurrent_layers:
        x = layer(x)
    logits = logits_layer(x)
    return keras.Model(inputs, logits, name=name)


def recurrent_stack(hidden_size, num_layers, bidirectional, dropout_rate, use_cudnn=False):
    """Returns the layers of a stacked (Bi)LSTM that ends in its last state, in call order.

    Every LSTM but the last returns sequences; each is followed by Dropout when
    `dropout_rate > 0`. Shared by `lstm` and `text_lstm`.

    Example:
    >>> [layer.name for layer in recurrent_stack(32, 2, False, 0.2)]
    ['lstm_0', 'dropout_0', 'lstm_1', 'dropout_1']
    """
    layers = []
    for index in range(num_layers):
        recurrent = keras.layers.LSTM(hidden_size, return_sequences=index < num_layers - 1, use_cudnn=use_cudnn, name=f"lstm_{index}")
        if bidirectional:
            recurrent = keras.layers.Bidirectional(recurrent, merge_mode="concat", name=f"bidirectional_{index}")
        layers.append(recurrent)
        if dropout_rate > 0:
            layers.append(keras.layers.Dropout(dropout_rate, name=f"dropout_{index}"))
    return layers


def standardization_layer(mean, variance, name="normalization"):
    """Returns a layer computing `(x - mean) / sqrt(variance)` per feature (last axis), ONNX-safe.

    `keras.layers.Normalization(mean=..., variance=...)` (and an adapted one)
    keeps its statistics as eager tensors, which tracing captures: a model
    exported with `model.export(format="onnx")` then asks for two bogus extra
    graph inputs holding them. `Rescaling` keeps plain numbers in its config
    and turns them into tensors inside `call`, so the statistics become graph
    constants. It also passes the mask on.

    Args:
        mean: per-feature mean (a number or a 1-D sequence).
        variance: per-feature variance, same shape as `mean`.
        name: the layer's name.

    Example:
    >>> layer = standardization_layer([1.0, 2.0], [4.0, 9.0])
    >>> layer(numpy.array([[3.0, 5.0]], "float32"))  # -> [[1.0, 1.0]]
    """
    if variance is None:
        raise ValueError("normalization_variance is required with normalization_mean")
    mean = np.asarray(mean, dtype="float64")
    variance = np.asarray(variance, dtype="float64")
    if mean.shape != variance.shape:
        raise ValueError(f"normalization mean {mean.shape} and variance {variance.shape} must have the same shape")
    # The same floor on the deviation as keras.layers.Normalization.
    deviation = np.maximum(np.sqrt(variance), keras.config.epsilon())
    scale = (1.0 / deviation).astype("float32").tolist()
    offset = (-mean / deviation).astype("float32").tolist()
    return keras.layers.Rescaling(scale=scale, offset=offset, name=name)
