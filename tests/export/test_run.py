"""End-to-end exports of each tiny model: layout, signatures, ONNX, warmup, model card, int8."""

import json

import numpy as np
import pytest



def _load_npz(run_dir, stem="validation"):
    with np.load(run_dir / "data" / f"{stem}.npz") as content:
        return content["x"], content["y"]


def _serving(version_dir):
    from export.formats.savedmodel import ServingSession

    return ServingSession(version_dir)


# Layout and publishing.


@pytest.mark.parametrize("fixture", ["mlp_export", "cnn_export", "lstm_export", "text_lstm_export", "bert_export"])
def test_version_layout_is_a_tf_serving_model_base_path(fixture, request):
    result = request.getfixturevalue(fixture)
    version_dir = result.version_dir
    assert version_dir.name == "1" and result.version == 1
    for relative in ("saved_model.pb", "variables/variables.index", "assets.extra/tf_serving_warmup_requests",
                     "assets.extra/model_card.json", "model.onnx"):
        assert (version_dir / relative).is_file(), relative
    # Nothing temporary is left beside the version.
    assert sorted(entry.name for entry in version_dir.parent.iterdir()) == ["1"]
    assert all(row.ok for row in result.parity)


def test_model_card_holds_classes_run_metrics_and_parity(mlp_export, mlp_run):
    card = json.loads((mlp_export.version_dir / "assets.extra" / "model_card.json").read_text())
    assert card["class_names"] == ["alpha", "beta", "gamma"]
    assert card["input_spec"] == {"name": "features", "dtype": "float32", "shape": [None, 6]}
    assert card["training_run"]["run_dir"] == str(mlp_run)
    assert card["training_run"]["config"] == {"model": "mlp", "epochs": 3}
    assert card["metrics"]["test_accuracy"] == 0.9
    assert card["signatures"]["serving_default"]["inputs"] == {"features": {"dtype": "float32", "shape": [None, 6]}}
    rows = {(row["artifact"], row["signature"]): row for row in card["parity"]["results"]}
    assert set(rows) == {("savedmodel", "serving_default"), ("onnx", "probabilities")}
    assert rows[("onnx", "probabilities")]["tolerance"] == 1e-5
    assert all(row["ok"] and row["examples"] == 64 for row in rows.values())
    assert card["onnx"]["inputs"] == {"features": {"dtype": "float32", "shape": ["batch", 6]}}


# The SavedModel, reloaded the way TF Serving loads it.


def test_mlp_savedmodel_signature_matches_keras(mlp_export, mlp_run, helpers):
    x, _ = _load_npz(mlp_run)
    expected = helpers.keras_reference(mlp_run, x)
    with _serving(mlp_export.version_dir) as session:
        assert sorted(session.signatures) == ["serving_default"]
        signature = session.signatures["serving_default"]
        assert signature.method_name == "tensorflow/serving/predict"
        assert list(signature.inputs) == ["features"]
        assert sorted(signature.outputs) == ["class_ids", "class_names", "classes", "probabilities", "scores"]
        outputs = session.run("serving_default", {"features": x})
    np.testing.assert_allclose(outputs["probabilities"], expected, atol=1e-5)
    assert outputs["class_ids"].dtype == np.int64
    assert list(outputs["class_ids"]) == list(expected.argmax(axis=-1))
    names = ["alpha", "beta", "gamma"]
    assert [value.decode() for value in outputs["class_names"]] == [names[i] for i in expected.argmax(axis=-1)]


def test_cnn_has_image_bytes_signature_that_agrees_with_float_path_on_real_jpegs(cnn_export, helpers):
    import tensorflow as tf

    from kerasdl.data.image_folder import decode_image_bytes

    _, _, paths, _ = helpers.cifar_images(20, per_class=2)
    encoded = np.array([path.read_bytes() for path in paths], dtype=object)
    # The float path gets the same pixels the pipeline's decoder gives for the JPEG bytes.
    pixels = np.stack([decode_image_bytes(tf.constant(data), 3).numpy() for data in encoded]).astype("float32")
    with _serving(cnn_export.version_dir) as session:
        assert sorted(session.signatures) == ["image_bytes", "serving_default"]
        assert list(session.signatures["image_bytes"].inputs) == ["image_bytes"]
        assert session.signatures["image_bytes"].inputs["image_bytes"].dtype == tf.string.as_datatype_enum
        from_bytes = session.run("image_bytes", {"image_bytes": encoded})
        from_floats = session.run("serving_default", {"images": pixels})
    assert list(from_bytes["class_ids"]) == list(from_floats["class_ids"])
    np.testing.assert_allclose(from_bytes["probabilities"], from_floats["probabilities"], atol=1e-6)
    assert from_bytes["probabilities"].shape == (20, 10)


