"""TF Serving's Classify and Regress APIs: tf.Example inputs, signature checks and results.

A classify or regress request carries tf.Examples (`tensorflow.serving.Input`:
a list of Examples, optionally with a context Example shared by all). The
signature's one input, `inputs`, receives them serialized, one string per
example; with a context, each string is the context's serialization followed
by the example's, so that the example's features override the context's when
the graph parses them (TF Serving's `InputToSerializedExampleTensor`).

REST's JSON form (`{"examples": [...], "context": {...}}`) maps to Examples
as TF Serving's `json_tensor.cc` maps it: a JSON string becomes a bytes
feature, `{"b64": ...}` decoded bytes, a number with a fraction or exponent a
float feature, a whole number an int64 feature, true/false an int64 1/0; a
list holds values of one kind. The checks on signatures and outputs, and their
messages, follow TF Serving's `classifier.cc` and `regressor.cc`.
"""

import base64
import binascii

import numpy as np

from serving import protos
from serving.edge.backends import CLASSIFY_METHOD, REGRESS_METHOD
from serving.edge.errors import FailedPrecondition, InvalidInput

INPUTS = "inputs"
CLASSES = "classes"
SCORES = "scores"
OUTPUTS = "outputs"
_FLOAT32_MAX = float(np.finfo(np.float32).max)
_INT64 = 2**63


def input_from_json(request, verb):
    """Builds the `tensorflow.serving.Input` of a REST `:classify`/`:regress` body (a parsed JSON object).

    Raises:
        InvalidInput: no `examples` list, an empty one, or a value that has no
            tf.Example encoding; the message says which.

    Example:
    >>> input_from_json({"examples": [{"x": 80.0}]}, "regress").example_list.examples[0].features.feature["x"]
    float_list {
      value: 80.0
    }
    """
    modules = protos.load()
    message = modules.input_pb2.Input()
    if "context" in request:
        _fill_example(request["context"], message.example_list_with_context.context)
    examples = request.get("examples")
    if examples is None:
        raise InvalidInput(f"When method is {verb}, key 'examples' is expected and was not found")
    if not isinstance(examples, list):
        raise InvalidInput("Expecting 'examples' value to be an list/array")
    if not examples:
        raise InvalidInput("'examples' value is an empty array")
    target = message.example_list_with_context if "context" in request else message.example_list
    for value in examples:
        _fill_example(value, target.examples.add())
    return message


def serialized_examples(message):
    """Returns the examples of an `Input` as a 1-D object array of serialized strings (context first).

    Raises:
        InvalidInput: the input holds no examples ("Input is empty.").
    """
    kind = message.WhichOneof("kind")
    if kind == "example_list":
        items = [example.SerializeToString() for example in message.example_list.examples]
    elif kind == "example_list_with_context":
        context = message.example_list_with_context.context.SerializeToString()
        items = [context + example.SerializeToString() for example in message.example_list_with_context.examples]
    else:
        items = []
    if not items:
        raise InvalidInput("Input is empty.")
    array = np.empty(len(items), dtype=object)
    array[:] = items
    return array


def check_classify(signature):
    """Checks that `signature` is a classification signature; returns the output keys it has (classes, scores)."""
    _check_method(signature, CLASSIFY_METHOD, "classification")
    if len(signature.inputs) != 1:
        raise InvalidInput("Expected one input Tensor.")
    if len(signature.outputs) not in (1, 2):
        raise InvalidInput(f"Expected one or two output Tensors, found {len(signature.outputs)}")
    if INPUTS not in signature.inputs:
        raise FailedPrecondition(f"No classification inputs found in SignatureDef {signature.name!r}")
    keys = [key for key in (CLASSES, SCORES) if key in signature.outputs]
    if not keys:
        raise FailedPrecondition(
            f'Expected classification signature outputs to contain at least one of "{CLASSES}" or "{SCORES}"; '
            f"signature {signature.name!r} has {sorted(signature.outputs)}"
        )
    return keys


def check_regress(signature):
    """Checks that `signature` is a regression signature (one `inputs`, one `outputs`)."""
    _check_method(signature, REGRESS_METHOD, "regression")
    if len(signature.inputs) != 1:
        raise InvalidInput("Expected one input Tensor.")
    if len(signature.outputs) != 1:
        raise InvalidInput("Expected one output Tensor.")
    if INPUTS not in signature.inputs:
        raise FailedPrecondition(f"No regression inputs found in SignatureDef {signature.name!r}")
    if OUTPUTS not in signature.outputs:
        raise FailedPrecondition(f"No regression outputs found in SignatureDef {signature.name!r}")


