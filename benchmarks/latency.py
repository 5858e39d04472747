"""Inference latency of all five models in every serving format, int8 trade-offs, and the CPU's peak.

For each model a trained run (shared with `accuracy`, see `benchmarks.specs`) is
exported with the project's export stage (`export.run.export_model`: SavedModel,
ONNX, int8 ONNX); then, at batch 1 and 32, the median latency of:

- `keras predict`: `model.predict(x)`;
- `keras call`: the model called on raw input (BERT: preprocessor + call, as its registry entry says);
- `savedmodel`: the reloaded SavedModel's `serving_default` (strings for text models);
- `ort fp32` / `ort int8`: ONNX Runtime on `model.onnx` / `model.int8.onnx` (token ids for
  text models: the tokenizer runs outside the ONNX graph, and is not timed);
- `litert fp32` / `litert int8`: the `ai-edge-litert` interpreter on `model.tflite` /
  `model.int8.tflite` (full-integer int8), through the same runners `export.predict` uses.

Ratios are against the SavedModel (`ort fp32 / savedmodel`), against ORT fp32
(`ort int8 / ort fp32`) and, for LiteRT, against ORT at the same precision
(`litert fp32 / ort fp32`, `litert int8 / ort int8`). Static int8 (CNN, ResNet50) is also measured as throughput at
batch 16 and as accuracy on the real test split. The physical limit is a large
`tf.matmul` in float32 and bfloat16, measured in the same run.

Example:
>>> from benchmarks import latency
>>> latency.run(quick=True)["targets"]
"""

import json
import os
import time
from pathlib import Path

import numpy as np

from benchmarks import common, specs

# The exported files timed beside the SavedModel: (label, format, variant).
RUNTIME_VARIANTS = (("ort fp32", "onnx", "fp32"), ("ort int8", "onnx", "int8"), ("litert fp32", "litert", "fp32"), ("litert int8", "litert", "int8"))
# LiteRT rows are compared with ORT at the same precision.
LITERT_BASELINES = {"litert fp32": "ort fp32", "litert int8": "ort int8"}
# Static int8 throughput against fp32 at these batch sizes (issue 14: the seed CNN at 1, 16 and 256;
# ResNet50, 8 GFLOP an image, at 1 and 16); batch 16 carries the target.
THROUGHPUT_BATCHES = {"cnn": (1, 16, 256), "resnet50": (1, 16)}
# ResNet50 at 224x224: 4.09 G multiply-adds per image (He et al. 2016, Table 1), i.e. 8.2 GFLOP.
RESNET50_FLOP_224 = 2 * 4.09e9


def matmul_peak(size=2048, seconds=1.5):
    """GFLOP/s of a square `tf.matmul` in float32 and bfloat16 (best of repeated runs)."""
    import tensorflow as tf

    peaks = {}
    for dtype in (tf.float32, tf.bfloat16):
        a = tf.random.normal((size, size), dtype=tf.float32)
        a = tf.cast(a, dtype)
        b = tf.cast(tf.random.normal((size, size), dtype=tf.float32), dtype)

        @tf.function
        def multiply(a, b):
            return tf.reduce_sum(tf.cast(tf.matmul(a, b), tf.float32))

        multiply(a, b).numpy()
        best, started = float("inf"), time.perf_counter()
        while time.perf_counter() - started < seconds:
            begin = time.perf_counter()
            multiply(a, b).numpy()
            best = min(best, time.perf_counter() - begin)
        peaks[dtype.name] = 2 * size**3 / best / 1e9
    return peaks


def _examples(run_dir, metadata):
    # Texts: the run's raw held-out sentences; other inputs: its calibration examples, which
    # share one size (held-out photos and series keep their own sizes and lengths).
    folder = Path(run_dir) / "data"
    if metadata["modality"] == "text":
        return json.loads((folder / "heldout.json").read_text())["x"]
    return np.load(folder / "calibration.npz")["x"].astype("float32")