def test_image_bytes_forces_channels_and_resizes(cnn_export):
    from export.formats.savedmodel import encode_png

    grey_40 = np.random.default_rng(0).integers(0, 256, (40, 40, 1)).astype("uint8")
    with _serving(cnn_export.version_dir) as session:
        outputs = session.run("image_bytes", {"image_bytes": np.array([encode_png(grey_40)], dtype=object)})
    assert outputs["probabilities"].shape == (1, 10)
    assert abs(float(outputs["probabilities"].sum()) - 1.0) < 1e-5


def test_lstm_savedmodel_and_onnx_take_any_sequence_length(lstm_export, lstm_run, helpers):
    import onnxruntime

    x, _ = _load_npz(lstm_run)
    short = x[:, :7]  # a shorter zero-padded time axis
    expected = helpers.keras_reference(lstm_run, short)
    with _serving(lstm_export.version_dir) as session:
        outputs = session.run("serving_default", {"sequences": short})
    np.testing.assert_allclose(outputs["probabilities"], expected, atol=1e-5)
    onnx_session = onnxruntime.InferenceSession(str(lstm_export.version_dir / "model.onnx"))
    (probabilities,) = onnx_session.run(["probabilities"], {"sequences": short})
    np.testing.assert_allclose(probabilities, expected, atol=1e-4)
    assert onnx_session.get_inputs()[0].shape == ["batch", "time", 2]


def test_text_savedmodel_takes_strings(text_lstm_export, text_lstm_run, helpers):
    content = json.loads((text_lstm_run / "data" / "validation.json").read_text())
    texts = content["x"][:8]
    expected = helpers.keras_reference(text_lstm_run, texts)
    with _serving(text_lstm_export.version_dir) as session:
        signature = session.signatures["serving_default"]
        assert list(signature.inputs) == ["text"]
        outputs = session.run("serving_default", {"text": np.array([t.encode() for t in texts], dtype=object)})
    np.testing.assert_allclose(outputs["probabilities"], expected, atol=1e-5)


# ONNX.


@pytest.mark.parametrize(
    "fixture, inputs, modality",
    [
        ("mlp_export", {"features": ["batch", 6]}, "features"),
        ("cnn_export", {"images": ["batch", "height", "width", 3]}, "image"),
        ("lstm_export", {"sequences": ["batch", "time", 2]}, "sequence"),
        ("text_lstm_export", {"token_ids": ["batch", "tokens"]}, "text"),
        ("bert_export", {name: ["batch", "tokens"] for name in ("token_ids", "segment_ids", "padding_mask")}, "text"),
    ],
)
def test_onnx_inputs_outputs_and_metadata(fixture, inputs, modality, request):
    import onnx

    result = request.getfixturevalue(fixture)
    model = onnx.load(str(result.version_dir / "model.onnx"))
    onnx.checker.check_model(model)
    from export.formats.onnx import describe_values

    assert {name: spec["shape"] for name, spec in describe_values(model.graph.input).items()} == inputs
    outputs = describe_values(model.graph.output)
    assert list(outputs) == ["probabilities"] and outputs["probabilities"]["shape"][0] == "batch"
    properties = {prop.key: prop.value for prop in model.metadata_props}
    assert properties["modality"] == modality
    assert json.loads(properties["class_names"]) == result.card["class_names"]
    assert json.loads(properties["input_spec"])["name"] == {"features": "features", "image": "images",
                                                            "sequence": "sequences", "text": "text"}[modality]
    assert isinstance(json.loads(properties["preprocessing"]), dict)


