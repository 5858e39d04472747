"""NumPy <-> TensorProto without TensorFlow, checked against TensorFlow's own converters."""

import subprocess
import sys

import numpy as np
import pytest

from serving import protos


@pytest.mark.parametrize(
    "value",
    [
        np.arange(24, dtype=np.float32).reshape(2, 3, 4) / 7,
        np.array([[1, -2], [3, 2**40]], dtype=np.int64),
        np.array([1, 2, 3], dtype=np.int32),
        np.array([True, False]),
        np.array([b"a", b"\xff\x00", "caf\u00e9".encode()], dtype=object),
    ],
)
def test_round_trip_matches_tensorflow(value):
    import tensorflow as tf

    proto = protos.to_tensor_proto(value)
    back = protos.to_numpy(proto)
    assert back.shape == value.shape
    assert back.tolist() == value.tolist()
    # TensorFlow reads our proto, and our reader reads TensorFlow's.
    assert tf.make_ndarray(proto).tolist() == value.tolist()
    assert protos.to_numpy(tf.make_tensor_proto(value)).tolist() == value.tolist()


def test_repeated_value_fields_are_read():
    proto = protos.load().tensor_pb2.TensorProto(dtype=1)
    proto.tensor_shape.dim.add(size=3)
    proto.float_val.extend([0.5])  # TensorFlow repeats the last value.
    assert protos.to_numpy(proto).tolist() == [0.5, 0.5, 0.5]


def test_loading_the_protos_imports_no_tensorflow():
    code = (
        "import sys; from serving import protos; protos.load(); "
        "protos.to_numpy(protos.to_tensor_proto([1.0])); "
        "assert 'tensorflow' not in sys.modules, 'tensorflow was imported'; "
        "assert 'tensorflow.python' not in sys.modules"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def _owner(array):
    """The object that finally holds `array`'s memory (an ndarray that owns it, or a bytes object)."""
    while isinstance(array, np.ndarray) and array.base is not None:
        array = array.base
    return array


def test_tensor_content_is_read_without_a_copy():
    """A float32 tensor_content becomes a read-only view of the message's bytes, not a second array."""
    value = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype(np.float32)
    proto = protos.to_tensor_proto(value)
    assert proto.tensor_content and not proto.float_val
    back = protos.to_numpy(proto)
    assert back.dtype == np.float32 and back.shape == value.shape
    np.testing.assert_array_equal(back, value)
    assert isinstance(_owner(back), bytes)
    assert not back.flags.writeable


def test_responses_are_written_in_place_with_tensor_content():
    response = protos.load().predict_pb2.PredictResponse()
    probabilities = np.array([[0.25, 0.75]], dtype=np.float32)
    protos.fill_tensor_proto(response.outputs["probabilities"], probabilities)
    protos.fill_tensor_proto(response.outputs["class_names"], np.array([b"bee"], dtype=object))
    written = response.outputs["probabilities"]
    assert written.dtype == 1 and [dim.size for dim in written.tensor_shape.dim] == [1, 2]
    assert written.tensor_content == probabilities.tobytes() and not written.float_val
    assert protos.to_numpy(response.outputs["class_names"]).tolist() == [b"bee"]
    # A big-endian or non-contiguous array is written little-endian and in C order.
    protos.fill_tensor_proto(response.outputs["transposed"], np.arange(6, dtype=">f4").reshape(2, 3).T)
    assert protos.to_numpy(response.outputs["transposed"]).tolist() == [[0.0, 3.0], [1.0, 4.0], [2.0, 5.0]]
