"""TF1-era SavedModels that behave like TF Serving's test models, built here instead of vendored.

`build_half_plus(folder, b=2.0)` writes what TF Serving's generator
(`servables/tensorflow/testdata/saved_model_half_plus_two.py`) writes for
`saved_model_half_plus_two` (b=2) and `saved_model_half_plus_three` (b=3):
a TF1 graph that parses serialized tf.Examples (a string placeholder of
unknown rank), computes y = 0.5 * x + b, y2 = 0.5 * x + c and
y3 = 0.5 * x2 + c, with signatures
- serving_default (predict): x -> y,
- classify_x_to_y (classify): serialized examples -> scores y,
- classify_x2_to_y3 (classify): x2 -> scores y3,
- regress_x_to_y, regress_x_to_y2 (regress): serialized examples -> y, y2,
- regress_x2_to_y3 (regress): x2 -> y3.
"""


def build_half_plus(folder, b=2.0, c=3.0):
    """Writes the half-plus-b SavedModel into `folder` (which must not exist)."""
    import tensorflow as tf

    v1 = tf.compat.v1
    graph = tf.Graph()
    with graph.as_default(), v1.Session(graph=graph) as session:
        a = tf.Variable(0.5, name="a")
        b_variable = tf.Variable(b, name="b")
        c_variable = tf.Variable(c, name="c")
        serialized = v1.placeholder(tf.string, name="tf_example")
        features = {
            "x": tf.io.FixedLenFeature([1], dtype=tf.float32),
            "x2": tf.io.FixedLenFeature([1], dtype=tf.float32, default_value=[0.0]),
        }
        parsed = tf.io.parse_example(serialized, features)
        # The generator's TensorFlow inferred [-1, 1] for these; today's leaves the rank unknown.
        x = _with_shape(tf.identity(parsed["x"], name="x"))
        y = _with_shape(tf.identity(a * x + b_variable, name="y"))
        y2 = _with_shape(tf.identity(a * x + c_variable, name="y2"))
        x2 = _with_shape(tf.identity(parsed["x2"], name="x2"))
        y3 = _with_shape(tf.identity(a * x2 + c_variable, name="y3"))

        def signature(inputs, outputs, method):
            return v1.saved_model.signature_def_utils.build_signature_def(
                {key: v1.saved_model.utils.build_tensor_info(tensor) for key, tensor in inputs.items()},
                {key: v1.saved_model.utils.build_tensor_info(tensor) for key, tensor in outputs.items()},
                method,
            )

        constants = v1.saved_model.signature_constants
        signatures = {
            "serving_default": signature({"x": x}, {"y": y}, constants.PREDICT_METHOD_NAME),
            "classify_x_to_y": signature({"inputs": serialized}, {"scores": y}, constants.CLASSIFY_METHOD_NAME),
            "classify_x2_to_y3": signature({"inputs": x2}, {"scores": y3}, constants.CLASSIFY_METHOD_NAME),
            "regress_x_to_y": signature({"inputs": serialized}, {"outputs": y}, constants.REGRESS_METHOD_NAME),
            "regress_x_to_y2": signature({"inputs": serialized}, {"outputs": y2}, constants.REGRESS_METHOD_NAME),
            "regress_x2_to_y3": signature({"inputs": x2}, {"outputs": y3}, constants.REGRESS_METHOD_NAME),
        }
        session.run(v1.global_variables_initializer())
        builder = v1.saved_model.Builder(str(folder))
        builder.add_meta_graph_and_variables(session, ["serve"], signature_def_map=signatures)
        builder.save()


def _with_shape(tensor):
    tensor.set_shape([None, 1])
    return tensor
