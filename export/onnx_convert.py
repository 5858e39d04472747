"""tf2onnx's `from_graph_def`, with the memory its optimizer loop leaves behind collected as it goes.

tf2onnx (1.17) optimizes the converted graph with a dozen optimizers, twice
over, and deep-copies the whole graph (weights included) before each one so
that a failing optimizer can be undone. The discarded copies are reference
cycles that Python's garbage collector does not get to in time: converting
ResNet50 (90 MB of weights) grew the process by 5.4 GB, one copy per
optimizer run (benchmarks/RESULTS.md, export memory). `convert_graph_def` is
`tf2onnx.convert.from_graph_def` with the same steps and arguments, except
that it hands `optimize_graph` the same optimizers wrapped so that each starts
with a garbage collection: the conversion peaks at about one extra copy.

`from_graph_def` takes no `optimizers` argument, so this module calls the
steps it is made of (`tf_loader.tf_optimize`, `tfonnx.process_tf_graph`,
`optimizer.optimize_graph`, `make_model`); the default optimizer table is read
from `tf2onnx.optimizer._get_optimizers()`, which tf2onnx has no public name
for (pinned at 1.17.0 in pyproject.toml; without it the defaults run unwrapped).
"""

import collections
import gc


def convert_graph_def(graph_def, name, input_names, output_names, opset, tensors_to_rename=None):
    """Converts a frozen TensorFlow `GraphDef` to an ONNX `ModelProto`, as `tf2onnx.convert.from_graph_def` does.

    Args:
        graph_def: the frozen graph (variables folded into constants).
        name: the ONNX graph's name.
        input_names, output_names: tensor names ("x:0") of the graph's inputs and outputs.
        opset: the ONNX opset.
        tensors_to_rename: `{tensor name: ONNX name}`.

    Returns:
        The `onnx.ModelProto`.

    Example:
    >>> convert_graph_def(graph_def, "cnn", ["images:0"], ["Identity:0"], 17, {"Identity:0": "probabilities"})
    """
    import tensorflow as tf
    from tf2onnx import optimizer, tf_loader
    from tf2onnx.tfonnx import process_tf_graph

    with tf.device("/cpu:0"), tf.Graph().as_default():
        # What from_graph_def does too, in a graph of its own (its session freeze is
        # discarded there: the graph is frozen already).
        optimized = tf_loader.tf_optimize(input_names, output_names, graph_def)
    with tf.Graph().as_default() as tf_graph:
        tf.import_graph_def(optimized, name="")
        del optimized
        graph = process_tf_graph(
            tf_graph, continue_on_error=True, opset=opset, input_names=input_names, output_names=output_names,
            tensors_to_rename=tensors_to_rename,
        )
        graph = optimizer.optimize_graph(graph, catch_errors=True, optimizers=_collecting_optimizers(optimizer))
        model_proto = graph.make_model(f"converted from {name}")
    del graph, tf_graph
    gc.collect()
    return model_proto


def _collecting_optimizers(optimizer):
    """tf2onnx's default optimizers, each made after a garbage collection (see the module docstring); None if unknown."""
    defaults = getattr(optimizer, "_get_optimizers", None)
    if defaults is None:
        return None

    def collecting(factory):
        def make():
            gc.collect()
            return factory()

        return make

    return collections.OrderedDict((key, collecting(factory)) for key, factory in defaults().items())