def classifications(outputs, count):
    """Returns `[[(label bytes, score), ...] per example]` from a classify signature's outputs.

    Raises:
        InvalidInput: outputs that are not [examples, classes] string labels / float scores.
    """
    classes, scores = outputs.get(CLASSES), outputs.get(SCORES)
    num_classes = None
    for key, value, kinds, dtype_name in ((CLASSES, classes, "OSU", "DT_STRING"), (SCORES, scores, "f", "DT_FLOAT")):
        if value is None:
            continue
        value = np.asarray(value)
        if value.ndim != 2:
            raise InvalidInput(f"Expected Tensor shape: [batch_size num_classes] but got {list(value.shape)}")
        if value.dtype.kind not in kinds:
            raise InvalidInput(f"Expected {key} Tensor of {dtype_name}. Got: {value.dtype.name}")
        if value.shape[0] != count:
            raise InvalidInput(f"Expected {key} output batch size of {count}. Got: {value.shape[0]}")
        if num_classes is not None and value.shape[1] != num_classes:
            raise InvalidInput(f"Tensors class and score should match in dim_size(1). Got {num_classes} vs. {value.shape[1]}")
        num_classes = value.shape[1]
    results = []
    for row in range(count):
        results.append(
            [
                (
                    _as_bytes(classes[row][column]) if classes is not None else b"",
                    float(scores[row][column]) if scores is not None else 0.0,
                )
                for column in range(num_classes)
            ]
        )
    return results


def regressions(outputs, count):
    """Returns one float per example from a regress signature's `outputs` ([examples] or [examples, 1])."""
    value = np.asarray(outputs[OUTPUTS])
    if not (value.ndim == 1 or (value.ndim == 2 and value.shape[1] == 1)):
        raise InvalidInput(f"Expected output Tensor shape to be either [batch_size] or [batch_size, 1] but got {list(value.shape)}")
    if value.shape[0] != count:
        raise InvalidInput(f"Input batch size did not match output batch size: {count} vs. {value.shape[0]}")
    if value.dtype.kind != "f":
        raise InvalidInput(f"Expected output Tensor of DT_FLOAT.  Got: {value.dtype.name}")
    return [float(item) for item in value.reshape(-1)]


def _check_method(signature, method, kind):
    if signature.method != method:
        raise InvalidInput(f"Expected {kind} signature method_name to be {method}. Was: {signature.method}")


def _as_bytes(value):
    return value if isinstance(value, bytes) else str(value).encode("utf-8")


def _fill_example(value, example):
    if not isinstance(value, dict):
        raise InvalidInput(f"Example must be JSON object but got JSON {_json_type(value)}")
    for name, content in value.items():
        feature = example.features.feature[name]
        for item in content if isinstance(content, list) else [content]:
            _add_value(feature, name, item)


def _add_value(feature, name, value):
    if value is None or isinstance(value, list) or (isinstance(value, dict) and not _is_b64(value)):
        raise InvalidInput(f"Feature: {name} has element with unexpected JSON type: {_json_type(value)}")
    if isinstance(value, bool):
        _kind(feature, name, "int64_list").value.append(int(value))
    elif isinstance(value, dict):
        try:
            decoded = base64.b64decode(value["b64"], validate=True)
        except (binascii.Error, ValueError):
            raise InvalidInput(f"Feature: {name}: Unable to base64 decode") from None
        _kind(feature, name, "bytes_list").value.append(decoded)
    elif isinstance(value, str):
        _kind(feature, name, "bytes_list").value.append(value.encode("utf-8"))
    elif isinstance(value, int) and -_INT64 <= value < _INT64:
        _kind(feature, name, "int64_list").value.append(value)
    elif isinstance(value, int) and _INT64 <= value < 2 * _INT64:
        raise InvalidInput(f"Feature: {name} has uint64 element. Only int64 is supported.")
    else:
        # A fraction, an exponent, NaN/Infinity, or a whole number too large for 64 bits (a double in JSON).
        if abs(value) > _FLOAT32_MAX and value not in (float("inf"), float("-inf")):
            raise InvalidInput(f"Cannot convert JSON value: {value} to float without loss of precision.")
        _kind(feature, name, "float_list").value.append(float(value))


def _kind(feature, name, kind):
    current = feature.WhichOneof("kind")
    if current not in (None, kind):
        raise InvalidInput(f"Unexpected element type in feature: {name} expecting type: {current.split('_')[0]}")
    return getattr(feature, kind)


def _is_b64(value):
    return isinstance(value, dict) and len(value) == 1 and isinstance(value.get("b64"), str)


def _json_type(value):
    names = {type(None): "Null", bool: "True" if value is True else "False", dict: "Object", list: "Array", str: "String"}
    return names.get(type(value), "Number")
