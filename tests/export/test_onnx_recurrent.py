"""The fused ONNX LSTM/GRU graph (export/onnx_recurrent.py): parity with Keras on end-padded batches, contract, refusals, int8.

Every model has random weights (biases included, so a misplaced gate or bias
shows), and every batch mixes all lengths from 0 (all padding) to T.
"""

import numpy as np
import pytest

# The ONNX format's parity tolerance on probabilities (export.run.FORMAT_TOLERANCES["onnx"]).
ONNX_TOLERANCE = 1e-4
TIME_STEPS = 9
FEATURES = 3
CLASSES = 4
VOCABULARY = [f"word{index}" for index in range(30)]


def _randomized(model, seed=0):
    """Gives every float weight random values (std 0.5), so that outputs depend on every gate and bias."""
    rng = np.random.default_rng(seed)
    for weight in model.weights:
        if str(weight.dtype).startswith("float"):
            weight.assign(rng.normal(0.0, 0.5, weight.shape).astype("float32"))
    return model


def _lengths(batch_size, time_steps, seed=1):
    """Every length from 0 to `time_steps`, then random ones up to `batch_size` rows."""
    rng = np.random.default_rng(seed)
    every = np.arange(0, time_steps + 1)
    return np.concatenate([every, rng.integers(1, time_steps + 1, max(0, batch_size - len(every)))])[:batch_size]


def _end_padded_series(lengths, time_steps=TIME_STEPS, features=FEATURES, seed=2):
    rng = np.random.default_rng(seed)
    # Shifted away from 0.0 so that no valid step is all zeros (that would be padding).
    series = rng.normal(0.5, 1.0, (len(lengths), time_steps, features)).astype("float32") + 1e-3
    for row, length in enumerate(lengths):
        series[row, length:] = 0.0
    return series


def _end_padded_ids(lengths, time_steps=TIME_STEPS, seed=3):
    rng = np.random.default_rng(seed)
    # Ids 1 (out of vocabulary) to the last word; 0 is padding.
    ids = rng.integers(1, len(VOCABULARY) + 2, (len(lengths), time_steps)).astype("int64")
    for row, length in enumerate(lengths):
        ids[row, length:] = 0
    return ids


def _keras_probabilities(model, inputs):
    import keras

    return keras.ops.convert_to_numpy(keras.ops.softmax(model(inputs, training=False), axis=-1))


def _onnx_probabilities(proto, feed):
    import onnxruntime

    session = onnxruntime.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(["probabilities"], feed)[0]


def _assert_parity(model, proto, input_name, batches):
    for inputs in batches:
        keras_probabilities = _keras_probabilities(model, inputs)
        onnx_probabilities = _onnx_probabilities(proto, {input_name: inputs})
        assert onnx_probabilities.shape == (len(inputs), CLASSES)
        difference = float(np.max(np.abs(onnx_probabilities - keras_probabilities)))
        assert difference <= ONNX_TOLERANCE, f"batch {len(inputs)}: max abs difference {difference}"


def _fused_ops(proto):
    return [node.op_type for node in proto.graph.node if node.op_type in ("LSTM", "GRU", "Loop", "Scan")]


@pytest.mark.parametrize("normalization", [False, True], ids=["raw", "normalized"])
@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["forward", "bidirectional"])
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_numeric_model_matches_keras_on_end_padded_batches(cell, bidirectional, num_layers, normalization):
    from export.onnx_recurrent import fused_recurrent_onnx
    from kerasdl.models.recurrent import sequence_classifier

    statistics = {"normalization_mean": [0.5, 1.0, -2.0], "normalization_variance": [1.0, 4.0, 0.25]} if normalization else {}
    model = _randomized(
        sequence_classifier(cell, (None, FEATURES), CLASSES, hidden_size=6, num_layers=num_layers, bidirectional=bidirectional, **statistics)
    )

    proto = fused_recurrent_onnx(model)

    assert _fused_ops(proto) == [cell.upper()] * num_layers
    series = _end_padded_series(_lengths(32, TIME_STEPS))
    _assert_parity(model, proto, "sequences", [series, series[TIME_STEPS - 3 : TIME_STEPS - 2], series[TIME_STEPS : TIME_STEPS + 1]])


