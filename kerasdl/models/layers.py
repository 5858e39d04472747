"""Layers the builders share: per-feature and per-series standardization, the recurrent stack, the padding mask
of convolutional series models, ResNet's Caffe preprocessing, the n-gram MLP's TF-IDF weighting.

This is the one module under `kerasdl/models` that imports Keras at import
time: it defines Keras layer classes, which must be registered before a saved
model that uses them is loaded (`kerasdl.artifact.load_model` imports it).
The model files import it inside their builders.
"""

import keras
import numpy as np

# The recurrent cells a stack can use, by the name that also prefixes their layers.
RECURRENT_CELLS = {"lstm": keras.layers.LSTM, "gru": keras.layers.GRU}

# `keras.applications.resnet50.preprocess_input` ("caffe" mode) subtracts these
# per-channel ImageNet means after flipping RGB to BGR; they are in BGR order.
IMAGENET_BGR_MEAN = (103.939, 116.779, 123.68)


def standardization_layer(mean, variance, name="normalization"):
    """Returns a layer computing `(x - mean) / sqrt(variance)` per feature (last axis), ONNX-safe.

    Every numeric builder (mlp, cnn, the recurrent models) standardizes its raw
    input with this one layer. `keras.layers.Normalization(mean=..., variance=...)`
    keeps its statistics as eager tensors, which tracing captures: a model
    exported with tf2onnx then asks for two bogus extra graph inputs holding
    them. `Rescaling` keeps plain numbers in its config and turns them into
    tensors inside `call`, so the statistics become graph constants, are not
    trainable, and the mask of a masked sequence passes through.

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
    mean = np.asarray(mean, dtype="float64").reshape(-1)
    variance = np.asarray(variance, dtype="float64").reshape(-1)
    if mean.shape != variance.shape:
        raise ValueError(f"normalization mean {mean.shape} and variance {variance.shape} must have the same shape")
    # The same floor on the deviation as keras.layers.Normalization.
    deviation = np.maximum(np.sqrt(variance), keras.config.epsilon())
    scale = (1.0 / deviation).astype("float32").tolist()
    offset = (-mean / deviation).astype("float32").tolist()
    return keras.layers.Rescaling(scale=scale, offset=offset, name=name)


def image_input(input_shape, name="inputs"):
    """Returns `(keras.Input, tensor)`: a rank-3 input of any height and width, resized to `input_shape`.

    Image models take raw decoded pixels of any size (docs/CONTRACTS.md §1) and
    resize them inside with a `Resizing` layer named `resize`: bilinear with
    half-pixel centres, the `tf.image.resize` that the training pipeline
    applies, which ONNX converts to `Resize(coordinate_transformation_mode=
    "half_pixel")` and LiteRT to `RESIZE_BILINEAR(half_pixel_centers)`. Every
    artifact therefore resizes the same way, and no serving path resizes on
    its own. Other shapes (features) are returned as a plain input.

    Args:
        input_shape: `(height, width, channels)` the model works at, or any other shape.
        name: the input's name.

    Example:
    >>> inputs, resized = image_input((32, 32, 3))
    >>> inputs.shape, resized.shape
    ((None, None, None, 3), (None, 32, 32, 3))
    """
    input_shape = tuple(input_shape)
    if len(input_shape) != 3 or input_shape[0] is None or input_shape[1] is None:
        inputs = keras.Input(shape=input_shape, name=name)
        return inputs, inputs
    inputs = keras.Input(shape=(None, None, input_shape[2]), name=name)
    return inputs, keras.layers.Resizing(int(input_shape[0]), int(input_shape[1]), interpolation="bilinear", name="resize")(inputs)


def standardization_statistics(layer):
    """Returns `(mean, standard deviation)` float32 arrays of a `standardization_layer`, or None.

    Example:
    >>> standardization_statistics(standardization_layer([1.0], [4.0]))
    (array([1.], dtype=float32), array([2.], dtype=float32))
    """
    if not isinstance(layer, keras.layers.Rescaling):
        return None
    scale = np.asarray(layer.scale, dtype="float64").reshape(-1)
    offset = np.asarray(layer.offset, dtype="float64").reshape(-1)
    return (-offset / scale).astype("float32"), (1.0 / scale).astype("float32")


def recurrent_stack(cell, hidden_size, num_layers, bidirectional, dropout_rate, use_cudnn=False, recurrent_dropout=0.0):
    """Returns the layers of a stacked (bidirectional) recurrent network that ends in its last state.

    Every recurrent layer but the last returns sequences; each is followed by
    Dropout when `dropout_rate > 0`. The layers are named after the cell
    (`lstm_0`, `gru_0`, ...), so the exporters can find them.

    Args:
        cell: "lstm" or "gru".
        hidden_size: units of each layer (per direction).
        num_layers: how many recurrent layers.
        bidirectional: wrap each in `Bidirectional` (concatenated outputs).
        dropout_rate: dropout after each layer; 0 disables it.
        use_cudnn: passed to each layer; False keeps the generic kernel, which ONNX can convert.
        recurrent_dropout: dropout on each layer's recurrent state (Keras' `recurrent_dropout`,
            a no-op at inference); 0 disables it.

    Example:
    >>> [layer.name for layer in recurrent_stack("gru", 32, 2, False, 0.2)]
    ['gru_0', 'dropout_0', 'gru_1', 'dropout_1']
    """
    if cell not in RECURRENT_CELLS:
        raise ValueError(f"cell must be one of {sorted(RECURRENT_CELLS)}, got {cell!r}")
    if num_layers < 1:
        raise ValueError(f"num_layers must be at least 1, got {num_layers}")
    layers = []
    for index in range(num_layers):
        recurrent = RECURRENT_CELLS[cell](
            hidden_size, return_sequences=index < num_layers - 1, use_cudnn=use_cudnn, recurrent_dropout=recurrent_dropout,
            name=f"{cell}_{index}",
        )
        if bidirectional:
            recurrent = keras.layers.Bidirectional(recurrent, merge_mode="concat", name=f"bidirectional_{index}")
        layers.append(recurrent)
        if dropout_rate > 0:
            layers.append(keras.layers.Dropout(dropout_rate, name=f"dropout_{index}"))
    return layers


@keras.saving.register_keras_serializable(package="kerasdl")
class SeriesStandardization(keras.layers.Layer):
    """Per-series z-normalization: each series, feature by feature, to mean 0 and deviation 1 over its valid steps.

    The UCR archive's convention (every series z-normalized on its own), inside the model
    so that every artifact applies it and serving takes raw series. Masking-aware: the
    statistics skip the padded steps of the incoming mask, padded steps come out as 0.0,
    and the mask passes on. A constant series (deviation under `epsilon`) is only centred.
    A Keras layer of plain ops (sums, a square root), so tf2onnx converts it.

    Args:
        epsilon: the smallest deviation divided by.

    Example:
    >>> layer = SeriesStandardization(name="series_normalization")
    >>> layer(numpy.array([[[1.0], [3.0]]], "float32"))  # -> [[[-1.0], [1.0]]]
    """

    def __init__(self, epsilon=1e-6, **kwargs):
        super().__init__(**kwargs)
        self.epsilon = float(epsilon)
        self.supports_masking = True

    def call(self, inputs, mask=None):
        ops = keras.ops
        if mask is None:
            weights = ops.ones_like(inputs[..., :1])
        else:
            weights = ops.expand_dims(ops.cast(mask, inputs.dtype), -1)
        count = ops.maximum(ops.sum(weights, axis=1, keepdims=True), 1.0)
        mean = ops.sum(inputs * weights, axis=1, keepdims=True) / count
        centred = (inputs - mean) * weights
        deviation = ops.sqrt(ops.sum(ops.square(centred), axis=1, keepdims=True) / count)
        # Where the deviation is below epsilon the series is only centred (divided by 1).
        return centred / ops.where(deviation < self.epsilon, ops.ones_like(deviation), deviation)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config["epsilon"] = self.epsilon
        return config


@keras.saving.register_keras_serializable(package="kerasdl")
class PaddingMask(keras.layers.Layer):
    """The valid steps of zero-padded series: bool `[batch, T]`, False where every feature is exactly 0.0.

    What `keras.layers.Masking(0.0)` computes, as a tensor that a convolutional network can
    pass to its layers explicitly (a `Conv1D` drops an attached Keras mask). A series with no
    valid step at all (all zeros) counts as a series of zeros, every step valid, so that its
    masked mean divides by its length instead of by 0.

    Example:
    >>> PaddingMask(name="padding_mask")(numpy.array([[[1.0], [0.0]], [[0.0], [0.0]]], "float32"))
    >>> # -> [[True, False], [True, True]]
    """

    def call(self, inputs):
        valid = keras.ops.any(keras.ops.not_equal(inputs, 0.0), axis=-1)
        empty = keras.ops.logical_not(keras.ops.any(valid, axis=1, keepdims=True))
        return keras.ops.logical_or(valid, empty)

    def compute_output_spec(self, inputs):
        return keras.KerasTensor(inputs.shape[:-1], dtype="bool")


@keras.saving.register_keras_serializable(package="kerasdl")
class ZeroPaddedSteps(keras.layers.Layer):
    """Sets the padded steps (`mask` False) of `[batch, T, C]` to 0.0, as a 'same' convolution pads beyond the end.

    After each convolution block of a network on zero-padded series: the next convolution then
    reads zeros after a series' last valid step whether the batch was padded or not, so the
    valid steps' outputs do not depend on the padding (`kerasdl.models.fcn`).

    Example:
    >>> ZeroPaddedSteps()(numpy.ones((1, 2, 1), "float32"), mask=numpy.array([[True, False]]))  # -> [[[1.0], [0.0]]]
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True

    def call(self, inputs, mask=None):
        if mask is None:
            return inputs
        return inputs * keras.ops.expand_dims(keras.ops.cast(mask, inputs.dtype), -1)

    def compute_mask(self, inputs, mask=None):
        # The mask is consumed here: the convolution after it drops (and warns about) an attached one.
        return None

    def compute_output_shape(self, input_shape):
        return input_shape


