"""The Fully Convolutional Network for series (Wang, Yan & Oates 2017): its builder and its registry entry.

"Time series classification from scratch with deep neural networks: a strong baseline"
(IJCNN 2017) is the published deep reference on the UCR archive: three Conv1D blocks
(128 filters of width 8, 256 of 5, 128 of 3), each BatchNorm + ReLU, global average
pooling and a softmax. It takes the same zero-padded float series `[batch, T, F]` as the
recurrent models, with the same normalization inside (`recurrent.sequence_classifier`).

Keras is imported inside the builder so that the registry (and `--help`) loads without
TensorFlow.
"""

from kerasdl.models.recurrent import SEQUENCE_NORMALIZATIONS
from kerasdl.models.registry import call_builder, register_model
from kerasdl.search_space import TRAINING_RANGES, Choice, Float


def fcn(
    input_shape,
    num_classes,
    filters=(128, 256, 128),
    kernel_sizes=(8, 5, 3),
    dropout_rate=0.0,
    batch_norm_momentum=0.9,
    normalization="auto",
    normalization_mean=None,
    normalization_variance=None,
    name="fcn",
):
    """Builds the FCN: [Conv1D (same) + BatchNorm + ReLU] per filter count, masked global average pooling, Dense logits.

    The model takes raw float32 series `[batch, T, F]` zero-padded after their end; `T` may
    be `None`. As with the recurrent models' `Masking(0.0)`, a step whose features are all
    exactly 0.0 is padding (`layers.PaddingMask`, also inside a series). The padding does not
    change a prediction: the normalization skips it, after each block the padded steps are
    set back to 0.0 (`layers.ZeroPaddedSteps`), which is what a 'same' convolution reads
    beyond the end of an unpadded series, so every valid step computes exactly what it
    computes without the padding; the pooling averages the valid steps only, and the batch
    normalization's training statistics skip the padding. A padded batch therefore scores each
    series as it would alone, up to float rounding (tests/models/test_fcn.py). An interior
    step of all 0.0 is treated as padding, as the recurrent models treat it.

    Args:
        input_shape: `(T, F)`; `T` may be `None` for variable-length series.
        num_classes: number of output classes.
        filters: output channels of each convolution block (the paper's 128, 256, 128).
        kernel_sizes: the width of each block's convolution (the paper's 8, 5, 3); as many as `filters`.
        dropout_rate: dropout on the pooled features before the logits; 0 disables it (the paper has none).
        batch_norm_momentum: the moving statistics' momentum. Keras' 0.99 forgets its initial
            variance of 1.0 too slowly for a few hundred steps on a few dozen series: on ECG200 the
            first block's moving variance was still 0.13 after 210 steps against a batch variance
            of 0.01, and the model answered one class (test accuracy 0.36); 0.9 (PyTorch's 0.1)
            forgets it within ~50 steps.
        normalization: "series" (each series z-normalized over its valid steps, the UCR
            convention), "dataset" (per-feature statistics of the training split), "none", or
            "auto": "series" for univariate series, "dataset" for several features, as
            `recurrent.sequence_classifier`.
        normalization_mean: per-feature mean of the training split (valid steps only).
        normalization_variance: per-feature variance of the training split.
        name: the model's name.

    Example:
    >>> model = fcn(input_shape=(None, 1), num_classes=2, filters=(8, 16, 8))
    >>> model.output_shape
    (None, 2)
    >>> [layer.name for layer in model.layers][:7]
    ['sequences', 'padding_mask', 'series_normalization', 'zero_padding_input', 'conv_0', 'batch_norm_0', 'relu_0']
    """
    import keras

    from kerasdl.models.layers import PaddingMask, SeriesStandardization, ZeroPaddedSteps, standardization_layer

    input_shape = tuple(input_shape)
    if len(input_shape) != 2:
        raise ValueError(f"{name} needs sequences of shape (time steps or None, features), got {input_shape}")
    if normalization not in SEQUENCE_NORMALIZATIONS:
        raise ValueError(f"normalization must be one of {', '.join(SEQUENCE_NORMALIZATIONS)}, got {normalization!r}")
    filters, kernel_sizes = tuple(filters), tuple(kernel_sizes)
    if not filters or len(filters) != len(kernel_sizes):
        raise ValueError(f"{name} needs one kernel size per convolution block, got filters={filters} and kernel_sizes={kernel_sizes}")
    if normalization == "auto":
        normalization = "series" if input_shape[-1] == 1 else "dataset"

    # Layers.
    padding_mask = PaddingMask(name="padding_mask")
    standardization = None
    if normalization == "series":
        standardization = SeriesStandardization(name="series_normalization")
    elif normalization == "dataset" and normalization_mean is not None:
        standardization = standardization_layer(normalization_mean, normalization_variance, name="normalization")
    input_padding = ZeroPaddedSteps(name="zero_padding_input")
    blocks = []
    for index, (block_filters, kernel_size) in enumerate(zip(filters, kernel_sizes)):
        blocks.append((
            # BatchNormalization has its own shift, so the convolution's bias would be redundant.
            keras.layers.Conv1D(block_filters, kernel_size, padding="same", use_bias=False, name=f"conv_{index}"),
            keras.layers.BatchNormalization(momentum=batch_norm_momentum, name=f"batch_norm_{index}"),
            keras.layers.ReLU(name=f"relu_{index}"),
            ZeroPaddedSteps(name=f"zero_padding_{index}"),
        ))
    pooling = keras.layers.GlobalAveragePooling1D(name="global_average_pooling")
    dropout = keras.layers.Dropout(dropout_rate, name="dropout") if dropout_rate > 0 else None
    logits_layer = keras.layers.Dense(num_classes, name="logits")

    # Functional model.
    inputs = keras.Input(shape=input_shape, name="sequences")
    mask = padding_mask(inputs)
    x = inputs
    if isinstance(standardization, SeriesStandardization):
        x = standardization(x, mask=mask)  # Its statistics skip the padding.
    elif standardization is not None:
        x = standardization(x)
    # Per-feature scaling moves the padding off 0.0: set it back (the other cases keep it 0.0).
    x = input_padding(x, mask=mask)
    for convolution, batch_norm, relu, zero_padding in blocks:
        x = zero_padding(relu(batch_norm(convolution(x), mask=mask)), mask=mask)
    x = pooling(x, mask=mask)
    if dropout is not None:
        x = dropout(x)
    logits = logits_layer(x)
    return keras.Model(inputs, logits, name=name)