def _batch(examples, size):
    if isinstance(examples, list):
        repeated = (examples * (size // max(len(examples), 1) + 1))[:size]
        return repeated
    repeats = int(np.ceil(size / len(examples)))
    return np.concatenate([examples] * repeats)[:size]


def _ort_runner(path, threads=None):
    from kerasdl.runtime.onnx import OnnxRunner

    return OnnxRunner(path, threads=threads)


def _callables(model, metadata, version_dir):
    """`{format: function(batch) -> outputs}` for every format that loads."""
    import tensorflow as tf

    from kerasdl.contract import serving_input_name

    from export.formats import get_format
    from export.text import raw_model_fn

    functions, problems = {}, {}
    text = metadata["modality"] == "text"
    functions["keras predict"] = lambda batch: model.predict(np.asarray(batch, dtype=object) if text else batch, batch_size=len(batch), verbose=0)
    call = raw_model_fn(model, metadata)
    functions["keras call"] = lambda batch: call(tf.constant(batch))
    try:
        loaded = tf.saved_model.load(str(version_dir))
        signature = loaded.signatures["serving_default"]
        name = serving_input_name(metadata)
        functions["savedmodel"] = lambda batch: signature(**{name: tf.constant(batch)})
        functions["_loaded"] = loaded
    except Exception as error:  # Reported per format.
        problems["savedmodel"] = f"{type(error).__name__}: {error}"
    for label, format_name, variant in RUNTIME_VARIANTS:
        path = Path(version_dir) / get_format(format_name).FILES[variant]
        if not path.is_file():
            problems[label] = f"{path.name} was not exported"
            continue
        runner = get_format(format_name).load(path)

        def call_runner(batch, runner=runner):
            return runner.run(runner.feed(batch))

        def prepared(batch, runner=runner):
            # Tokenization (text) and padding happen once, outside the timed call.
            feed = runner.feed(batch)
            return lambda: runner.run(feed)

        functions[label] = call_runner
        functions[label + "_prepared"] = prepared
    return functions, problems


def _time(functions, label, batch, quick):
    function = functions[label]
    if label + "_prepared" in functions:
        call = functions[label + "_prepared"](batch)
    else:
        call = lambda: function(batch)  # noqa: E731
    repeats = 5 if len(batch) > 1 else 15
    return common.median_time(call, repeats=repeats if not quick else max(3, repeats // 3), warmup=2, min_seconds=0.3 if quick else 1.0)


def _test_split(run_dir):
    """The real test split of a run (re-derived from its config.yaml and seed), as arrays."""
    import yaml

    from kerasdl.config import DataConfig
    from kerasdl.data import load_data
    from kerasdl.data.pipeline import take_examples
    from kerasdl.models.registry import get_model_entry

    config = yaml.safe_load((Path(run_dir) / "config.yaml").read_text())
    data = DataConfig(**config["data"])
    modalities = get_model_entry(config["model_name"]).modalities
    splits = load_data(data, modalities, config["train"]["seed"])
    return take_examples(splits.test, splits.test.size)


def _accuracy(runner, x, y, batch_size=64):
    probabilities = runner.predict(list(x) if isinstance(x, list) else x, batch_size=batch_size)
    return float(np.mean(probabilities.argmax(axis=-1) == np.asarray(y)))


def run(quick):
    from export.orchestrator import export_model
    from kerasdl.artifact import load_model

    started = time.time()
    rows, targets, notes = [], [], []
    peaks = matmul_peak(seconds=0.5 if quick else 2.0)
    rows.append(common.row("tf.matmul 2048 bf16", "GFLOP/s", peaks["bfloat16"], "GFLOP/s", "tf.matmul 2048 fp32", peaks["float32"]))
    table = specs.specs(quick)
    cases = {"mlp": "mlp_digits"} if common.TOY else specs.LATENCY_CASES
    batches = (1, 4) if common.TOY else (1, 32)
    export_base = os.path.join(os.environ.get(common.RUNS_DIR_ENV) or "/tmp", "exports")
    for model_name, case in cases.items():
        if case not in table:
            notes.append(f"{model_name}: skipped, its data ({case}) is absent")
            continue
        try:
            run_dir, _ = specs.train(case, table[case], log=lambda line: print(line, flush=True))
            result = export_model(run_dir, formats=["savedmodel", "onnx", "litert"], quantize="int8", base=export_base, name=f"{model_name}_{case}", force=True, max_accuracy_drop=100.0, log=lambda line: None)
        except Exception as error:  # One model's failure is reported; the others go on.
            notes.append(f"{model_name}: training/export failed: {type(error).__name__}: {str(error)[:300]}")
            continue
        version_dir = result.version_dir
        model, metadata = load_model(os.path.join(run_dir, "model.keras"))
        examples = _examples(run_dir, metadata)
        functions, problems = _callables(model, metadata, version_dir)
        for label, problem in problems.items():
            notes.append(f"{model_name} {label}: {problem}")
        measured = {}
        for batch_size in batches:
            batch = _batch(examples, batch_size)
            for label in ("keras predict", "keras call", "savedmodel", "ort fp32", "ort int8", "litert fp32", "litert int8"):
                if label not in functions:
                    continue
                try:
                    measured[(label, batch_size)] = _time(functions, label, batch, quick) * 1000
                except Exception as error:
                    notes.append(f"{model_name} {label} batch {batch_size}: {type(error).__name__}: {str(error)[:200]}")
            base = measured.get(("savedmodel", batch_size))
            for label in ("keras predict", "keras call", "savedmodel", "ort fp32"):
                if (label, batch_size) in measured:
                    rows.append(common.row(f"{model_name} {label}", f"latency batch {batch_size}", measured[(label, batch_size)], "ms", f"{model_name} savedmodel", base, higher_is_better=False))
            if ("ort int8", batch_size) in measured:
                rows.append(common.row(f"{model_name} ort int8", f"latency batch {batch_size}", measured[("ort int8", batch_size)], "ms", f"{model_name} ort fp32", measured.get(("ort fp32", batch_size)), higher_is_better=False))
            for label, baseline in LITERT_BASELINES.items():
                if (label, batch_size) in measured:
                    rows.append(common.row(f"{model_name} {label}", f"latency batch {batch_size}", measured[(label, batch_size)], "ms", f"{model_name} {baseline}", measured.get((baseline, batch_size)), higher_is_better=False))
        fp32, saved = measured.get(("ort fp32", 1)), measured.get(("savedmodel", 1))
        limit = 1.0 if model_name == "resnet50" else 0.5
        if model_name in ("mlp", "cnn", "lstm", "bert", "resnet50"):
            targets.append(common.target(f"latency_{model_name}_ort_vs_savedmodel", f"{model_name}: ORT fp32 / SavedModel latency, batch 1 <= {limit}", fp32 / saved if fp32 and saved else None, limit, "<="))
        quantization = result.card.get("quantization") or {}
        method = quantization.get("method")
        if model_name == "bert":
            int8 = measured.get(("ort int8", 1))
            fused = quantization.get("fused_int8_ops") or {}
            reason = (
                f"batch 1: ORT int8 ({method}) {int8:.2f} ms, fp32 {fp32:.2f} ms; int8 kernels in the graph: "
                + (", ".join(f"{op} x{count}" for op, count in fused.items()) or "none")
                if int8 and fp32 else None
            )
            targets.append(common.target("latency_bert_int8", "bert: ORT int8 / fp32 latency, batch 1 <= 0.6", int8 / fp32 if int8 and fp32 else None, 0.6, "<=", reason=reason))
        if model_name in ("bert", "cnn", "resnet50") and not common.TOY:
            x, y = _test_split(run_dir)
            if model_name == "resnet50" or len(y) > 2000:
                x, y = x[:2000], y[:2000]
            accuracy = {}
            for label, file in (("fp32", "model.onnx"), ("int8", "model.int8.onnx")):
                accuracy[label] = _accuracy(_ort_runner(Path(version_dir) / file), x, y)
            drop = 100 * (accuracy["fp32"] - accuracy["int8"])
            rows.append(common.row(f"{model_name} ort int8 ({method})", f"test accuracy ({len(y)} examples)", accuracy["int8"], "fraction", f"{model_name} ort fp32", accuracy["fp32"]))
            if model_name == "bert":
                notes.append(f"bert int8 ({method}) accuracy delta on {len(y)} test texts: {drop:+.2f} points lost ({accuracy['fp32']:.4f} -> {accuracy['int8']:.4f})")
            else:
                targets.append(common.target(f"int8_{model_name}_accuracy_drop", f"{model_name}: static int8 accuracy loss on the test split, points < 1", drop, 1.0, "<="))
        if model_name in ("cnn", "resnet50"):
            # The int8 kernels ORT runs after fusing the QDQ pairs: the reason behind the ratio.
            fused = quantization.get("fused_int8_ops") or {}
            recipe = f"{method} {quantization.get('format')} a:{quantization.get('activation_type')} w:{quantization.get('weight_type')}"
            notes.append(f"{model_name} int8 ({recipe}): ORT runs " + (", ".join(f"{op} x{count}" for op, count in fused.items()) or "no int8 kernel"))
            ratios = {}
            for size in THROUGHPUT_BATCHES[model_name]:
                batch = _batch(examples, size)
                throughput = {}
                for label in ("ort fp32", "ort int8"):
                    if label in functions:
                        throughput[label] = size / _time(functions, label, batch, quick)
                if len(throughput) == 2:
                    rows.append(common.row(f"{model_name} ort int8 ({recipe})", f"throughput batch {size}", throughput["ort int8"], "examples/s", f"{model_name} ort fp32", throughput["ort fp32"]))
                    ratios[size] = (throughput["ort int8"] / throughput["ort fp32"], size / throughput["ort fp32"] * 1000)
            if 16 in ratios:
                # Why the ratio is what it is: the int8 kernels ORT runs, and how long an fp32 call
                # takes (a small model's call is mostly fixed overhead that int8 cannot shorten).
                reason = (
                    f"{recipe}; ORT runs " + (", ".join(f"{op} x{count}" for op, count in fused.items()) or "no int8 kernel") + "; int8/fp32 throughput "
                    + ", ".join(f"batch {size}: {ratio:.2f}x (fp32 {milliseconds:.2f} ms a call)" for size, (ratio, milliseconds) in sorted(ratios.items()))
                )
                targets.append(common.target(f"int8_{model_name}_throughput", f"{model_name}: static int8 / fp32 ORT throughput, batch 16 >= 2.5", ratios[16][0], 2.5, ">=", reason=reason))
            if model_name == "resnet50" and ("ort fp32", 32) in measured:
                import yaml

                run_config = yaml.safe_load((Path(run_dir) / "config.yaml").read_text())
                # The model follows data.image_size unless model.image_size is set.
                image_size = int(run_config.get("model", {}).get("image_size") or (run_config.get("data", {}).get("image_size") or [224])[0])
                flop = RESNET50_FLOP_224 * (image_size / 224) ** 2
                achieved = 32 * flop / (measured[("ort fp32", 32)] / 1000) / 1e9
                rows.append(common.row("resnet50 ort fp32 batch 32", "GFLOP/s", achieved, "GFLOP/s", "tf.matmul 2048 fp32 peak", peaks["float32"]))
                notes.append(f"resnet50 inference at {image_size}x{image_size}: {flop / 1e9:.1f} GFLOP per image; ORT fp32 batch 32 reaches {achieved:.0f} GFLOP/s = {100 * achieved / peaks['float32']:.0f}% of the fp32 matmul peak")
        functions.pop("_loaded", None)
    return common.result("latency", started, rows, targets, notes)
