"""`python -m export.run` writes recurrent models as fused ONNX LSTM/GRU graphs (issue 14 §1), or falls back by name.

The fused graph (`export.onnx_recurrent`) gets the same `metadata_props`, the
same parity check against Keras, and dynamic int8 (`DynamicQuantizeLSTM`) for
LSTMs; the GRU entry has no ONNX int8, so `--quantize int8` leaves it out.
"""

import json

import numpy as np
import pytest

from export.formats.onnx import FUSED_CONVERTER


def _onnx_ops(path):
    import onnx

    return [node.op_type for node in onnx.load(str(path)).graph.node]


def _properties(path):
    import onnx

    return {prop.key: prop.value for prop in onnx.load(str(path)).metadata_props}


@pytest.mark.parametrize("fixture, cell, input_name", [
    ("lstm_export", "LSTM", "sequences"),
    ("text_lstm_export", "LSTM", "token_ids"),
])
def test_recurrent_models_are_exported_as_fused_onnx_with_metadata_and_parity(fixture, cell, input_name, request):
    result = request.getfixturevalue(fixture)
    model_path = result.version_dir / "model.onnx"
    operations = _onnx_ops(model_path)
    assert cell in operations and "Loop" not in operations and "Scan" not in operations
    assert result.card["onnx"]["converter"] == FUSED_CONVERTER and "fused_fallback_reason" not in result.card["onnx"]
    properties = _properties(model_path)
    assert properties["converter"] == FUSED_CONVERTER
    assert json.loads(properties["onnx_inputs"]) == [input_name]
    assert json.loads(properties["class_names"]) == result.card["class_names"]
    (row,) = [row for row in result.parity if row.artifact == "onnx"]
    assert row.ok and row.max_abs_diff <= 1e-4


def test_text_lstm_int8_is_a_dynamically_quantized_lstm(text_lstm_export):
    operations = _onnx_ops(text_lstm_export.version_dir / "model.int8.onnx")
    assert "DynamicQuantizeLSTM" in operations and "LSTM" not in operations
    assert text_lstm_export.card["int8"]["onnx"]["published"] is True


def test_the_fused_lstm_answers_like_keras_on_variable_lengths(lstm_export, lstm_run, helpers):
    from kerasdl.runtime.onnx import OnnxRunner

    rng = np.random.default_rng(5)
    series = rng.normal(2.0, 0.5, (12, 12, 2)).astype("float32")
    for row, length in enumerate(range(1, 13)):
        series[row, length:] = 0.0
    expected = helpers.keras_reference(lstm_run, series)
    actual = OnnxRunner(lstm_export.version_dir / "model.onnx").predict(series)
    np.testing.assert_allclose(actual, expected, atol=1e-4)


def test_gru_is_fused_and_its_onnx_int8_is_left_out_by_the_entrys_recipe(gru_run, tmp_path):
    from export.run import export_model

    lines = []
    result = export_model(gru_run, formats=["onnx"], base=tmp_path / "exports", quantize="int8", log=lines.append)
    assert "GRU" in _onnx_ops(result.version_dir / "model.onnx")
    assert result.card["onnx"]["converter"] == FUSED_CONVERTER
    assert not (result.version_dir / "model.int8.onnx").exists()
    reason = "model 'gru' has no ONNX int8 recipe that pays (its registry entry's quantization is 'none')"
    assert result.card["int8"] == {"onnx": {"file": "model.int8.onnx", "published": False, "reason": reason}}
    assert f"onnx int8 left out: {reason}; publishing the verified fp32 artifacts without model.int8.onnx " \
           "(--require-int8 makes this an error)" in lines


def test_a_recurrent_model_the_fused_builder_cannot_read_falls_back_to_tf2onnx_by_name(tmp_path, helpers):
    import keras

    from export.run import export_model

    # relu inside the LSTM cell: ONNX's LSTM op could express it, but kerasdl's builder reads tanh/sigmoid only.
    keras.utils.set_random_seed(0)
    inputs = keras.Input(shape=(None, 2), name="sequences")
    hidden = keras.layers.LSTM(4, activation="relu", name="lstm")(keras.layers.Masking(name="masking")(inputs))
    model = keras.Model(inputs, keras.layers.Dense(2, name="logits")(hidden))
    x = np.random.default_rng(0).normal(size=(16, 5, 2)).astype("float32")
    metadata = {"model": "lstm", "modality": "sequence", "class_names": ["a", "b"],
                "input": {"shape": [None, 2], "dtype": "float32"}, "output": "logits"}
    run_dir = helpers.write_run(tmp_path / "run", model, metadata, (x, np.zeros(16, "int64")), (x, np.zeros(16, "int64")))
    lines = []
    result = export_model(run_dir, formats=["onnx"], base=tmp_path / "exports", log=lines.append)
    reason = result.card["onnx"]["fused_fallback_reason"]
    assert result.card["onnx"]["converter"] == "tf2onnx" and "activations 'relu'/'sigmoid' (only tanh/sigmoid)" in reason
    assert f"fused LSTM/GRU graph not possible ({reason}); converting with tf2onnx (Loop nodes, slower)" in lines
    assert "LSTM" not in _onnx_ops(result.version_dir / "model.onnx")
    assert _properties(result.version_dir / "model.onnx")["converter"] == "tf2onnx"
    assert all(row.ok for row in result.parity)