def test_onnx_matches_keras_on_held_out_examples(mlp_export, mlp_run, cnn_export, cnn_run, helpers):
    import onnxruntime

    for result, run_dir, name, tolerance in ((mlp_export, mlp_run, "features", 1e-5), (cnn_export, cnn_run, "images", 1e-4)):
        x, _ = _load_npz(run_dir)
        session = onnxruntime.InferenceSession(str(result.version_dir / "model.onnx"))
        (probabilities,) = session.run(["probabilities"], {name: x})
        expected = helpers.keras_reference(run_dir, x)
        np.testing.assert_allclose(probabilities, expected, atol=tolerance)
        assert list(probabilities.argmax(-1)) == list(expected.argmax(-1))


def test_text_onnx_with_python_tokenizer_matches_keras_on_strings(text_lstm_export, text_lstm_run, helpers):
    import onnxruntime

    from kerasdl.tokenizer import load_tokenizer

    folder = text_lstm_export.version_dir / "tokenizer"
    config = json.loads((folder / "tokenizer.json").read_text())
    assert config["type"] == "text_vectorization" and config["sequence_length"] == 24
    vocabulary = (folder / "vocab.txt").read_text(encoding="utf-8").split("\n")[:-1]
    assert vocabulary[:2] == ["", "[UNK]"] and len(vocabulary) == config["vocabulary_size"]
    texts = json.loads((text_lstm_run / "data" / "validation.json").read_text())["x"]
    feed = load_tokenizer(folder).encode_batch(texts)
    session = onnxruntime.InferenceSession(str(text_lstm_export.version_dir / "model.onnx"))
    assert session.get_inputs()[0].type == "tensor(int64)"
    (probabilities,) = session.run(["probabilities"], feed)
    np.testing.assert_allclose(probabilities, helpers.keras_reference(text_lstm_run, texts), atol=1e-4)
    rows = {row.artifact: row for row in text_lstm_export.parity}
    assert rows["tokenizer"].ok and rows["tokenizer"].class_agreement == 1.0


def test_onnx_export_rejects_unexpected_graph_inputs():
    from onnx import TensorProto, helper

    from export.errors import VerificationError
    from export.formats.onnx import assert_inputs

    graph = helper.make_graph(
        [helper.make_node("Add", ["images", "captured_mean:0"], ["probabilities"])],
        "g",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [None, 3]),
         helper.make_tensor_value_info("captured_mean:0", TensorProto.FLOAT, [3])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, 3])],
    )
    with pytest.raises(VerificationError, match=r"unexpected \['captured_mean:0'\]"):
        assert_inputs(helper.make_model(graph), ["images"])
    assert_inputs(helper.make_model(graph), ["images", "captured_mean:0"])  # exactly these: fine


def test_normalization_statistics_do_not_become_onnx_inputs(mlp_export):
    # keras.layers.Normalization captures its mean/variance as eager tensors;
    # the exporter freezes them into constants (the MLP has one inside).
    import onnx

    model = onnx.load(str(mlp_export.version_dir / "model.onnx"))
    assert [value.name for value in model.graph.input] == ["features"]


# The TF Serving warmup file.


@pytest.mark.parametrize("fixture, signatures", [
    ("mlp_export", {"serving_default": ("features", "DT_FLOAT", 6)}),
    ("cnn_export", {"serving_default": ("images", "DT_FLOAT", 32), "image_bytes": ("image_bytes", "DT_STRING", None)}),
    ("text_lstm_export", {"serving_default": ("text", "DT_STRING", None)}),
])
def test_warmup_records_match_the_signatures(fixture, signatures, request):
    from tensorflow.core.framework import types_pb2

    from export.warmup import read_warmup

    result = request.getfixturevalue(fixture)
    records = read_warmup(result.version_dir / "assets.extra" / "tf_serving_warmup_requests")
    assert len(records) == 2 * len(signatures)
    seen = set()
    for record in records:
        request_proto = record.predict_log.request
        assert request_proto.model_spec.name == result.card["name"]
        name, dtype, second_dim = signatures[request_proto.model_spec.signature_name]
        assert list(request_proto.inputs) == [name]
        tensor = request_proto.inputs[name]
        assert types_pb2.DataType.Name(tensor.dtype) == dtype
        dims = [dim.size for dim in tensor.tensor_shape.dim]
        assert dims[0] in (1, 8)
        if second_dim is not None:
            assert dims[1] == second_dim
        seen.add((request_proto.model_spec.signature_name, dims[0]))
    assert seen == {(signature, batch) for signature in signatures for batch in (1, 8)}


