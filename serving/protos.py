"""TF Serving's protocol buffers without importing TensorFlow, and NumPy <-> TensorProto.

The `tensorflow-serving-api` package ships the generated `*_pb2` modules of
TF Serving, but they import TensorFlow's own protos as
`tensorflow.core.framework.*_pb2`. Importing anything under `tensorflow.`
first runs `tensorflow/__init__.py`, which loads the whole runtime (seconds
and hundreds of megabytes). The edge server and the client only need the
message classes, so `load()` imports them under a placeholder `tensorflow`
package whose search path is the real one: the generated modules run
unchanged, nothing else of TensorFlow is executed, and the placeholder is
removed again so that a later real `import tensorflow` proceeds normally and
reuses the already-imported proto modules.

`to_tensor_proto` and `to_numpy` replace `tf.make_tensor_proto` and
`tf.make_ndarray` for the dtypes a classifier uses.
"""

import importlib
import importlib.util
import math
import sys
import threading
import types

import numpy as np

_LOCK = threading.Lock()
_MODULES = None

_MODULE_NAMES = {
    "tensor_pb2": "tensorflow.core.framework.tensor_pb2",
    "tensor_shape_pb2": "tensorflow.core.framework.tensor_shape_pb2",
    "types_pb2": "tensorflow.core.framework.types_pb2",
    "meta_graph_pb2": "tensorflow.core.protobuf.meta_graph_pb2",
    "saved_model_pb2": "tensorflow.core.protobuf.saved_model_pb2",
    "example_pb2": "tensorflow.core.example.example_pb2",
    "feature_pb2": "tensorflow.core.example.feature_pb2",
    "input_pb2": "tensorflow_serving.apis.input_pb2",
    "classification_pb2": "tensorflow_serving.apis.classification_pb2",
    "regression_pb2": "tensorflow_serving.apis.regression_pb2",
    "inference_pb2": "tensorflow_serving.apis.inference_pb2",
    "model_pb2": "tensorflow_serving.apis.model_pb2",
    "predict_pb2": "tensorflow_serving.apis.predict_pb2",
    "get_model_metadata_pb2": "tensorflow_serving.apis.get_model_metadata_pb2",
    "get_model_status_pb2": "tensorflow_serving.apis.get_model_status_pb2",
    "prediction_service_pb2_grpc": "tensorflow_serving.apis.prediction_service_pb2_grpc",
    "model_service_pb2_grpc": "tensorflow_serving.apis.model_service_pb2_grpc",
    "model_server_config_pb2": "tensorflow_serving.config.model_server_config_pb2",
}


def load():
    """Returns a namespace holding the proto modules (`predict_pb2`, `tensor_pb2`, ...).

    Example:
    >>> protos = load()
    >>> request = protos.predict_pb2.PredictRequest()
    """
    global _MODULES
    with _LOCK:
        if _MODULES is not None:
            return _MODULES
        placeholder = None
        if "tensorflow" not in sys.modules:
            spec = importlib.util.find_spec("tensorflow")
            if spec is None or not spec.submodule_search_locations:
                raise ImportError("the tensorflow package (which holds the serving protos) is not installed; pip install tensorflow-serving-api")
            placeholder = types.ModuleType("tensorflow")
            placeholder.__path__ = list(spec.submodule_search_locations)
            sys.modules["tensorflow"] = placeholder
        try:
            modules = {key: importlib.import_module(name) for key, name in _MODULE_NAMES.items()}
        finally:
            if placeholder is not None and sys.modules.get("tensorflow") is placeholder:
                del sys.modules["tensorflow"]
        _MODULES = types.SimpleNamespace(**modules)
        return _MODULES


# NumPy dtype <-> TensorFlow DataType enum value (tensorflow/core/framework/types.proto).
_DT = {
    "float32": 1,
    "float64": 2,
    "int32": 3,
    "uint8": 4,
    "int16": 5,
    "int8": 6,
    "string": 7,
    "int64": 9,
    "bool": 10,
    "float16": 19,
}
_NUMPY_OF_DT = {value: key for key, value in _DT.items()}
# The repeated field that carries the values of each dtype when `tensor_content` is empty.
_VALUE_FIELD = {
    1: "float_val",
    2: "double_val",
    3: "int_val",
    4: "int_val",
    5: "int_val",
    6: "int_val",
    7: "string_val",
    9: "int64_val",
    10: "bool_val",
    19: "half_val",
}


# The DataType of each NumPy dtype met so far: the per-request lookup is one dict access.
_ENUM_OF_NUMPY = {}


def dtype_enum(dtype):
    """Returns the TensorFlow DataType enum value of a NumPy dtype or "string"."""
    if isinstance(dtype, np.dtype) and dtype in _ENUM_OF_NUMPY:
        return _ENUM_OF_NUMPY[dtype]
    name = "string" if dtype in ("string", object) or np.dtype(dtype).kind in "OSU" else np.dtype(dtype).name
    if name not in _DT:
        raise ValueError(f"dtype {name} is not supported; use float32, int64, int32, bool or strings")
    if isinstance(dtype, np.dtype):
        _ENUM_OF_NUMPY[dtype] = _DT[name]
    return _DT[name]