@pytest.mark.parametrize("features", [1, FEATURES])
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_per_series_normalization_matches_keras_on_end_padded_batches(cell, features):
    """`normalization="series"` (the default for one feature): z-normalized over each row's valid steps only."""
    from export.onnx_recurrent import fused_recurrent_onnx
    from kerasdl.models.recurrent import sequence_classifier

    model = _randomized(sequence_classifier(cell, (None, features), CLASSES, hidden_size=6, normalization="series"))
    series = _end_padded_series(_lengths(32, TIME_STEPS), features=features) * 7.0 + 3.0
    series[series == 3.0] = 0.0  # padding stays padding
    # A constant row: only centred, as the layer does below its epsilon.
    series[-1, :5] = 2.5
    series[-1, 5:] = 0.0

    proto = fused_recurrent_onnx(model)

    assert "series_normalization" in [layer.name for layer in model.layers]
    assert _fused_ops(proto) == [cell.upper()]
    _assert_parity(model, proto, "sequences", [series, series[2:3], series[-1:]])


@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["forward", "bidirectional"])
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_text_token_model_matches_keras_on_end_padded_batches(cell, bidirectional, num_layers):
    from export.onnx_recurrent import fused_recurrent_onnx
    from kerasdl.models.recurrent import text_classifier, text_token_model

    text_model = text_classifier(
        cell, CLASSES, VOCABULARY, sequence_length=TIME_STEPS, embedding_dim=5, hidden_size=6, num_layers=num_layers, bidirectional=bidirectional
    )
    token_model = text_token_model(_randomized(text_model))

    proto = fused_recurrent_onnx(token_model)

    assert _fused_ops(proto) == [cell.upper()] * num_layers
    ids = _end_padded_ids(_lengths(32, TIME_STEPS))
    _assert_parity(token_model, proto, "token_ids", [ids, ids[1:2], ids[TIME_STEPS : TIME_STEPS + 1]])


def test_graph_has_the_kerasdl_contract_and_any_length():
    import onnx

    from export.onnx_recurrent import fused_recurrent_onnx
    from kerasdl.models.lstm import lstm

    model = _randomized(lstm(input_shape=(None, FEATURES), num_classes=CLASSES, hidden_size=4))
    proto = fused_recurrent_onnx(model)

    onnx.checker.check_model(proto, full_check=True)
    (graph_input,), (graph_output,) = proto.graph.input, proto.graph.output
    assert graph_input.name == "sequences"
    assert graph_input.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert [dim.dim_param or dim.dim_value for dim in graph_input.type.tensor_type.shape.dim] == ["batch", "time", FEATURES]
    assert graph_output.name == "probabilities"
    assert [dim.dim_param or dim.dim_value for dim in graph_output.type.tensor_type.shape.dim] == ["batch", CLASSES]
    assert [opset.version for opset in proto.opset_import] == [17]
    lstm_node = next(node for node in proto.graph.node if node.op_type == "LSTM")
    assert {attribute.name: onnx.helper.get_attribute_value(attribute) for attribute in lstm_node.attribute}["layout"] == 0
    # The time axis is dynamic: shorter and longer series than the parity tests' run too.
    for time_steps in (1, 40):
        series = _end_padded_series(_lengths(6, time_steps), time_steps=time_steps)
        _assert_parity(model, proto, "sequences", [series])
    # Opset 18 takes ReduceMax's axes as an input; the answers stay the same.
    _assert_parity(model, fused_recurrent_onnx(model, opset=18), "sequences", [_end_padded_series(_lengths(12, TIME_STEPS))])


