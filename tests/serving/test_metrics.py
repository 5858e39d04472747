"""Prometheus metrics at /monitoring/prometheus/metrics: parsed from the exposition format, counters move."""

import threading

import numpy as np
import requests
from prometheus_client.parser import text_string_to_metric_families

from serving.client import GrpcClient


def _scrape(url):
    answer = requests.get(f"{url}/monitoring/prometheus/metrics", timeout=10)
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(answer.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def _value(samples, name, **labels):
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_counters_move_under_load(edge):
    images = np.random.default_rng(3).uniform(0, 255, (2, 32, 32, 3)).astype(np.float32).tolist()
    url = f"{edge.url}/v1/models/cnn:predict"
    before = _scrape(edge.url)
    stop = threading.Event()
    sent = []

    def load():
        session = requests.Session()
        while not stop.is_set():
            assert session.post(url, json={"instances": images}, timeout=30).status_code == 200
            sent.append(1)

    workers = [threading.Thread(target=load) for _ in range(4)]
    for worker in workers:
        worker.start()
    try:
        while len(sent) < 20:
            stop.wait(0.01)
        during = _scrape(edge.url)
    finally:
        stop.set()
        for worker in workers:
            worker.join(30)
    assert requests.post(url, json={"instances": [[1.0]]}, timeout=10).status_code == 400
    client = GrpcClient(edge.grpc_target, timeout=10, retries=0)
    client.predict("cnn", {"images": np.zeros((1, 32, 32, 3), "float32")})
    client.close()
    after = _scrape(edge.url)

    ok = dict(model_name="cnn", version="1", API="Predict", entrypoint="REST", status="OK")
    count = ":tensorflow:serving:request_count_total"
    assert _value(before, count, **ok) < _value(during, count, **ok) < _value(after, count, **ok)
    assert _value(after, count, **ok) - _value(before, count, **ok) == len(sent)
    bad = dict(ok, status="INVALID_ARGUMENT")
    assert _value(after, count, **bad) - _value(before, count, **bad) == 1
    grpc_ok = dict(ok, entrypoint="GRPC")
    assert _value(after, count, **grpc_ok) - _value(before, count, **grpc_ok) == 1

    latency = dict(model_name="cnn", API="Predict", entrypoint="REST")
    latency_count = ":tensorflow:serving:request_latency_count"
    assert _value(after, latency_count, **latency) - _value(before, latency_count, **latency) == len(sent)
    assert _value(after, ":tensorflow:serving:request_latency_bucket", **latency, le="+Inf") == _value(after, latency_count, **latency)
    assert _value(after, ":tensorflow:serving:request_latency_sum", **latency) > 0
    runtime = dict(model_name="cnn", API="Predict", runtime="onnx")
    assert _value(after, ":tensorflow:serving:runtime_latency_count", **runtime) > _value(before, ":tensorflow:serving:runtime_latency_count", **runtime)
    # Batching: the rows of every run are counted; runs hold at least one request's 2 rows.
    rows = _value(after, ":tensorflow:serving:batching:batch_size_sum", model_name="cnn") - _value(before, ":tensorflow:serving:batching:batch_size_sum", model_name="cnn")
    assert rows == 2 * len(sent) + 1
    examples = _value(after, ":tensorflow:serving:request_example_counts_sum", model="cnn") - _value(before, ":tensorflow:serving:request_example_counts_sum", model="cnn")
    assert examples == 2 * len(sent) + 1
    assert ("kerasdl_edge_batch_queues", ()) in after
    loads = [key for key in after if key[0] == ":tensorflow:cc:saved_model:load_attempt_count_total"]
    assert {dict(labels)["status"] for _, labels in loads} == {"success"}
    assert any(dict(labels)["model_path"].endswith("/cnn/1") for _, labels in loads)


def test_failed_loads_are_counted(tmp_path, exports):
    import shutil

    from serving.edge.server import build_server

    shutil.copytree(exports / "cnn" / "1", tmp_path / "cnn" / "1")
    (tmp_path / "broken" / "1").mkdir(parents=True)
    (tmp_path / "broken" / "1" / "model.onnx").write_bytes(b"not an onnx model")
    service, _, _, _ = build_server(tmp_path, grpc_port=-1, backend="onnx", batching=False)
    service.repository.scan()  # A retry of the broken version is not counted again.
    samples = {}
    for family in text_string_to_metric_families(service.metrics.exposition().decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    name = ":tensorflow:cc:saved_model:load_attempt_count_total"
    assert _value(samples, name, model_path=str(tmp_path / "broken" / "1"), status="fail") == 1
    assert _value(samples, name, model_path=str(tmp_path / "cnn" / "1"), status="success") == 1
    assert _value(samples, ":tensorflow:cc:saved_model:load_latency_total", model_path=str(tmp_path / "cnn" / "1")) > 0


def test_made_up_model_names_do_not_grow_the_metrics(edge):
    for index in range(25):
        assert requests.post(f"{edge.url}/v1/models/made-up-{index}:predict", json={"instances": [1]}, timeout=10).status_code == 404
    samples = _scrape(edge.url)
    names = {dict(labels)["model_name"] for name, labels in samples if name == ":tensorflow:serving:request_count_total"}
    assert not [name for name in names if name.startswith("made-up")]
    assert _value(samples, ":tensorflow:serving:request_count_total", model_name="<unknown model>", version="", API="Predict",
                  entrypoint="REST", status="NOT_FOUND") >= 25
