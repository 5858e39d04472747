"""The fused ONNX LSTM (`export.onnx_recurrent`) against the SavedModel and tf2onnx's ONNX, in one run.

Two recurrent models of kerasdl's builders, with their initial (untrained)
weights, since latency does not depend on the values:

- `series`: `lstm(input_shape=(150, 1))` with LSTM(64), like GunPoint (150 steps, 1 feature, full length);
- `text`: the token-id part of `text_lstm` at its defaults (bidirectional LSTM(64), 64-dim
  embedding, 64 tokens) with 10,000 words, fed 5 to 40 tokens, end-padded (the ONNX input;
  the tokenizer runs outside every format here, so it is not timed).

At batch 1 and 32, the median latency of:

- `savedmodel`: a `keras.export.ExportArchive` of the model plus softmax, reloaded with
  `tf.saved_model.load`, called through `serving_default` as TF Serving does;
- `tf2onnx`: Keras' `model.export(format="onnx")` (tf2onnx: `Loop` nodes) in ONNX Runtime;
- `fused fp32`: `fused_recurrent_onnx(model)` in ONNX Runtime;
- `fused int8`: that graph after `onnxruntime.quantization.quantize_dynamic` (DynamicQuantizeLSTM).

Targets (issue 14), on the series model: fused / SavedModel <= 0.1 at batch 1 and
<= 0.3 at batch 32, fused int8 / fp32 <= 0.7 at batch 32 (the batch where the
weight matmuls, which int8 speeds up, dominate).

Example:
>>> python -m benchmarks.onnx_recurrent --quick
"""

import argparse
import collections
import json
import os
import sys
import time

import numpy as np

from benchmarks import common

# GunPoint's 150 steps, LSTM(64) (the lstm default); text_lstm's defaults (64 tokens,
# 64 units, 64-dim embeddings) with a vocabulary near SST-2's. A toy run (tests) shrinks them.
SIZES = {"series_steps": 150, "units": 64, "tokens": 64, "words": 10000, "text_lengths": (5, 40)}
TOY_SIZES = {"series_steps": 12, "units": 4, "tokens": 10, "words": 50, "text_lengths": (1, 10)}
BATCHES = (1, 32)
# The ONNX format's parity tolerance on probabilities (export.run.FORMAT_TOLERANCES["onnx"]).
ONNX_TOLERANCE = 1e-4


def _models(sizes):
    """`{case: (keras model, input name, example batch of 32)}` built with kerasdl's builders."""
    from kerasdl.models.lstm import lstm, text_lstm
    from kerasdl.models.recurrent import text_token_model

    rng = np.random.default_rng(0)
    steps, units, tokens, words = sizes["series_steps"], sizes["units"], sizes["tokens"], sizes["words"]
    series_model = lstm(input_shape=(steps, 1), num_classes=2, hidden_size=units, normalization_mean=[0.0], normalization_variance=[1.0])
    series = rng.normal(0.0, 1.0, (32, steps, 1)).astype("float32")
    vocabulary = [f"word{index}" for index in range(words)]
    text_model = text_lstm(num_classes=2, vocabulary=vocabulary, sequence_length=tokens, embedding_dim=units, hidden_size=units)
    text_model = text_token_model(text_model)
    ids = rng.integers(1, words + 2, (32, tokens)).astype("int64")
    shortest, longest = sizes["text_lengths"]
    for row, length in enumerate(rng.integers(shortest, longest + 1, 32)):
        ids[row, length:] = 0
    return {"series": (series_model, "sequences", series), "text": (text_model, "token_ids", ids)}


def _savedmodel(model, input_name, example, folder):
    import keras
    import tensorflow as tf

    archive = keras.export.ExportArchive()
    archive.track(model)
    spec = tf.TensorSpec([None] + list(example.shape[1:]), tf.as_dtype(example.dtype), name=input_name)
    archive.add_endpoint("serve", lambda inputs: {"probabilities": tf.nn.softmax(model(inputs, training=False), axis=-1)}, input_signature=[spec])
    archive.write_out(folder, verbose=False)
    signature = tf.saved_model.load(folder).signatures["serving_default"]
    return lambda batch: signature(**{input_name: tf.constant(batch)})["probabilities"].numpy()