def test_cells_outside_the_builders_defaults_match_keras():
    """GRU with reset_after=False (ONNX linear_before_reset=0) and an LSTM without biases, behind a non-zero Masking value."""
    import keras

    from export.onnx_recurrent import fused_recurrent_onnx

    inputs = keras.Input((None, FEATURES), name="sequences")
    x = keras.layers.Masking(mask_value=-1.0, name="masking")(inputs)
    x = keras.layers.GRU(5, reset_after=False, return_sequences=True, name="gru_0")(x)
    x = keras.layers.LSTM(4, use_bias=False, name="lstm_1")(x)
    model = _randomized(keras.Model(inputs, keras.layers.Dense(CLASSES, name="logits")(x)))
    series = _end_padded_series(_lengths(16, TIME_STEPS))
    series[series == 0.0] = -1.0

    proto = fused_recurrent_onnx(model)

    assert _fused_ops(proto) == ["GRU", "LSTM"]
    _assert_parity(model, proto, "sequences", [series])


@pytest.mark.parametrize("source", ["series", "token_ids"])
def test_models_without_a_mask_run_every_step_as_keras(source):
    """No Masking layer, or Embedding(mask_zero=False): no sequence_lens, zeros are ordinary inputs."""
    import keras

    from export.onnx_recurrent import fused_recurrent_onnx

    if source == "series":
        inputs = keras.Input((None, FEATURES), name="sequences")
        x = keras.layers.LSTM(5, name="lstm_0")(inputs)
        batch = _end_padded_series(_lengths(12, TIME_STEPS))
    else:
        inputs = keras.Input((None,), dtype="int64", name="token_ids")
        x = keras.layers.Embedding(len(VOCABULARY) + 2, 4, mask_zero=False, name="embedding")(inputs)
        x = keras.layers.Bidirectional(keras.layers.GRU(5, name="gru_0"), name="bidirectional_0")(x)
        batch = _end_padded_ids(_lengths(12, TIME_STEPS))
    model = _randomized(keras.Model(inputs, keras.layers.Dense(CLASSES, name="logits")(x)))

    proto = fused_recurrent_onnx(model)

    recurrent = next(node for node in proto.graph.node if node.op_type in ("LSTM", "GRU"))
    assert len(recurrent.input) < 5 or recurrent.input[4] == ""  # No sequence_lens.
    _assert_parity(model, proto, proto.graph.input[0].name, [batch])


def test_gunpoint_series_match_keras(shared_data):
    """Real series (GunPoint's test split, cut to variable lengths and end-padded) through the lstm builder."""
    from export.onnx_recurrent import fused_recurrent_onnx
    from kerasdl.models.lstm import lstm

    values = np.loadtxt(shared_data / "ucr" / "GunPoint_TEST.txt")[:32, 1:].astype("float32")
    series = values[:, :, None].copy()
    for row, length in enumerate(_lengths(32, series.shape[1])):
        series[row, max(length, 1) :] = 0.0
    model = _randomized(lstm(input_shape=(None, 1), num_classes=CLASSES, hidden_size=8, normalization_mean=[values.mean()], normalization_variance=[values.var()]))

    _assert_parity(model, fused_recurrent_onnx(model), "sequences", [series, series[:1]])


