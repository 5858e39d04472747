"""The GRU classifiers, numeric series and text: their builders and their registry entry.

Both networks are built by `kerasdl.models.recurrent` with the GRU cell; this
file fixes the cell, the names and the defaults, and registers `gru`, which
builds the numeric network for series and the text network for text.
"""

from kerasdl.models.recurrent import RECURRENT_SEARCH_SPACE, VECTORIZATION_TEXT, build_recurrent, build_text_vocabulary, sequence_classifier, text_classifier
from kerasdl.models.registry import register_model


def gru(
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
    name="gru",
):
    """Builds a stacked (bi)GRU that classifies zero-padded numeric sequences (`recurrent.sequence_classifier`).

    Args:
        input_shape: `(T, F)`; `T` may be `None` for variable-length sequences.
        num_classes: number of output classes.
        hidden_size: units of each GRU (per direction).
        num_layers: stacked GRU layers; all but the last return sequences.
        dropout_rate: dropout after each GRU layer; 0 disables it.
        bidirectional: wrap each GRU in `Bidirectional` (concatenated outputs).
        normalization_mean: per-feature mean of the training split (valid steps only).
        normalization_variance: per-feature variance of the training split.
        use_cudnn: passed to every `keras.layers.GRU`; keep False for ONNX export.
        normalization: "dataset" (per-feature statistics of the training split), "series"
            (each series z-normalized on its own, the UCR convention), "none", or "auto":
            "series" for univariate series, "dataset" for several features (see
            `recurrent.sequence_classifier`; measured in benchmarks/small_data.py).
        name: the model's name.

    Example:
    >>> model = gru(input_shape=(None, 1), num_classes=2, hidden_size=16)
    >>> model.output_shape
    (None, 2)
    """
    return sequence_classifier(
        "gru", input_shape, num_classes, hidden_size=hidden_size, num_layers=num_layers, dropout_rate=dropout_rate,
        bidirectional=bidirectional, normalization_mean=normalization_mean,
        normalization_variance=normalization_variance, use_cudnn=use_cudnn, normalization=normalization, name=name,
    )


def text_gru(
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
    name="text_gru",
):
    """Builds a text classifier: TextVectorization, Embedding (masked), stacked (bi)GRU, Dense logits.

    The model takes raw strings; see `recurrent.text_classifier`.

    Args:
        num_classes: number of output classes.
        vocabulary: the training split's tokens (`build_text_vocabulary`).
        sequence_length: tokens per text (longer texts are cut).
        embedding_dim: width of the token embeddings.
        hidden_size: units of each GRU (per direction).
        num_layers: stacked GRU layers; all but the last return sequences.
        bidirectional: wrap each GRU in `Bidirectional`.
        dropout_rate: dropout after each GRU layer; 0 disables it.
        spatial_dropout: dropout of whole embedding channels; 0 disables it.
        recurrent_dropout: dropout on each GRU's recurrent state; 0 disables it.
        name: the model's name.

    Example:
    >>> vocabulary = build_text_vocabulary(["a good film", "a bad film"], max_tokens=100)
    >>> model = text_gru(num_classes=2, vocabulary=vocabulary, sequence_length=16)
    >>> model.predict(numpy.array(["a good film"]), verbose=0).shape
    (1, 2)
    """
    return text_classifier(
        "gru", num_classes, vocabulary, sequence_length=sequence_length, embedding_dim=embedding_dim,
        hidden_size=hidden_size, num_layers=num_layers, bidirectional=bidirectional, dropout_rate=dropout_rate,
        spatial_dropout=spatial_dropout, recurrent_dropout=recurrent_dropout, name=name,
    )


# No ONNX int8: ONNX Runtime's dynamic quantization has no GRU kernel (LSTM has
# DynamicQuantizeLSTM), so only the Dense head becomes int8: for the fused GRU(64)
# on 150 steps the file grew from 53.5 to 54.7 kB and the probabilities moved by up
# to 0.010, for no speed (tests/export/test_onnx_recurrent.py shows the GRU staying
# float). LiteRT's int8 (unrolled, full integer) is unaffected.
@register_model(
    "gru",
    modalities=("sequence", "text"),
    builders=(gru, text_gru, build_text_vocabulary),
    # Each network keeps its own defaults (the text network is bidirectional, the numeric one not).
    modality_builders={"sequence": (gru,), "text": (text_gru, build_text_vocabulary)},
    text=VECTORIZATION_TEXT,
    quantization="none",
    # JAX: benchmarks/backends.py --quick (batch 64, spe=16, shared 2-core CPU, best steady
    # epoch): GunPoint series (800, 150 steps) 2,398 examples/s against 1,443 on TensorFlow,
    # CPU 0.18 against 0.59 ms/example; SST-2 text (2,000) 3,543 against 947, CPU 0.28 against
    # 0.71 ms/example. Test accuracy: series 0.467 against 0.493, text 0.694 against 0.718.
    backend="jax",
    search_space=RECURRENT_SEARCH_SPACE,
)
def build_from_data(facts, **options):
    """The `gru` entry: the numeric network for series, the text network (with its vocabulary) for text."""
    return build_recurrent(gru, text_gru, facts, options)