# What `python -m training.tune fcn` searches, and why.
SEARCH_SPACE = {
    **TRAINING_RANGES,
    "model.filters": Choice(
        ((128, 256, 128), (64, 128, 64), (32, 64, 32)),
        reason="the paper's widths, or half and a quarter of them: 4x and 16x cheaper, and small sets rarely use 256 channels",
    ),
    "model.dropout_rate": Float(0.0, 0.5, step=0.1, reason="the paper has none; dropout on the pooled features regularizes sets of a few dozen series"),
    "model.normalization": Choice(
        ("dataset", "series"),
        reason="per-series z-normalization (UCR's convention) ignores each series' offset and scale; the dataset statistics keep them",
    ),
}


# Static (calibrated) int8, the convolutional recipe: on GunPoint (the default run) the three
# convolutions and the logits run as QLinearConv/QGemm, the file is 28 % of fp32, ONNX Runtime
# (one thread) ran 64 series 2.2x faster one at a time and 1.3x in one batch, and the test
# accuracy was 1.000 against fp32's 0.987. LiteRT's full-integer int8 converts without float ops.
# JAX: benchmarks/backends.py --quick --cases fcn (GunPoint tiled to 800, batch 64, shared 2-core
# CPU): 1.03x TensorFlow's steady examples/s at spe=16 (0.96x at spe=1) with 0.86x its CPU per
# example, though its first epoch compiles (12 CPU s against 6.4). Whole default runs back to back
# (`training.run fcn --backend ...`, Coffee): JAX 131 s wall and 238 CPU s, TensorFlow 148 s and
# 223 CPU s for three fewer final epochs, so a tie in CPU per step and JAX ahead in wall time. On
# JAX the defaults scored ECG200 0.900 (121 CPU s), GunPoint 1.000 (143 s), Coffee 1.000 (238 s).
# The data is padded to one length per set, so JAX compiles once per model, not per batch.
@register_model(
    "fcn",
    modalities=("sequence",),
    builders=(fcn,),
    # Measured with `python -m training.run fcn --data ../shared/data/ucr/<set>` on TensorFlow
    # (benchmarks/small_data.py, the *_fcn cases; test accuracy, CPU seconds of the whole command on
    # the shared 2-core machine): the usual 1e-3 and 1,000 steps gave GunPoint 0.987 (245 s), ECG200
    # 0.890 (139 s), Coffee 1.000 (452 s: over the 5-minute budget); 1e-3 and 500 steps made the
    # folds' validation curve jump (Coffee 0.857: early stopping kept epoch 4 of a noisy curve;
    # ECG200 0.870). 3e-4 and 500 steps: GunPoint 1.000 (185 s), ECG200 0.890 (96 s), Coffee 1.000
    # (281 s), a smooth curve each. Half the widths at 3e-4 and 1,000 steps cost as much (Coffee
    # 222 s) for ECG200 0.880, so the paper's widths stay.
    defaults={"train.learning_rate": 3e-4, "train.min_steps": 500},
    quantization="static",
    backend="jax",
    search_space=SEARCH_SPACE,
)
def build_from_data(facts, **options):
    """The `fcn` entry: the data's shape, classes and statistics, plus the `model.*` options."""
    return call_builder(
        fcn, options, input_shape=facts.input_shape, num_classes=facts.num_classes,
        normalization_mean=facts.normalization_mean, normalization_variance=facts.normalization_variance,
    )
