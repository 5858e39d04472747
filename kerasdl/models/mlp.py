"""The MLP classifiers, numeric and n-gram text: their builders, the text tokenizer support and the entry.

`mlp` builds the seed's MLP for features and images; for text it builds the n-gram MLP
of Google's text-classification guide (developers.google.com/machine-learning/guides/
text-classification): TF-IDF of word 1-2 grams, the top 20,000 by frequency, into Dropout,
Dense(64, relu), Dropout, Dense logits; the guide found it better than sequence models
below a samples / words-per-sample ratio of 1,500 (`kerasdl.baseline.text_statistics`).

Keras is imported inside the builders so that the registry (and `--help`) loads
without TensorFlow.
"""

import numpy as np

from kerasdl.models.recurrent import SPLIT, STANDARDIZE, vectorized_texts
from kerasdl.models.registry import TextSupport, call_builder, register_model
from kerasdl.search_space import TRAINING_RANGES, Choice, Float, Int

# Texts read per batch when adapting the counting layer.
_COUNT_BATCH = 4096
# Bytes of one dense multi-hot block when counting document frequencies: a [4096, 20001]
# batch would be 330 MB, and TextVectorization's sparse output exists only on TensorFlow
# (the vocabulary is built on the JAX backend too), so the texts go in blocks of this size.
_PRESENCE_BYTES = 32 * 2**20


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


# What `python -m training.tune mlp` searches, and why.
SEARCH_SPACE = {
    **TRAINING_RANGES,
    "model.hidden_units": Choice((64, 128, 256, 512), reason="the seed's 128 for 64 features; raw pixels and larger sets use wider layers"),
    "model.num_hidden_layers": Int(1, 3, reason="one hidden layer is the seed's; a second or third helps pixels more than features"),
    "model.dropout_rate": Float(0.0, 0.5, step=0.1, reason="0 is the seed's; wider layers on small sets need some"),
}


def ngram_mlp(
    num_classes,
    vocabulary,
    idf,
    hidden_units=64,
    num_hidden_layers=1,
    dropout_rate=0.2,
    ngrams=2,
    name="ngram_mlp",
):
    """Builds the n-gram text MLP: word n-gram counts, sublinear TF-IDF, Dropout, Dense(relu) x depth, Dense logits.

    The model takes raw strings `[batch]`. Its `text_vectorization` layer (lowercase, strip
    punctuation, split on whitespace, as the text LSTM) counts every word n-gram of
    `vocabulary` (column 0 counts the others); `tf_idf` (`SublinearTfIdf`) weights the
    counts as scikit-learn's `TfidfVectorizer(sublinear_tf=True)` does; dropout follows the
    input and every hidden layer, as in the guide. For ONNX, which has no string ops,
    export `ngram_token_model(model)`: the same layers from the counts on.

    Args:
        num_classes: number of output classes.
        vocabulary: the n-grams (`build_ngram_vocabulary`), with or without the leading `"[UNK]"`.
        idf: one IDF weight per entry of `vocabulary` (without `"[UNK]"`).
        hidden_units: width of each hidden Dense layer (the guide's 64).
        num_hidden_layers: how many hidden Dense layers (the guide's 2 layers: one hidden, one output).
        dropout_rate: dropout on the TF-IDF input and after each hidden layer (the guide's 0.2).
        ngrams: the longest word n-gram counted; must be the vocabulary's.
        name: the model's name.

    Example:
    >>> vectorizer = build_ngram_vocabulary(["a good film", "a bad film", "good"], min_document_frequency=1)
    >>> model = ngram_mlp(num_classes=2, **vectorizer)
    >>> model.predict(numpy.array(["a good film"]), verbose=0).shape
    (1, 2)
    """
    import keras

    from kerasdl.models.layers import SublinearTfIdf

    vocabulary = [str(token) for token in vocabulary]
    if vocabulary[:1] == ["[UNK]"]:
        vocabulary = vocabulary[1:]
    if not vocabulary:
        raise ValueError(f"{name} needs a non-empty vocabulary; build it with build_ngram_vocabulary(training texts)")
    if len(idf) != len(vocabulary):
        raise ValueError(f"{name} got {len(idf)} IDF weights for {len(vocabulary)} vocabulary entries")
    if num_hidden_layers < 1:
        raise ValueError(f"num_hidden_layers must be at least 1, got {num_hidden_layers}")

    # Layers.
    text_vectorization = keras.layers.TextVectorization(
        vocabulary=vocabulary, standardize=STANDARDIZE, split=SPLIT, ngrams=ngrams, output_mode="count", name="text_vectorization",
    )
    # Column 0 (out of vocabulary) gets IDF 0: it never counts.
    tf_idf = SublinearTfIdf(np.concatenate([[0.0], np.asarray(idf, dtype="float32")]), name="tf_idf")
    layers = [keras.layers.Dropout(dropout_rate, name="dropout_input")] if dropout_rate > 0 else []
    for index in range(num_hidden_layers):
        layers.append(keras.layers.Dense(hidden_units, activation="relu", name=f"hidden_{index}"))
        if dropout_rate > 0:
            layers.append(keras.layers.Dropout(dropout_rate, name=f"dropout_{index}"))
    logits_layer = keras.layers.Dense(num_classes, name="logits")

    # Functional model.
    inputs = keras.Input(shape=(), dtype="string", name="text")
    x = tf_idf(text_vectorization(inputs))
    for layer in layers:
        x = layer(x)
    logits = logits_layer(x)
    return keras.Model(inputs, logits, name=name)