def dtype_name(enum_value):
    """Returns "float32", "int64", "string", ... for a DataType enum value."""
    if enum_value not in _NUMPY_OF_DT:
        raise ValueError(f"tensor dtype {enum_value} is not supported")
    return _NUMPY_OF_DT[enum_value]


def to_tensor_proto(value, dtype=None):
    """Builds a `tensorflow.TensorProto` from a NumPy array, list or strings.

    Strings (str or bytes) become DT_STRING (str is UTF-8 encoded); numbers are
    written little-endian into `tensor_content`, which is what TensorFlow does.

    Example:
    >>> proto = to_tensor_proto(np.zeros((2, 3), "float32"))
    >>> [d.size for d in proto.tensor_shape.dim]
    [2, 3]
    """
    proto = load().tensor_pb2.TensorProto()
    fill_tensor_proto(proto, value, dtype)
    return proto


def fill_tensor_proto(proto, value, dtype=None):
    """Writes `value` into an empty `TensorProto` in place (a response's output: no copy of a built one).

    Example:
    >>> response = load().predict_pb2.PredictResponse()
    >>> fill_tensor_proto(response.outputs["y"], np.zeros((2, 3), "float32"))
    >>> [d.size for d in response.outputs["y"].tensor_shape.dim]
    [2, 3]
    """
    array = _as_array(value, dtype)
    proto.dtype = dtype_enum(array.dtype)
    for size in array.shape:
        proto.tensor_shape.dim.add(size=size)
    if proto.dtype == _DT["string"]:
        proto.string_val.extend(item.encode("utf-8") if isinstance(item, str) else bytes(item) for item in array.reshape(-1))
    else:
        # Little-endian, as TensorFlow writes tensor_content; no copy when the array already is.
        proto.tensor_content = array.astype(array.dtype.newbyteorder("<"), order="C", copy=False).tobytes()


def element_count(proto):
    """Returns the number of elements a `TensorProto`'s shape declares (a Python int: no overflow).

    Raises:
        ValueError: a negative dimension.
    """
    shape = [dimension.size for dimension in proto.tensor_shape.dim]
    if any(size < 0 for size in shape):
        raise ValueError(f"tensor shape {shape} has a negative dimension")
    return math.prod(shape)


def to_numpy(proto):
    """Returns the NumPy array of a `TensorProto` (strings as an object array of bytes).

    The values must fill the declared shape exactly, except that a single
    value fills the whole shape (TensorFlow's `make_ndarray` rule). Callers
    that take tensors from clients bound `element_count(proto)` first, since
    that single value may declare any size.

    Raises:
        ValueError: an unsupported dtype, a negative dimension, or a value
            count that does not match the shape ("Expecting tensor size").

    Example:
    >>> to_numpy(to_tensor_proto(["a", "b"])).tolist()
    [b'a', b'b']
    """
    name = dtype_name(proto.dtype)
    count = element_count(proto)
    shape = tuple(dimension.size for dimension in proto.tensor_shape.dim)
    if name == "string":
        values = list(proto.string_val)
        array = np.empty(len(values), dtype=object)
        array[:] = values
    elif proto.tensor_content:
        content = proto.tensor_content
        itemsize = np.dtype(name).itemsize
        if len(content) % itemsize:
            raise ValueError(f"tensor_content holds {len(content)} bytes, not a whole number of {name} values")
        # A view of the message's bytes (read-only): no copy on a little-endian machine.
        array = np.frombuffer(content, dtype=np.dtype(name).newbyteorder("<")).astype(name, copy=False)
    else:
        values = getattr(proto, _VALUE_FIELD[proto.dtype])
        if name == "float16":
            array = np.asarray(values, dtype=np.uint16).view(np.float16)
        elif name in ("int8", "int16", "uint8"):
            # They travel in int_val (int32): a value out of their range would wrap silently.
            array = np.asarray(values, dtype=np.int64)
            limits = np.iinfo(name)
            if array.size and (array.min() < limits.min or array.max() > limits.max):
                raise ValueError(f"a value does not fit {name} [{limits.min}, {limits.max}]")
            array = array.astype(name)
        else:
            array = np.asarray(values, dtype=name)
    if array.size == count:
        return array.reshape(shape)
    if array.size == 1:
        return np.full(shape, array[0], dtype=array.dtype)
    raise ValueError(f"Expecting tensor size: {count} but got: {array.size} (shape {list(shape)})")


def _as_array(value, dtype):
    if isinstance(value, np.ndarray) and dtype is None:
        return value
    if dtype == "string" or (dtype is None and _holds_strings(value)):
        array = np.asarray(value, dtype=object)
        return array
    return np.asarray(value, dtype=dtype)


def _holds_strings(value):
    while isinstance(value, (list, tuple)) and value:
        value = value[0]
    return isinstance(value, (str, bytes))
