"""The LSTM classifiers, numeric series and text: their builders and their registry entry.

Both networks are built by `kerasdl.models.recurrent` with the LSTM cell; this
file fixes the cell, the names and the defaults, and registers `lstm`, which
builds the numeric network for series and the text network for text.
"""

from kerasdl.models.recurrent import RECURRENT_SEARCH_SPACE, VECTORIZATION_TEXT, build_recurrent, build_text_vocabulary, sequence_classifier, text_classifier
from kerasdl.models.registry import register_model


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
    normalization="auto",
    name="lstm",
):
    """Builds a stacked (bi)LSTM that classifies zero-padded numeric sequences (`recurrent.sequence_classifier`).

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
        normalization: "dataset" (per-feature statistics of the training split), "series"
            (each series z-normalized on its own, the UCR convention), "none", or "auto":
            "series" for univariate series, "dataset" for several features (see
            `recurrent.sequence_classifier`; measured in benchmarks/small_data.py).
        name: the model's name.

    Example:
    >>> model = lstm(input_shape=(None, 1), num_classes=2, hidden_size=16)
    >>> model.output_shape
    (None, 2)
    """
    return sequence_classifier(
        "lstm", input_shape, num_classes, hidden_size=hidden_size, num_layers=num_layers, dropout_rate=dropout_rate,
        bidirectional=bidirectional, normalization_mean=normalization_mean,
        normalization_variance=normalization_variance, use_cudnn=use_cudnn, normalization=normalization, name=name,
    )


def text_lstm(
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
    """Builds a text classifier: TextVectorization, Embedding (masked), stacked (bi)LSTM, Dense logits.

    The model takes raw strings; see `recurrent.text_classifier`.

    Args:
        num_classes: number of output classes.
        vocabulary: the training split's tokens (`build_text_vocabulary`).
        sequence_length: tokens per text (longer texts are cut).
        embedding_dim: width of the token embeddings.
        hidden_size: units of each LSTM (per direction).
        num_layers: stacked LSTM layers; all but the last return sequences.
        bidirectional: wrap each LSTM in `Bidirectional`.
        dropout_rate: dropout after each LSTM layer; 0 disables it.
        spatial_dropout: dropout of whole embedding channels; 0 disables it.
        recurrent_dropout: dropout on each LSTM's recurrent state; 0 disables it.
        name: the model's name.

    Example:
    >>> vocabulary = build_text_vocabulary(["a good film", "a bad film"], max_tokens=100)
    >>> model = text_lstm(num_classes=2, vocabulary=vocabulary, sequence_length=16)
    >>> model.predict(numpy.array(["a good film"]), verbose=0).shape
    (1, 2)
    """
    return text_classifier(
        "lstm", num_classes, vocabulary, sequence_length=sequence_length, embedding_dim=embedding_dim,
        hidden_size=hidden_size, num_layers=num_layers, bidirectional=bidirectional, dropout_rate=dropout_rate,
        spatial_dropout=spatial_dropout, recurrent_dropout=recurrent_dropout, name=name,
    )


@register_model(
    "lstm",
    modalities=("sequence", "text"),
    builders=(lstm, text_lstm, build_text_vocabulary),
    # Each network keeps its own defaults (the text network is bidirectional, the numeric one not).
    modality_builders={"sequence": (lstm,), "text": (text_lstm, build_text_vocabulary)},
    text=VECTORIZATION_TEXT,
    # JAX: benchmarks/backends.py --quick (batch 64, spe=16, shared 2-core CPU, best steady
    # epoch): GunPoint series (800, 150 steps) 1,952 examples/s against 1,587 on TensorFlow,
    # CPU 0.52 against 0.60 ms/example; SST-2 text (2,000) a tie, 970 against 1,015 examples/s,
    # with less CPU (0.62 against 0.73 ms/example). Test accuracy: series 0.473 against 0.393,
    # text 0.697 against 0.729. JAX's first epoch compiles (series 4.8 s against 1.9 s).
    backend="jax",
    search_space=RECURRENT_SEARCH_SPACE,
)
def build_from_data(facts, **options):
    """The `lstm` entry: the numeric network for series, the text network (with its vocabulary) for text."""
    return build_recurrent(lstm, text_lstm, facts, options)