def build_ngram_vocabulary(texts, max_features=20000, ngrams=2, min_document_frequency=1):
    """Returns the n-gram MLP's vocabulary and IDF, fitted on the training texts.

    The `max_features` most frequent word n-grams (TextVectorization's `adapt`, standardized
    and split as in the model), less those in fewer than `min_document_frequency` texts, with
    scikit-learn's smoothed IDF, `ln((1 + n) / (1 + df)) + 1` over the `n` texts.

    `min_document_frequency` is 1, scikit-learn's default, not the guide's 2: on SST-2 the
    n-gram pairs seen once still carry the sentiment ("not good"). Chosen on the validation
    split (dev), same seeds and splits (`training.run mlp --data ../shared/data/sst2 --set
    data.max_examples=N --seed S`): at 5,000 sentences validation accuracy 0.783 / 0.773 with 1
    against 0.767 / 0.756 with 2 (seeds 1, 2); at 300 sentences 0.497 / 0.577 / 0.630 against
    0.497 / 0.553 / 0.600 (seeds 1-3). A large set keeps the same vocabulary either way: on
    SST-2's 67,349 training texts both settings keep the same 20,000 n-grams.

    Args:
        texts: the training texts.
        max_features: the largest vocabulary (the guide's top-k of 20,000).
        ngrams: the longest word n-gram (the guide's 1-2 grams).
        min_document_frequency: drop n-grams found in fewer texts than this.

    Returns:
        `{"vocabulary": [n-grams, most frequent first], "idf": [one float each]}`.

    Raises:
        ValueError: no n-gram occurs in `min_document_frequency` texts (the command line shows
            kerasdl's own ValueErrors in one line).

    Example:
    >>> build_ngram_vocabulary(["Good film!", "a good film", "bad"], min_document_frequency=2)
    {'vocabulary': ['good film', 'good', 'film'], 'idf': [1.2876..., 1.2876..., 1.2876...]}
    """
    import keras
    import tensorflow as tf

    texts = np.asarray(list(texts), dtype=object).astype(str)
    if texts.size == 0:
        raise ValueError("cannot build a vocabulary from no texts")
    settings = dict(standardize=STANDARDIZE, split=SPLIT, ngrams=ngrams)
    # + 1: the out-of-vocabulary entry takes one of count mode's max_tokens.
    adapted = keras.layers.TextVectorization(max_tokens=max_features + 1, output_mode="count", **settings)
    adapted.adapt(tf.data.Dataset.from_tensor_slices(texts).batch(_COUNT_BATCH))
    candidates = [str(token) for token in adapted.get_vocabulary()[1:]]
    if not candidates:
        raise ValueError("the training texts hold no words after lowercasing and removing punctuation")
    presence = keras.layers.TextVectorization(vocabulary=candidates, output_mode="multi_hot", **settings)
    document_frequency = np.zeros(len(candidates) + 1)
    rows = max(1, _PRESENCE_BYTES // (4 * (len(candidates) + 1)))
    for start in range(0, len(texts), rows):
        document_frequency += keras.ops.convert_to_numpy(presence(texts[start : start + rows])).sum(axis=0)
    keep = [index for index in range(len(candidates)) if document_frequency[index + 1] >= min_document_frequency]
    if not keep:
        raise ValueError(
            f"no word or word pair occurs in {min_document_frequency} of the {len(texts)} training texts; "
            "use more texts or a lower --set model.min_document_frequency (1 keeps every word)"
        )
    idf = np.log((1.0 + len(texts)) / (1.0 + document_frequency[1:][keep])) + 1.0
    return {"vocabulary": [candidates[index] for index in keep], "idf": idf.astype("float32").tolist()}


def ngram_token_model(model):
    """Returns the part of an `ngram_mlp` model after its vectorizer: int64 `token_counts` in, logits out.

    It shares the layers (and the weights) of `model`; ONNX and LiteRT convert it, with the
    vocabulary and IDF beside it (`kerasdl.tokenizer.NgramCountTokenizer`).

    Example:
    >>> ngram_token_model(model).input.name
    'token_counts'
    """
    import keras

    names = [layer.name for layer in model.layers]
    if "text_vectorization" not in names or "tf_idf" not in names:
        raise ValueError(f"{model.name!r} is not an n-gram MLP (it has no text_vectorization and tf_idf layers)")
    size = model.get_layer("text_vectorization").vocabulary_size()
    counts = keras.Input(shape=(size,), dtype="int64", name="token_counts")
    x = counts
    # A single chain: the layers from tf_idf on, called in order on the counts, are the same computation.
    for layer in model.layers[names.index("tf_idf") :]:
        x = layer(x)
    token_model = keras.Model(counts, x, name=f"{model.name}_token_counts")
    token_model(np.zeros((1, size), dtype="int64"))  # `Model.export` needs one call first.
    return token_model


def _ngram_counts(model, texts):
    return vectorized_texts(model, texts, "token_counts")


def _write_ngram_tokenizer(model, folder):
    import keras

    from kerasdl.tokenizer import NgramCountTokenizer, write_tokenizer_files

    layer = model.get_layer("text_vectorization")
    config = layer.get_config()
    if config.get("standardize") != STANDARDIZE or config.get("split") != SPLIT or config.get("output_mode") != "count":
        raise ValueError(
            f"the text_vectorization layer uses standardize={config.get('standardize')!r}, split={config.get('split')!r}, "
            f"output_mode={config.get('output_mode')!r}; the TensorFlow-free tokenizer reproduces only {STANDARDIZE} + {SPLIT} counts"
        )
    idf = np.asarray(keras.ops.convert_to_numpy(model.get_layer("tf_idf").idf), dtype="float32")
    tokenizer = NgramCountTokenizer([str(token) for token in layer.get_vocabulary()], ngrams=config["ngrams"], idf=idf)
    return write_tokenizer_files(folder, tokenizer)


def _ngram_pipeline_split(model):
    import tensorflow as tf

    vectorization = model.get_layer("text_vectorization")

    def counts(texts):
        return tf.cast(vectorization(texts), tf.int64)

    return ngram_token_model(model), counts


# Count in the tf.data pipeline with the model's own TextVectorization, train the counts-in part;
# export the vocabulary and IDF for the TensorFlow-free tokenizer.
NGRAM_TEXT = TextSupport(
    tokenizer="ngram_counts",
    token_model=ngram_token_model,
    token_features=_ngram_counts,
    write_tokenizer=_write_ngram_tokenizer,
    pipeline_split=_ngram_pipeline_split,
)


# A shallow network: ONNX Runtime matches it as closely as the SavedModel does.
@register_model(
    "mlp",
    modalities=("features", "image", "text"),
    builders=(mlp, ngram_mlp, build_ngram_vocabulary),
    # Each network keeps its own defaults (the n-gram MLP: the guide's 64 units and dropout 0.2).
    modality_builders={"features": (mlp,), "image": (mlp,), "text": (ngram_mlp, build_ngram_vocabulary)},
    text=NGRAM_TEXT,
    tolerances={"onnx": 1e-5},
    # JAX (XLA) trains it faster: benchmarks/backends.py --quick (MNIST 784 features, 2,700
    # examples, batch 64, spe=16, shared 2-core CPU): 68.7k examples/s against 48.6k on
    # TensorFlow (best steady epoch), CPU 0.0135 against 0.019 ms/example; test accuracy
    # 0.896 against 0.900. JAX's first epoch compiles (3.2 s against 0.7 s).
    backend="jax",
    search_space=SEARCH_SPACE,
)
def build_from_data(facts, **options):
    """The `mlp` entry: the numeric MLP for features and images, the n-gram MLP (with its vocabulary) for text."""
    if facts.modality == "text":
        vectorizer = call_builder(build_ngram_vocabulary, options, texts=facts.train_texts)
        return call_builder(ngram_mlp, options, num_classes=facts.num_classes, vocabulary=vectorizer["vocabulary"], idf=vectorizer["idf"])
    return call_builder(
        mlp, options, input_shape=facts.input_shape, num_classes=facts.num_classes,
        normalization_mean=facts.normalization_mean, normalization_variance=facts.normalization_variance,
    )
