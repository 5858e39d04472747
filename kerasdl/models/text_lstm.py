"""The text LSTM classifier builder (strings in, TextVectorization inside)."""

import keras
import numpy as np

from kerasdl.models.lstm import recurrent_stack

STANDARDIZE = "lower_and_strip_punctuation"


def text_lstm(
    num_classes,
    vocabulary,
    sequence_length=64,
    embedding_dim=64,
    hidden_size=64,
    num_layers=1,
    bidirectional=True,
    dropout_rate=0.2,
    name="text_lstm",
):
    """Builds a text classifier: TextVectorization, Embedding (masked), stacked (bi)LSTM, Dense logits.

    The model takes raw strings `[batch]`. Its `text_vectorization` layer
    lowercases, strips punctuation, splits on whitespace and maps each word to
    its id in `vocabulary` (0 = padding, 1 = out of vocabulary), cut or padded
    to `sequence_length`. The `embedding` layer masks id 0, so the padding
    never reaches the LSTM state. For ONNX, which has no string ops, export
    `text_lstm_token_model(model)`: the same layers from token ids on.

    Args:
        num_classes: number of output classes.
        vocabulary: the tokens of the training split, as returned by
            `build_text_vocabulary` or `TextVectorization.get_vocabulary()`
            (with or without the leading `""` and `"[UNK]"`).
        sequence_length: tokens per text (longer texts are cut).
        embedding_dim: width of the token embeddings.
        hidden_size: units of each LSTM (per direction).
        num_layers: stacked LSTM layers; all but the last return sequences.
        bidirectional: wrap each LSTM in `Bidirectional`.
        dropout_rate: dropout after each LSTM layer; 0 disables it.
        name: the model's name.

    Example:
    >>> vocabulary = build_text_vocabulary(["a good film", "a bad film"], max_tokens=100)
    >>> model = text_lstm(num_classes=2, vocabulary=vocabulary, sequence_length=16)
    >>> model.predict(numpy.array(["a good film"]), verbose=0).shape
    (1, 2)
    """
    vocabulary = _without_reserved_tokens(vocabulary)
    if not vocabulary:
        raise ValueError("text_lstm needs a non-empty vocabulary; build it with build_text_vocabulary(training texts)")
    if num_layers < 1:
        raise ValueError(f"num_layers must be at least 1, got {num_layers}")

    # Layers.
    text_vectorization = keras.layers.TextVectorization(
        vocabulary=vocabulary,
        standardize=STANDARDIZE,
        split="whitespace",
        output_mode="int",
        output_sequence_length=sequence_length,
        name="text_vectorization",
    )
    # + 2: the padding id 0 and the out-of-vocabulary id 1.
    embedding = keras.layers.Embedding(len(vocabulary) + 2, embedding_dim, mask_zero=True, name="embedding")
    # The generic kernel: a cuDNN-traced LSTM cannot be converted to ONNX.
    recurrent_layers = recurrent_stack(hidden_size, num_layers, bidirectional, dropout_rate, use_cudnn=False)
    logits_layer = keras.layers.Dense(num_classes, name="logits")

    # Functional model.
    inputs = keras.Input(shape=(), dtype="string", name="text")
    x = embedding(text_vectorization(inputs))
    for layer in recurrent_layers:
        x = layer(x)
    logits = logits_layer(x)
    return keras.Model(inputs, logits, name=name)


def text_lstm_token_model(model, sequence_length=None):
    """Returns the part of a `text_lstm` model after its tokenizer: int64 token ids in, logits out.

    The returned model shares the layers (and so the weights) of `model`; it is
    what an ONNX export converts, with the vocabulary of
    `model.get_layer("text_vectorization").get_vocabulary()` beside it.

    Args:
        model: a model built by `text_lstm` (or loaded from its `.keras` file).
        sequence_length: the length of the `token_ids` input; None (default)
            leaves the time axis dynamic.

    Example:
    >>> token_model = text_lstm_token_model(model)
    >>> token_model.input.name
    'token_ids'
    """
    names = [layer.name for layer in model.layers]
    if "text_vectorization" not in names or "embedding" not in names:
        raise ValueError(f"{model.name!r} is not a text_lstm model (no text_vectorization/embedding layer)")
    token_ids = keras.Input(shape=(sequence_length,), dtype="int64", name="token_ids")
    x = token_ids
    # The text_lstm graph is a single chain, so calling its layers after the
    # tokenizer in order on a new input rebuilds the same computation.
    for layer in model.layers[names.index("embedding") :]:
        x = layer(x)
    token_model = keras.Model(token_ids, x, name=f"{model.name}_token_ids")
    # `Model.export` refuses a model that was never called (it reads the input
    # signature from the first call), so call it once on a padding-only batch.
    token_model(np.zeros((1, sequence_length or 1), dtype="int64"))
    return token_model


def build_text_vocabulary(texts, max_tokens=20000):
    """Returns the vocabulary of `texts` (most frequent first) as `text_lstm` expects it.

    The texts are standardized and split like inside the model, so the words
    line up. The list starts with the reserved `""` (padding) and `"[UNK]"`.

    Args:
        texts: the training texts (a list or array of strings).
        max_tokens: the largest vocabulary, the two reserved tokens included.

    Example:
    >>> build_text_vocabulary(["Good, good film!", "bad film"], max_tokens=10)
    ['', '[UNK]', 'good', 'film', 'bad']
    """
    texts = np.asarray(list(texts), dtype=object).astype(str)
    if texts.size == 0:
        raise ValueError("cannot build a vocabulary from no texts")
    vectorization = keras.layers.TextVectorization(
        max_tokens=max_tokens, standardize=STANDARDIZE, split="whitespace", output_mode="int"
    )
    vectorization.adapt(texts)
    return [str(token) for token in vectorization.get_vocabulary()]


def _without_reserved_tokens(vocabulary):
    # get_vocabulary() starts with the padding and OOV tokens, which
    # TextVectorization adds itself when given a vocabulary.
    vocabulary = [str(token) for token in vocabulary]
    if vocabulary[:1] == [""]:
        vocabulary = vocabulary[1:]
    if vocabulary[:1] == ["[UNK]"]:
        vocabulary = vocabulary[1:]
    return vocabulary
