"""What the recurrent models (lstm, gru) share: their two networks, the text tokenizer support, the entry.

A recurrent model file (`lstm.py`, `gru.py`) is its two thin public builders,
numeric and text, plus `@register_model`; the networks themselves differ only
in the cell, so they are built here once:

- `sequence_classifier`: Masking, per-feature standardization, the recurrent
  stack, Dense logits, for raw zero-padded float series `[batch, T, F]`.
- `text_classifier`: TextVectorization (strings in), Embedding (masked), the
  recurrent stack, Dense logits.

Keras is imported inside the functions so that the registry (and `--help`)
loads without TensorFlow.

A little over 300 lines: the numeric and text classifiers share the recurrent stack and
their token-model and tokenizer support, kept beside them.
"""

import numpy as np

from kerasdl.models.registry import TextSupport, call_builder
from kerasdl.search_space import TRAINING_RANGES, Choice, Float, Int

# How `sequence_classifier` scales its input (see its `normalization` argument).
SEQUENCE_NORMALIZATIONS = ("auto", "dataset", "series", "none")

# TextVectorization's settings, which the TensorFlow-free tokenizer reproduces.
STANDARDIZE = "lower_and_strip_punctuation"
SPLIT = "whitespace"


def sequence_classifier(
    cell,
    input_shape,
    num_classes,
    hidden_size=64,
    num_layers=1,
    dropout_rate=0.2,
    bidirectional=False,
    normalization_mean=None,
    normalization_variance=None,
    use_cudnn=False,
    normalization="auto",
    name="lstm",
):
    """Builds a stacked (bidirectional) recurrent classifier of zero-padded numeric sequences.

    The model takes raw float32 sequences `[batch, T, F]` padded with 0.0 after
    their end; `T` may be `None` (any length). A `Masking(mask_value=0.0)` layer
    on the raw input marks the padding, so a time step whose features are all
    exactly 0.0 counts as padding, also inside a sequence. The mask follows
    through the per-feature standardization and the recurrent layers, so the
    last one returns the state of each sequence's last valid step: padding
    never changes a prediction.

    The recurrent layers use the generic (non-cuDNN) kernel by default: a model
    traced with the cuDNN kernel holds `CudnnRNNV3` ops that ONNX cannot convert.

    Args:
        cell: "lstm" or "gru".
        input_shape: `(T, F)`; `T` may be `None` for variable-length sequences.
        num_classes: number of output classes.
        hidden_size: units of each recurrent layer (per direction).
        num_layers: stacked layers; all but the last return sequences.
        dropout_rate: dropout after each recurrent layer; 0 disables it.
        bidirectional: wrap each layer in `Bidirectional` (concatenated outputs).
        normalization_mean: per-feature mean of the training split (valid steps only).
        normalization_variance: per-feature variance of the training split.
        use_cudnn: passed to every recurrent layer; keep False for ONNX export.
        normalization: "dataset" standardizes each feature with the training split's
            statistics; "series" z-normalizes each series on its own over its valid steps
            (`layers.SeriesStandardization`, the UCR archive's convention), which makes a
            prediction independent of a series' offset and scale; "none" feeds raw values;
            "auto" is "series" for univariate series (one feature, as in the UCR archive)
            and "dataset" for several features, whose relative sizes carry information.
        name: the model's name.

    Example:
    >>> model = sequence_classifier("gru", input_shape=(None, 1), num_classes=2, hidden_size=16)
    >>> model.output_shape
    (None, 2)
    """
    import keras

    from kerasdl.models.layers import SeriesStandardization, recurrent_stack, standardization_layer

    input_shape = tuple(input_shape)
    if len(input_shape) != 2:
        raise ValueError(f"{name} needs sequences of shape (time steps or None, features), got {input_shape}")
    if normalization not in SEQUENCE_NORMALIZATIONS:
        raise ValueError(f"normalization must be one of {', '.join(SEQUENCE_NORMALIZATIONS)}, got {normalization!r}")
    if normalization == "auto":
        normalization = "series" if input_shape[-1] == 1 else "dataset"

    # Layers.
    masking = keras.layers.Masking(mask_value=0.0, name="masking")
    standardization = None
    if normalization == "series":
        standardization = SeriesStandardization(name="series_normalization")
    elif normalization == "dataset" and normalization_mean is not None:
        standardization = standardization_layer(normalization_mean, normalization_variance, name="normalization")
    recurrent_layers = recurrent_stack(cell, hidden_size, num_layers, bidirectional, dropout_rate, use_cudnn)
    logits_layer = keras.layers.Dense(num_classes, name="logits")

    # Functional model.
    inputs = keras.Input(shape=input_shape, name="sequences")
    x = masking(inputs)
    if standardization is not None:
        x = standardization(x)
    for layer in recurrent_layers:
        x = layer(x)
    logits = logits_layer(x)
    return keras.Model(inputs, logits, name=name)


