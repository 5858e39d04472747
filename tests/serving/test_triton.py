"""`python -m serving.deploy exports/ --target triton`: a Triton model repository that parses back and matches the ONNX graphs."""

import shlex
import shutil
import subprocess
import sys

import numpy as np
import pytest
from google.protobuf import text_format

from conftest import REPO_ROOT, _write_onnx


@pytest.fixture(scope="module")
def triton_exports(exports, tmp_path_factory):
    """exports/ with the CNN (versions 1 and 2), the text model, and an MLP on 12 features."""
    import json

    import keras

    from kerasdl.models import mlp

    base = tmp_path_factory.mktemp("triton") / "exports"
    shutil.copytree(exports / "cnn" / "1", base / "cnn" / "1")
    shutil.copytree(exports / "cnn" / "1", base / "cnn" / "2")
    shutil.copytree(exports / "text" / "1", base / "text" / "1")
    keras.utils.set_random_seed(4)
    features = keras.Input((12,), name="features")
    logits = mlp(input_shape=(12,), num_classes=3, hidden_units=8)(features)
    (base / "mlp" / "1").mkdir(parents=True)
    _write_onnx(
        keras.Model(features, keras.layers.Softmax(name="probabilities")(logits)),
        base / "mlp" / "1" / "model.onnx",
        "features",
        {"class_names": json.dumps(["a", "b", "c"]), "modality": "features"},
    )
    (base / "tfonly" / "1").mkdir(parents=True)  # A SavedModel-only model: not Triton's.
    (base / "tfonly" / "1" / "saved_model.pb").write_bytes(b"")
    return base


def _config(path):
    from tritonclient.grpc import model_config_pb2

    return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())


def test_repository_parses_back_and_matches_the_onnx_graphs(triton_exports, tmp_path):
    import onnxruntime
    from tritonclient.grpc import model_config_pb2

    out = tmp_path / "triton_repo"
    result = subprocess.run(
        [sys.executable, "-m", "serving.deploy", str(triton_exports), "--target", "triton", "--out", str(out),
         "--policy", "all", "--max-batch-size", "16", "--instances", "2"],
        capture_output=True, text=True, timeout=120, cwd=str(REPO_ROOT),
    )
    assert result.returncode == 0, result.stderr
    assert sorted(path.name for path in out.iterdir()) == ["README.md", "cnn", "docker_run.sh", "mlp", "text"]
    types = {"tensor(float)": model_config_pb2.TYPE_FP32, "tensor(int64)": model_config_pb2.TYPE_INT64}
    for name, versions in (("cnn", [1, 2]), ("mlp", [1]), ("text", [1])):
        config = _config(out / name / "config.pbtxt")
        assert (config.name, config.platform, config.max_batch_size) == (name, "onnxruntime_onnx", 16)
        assert config.version_policy.WhichOneof("policy_choice") == "all"
        assert list(config.dynamic_batching.preferred_batch_size) == [4, 8, 16]
        assert config.dynamic_batching.max_queue_delay_microseconds == 2000
        assert [(group.kind, group.count) for group in config.instance_group] == [(model_config_pb2.ModelInstanceGroup.KIND_CPU, 2)]
        for version in versions:
            copied = out / name / str(version) / "model.onnx"
            assert copied.read_bytes() == (triton_exports / name / str(version) / "model.onnx").read_bytes()
        session = onnxruntime.InferenceSession(str(out / name / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
        for declared, actual in ((config.input, session.get_inputs()), (config.output, session.get_outputs())):
            assert [item.name for item in declared] == [item.name for item in actual]
            for item, tensor in zip(declared, actual):
                # Triton's dims leave out the batch axis; a free axis is -1.
                assert list(item.dims) == [size if isinstance(size, int) else -1 for size in tensor.shape[1:]]
                assert item.data_type == types[tensor.type]
    assert list(_config(out / "cnn" / "config.pbtxt").input[0].dims) == [32, 32, 3]
    assert list(_config(out / "mlp" / "config.pbtxt").input[0].dims) == [12]
    assert list(_config(out / "mlp" / "config.pbtxt").output[0].dims) == [3]

    command = shlex.split(result.stdout.strip().splitlines()[-1])
    assert command[:3] == ["docker", "run", "--rm"]
    assert f"type=bind,source={out},target=/models,readonly" in command
    assert command[-3:-2] == ["nvcr.io/nvidia/tritonserver:25.11-py3"]
    assert command[-2:] == ["tritonserver", "--model-repository=/models"]
    assert (out / "docker_run.sh").read_text().splitlines()[-1] == "exec " + result.stdout.strip().splitlines()[-1]
    readme = (out / "README.md").read_text()
    assert "## Text models need their tokenizer outside Triton" in readme and "text take token ids" in readme
    assert oct((out / "cnn" / "1").stat().st_mode & 0o777) == "0o755"


def test_latest_policy_and_rewrite_replaces_the_repository(triton_exports, tmp_path):
    from serving import triton

    out = tmp_path / "repo"
    triton.write_repository(triton_exports, out, max_batch_size=8, preferred_batch_sizes=[2, 8])
    config = _config(out / "cnn" / "config.pbtxt")
    assert config.version_policy.latest.num_versions == 1
    assert list(config.dynamic_batching.preferred_batch_size) == [2, 8]
    assert sorted(path.name for path in (out / "cnn").iterdir()) == ["2", "config.pbtxt"]
    (out / "stale").mkdir()
    triton.write_repository(triton_exports, out, policy="specific", specific_versions=[1])
    assert not (out / "stale").exists()
    assert list(_config(out / "cnn" / "config.pbtxt").version_policy.specific.versions) == [1]
    assert not [path for path in tmp_path.iterdir() if path.name.startswith(".")]


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--label", "stable=1"], "--label applies to TF Serving only"),
        (["--policy", "specific", "--versions", "7"], "has no version(s) [7]"),
        (["--preferred-batch-sizes", "64"], "must lie in 1..32"),
        (["--preferred-batch-sizes", "a,b"], "--preferred-batch-sizes must be comma-separated integers"),
    ],
)
def test_bad_arguments_fail_with_one_line_and_write_nothing(triton_exports, tmp_path, arguments, message):
    out = tmp_path / "repo"
    result = subprocess.run(
        [sys.executable, "-m", "serving.deploy", str(triton_exports), "--target", "triton", "--out", str(out), *arguments],
        capture_output=True, text=True, timeout=120, cwd=str(REPO_ROOT),
    )
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and message in result.stderr
    assert not out.exists()
    assert not list(tmp_path.iterdir())


def test_no_onnx_model_is_a_clear_error(tmp_path):
    from serving import triton

    (tmp_path / "m" / "1").mkdir(parents=True)
    with pytest.raises(ValueError, match="no ONNX models under"):
        triton.write_repository(tmp_path, tmp_path / "out")
    assert np.array_equal(sorted(path.name for path in tmp_path.iterdir()), ["m"])