def _refused_models():
    import keras

    def chain(*layers, shape=(None, FEATURES), dtype="float32"):
        inputs = keras.Input(shape, dtype=dtype, name="sequences")
        x = inputs
        for layer in layers:
            x = layer(x)
        return keras.Model(inputs, x)

    two_inputs = [keras.Input((None, FEATURES), name="a"), keras.Input((None, FEATURES), name="b")]
    joined = keras.layers.LSTM(3, name="lstm_0")(keras.layers.Concatenate(name="join")(two_inputs))
    Dense, LSTM = keras.layers.Dense, keras.layers.LSTM
    return {
        "softmax head": (chain(LSTM(3), Dense(2, activation="softmax")), "the last Dense must give logits"),
        "simple rnn": (chain(keras.layers.SimpleRNN(3, name="simple"), Dense(2)), "'simple' \\(SimpleRNN\\) is not supported"),
        "sum merge": (chain(keras.layers.Bidirectional(LSTM(3), merge_mode="sum", name="bi"), Dense(2)), "merges with 'sum'"),
        "relu cell": (chain(LSTM(3, activation="relu", name="relu_lstm"), Dense(2)), "only tanh/sigmoid"),
        "go backwards": (chain(LSTM(3, go_backwards=True, name="back"), Dense(2)), "go_backwards=True"),
        "sequence output": (chain(LSTM(3, return_sequences=True), Dense(2)), "not supported here \\(after a sequence output\\)"),
        "no head": (chain(LSTM(3)), "needs a final Dense"),
        "convolution": (chain(keras.layers.Conv1D(3, 2, name="conv"), LSTM(3), Dense(2)), "'conv' \\(Conv1D\\)"),
        "two inputs": (keras.Model(two_inputs, Dense(2)(joined)), "one input and one output"),
        "string input": (chain(shape=(), dtype="string"), "the fused export takes float32"),
    }


def test_unsupported_patterns_are_refused_with_the_reason():
    from export.onnx_recurrent import UnsupportedRecurrentModel, fused_recurrent_onnx
    from kerasdl.models.lstm import lstm

    for label, (model, message) in _refused_models().items():
        with pytest.raises(UnsupportedRecurrentModel, match=message):
            fused_recurrent_onnx(model)
    with pytest.raises(UnsupportedRecurrentModel, match="opset 14 or later"):
        fused_recurrent_onnx(lstm(input_shape=(None, 1), num_classes=2, hidden_size=2), opset=13)
    # A caller's `except ValueError` fallback catches it too.
    assert issubclass(UnsupportedRecurrentModel, ValueError)


def test_full_text_model_is_refused_in_favour_of_its_token_model():
    from export.onnx_recurrent import UnsupportedRecurrentModel, fused_recurrent_onnx
    from kerasdl.models.recurrent import text_classifier

    model = text_classifier("lstm", CLASSES, VOCABULARY, sequence_length=TIME_STEPS, embedding_dim=3, hidden_size=3)
    with pytest.raises(UnsupportedRecurrentModel, match="'text' is string"):
        fused_recurrent_onnx(model)


@pytest.mark.parametrize("cell, quantized_op", [("lstm", "DynamicQuantizeLSTM"), ("gru", "GRU")])
def test_dynamic_int8_quantizes_lstm_weights_and_leaves_gru_in_float(tmp_path, cell, quantized_op):
    """ORT's dynamic quantization has an LSTM recipe (DynamicQuantizeLSTM) and none for GRU."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from export.onnx_recurrent import fused_recurrent_onnx
    from kerasdl.models.recurrent import sequence_classifier

    model = sequence_classifier(cell, (None, 1), CLASSES, hidden_size=16, bidirectional=True)
    rng = np.random.default_rng(4)
    for weight in model.weights:
        weight.assign(rng.normal(0.0, 0.3, weight.shape).astype("float32"))
    fp32_path, int8_path = tmp_path / "model.onnx", tmp_path / "model.int8.onnx"
    onnx.save(fused_recurrent_onnx(model), fp32_path)

    quantize_dynamic(fp32_path, int8_path, weight_type=QuantType.QInt8)

    int8 = onnx.load(int8_path)
    operations = [node.op_type for node in int8.graph.node]
    assert quantized_op in operations and "LSTM" not in operations
    assert "MatMulInteger" in operations  # The Dense head, in both.
    series = _end_padded_series(_lengths(32, 30), time_steps=30, features=1)
    fp32_probabilities = _onnx_probabilities(onnx.load(fp32_path), {"sequences": series})
    int8_probabilities = _onnx_probabilities(int8, {"sequences": series})
    assert float(np.max(np.abs(int8_probabilities - fp32_probabilities))) < 0.05
    assert float(np.max(np.abs(int8_probabilities - fp32_probabilities))) > 0.0  # The weights did change.