def text_classifier(
    cell,
    num_classes,
    vocabulary,
    sequence_length=64,
    embedding_dim=64,
    hidden_size=64,
    num_layers=1,
    bidirectional=True,
    dropout_rate=0.2,
    spatial_dropout=0.0,
    recurrent_dropout=0.0,
    name="text_lstm",
):
    """Builds a text classifier: TextVectorization, Embedding (masked), stacked recurrent layers, Dense logits.

    The model takes raw strings `[batch]`. Its `text_vectorization` layer
    lowercases, strips punctuation, splits on whitespace and maps each word to
    its id in `vocabulary` (0 = padding, 1 = out of vocabulary), cut or padded
    to `sequence_length`. The `embedding` layer masks id 0, so the padding
    never reaches the recurrent state. For ONNX, which has no string ops,
    export `text_token_model(model)`: the same layers from token ids on.

    Args:
        cell: "lstm" or "gru".
        num_classes: number of output classes.
        vocabulary: the tokens of the training split, as returned by
            `build_text_vocabulary` or `TextVectorization.get_vocabulary()`
            (with or without the leading `""` and `"[UNK]"`).
        sequence_length: tokens per text (longer texts are cut).
        embedding_dim: width of the token embeddings.
        hidden_size: units of each recurrent layer (per direction).
        num_layers: stacked layers; all but the last return sequences.
        bidirectional: wrap each layer in `Bidirectional`.
        dropout_rate: dropout after each recurrent layer; 0 disables it.
        spatial_dropout: drops whole embedding channels (`SpatialDropout1D`) during
            training, so the network cannot lean on a few embedding dimensions; 0 disables it.
        recurrent_dropout: dropout on the recurrent state of each layer; 0 disables it.
        name: the model's name.

    Example:
    >>> vocabulary = build_text_vocabulary(["a good film", "a bad film"], max_tokens=100)
    >>> model = text_classifier("lstm", num_classes=2, vocabulary=vocabulary, sequence_length=16)
    >>> model.predict(numpy.array(["a good film"]), verbose=0).shape
    (1, 2)
    """
    import keras

    from kerasdl.models.layers import recurrent_stack

    vocabulary = _without_reserved_tokens(vocabulary)
    if not vocabulary:
        raise ValueError(f"{name} needs a non-empty vocabulary; build it with build_text_vocabulary(training texts)")

    # Layers.
    text_vectorization = keras.layers.TextVectorization(
        vocabulary=vocabulary,
        standardize=STANDARDIZE,
        split=SPLIT,
        output_mode="int",
        output_sequence_length=sequence_length,
        name="text_vectorization",
    )
    # + 2: the padding id 0 and the out-of-vocabulary id 1.
    embedding = keras.layers.Embedding(len(vocabulary) + 2, embedding_dim, mask_zero=True, name="embedding")
    # The generic kernel: a cuDNN-traced recurrent layer cannot be converted to ONNX.
    # A Dropout subclass: the fused ONNX export skips it like any dropout.
    embedding_dropout = keras.layers.SpatialDropout1D(spatial_dropout, name="spatial_dropout") if spatial_dropout > 0 else None
    recurrent_layers = recurrent_stack(cell, hidden_size, num_layers, bidirectional, dropout_rate, use_cudnn=False, recurrent_dropout=recurrent_dropout)
    logits_layer = keras.layers.Dense(num_classes, name="logits")

    # Functional model.
    inputs = keras.Input(shape=(), dtype="string", name="text")
    x = embedding(text_vectorization(inputs))
    if embedding_dropout is not None:
        x = embedding_dropout(x)
    for layer in recurrent_layers:
        x = layer(x)
    logits = logits_layer(x)
    return keras.Model(inputs, logits, name=name)


def text_token_model(model, sequence_length=None):
    """Returns the part of a `text_classifier` model after its tokenizer: int64 token ids in, logits out.

    The returned model shares the layers (and so the weights) of `model`; it is
    what an ONNX export converts, with the vocabulary beside it.

    Args:
        model: a model built by `text_classifier` (or loaded from its `.keras` file).
        sequence_length: the length of the `token_ids` input; None (default)
            leaves the time axis dynamic.

    Example:
    >>> text_token_model(model).input.name
    'token_ids'
    """
    import keras

    names = [layer.name for layer in model.layers]
    if "text_vectorization" not in names or "embedding" not in names:
        raise ValueError(
            f"{model.name!r} is not a text_lstm model or another recurrent text model "
            "(it has no text_vectorization and embedding layers)"
        )
    token_ids = keras.Input(shape=(sequence_length,), dtype="int64", name="token_ids")
    x = token_ids
    # The text graph is a single chain, so calling its layers after the
    # tokenizer in order on a new input rebuilds the same computation.
    for layer in model.layers[names.index("embedding") :]:
        x = layer(x)
    token_model = keras.Model(token_ids, x, name=f"{model.name}_token_ids")
    # `Model.export` refuses a model that was never called (it reads the input
    # signature from the first call), so call it once on a padding-only batch.
    token_model(np.zeros((1, sequence_length or 1), dtype="int64"))
    return token_model