@keras.saving.register_keras_serializable(package="kerasdl")
class CaffePreprocessing(keras.layers.Layer):
    """`keras.applications.resnet50.preprocess_input` as a layer: RGB to BGR, minus the ImageNet mean.

    The constants are plain Python floats turned into tensors inside `call`, so
    that tracing the model (SavedModel, ONNX) never captures an eager tensor as
    an extra graph input, which is what a `Lambda(preprocess_input)` does.

    Args:
        mean: the per-channel mean to subtract, in BGR order.

    Example:
    >>> layer = CaffePreprocessing(name="preprocess_input")
    >>> layer(numpy.zeros((1, 2, 2, 3), "float32"))[0, 0, 0]  # -> [-103.939, -116.779, -123.68]
    """

    def __init__(self, mean=IMAGENET_BGR_MEAN, **kwargs):
        super().__init__(**kwargs)
        self.mean = tuple(float(value) for value in mean)

    def call(self, inputs):
        bgr = keras.ops.flip(inputs, axis=-1)
        return bgr - keras.ops.convert_to_tensor(self.mean, dtype=inputs.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config["mean"] = list(self.mean)
        return config


@keras.saving.register_keras_serializable(package="kerasdl")
class SublinearTfIdf(keras.layers.Layer):
    """Turns n-gram counts into scikit-learn's `TfidfVectorizer(sublinear_tf=True)` features.

    `(1 + log(count)) * idf` for every count above 0 (0 otherwise), then each row divided
    by its L2 norm (an all-zero row stays zero). `keras.layers.TextVectorization(
    output_mode="tf_idf")` multiplies the raw count by its own IDF and does not normalize;
    on five real text sets that scored 1-4 points below this weighting with the same MLP
    (measured), so the counts come from `TextVectorization(output_mode="count")` and the
    weighting is this layer. The IDF is a non-trainable weight (saved with the model, and a
    constant in ONNX); column 0 holds TextVectorization's out-of-vocabulary count, whose
    IDF 0 leaves it out, as scikit-learn ignores unknown words.

    Args:
        idf: one weight per count column (`kerasdl.models.mlp.build_ngram_vocabulary`);
            None when loading a saved model (then `vocabulary_size` sizes it).
        vocabulary_size: the number of count columns, when `idf` is None.

    Example:
    >>> layer = SublinearTfIdf([0.0, 1.0, 2.0], name="tf_idf")
    >>> layer(numpy.array([[5, 1, 0]]))  # -> [[0.0, 1.0, 0.0]]: OOV ignored, one term left
    """

    def __init__(self, idf=None, vocabulary_size=None, **kwargs):
        super().__init__(**kwargs)
        if idf is None and vocabulary_size is None:
            raise ValueError("SublinearTfIdf needs idf (one weight per count column) or vocabulary_size")
        self._initial_idf = None if idf is None else np.asarray(idf, dtype="float32").reshape(-1)
        self.vocabulary_size = int(len(self._initial_idf) if idf is not None else vocabulary_size)

    def build(self, input_shape):
        if input_shape[-1] is not None and input_shape[-1] != self.vocabulary_size:
            raise ValueError(f"SublinearTfIdf has {self.vocabulary_size} IDF weights but receives {input_shape[-1]} counts per row")
        self.idf = self.add_weight(name="idf", shape=(self.vocabulary_size,), initializer="ones", trainable=False)
        if self._initial_idf is not None:
            self.idf.assign(self._initial_idf)
        super().build(input_shape)

    def call(self, counts):
        counts = keras.ops.cast(counts, self.compute_dtype)
        present = keras.ops.cast(counts > 0, self.compute_dtype)
        # log(max(count, 1)) is 0 where the count is 0, so no -inf is ever formed.
        weighted = present * (1.0 + keras.ops.log(keras.ops.maximum(counts, 1.0))) * self.idf
        norm = keras.ops.sqrt(keras.ops.sum(keras.ops.square(weighted), axis=-1, keepdims=True))
        return weighted / keras.ops.maximum(norm, keras.config.epsilon())

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config["vocabulary_size"] = self.vocabulary_size
        return config
