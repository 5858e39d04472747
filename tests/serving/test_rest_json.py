"""orjson on the REST path reads and writes exactly what the json module did (Hypothesis-generated bodies)."""

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from serving.edge import rest_json
from serving.edge.backends import Signature, TensorSpec, validate
from serving.edge.errors import InvalidInput

# Leaves where orjson and the json module differ or may: integers of any size (orjson
# reads those beyond 64 bits as floats), floats with NaN/Infinity (orjson refuses them),
# and values of the wrong kind.
_LEAVES = st.one_of(
    st.integers(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(),
    st.floats(min_value=-1e6, max_value=1e6),
    st.booleans(),
    st.none(),
    st.text(max_size=3),
)
_VALUES = st.recursive(_LEAVES, lambda children: st.lists(children, min_size=1, max_size=3), max_leaves=12)


def _outcome(body, exact, dtype):
    """What the server makes of `body`: the validated arrays, or the error message."""
    signature = Signature("serving_default", {"x": TensorSpec("x", dtype, None)}, {})
    try:
        inputs, row_format = rest_json.parse_predict(rest_json.load_json(body, exact=exact), signature)
        checked = validate(signature, inputs)
    except InvalidInput as error:
        return "error", str(error)
    return "ok", row_format, {name: (array.dtype.str, array.shape, repr(array.tolist())) for name, array in checked.items()}


@settings(max_examples=300, deadline=None)
@given(value=_VALUES, dtype=st.sampled_from(["float32", "int64", "float64"]), row=st.booleans())
def test_predict_bodies_are_read_as_the_json_module_reads_them(value, dtype, row):
    body = json.dumps({"instances" if row else "inputs": value if not row or isinstance(value, list) else [value]}).encode()
    assert _outcome(body, exact=False, dtype=dtype) == _outcome(body, exact=True, dtype=dtype)


@pytest.mark.parametrize(
    "literal",
    [b"[1.0, 100000000000000000000000000000]", b"[1.0, -9223372036854775809]", b"[1.0, 18446744073709551616]",
     b"[1.0, 1e400]", b"[1.0, NaN]", b"[1.0, -Infinity]", b"[-9223372036854775809, null]"],
)
def test_numbers_orjson_reads_differently_get_the_json_modules_answer(literal):
    body = b'{"inputs": ' + literal + b"}"
    assert _outcome(body, exact=False, dtype="float32") == _outcome(body, exact=True, dtype="float32")


_DOCUMENTS = st.recursive(
    st.one_of(st.integers(min_value=-(2**63), max_value=2**63 - 1), st.floats(), st.text(max_size=4), st.booleans()),
    lambda children: st.one_of(st.lists(children, max_size=3), st.dictionaries(st.text(max_size=3), children, max_size=3)),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(document=_DOCUMENTS)
def test_responses_read_back_as_the_json_module_wrote_them(document):
    expected = json.dumps(document, allow_nan=True, separators=(",", ":"))
    written = rest_json.dumps(document)
    assert repr(json.loads(written)) == repr(json.loads(expected))


def test_nan_and_infinity_are_written_as_tf_serving_writes_them():
    assert rest_json.dumps({"predictions": [[0.5, float("nan"), float("inf"), -float("inf")]]}) == b'{"predictions":[[0.5,NaN,Infinity,-Infinity]]}'
    assert rest_json.dumps({"predictions": [np.float32(0.1).item()]}) == b'{"predictions":[0.10000000149011612]}'
