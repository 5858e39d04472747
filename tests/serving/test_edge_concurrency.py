"""16 concurrent clients, 500 requests over REST and gRPC: no errors, every answer is its own input's."""

import concurrent.futures

import numpy as np
import requests

from serving.client import GrpcClient

CLIENTS = 16
REQUESTS = 500


def test_concurrent_requests_get_their_own_rows(edge, onnx_reference):
    rng = np.random.default_rng(11)
    # Requests of 1-3 rows, so batches hold requests of different sizes.
    inputs = [rng.uniform(0, 255, (int(rng.integers(1, 4)), 32, 32, 3)).astype(np.float32) for _ in range(REQUESTS)]
    expected = [onnx_reference("cnn", 1, {"images": images}) for images in inputs]
    sessions = [requests.Session() for _ in range(CLIENTS)]
    grpc_client = GrpcClient(edge.grpc_target, timeout=30, retries=0)

    def call(index):
        images = inputs[index]
        if index % 4 == 3:
            return index, grpc_client.predict("cnn", {"images": images})["probabilities"]
        answer = sessions[index % CLIENTS].post(
            f"{edge.url}/v1/models/cnn:predict", json={"inputs": {"images": images.tolist()}}, timeout=30
        )
        assert answer.status_code == 200, answer.text
        return index, np.asarray(answer.json()["outputs"]["probabilities"], dtype=np.float32)

    with concurrent.futures.ThreadPoolExecutor(CLIENTS) as pool:
        results = list(pool.map(call, range(REQUESTS)))
    grpc_client.close()
    assert len(results) == REQUESTS
    for index, probabilities in results:
        assert probabilities.shape == expected[index].shape
        # Batched runs may sum in another order than a lone run; rows from another
        # request would differ by orders of magnitude more than this tolerance.
        np.testing.assert_allclose(probabilities, expected[index], rtol=1e-4, atol=1e-6)
        assert np.argmax(probabilities, axis=1).tolist() == np.argmax(expected[index], axis=1).tolist()
