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
