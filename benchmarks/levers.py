"""Performance levers, one at a time, on CNN training (CIFAR-10 examples in memory, the
project's pipeline, compile options and callbacks), each in a fresh subprocess so that
thread pools and global policies do not leak between variants.

Levers: `steps_per_execution`, `jit_compile` (XLA), the `mixed_bfloat16` policy,
oneDNN off (`TF_ENABLE_ONEDNN_OPTS=0`), intra-/inter-op thread counts, and tf.data
options (a private thread pool, non-deterministic ordering). Each is quoted as
examples/s (epochs 2..n) over the default configuration measured in the same run;
a lever is "adopt" when it gains more than 5% and changes nothing a user relies on.

Example:
>>> from benchmarks import levers
>>> [row["ratio"] for row in levers.run(quick=True)["rows"]]
"""

import json
import time

from benchmarks import common

CHILD = r"""
import json, os
from benchmarks import common
common.quiet_tensorflow()
arguments = json.loads(%r)
import tensorflow as tf
if arguments.get("intra") is not None:
    tf.config.threading.set_intra_op_parallelism_threads(arguments["intra"])
if arguments.get("inter") is not None:
    tf.config.threading.set_inter_op_parallelism_threads(arguments["inter"])
import keras
if arguments.get("policy"):
    keras.mixed_precision.set_global_policy(arguments["policy"])
from kerasdl.data.source import Split
from benchmarks.keras_fit import fit_epochs, steady_examples_per_s
x, y, _ = common.cifar_arrays(arguments["examples"])
validation = len(y) // 10
options = None
if arguments.get("private_threads") or arguments.get("deterministic") is not None:
    options = tf.data.Options()
    if arguments.get("private_threads"):
        options.threading.private_threadpool_size = arguments["private_threads"]
    if arguments.get("deterministic") is not None:
        options.deterministic = arguments["deterministic"]
result = fit_epochs("cnn", "image", Split.from_arrays(x[validation:], y[validation:]), Split.from_arrays(x[:validation], y[:validation]),
                    (32, 32, 3), 10, 64, arguments["epochs"], steps_per_execution=arguments.get("steps_per_execution", 1),
                    jit_compile=arguments.get("jit_compile", False), dataset_options=options)
result["examples_per_s"] = steady_examples_per_s(result)
print("BENCH_JSON " + json.dumps(result))
"""

VARIANTS = {
    "steps_per_execution=8": ({"steps_per_execution": 8}, {}),
    "steps_per_execution=32": ({"steps_per_execution": 32}, {}),
    "jit_compile=True (XLA)": ({"jit_compile": True}, {}),
    "mixed_bfloat16 policy": ({"policy": "mixed_bfloat16"}, {}),
    "oneDNN off (TF_ENABLE_ONEDNN_OPTS=0)": ({}, {"TF_ENABLE_ONEDNN_OPTS": "0"}),
    "intra_op=2, inter_op=1": ({"intra": 2, "inter": 1}, {}),
    "intra_op=1, inter_op=2": ({"intra": 1, "inter": 2}, {}),
    "tf.data private_threadpool_size=2": ({"private_threads": 2}, {}),
    "tf.data deterministic=False": ({"deterministic": False}, {}),
}
TOY_VARIANTS = ("steps_per_execution=8",)


def _measure(arguments, env):
    return common.run_python(CHILD % json.dumps(arguments), env=env)


def run(quick):
    started = time.time()
    rows, targets, notes = [], [], []
    if not common.data_path("cifar10-test-jpg"):
        return common.result("levers", started, rows, targets, ["cifar10-test-jpg is absent"])
    examples = 300 if common.TOY else (1200 if quick else 3300)
    epochs = 2 if common.TOY else (3 if quick else 4)
    base_arguments = {"examples": examples, "epochs": epochs}
    # The default config is measured first and last; its mean is the baseline, and the
    # spread between the two is the run's noise floor (the machine is shared).
    first = _measure(base_arguments, {})
    measured_variants = {}
    for label, (arguments, env) in VARIANTS.items():
        if common.TOY and label not in TOY_VARIANTS:
            continue
        try:
            measured_variants[label] = _measure(dict(base_arguments, **arguments), env)
        except Exception as error:
            notes.append(f"{label}: failed: {type(error).__name__}: {str(error)[:200]}")
    again = _measure(base_arguments, {})
    base_rate = (first["examples_per_s"] + again["examples_per_s"]) / 2
    base_first_epoch = (first["epoch_seconds"][0] + again["epoch_seconds"][0]) / 2
    rows.append(common.row("default config (first)", "examples/s", first["examples_per_s"], "examples/s", "default config (mean of first and last)", base_rate))
    rows.append(common.row("default config (last)", "examples/s", again["examples_per_s"], "examples/s", "default config (mean of first and last)", base_rate))
    for label, measured in measured_variants.items():
        rows.append(common.row(label, "examples/s", measured["examples_per_s"], "examples/s", "default config (mean)", base_rate))
        rows.append(common.row(label, "first epoch (trace/compile)", measured["epoch_seconds"][0], "s", "default config (mean)", base_first_epoch, higher_is_better=False))
    notes.append(f"CNN (seed architecture), {examples - examples // 10} train + {examples // 10} validation CIFAR-10 images in memory, batch 64, {epochs} epochs, all standard callbacks; rate over epochs 2..{epochs}")
    notes.append(f"noise floor: the default config measured twice differs by {abs(again['examples_per_s'] / first['examples_per_s'] - 1) * 100:.1f}%")
    return common.result("levers", started, rows, targets, notes)