def test_the_registry_refuses_an_unknown_quantization_recipe():
    from kerasdl.models.registry import QUANTIZATION_RECIPES, register_model

    assert QUANTIZATION_RECIPES == ("static", "dynamic", "none")
    with pytest.raises(ValueError, match=r"model 'odd': quantization='int4'; choose one of static, dynamic, none"):
        register_model("odd", modalities=("features",), builders=(), quantization="int4")


# BERT: ONNX Runtime's fused transformer ops, so that dynamic int8 has an Attention to make QAttention of.


def test_bert_is_exported_as_onnx_runtimes_fused_attention_graph(bert_export):
    from export.formats.onnx import FUSED_BERT_CONVERTER

    operations = _onnx_ops(bert_export.version_dir / "model.onnx")
    assert {"Attention", "SkipLayerNormalization", "FastGelu", "LayerNormalization"} <= set(operations)
    assert "Einsum" not in operations and operations.count("Attention") == 1  # the fixture has one encoder layer
    assert bert_export.card["onnx"]["converter"] == FUSED_BERT_CONVERTER
    assert json.loads(_properties(bert_export.version_dir / "model.onnx")["onnx_inputs"]) == ["token_ids", "segment_ids", "padding_mask"]
    (row,) = [row for row in bert_export.parity if row.artifact == "onnx"]
    assert row.ok and row.max_abs_diff <= 1e-4
    int8 = _onnx_ops(bert_export.version_dir / "model.int8.onnx")
    assert "QAttention" in int8 and "Attention" not in int8
    assert bert_export.card["quantization"]["fused_int8_ops"]["QAttention"] == 1


def test_the_fused_bert_answers_like_keras_on_padded_batches(bert_run):
    import keras
    import onnxruntime

    from export.onnx_bert import fused_bert_onnx
    from kerasdl.artifact import load_model
    from kerasdl.models.bert import bert_token_model

    model, _ = load_model(bert_run / "model.keras")
    token_model = bert_token_model(model)
    rng = np.random.default_rng(0)
    # Every length from 1 to 24 tokens ([CLS] first, padding 0 after the end), random segments.
    lengths = np.arange(1, 25)
    ids = rng.integers(5, model.backbone.vocabulary_size, (len(lengths), 24)).astype("int64")
    ids[:, 0] = 1
    mask = (np.arange(24)[None, :] < lengths[:, None]).astype("int64")
    segments = (rng.random((len(lengths), 24)) < 0.3).astype("int64") * mask
    feed = {"token_ids": ids * mask, "segment_ids": segments, "padding_mask": mask}
    expected = keras.ops.convert_to_numpy(keras.ops.softmax(token_model(feed), axis=-1))
    session = onnxruntime.InferenceSession(fused_bert_onnx(token_model).SerializeToString(), providers=["CPUExecutionProvider"])
    for rows in (slice(0, 1), slice(0, 24), slice(7, 19)):
        actual = session.run(["probabilities"], {name: value[rows] for name, value in feed.items()})[0]
        np.testing.assert_allclose(actual, expected[rows], atol=1e-5)
    # Any number of tokens up to the position table's 24.
    short = session.run(["probabilities"], {name: value[:3, :5] for name, value in feed.items()})[0]
    np.testing.assert_allclose(short, keras.ops.convert_to_numpy(keras.ops.softmax(
        token_model({name: value[:3, :5] for name, value in feed.items()}), axis=-1)), atol=1e-5)


def test_the_fused_bert_refuses_what_it_does_not_write(bert_run, lstm_run):
    from export.onnx_bert import UnsupportedBertModel, fused_bert_onnx
    from kerasdl.artifact import load_model
    from kerasdl.models.bert import bert_token_model

    model, _ = load_model(bert_run / "model.keras")
    with pytest.raises(UnsupportedBertModel, match="LayerNormalization, which needs opset 17, got 16"):
        fused_bert_onnx(bert_token_model(model), opset=16)
    layer = model.backbone.get_layer("transformer_layer_0")
    layer.normalize_first = True
    with pytest.raises(UnsupportedBertModel, match="normalizes first"):
        fused_bert_onnx(bert_token_model(model))
    lstm, _ = load_model(lstm_run / "model.keras")
    with pytest.raises(UnsupportedBertModel, match="holds no keras-hub BertTextClassifier"):
        fused_bert_onnx(lstm)


def test_a_bert_the_fused_builder_refuses_falls_back_to_tf2onnx_by_name(bert_run, tmp_path, monkeypatch):
    import export.onnx_bert
    from export.run import export_model

    def refuse(model, opset=None):
        raise export.onnx_bert.UnsupportedBertModel("'transformer_layer_0' normalizes first (pre-norm)")

    monkeypatch.setattr(export.onnx_bert, "fused_bert_onnx", refuse)
    lines = []
    result = export_model(bert_run, formats=["onnx"], base=tmp_path / "exports", log=lines.append)
    assert result.card["onnx"]["converter"] == "tf2onnx"
    assert result.card["onnx"]["fused_fallback_reason"] == "'transformer_layer_0' normalizes first (pre-norm)"
    assert ("fused BERT graph not possible ('transformer_layer_0' normalizes first (pre-norm)); converting with tf2onnx "
            "(no fused attention, and no QAttention in int8)") in lines
    assert "Attention" not in _onnx_ops(result.version_dir / "model.onnx") and all(row.ok for row in result.parity)