def _session(path, threads, logits=False):
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads or 0  # 0: ORT's default, one thread per physical core.
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    if logits:  # Keras' ONNX export ends at the logits; the softmax (microseconds) is taken in numpy.
        return lambda batch: _softmax(session.run(None, {name: batch})[0])
    return lambda batch: session.run(None, {name: batch})[0]


def _softmax(logits):
    exponentials = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return exponentials / exponentials.sum(axis=-1, keepdims=True)


def _op_counts(path):
    import onnx

    counts = collections.Counter(node.op_type for node in onnx.load(str(path)).graph.node)
    return {op: counts[op] for op in ("LSTM", "DynamicQuantizeLSTM", "Loop", "Scan") if counts[op]}


def _formats(case, model, input_name, example, folder, notes, threads):
    """`{format: callable(batch) -> probabilities}`; a format that fails to build is noted and left out."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from export.onnx_recurrent import fused_recurrent_onnx

    paths = {label: os.path.join(folder, f"{case}-{label.replace(' ', '-')}") for label in ("savedmodel", "tf2onnx", "fused fp32", "fused int8")}
    builders = {
        "savedmodel": lambda: _savedmodel(model, input_name, example, paths["savedmodel"]),
        "tf2onnx": lambda: (model.export(paths["tf2onnx"], format="onnx", verbose=False), _session(paths["tf2onnx"], threads, logits=True))[1],
        "fused fp32": lambda: (onnx.save(fused_recurrent_onnx(model), paths["fused fp32"]), _session(paths["fused fp32"], threads))[1],
        "fused int8": lambda: (quantize_dynamic(paths["fused fp32"], paths["fused int8"], weight_type=QuantType.QInt8), _session(paths["fused int8"], threads))[1],
    }
    functions = {}
    for label, build in builders.items():
        try:
            functions[label] = build()
        except Exception as error:  # One format's failure is reported; the others are still timed.
            notes.append(f"{case} {label}: {type(error).__name__}: {str(error)[:300]}")
    for label in ("tf2onnx", "fused fp32", "fused int8"):
        if label in functions:
            notes.append(f"{case} {label}: ops {json.dumps(_op_counts(paths[label]))}")
    return functions


def run(quick=False, threads=None):
    """Measures every format of both models at batch 1 and 32; returns the `benchmarks.common` result dict.

    Args:
        quick: fewer repeats.
        threads: ONNX Runtime's intra-op threads; None keeps its default (one per physical core).
    """
    import keras

    started = time.time()
    rows, targets, notes = [], [], [f"load average at the start {os.getloadavg()}, ORT intra-op threads {threads or 'default'}"]
    measured, best_calls = {}, {}
    differences = {}
    with common.temporary_folder("kerasdl-bench-recurrent-") as folder:
        for case, (model, input_name, examples) in _models(TOY_SIZES if common.TOY else SIZES).items():
            functions = _formats(case, model, input_name, examples, folder, notes, threads)
            reference = keras.ops.convert_to_numpy(keras.ops.softmax(model(examples, training=False), axis=-1))
            for label, function in functions.items():
                differences[(case, label)] = float(np.max(np.abs(function(examples) - reference)))
                notes.append(f"{case} {label}: max abs probability difference to Keras {differences[(case, label)]:.2g} (batch 32)")
            for batch_size in BATCHES:
                batch = examples[:batch_size]
                best = {}
                for label, function in functions.items():
                    repeats = 7 if batch_size == 1 else 5
                    warmup = 1 if quick else 2
                    samples = []

                    def timed():
                        begin = time.perf_counter()
                        function(batch)
                        samples.append(time.perf_counter() - begin)

                    seconds = common.median_time(timed, repeats=repeats if not quick else 3, warmup=warmup, min_seconds=0.0 if common.TOY else (0.3 if quick else 1.5))
                    measured[(case, label, batch_size)] = seconds * 1000
                    best[label] = best_calls[(case, label, batch_size)] = min(samples[warmup:]) * 1000
                # On a shared machine a call longer than a scheduler slice is often preempted, which
                # inflates the median of the slower formats; the best call shows the undisturbed cost.
                notes.append(f"{case} batch {batch_size} best call: " + ", ".join(
                    f"{label} {value:.3g} ms" + (f" ({value / best['savedmodel']:.3g}x savedmodel)" if "savedmodel" in best and label != "savedmodel" else "")
                    for label, value in best.items()
                ) + (f"; fused int8 / fp32 {best['fused int8'] / best['fused fp32']:.3g}" if {"fused int8", "fused fp32"} <= set(best) else ""))
                base = measured.get((case, "savedmodel", batch_size))
                for label in ("savedmodel", "tf2onnx", "fused fp32"):
                    if (case, label, batch_size) in measured:
                        rows.append(common.row(f"{case} {label}", f"latency batch {batch_size}", measured[(case, label, batch_size)], "ms", f"{case} savedmodel", base, higher_is_better=False))
                if (case, "fused int8", batch_size) in measured:
                    rows.append(common.row(f"{case} fused int8", f"latency batch {batch_size}", measured[(case, "fused int8", batch_size)], "ms", f"{case} fused fp32", measured.get((case, "fused fp32", batch_size)), higher_is_better=False))

    def ratio(numerator, denominator):
        top, bottom = measured.get(numerator), measured.get(denominator)
        return top / bottom if top and bottom else None

    def why(numerator, denominator):
        # Plumbing (benchmarks.common target reasons): the medians, the best calls and the ops behind a ratio.
        parts = [f"{key[1]} median {measured[key]:.3g} ms, best call {best_calls[key]:.3g} ms" for key in (numerator, denominator) if key in measured]
        ops = [note.split(": ", 1)[1] for note in notes if note.startswith(f"{numerator[0]} {numerator[1]}: ops")]
        return f"{numerator[0]} batch {numerator[2]}: " + "; ".join(parts + [f"{numerator[1]} graph {op}" for op in ops]) if parts else None

    for batch_size, limit in ((1, 0.1), (32, 0.3)):
        numerator, denominator = ("series", "fused fp32", batch_size), ("series", "savedmodel", batch_size)
        targets.append(common.target(
            f"fused_lstm_vs_savedmodel_batch{batch_size}", f"series LSTM(64): fused ORT / SavedModel latency, batch {batch_size} <= {limit}",
            ratio(numerator, denominator), limit, "<=", reason=why(numerator, denominator),
        ))
    numerator, denominator = ("series", "fused int8", 32), ("series", "fused fp32", 32)
    targets.append(common.target(
        "fused_lstm_int8_vs_fp32", "series LSTM(64): fused int8 / fp32 latency, batch 32 <= 0.7",
        ratio(numerator, denominator), 0.7, "<=", reason=why(numerator, denominator),
    ))
    notes.append(f"load average at the end {os.getloadavg()}")
    for case in ("series", "text"):
        targets.append(common.target(
            f"fused_{case}_parity", f"{case}: fused fp32 max abs probability difference to Keras <= {ONNX_TOLERANCE}",
            differences.get((case, "fused fp32")), ONNX_TOLERANCE, "<=",
        ))
    return common.result("onnx_recurrent", started, rows, targets, notes)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.onnx_recurrent", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats (noisier)")
    parser.add_argument("--ort-threads", type=int, default=None, help="ONNX Runtime intra-op threads (default: ORT's own)")
    arguments = parser.parse_args(argv)
    common.quiet_tensorflow()
    outcome = run(arguments.quick, threads=arguments.ort_threads)
    print(f"{'case':<22} {'metric':<18} {'value':>10}  {'against':<20} {'ratio':>7}")
    for row in outcome["rows"]:
        print(f"{row['case']:<22} {row['metric']:<18} {row['value']:>8} {row['unit']:<2} {row['baseline_case']:<20} {row['ratio'] if row['ratio'] is not None else '-':>7}")
    for target in outcome["targets"]:
        status = {True: "met", False: "NOT met", None: "not measured"}[target["met"]]
        print(f"target {target['description']}: {target['value']} ({status})")
    for note in outcome["notes"]:
        print(f"note: {note}")
    print(f"({outcome['seconds']} s)")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.exit(main())