def build_text_vocabulary(texts, max_tokens=20000):
    """Returns the vocabulary of `texts` (most frequent first) as `text_classifier` expects it.

    The texts are standardized and split like inside the model, so the words
    line up. The list starts with the reserved `""` (padding) and `"[UNK]"`.

    Args:
        texts: the training texts (a list or array of strings).
        max_tokens: the largest vocabulary, the two reserved tokens included.

    Example:
    >>> build_text_vocabulary(["Good, good film!", "bad film"], max_tokens=10)
    ['', '[UNK]', 'good', 'film', 'bad']
    """
    import keras

    texts = np.asarray(list(texts), dtype=object).astype(str)
    if texts.size == 0:
        raise ValueError("cannot build a vocabulary from no texts")
    vectorization = keras.layers.TextVectorization(max_tokens=max_tokens, standardize=STANDARDIZE, split=SPLIT, output_mode="int")
    vectorization.adapt(texts)
    return [str(token) for token in vectorization.get_vocabulary()]


def vectorized_texts(model, texts, input_name):
    """The model's `text_vectorization` layer run on `texts`: `{input_name: int64 array}`, its token model's feed.

    Example:
    >>> vectorized_texts(model, ["a good film"], "token_ids")["token_ids"].shape
    (1, 64)
    """
    import keras

    vectors = model.get_layer("text_vectorization")(np.asarray(list(texts), dtype=object))
    return {input_name: np.asarray(keras.ops.convert_to_numpy(vectors)).astype("int64")}


def _token_features(model, texts):
    return vectorized_texts(model, texts, "token_ids")


def _write_tokenizer(model, folder):
    from kerasdl.tokenizer import TextVectorizationTokenizer, write_tokenizer_files

    layer = model.get_layer("text_vectorization")
    config = layer.get_config()
    if config.get("standardize") != STANDARDIZE or config.get("split") != SPLIT:
        raise ValueError(
            f"the text_vectorization layer uses standardize={config.get('standardize')!r}, split={config.get('split')!r}; "
            f"the TensorFlow-free tokenizer reproduces only {STANDARDIZE} + {SPLIT}"
        )
    return write_tokenizer_files(folder, TextVectorizationTokenizer(layer.get_vocabulary(), sequence_length=config.get("output_sequence_length")))


def _pipeline_split(model):
    return text_token_model(model), model.get_layer("text_vectorization")


# The text half of every recurrent entry: tokenize with the model's own
# TextVectorization inside the tf.data pipeline, train the token-id part.
VECTORIZATION_TEXT = TextSupport(
    tokenizer="text_vectorization",
    token_model=text_token_model,
    token_features=_token_features,
    write_tokenizer=_write_tokenizer,
    pipeline_split=_pipeline_split,
)


# What `python -m training.tune lstm|gru` searches (the two cells share their networks' arguments), and why.
RECURRENT_SEARCH_SPACE = {
    **TRAINING_RANGES,
    "model.hidden_size": Choice((32, 64, 128), reason="64 units is the default; short series and small text sets may prefer fewer, long ones more"),
    "model.num_layers": Int(1, 2, reason="a second stacked layer doubles the cost; it helps long sequences, rarely small sets"),
    "model.dropout_rate": Float(0.0, 0.5, step=0.1, reason="dropout after each recurrent layer; 0.2 is the default"),
    "model.normalization": Choice(
        ("dataset", "series"), modalities=("sequence",),
        reason="per-series z-normalization (UCR's convention) ignores each series' offset and scale; the dataset statistics keep them",
    ),
    "model.embedding_dim": Choice((32, 64, 128), modalities=("text",), reason="small sets learn few useful embedding dimensions; larger ones use more"),
    "model.spatial_dropout": Float(0.0, 0.5, step=0.1, modalities=("text",), reason="drops whole embedding channels, the usual regularizer of text RNNs on small sets"),
    "model.recurrent_dropout": Float(0.0, 0.4, step=0.1, modalities=("text",), reason="dropout on the recurrent state (Gal and Ghahramani 2016); slower per step on CPU"),
    "model.max_tokens": Choice((5000, 10000, 20000), modalities=("text",), reason="rare words of a small set are noise to the embedding; a cap keeps the frequent ones"),
}


def build_recurrent(sequence_builder, text_builder, facts, options):
    """Builds the numeric or the text network of a recurrent entry, as the data's modality asks."""
    if facts.modality == "text":
        vocabulary = call_builder(build_text_vocabulary, options, texts=facts.train_texts)
        return call_builder(text_builder, options, num_classes=facts.num_classes, vocabulary=vocabulary)
    return call_builder(
        sequence_builder, options, input_shape=facts.input_shape, num_classes=facts.num_classes,
        normalization_mean=facts.normalization_mean, normalization_variance=facts.normalization_variance,
    )


def _without_reserved_tokens(vocabulary):
    # get_vocabulary() starts with the padding and OOV tokens, which
    # TextVectorization adds itself when given a vocabulary.
    vocabulary = [str(token) for token in vocabulary]
    if vocabulary[:1] == [""]:
        vocabulary = vocabulary[1:]
    if vocabulary[:1] == ["[UNK]"]:
        vocabulary = vocabulary[1:]
    return vocabulary
