"""Issue 12's text path: `training.run mlp --data sst2` trains on strings, exports (SavedModel + ONNX with the
n-gram tokenizer), and the edge server answers the client on both backends with the Keras model's classes."""

import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from benchmarks.common import free_ports

SENTENCES = ["a gripping , funny and moving film", "dull , lifeless and far too long", "an unexpected delight"]


@pytest.fixture(scope="module")
def trained_and_exported(shared_data, tmp_path_factory):
    from export.run import main as export_main
    from training.run import main as train_main

    root = tmp_path_factory.mktemp("text_mlp")
    assert train_main([
        "mlp", "--data", str(shared_data / "sst2"), "--epochs", "2", "--output", str(root / "runs"),
        "--set", "data.max_examples=300", "--set", "train.verbose=0",
    ]) == 0
    (run_dir,) = (root / "runs" / "mlp").iterdir()
    assert export_main([str(run_dir), "--format", "savedmodel", "onnx", "--name", "sentiment", "--base", str(root / "exports")]) == 0
    return run_dir, root / "exports"


def test_the_run_states_the_guide_ratio_and_the_baseline(trained_and_exported):
    run_dir, _ = trained_and_exported
    metrics = json.loads((run_dir / "metrics.json").read_text())
    statistics = metrics["text_statistics"]
    assert statistics["samples"] == 300 and statistics["recommended_model"] == "n-gram MLP" and statistics["ratio"] < 1500
    assert metrics["baseline"]["name"] == "tfidf_logistic_regression" and metrics["test_examples"] == metrics["baseline"]["test_examples"]
    report = (run_dir / "report.md").read_text()
    assert "Recommended by the guide: **n-gram MLP**" in report and "- Against a classical baseline: kerasdl " in report
    # The run is the n-gram MLP already: it is not told to try it.
    assert "python -m training.run mlp" not in report
    from kerasdl.artifact import load_metadata

    assert load_metadata(run_dir / "model.keras")["text"]["tokenizer"] == "ngram_counts"


def test_export_ships_the_vocabulary_and_idf_and_the_onnx_model_takes_counts(trained_and_exported):
    import onnxruntime

    from kerasdl.artifact import load_model
    from kerasdl.runtime.onnx import OnnxRunner

    run_dir, exports = trained_and_exported
    version = exports / "sentiment" / "1"
    tokenizer = json.loads((version / "tokenizer" / "tokenizer.json").read_text())
    vocabulary = (version / "tokenizer" / "vocab.txt").read_text().split("\n")[:-1]
    idf = (version / "tokenizer" / "idf.txt").read_text().split("\n")[:-1]
    assert tokenizer["type"] == "ngram_counts" and tokenizer["ngrams"] == 2 and len(vocabulary) == len(idf) == tokenizer["vocabulary_size"]
    assert vocabulary[0] == "[UNK]" and float(idf[0]) == 0.0 and any(" " in gram for gram in vocabulary)
    session = onnxruntime.InferenceSession(str(version / "model.onnx"), providers=["CPUExecutionProvider"])
    (graph_input,) = session.get_inputs()
    assert (graph_input.name, graph_input.type, graph_input.shape[1]) == ("token_counts", "tensor(int64)", len(vocabulary))
    model, _ = load_model(run_dir / "model.keras")
    expected = model.predict(np.array(SENTENCES, dtype=object), verbose=0)
    expected = np.exp(expected) / np.exp(expected).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(OnnxRunner(version / "model.onnx").predict(SENTENCES), expected, atol=1e-5)


@pytest.mark.parametrize("backend", ["onnx", "savedmodel"])
def test_the_edge_server_answers_the_client_with_the_models_classes(trained_and_exported, backend, tmp_path, repo_root):
    from kerasdl.artifact import load_model

    run_dir, exports = trained_and_exported
    model, metadata = load_model(run_dir / "model.keras")
    expected = [metadata["class_names"][index] for index in np.argmax(model.predict(np.array(SENTENCES, dtype=object), verbose=0), axis=-1)]
    rest, grpc = free_ports(2)
    environment = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    with open(tmp_path / "edge.log", "w") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "serving.edge", str(exports), "--port", str(rest), "--grpc-port", str(grpc), "--backend", backend],
            cwd=repo_root, env=environment, stdout=log, stderr=subprocess.STDOUT,
        )
        try:
            _wait_ready(server, f"http://127.0.0.1:{rest}/readyz", tmp_path / "edge.log")
            texts = [argument for sentence in SENTENCES for argument in ("--text", sentence)]
            for target in (["--rest", f"http://127.0.0.1:{rest}"], ["--grpc", f"127.0.0.1:{grpc}"]):
                answer = subprocess.run(
                    [sys.executable, "-m", "serving.client", "--model", "sentiment", *texts, *target],
                    cwd=repo_root, env=environment, capture_output=True, text=True, timeout=120,
                )
                assert answer.returncode == 0, answer.stderr[-2000:]
                lines = answer.stdout.strip().splitlines()[-len(SENTENCES):]
                # One line per text: the text, its class, then the probabilities.
                assert [line.split("\t")[:2] for line in lines] == [[sentence, name] for sentence, name in zip(SENTENCES, expected)], answer.stdout
        finally:
            server.terminate()
            server.wait(timeout=30)


def _wait_ready(server, url, log_path):
    import requests

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"the edge server exited with {server.returncode}: {log_path.read_text()[-2000:]}")
        try:
            if requests.get(url, timeout=1).status_code == 200:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"the edge server did not become ready: {log_path.read_text()[-2000:]}")