def test_warmup_requests_run_against_the_savedmodel(cnn_export):
    import tensorflow as tf

    from export.warmup import read_warmup

    records = read_warmup(cnn_export.version_dir / "assets.extra" / "tf_serving_warmup_requests")
    with _serving(cnn_export.version_dir) as session:
        for record in records:
            request_proto = record.predict_log.request
            feed = {name: tf.make_ndarray(tensor) for name, tensor in request_proto.inputs.items()}
            outputs = session.run(request_proto.model_spec.signature_name, feed)
            assert outputs["probabilities"].shape[0] == len(next(iter(feed.values())))


# int8.


def test_int8_dynamic_on_mlp_reports_agreement_and_accuracy(mlp_export):
    import onnx

    quantization = mlp_export.card["quantization"]
    assert quantization["method"] == "dynamic" and quantization["accepted"]
    comparison = quantization["comparison"]
    assert comparison["examples"] == 64
    assert comparison["agreement"] == 1.0  # well-separated classes keep their argmax
    assert comparison["fp32_accuracy"] == comparison["int8_accuracy"] == 1.0
    assert comparison["accuracy_drop_points"] == 0.0
    assert comparison["size_ratio"] == comparison["int8_bytes"] / comparison["fp32_bytes"]
    model = onnx.load(str(mlp_export.version_dir / "model.int8.onnx"))
    assert any(node.op_type.startswith(("DynamicQuantize", "MatMulInteger")) for node in model.graph.node)
    assert json.loads({p.key: p.value for p in model.metadata_props}["class_names"]) == ["alpha", "beta", "gamma"]


def test_int8_static_qdq_on_cnn_uses_calibration_data(cnn_export):
    import onnx

    quantization = cnn_export.card["quantization"]
    assert quantization["method"] == "static" and quantization["format"] == "QDQ" and quantization["per_channel"]
    assert quantization["calibration_examples"] == 64
    assert 0 < quantization["comparison"]["size_ratio"] < 0.5  # int8 weights: about a quarter of float32
    assert quantization["comparison"]["agreement"] >= 0.75
    assert quantization["activation_type"] == "uint8" and quantization["weight_type"] == "int8"  # U8S8
    model = onnx.load(str(cnn_export.version_dir / "model.int8.onnx"))
    assert any(node.op_type == "QuantizeLinear" for node in model.graph.node)
    # The softmax, the input normalization (element-wise work on raw pixels) and the resize of any
    # image size to the model's (with the shape arithmetic feeding it) stay float.
    kinds = {node.name: node.op_type for node in model.graph.node}
    float_kinds = sorted(kinds[name] for name in quantization["float_nodes"] if name in kinds)
    assert float_kinds == ["Add", "Concat", "Gather", "Mul", "Resize", "Shape", "Slice", "Softmax", "Transpose"]
    # ONNX Runtime runs both convolutions and both Dense layers as integer kernels.
    fused = quantization["fused_int8_ops"]
    assert fused["QLinearConv"] == 1 and fused["QGemm"] == 2 and "QLinearMul" not in fused and "QLinearAdd" not in fused


def test_bert_tokenizer_files_and_onnx_token_features(bert_export, bert_run, helpers):
    import onnxruntime

    from kerasdl.tokenizer import load_tokenizer

    folder = bert_export.version_dir / "tokenizer"
    config = json.loads((folder / "tokenizer.json").read_text())
    assert config["type"] == "bert" and config["sequence_length"] == 24 and config["lowercase"] is True
    assert config["special_tokens"]["cls"] == {"token": "[CLS]", "id": 1}
    assert config["special_tokens"]["pad"] == {"token": "[PAD]", "id": 0}
    session = onnxruntime.InferenceSession(str(bert_export.version_dir / "model.onnx"))
    assert sorted((item.name, item.type) for item in session.get_inputs()) == [
        ("padding_mask", "tensor(int64)"), ("segment_ids", "tensor(int64)"), ("token_ids", "tensor(int64)")]
    texts = json.loads((bert_run / "data" / "validation.json").read_text())["x"]
    (probabilities,) = session.run(["probabilities"], load_tokenizer(folder).encode_batch(texts))
    np.testing.assert_allclose(probabilities, helpers.keras_reference(bert_run, texts), atol=1e-3)
    rows = {row.artifact: row for row in bert_export.parity}
    assert rows["tokenizer"].ok and rows["savedmodel"].ok and rows["onnx"].ok
