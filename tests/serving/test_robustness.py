"""Generated hostile requests (Hypothesis) and concurrent clients against both backends.

Small budgets here; `benchmarks.run --only robustness` runs the same functions
with at least 1,000 cases per API and 16 clients x 500 requests.
"""

import pytest

from benchmarks.serving_concurrency import check_concurrency, server_cases
from benchmarks.serving_fuzz import fuzz_grpc, fuzz_rest

REST_CASES = 120
GRPC_CASES = 120


@pytest.mark.parametrize("server", ["edge", "edge_savedmodel"])
def test_rest_fuzzing_finds_no_server_fault(server, request):
    edge = request.getfixturevalue(server)
    report = fuzz_rest(edge.url, examples=REST_CASES, seed=1)
    summary = report.summary()
    assert summary["cases"] == REST_CASES
    assert summary["server_errors"] == 0, report.server_errors[:3]
    assert summary["bad_error_bodies"] == 0, report.bad_bodies[:3]
    assert report.answers_afterwards
    # The generated cases reach the models, not only the parsers.
    assert summary["statuses"].get(200, 0) > 0 and summary["statuses"].get(400, 0) > 0, summary


@pytest.mark.parametrize("server", ["edge", "edge_savedmodel"])
def test_grpc_fuzzing_finds_no_server_fault(server, request):
    edge = request.getfixturevalue(server)
    report = fuzz_grpc(edge.grpc_target, examples=GRPC_CASES, seed=2, url=edge.url)
    summary = report.summary()
    assert summary["cases"] == GRPC_CASES
    assert summary["server_errors"] == 0, report.server_errors[:3]
    assert report.answers_afterwards
    assert summary["statuses"].get("INVALID_ARGUMENT", 0) > 0, summary


def test_concurrent_clients_get_their_own_rows_across_models_and_backends(edge, edge_savedmodel, exports, tf_serving_base):
    cases = server_cases(edge.url, edge.grpc_target, exports, backend="onnx")
    cases += server_cases(edge_savedmodel.url, edge_savedmodel.grpc_target, tf_serving_base, backend="savedmodel")
    names = {case.name for case in cases}
    # Two models on each backend, both protocols, and the image_bytes and text signatures.
    assert {"onnx/cnn/serving_default/rest", "onnx/text/serving_default/grpc", "onnx/cnn/image_bytes/rest",
            "savedmodel/cnn/serving_default/grpc", "savedmodel/saved_model_half_plus_two_2_versions/serving_default/rest"} <= names
    report = check_concurrency(cases, clients=6, requests_per_client=20, seed=3)
    assert report["requests"] == 120
    assert report["errors"] == 0, report
    assert report["mismatched_rows"] == 0, report
    assert report["rows"] >= 120
