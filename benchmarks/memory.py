"""Peak memory (RSS) and epoch time of training, each measured in a fresh subprocess.

1. The CNN trained from image folders of 1k, 5k and 10k CIFAR-10 JPEGs (symlinks into
   `../shared/data/cifar10-test-jpg`, built in a temporary folder): peak RSS should
   grow <= 1.2x from 1k to 10k files and time per epoch linearly. The default
   pipeline caches decoded images (`data.cache`); the largest folder is also run
   with `data.cache=false` to show what the cache itself holds.
2. Peak RSS of each model's training on its built-in data, against a child that only
   imports TensorFlow, Keras and kerasdl (the floor).
3. Peak RSS of `python -m export.run` on a ResNet50 run (the one `accuracy` and `latency`
   share, see `benchmarks.specs`), with the default formats, and with `--quantize int8`
   (issue 15: recorded before and after export changes).

Each child reports its own peak RSS (`VmHWM` of /proc/self/status; `ru_maxrss` is not used
because Linux carries the parent's high-water mark across fork+exec into it).

Example:
>>> from benchmarks import memory
>>> memory.run(quick=True)["targets"]
"""

import json
import os
import time

from benchmarks import common

CHILD = r"""
import json, resource, sys, tempfile
import os
from benchmarks import common
common.quiet_tensorflow()
import keras, tensorflow
import kerasdl.train
arguments = json.loads(sys.argv[-1]) if len(sys.argv) > 1 else json.loads(%r)
payload = {}
if arguments.get("model"):
    config = common.train_config(arguments["model"], arguments.get("data"), arguments.get("epochs", 1), arguments.get("batch_size"), arguments.get("sets", ()), weights=arguments.get("weights"))
    summary = kerasdl.train.train_and_evaluate(config, fresh=True, log=lambda line: None)
    metrics = json.load(open(os.path.join(summary["run_dir"], "metrics.json")))
    payload = {key: metrics.get(key) for key in ("fit_time_s", "epochs", "train_examples", "test_accuracy")}
# VmHWM (this process's own high-water mark): ru_maxrss would carry the parent's RSS across fork+exec.
payload["max_rss_mb"] = [int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM")][0] / 1024.0
print("BENCH_JSON " + json.dumps(payload))
"""


# Runs a module as `python -m <module> <arguments>` would, then prints its exit status and
# its own peak RSS, VmHWM, which covers the whole command (atexit handlers included).
MODULE_CHILD = r"""
import json, os, runpy, sys
module, arguments = json.loads(%r)
sys.argv = [module, *arguments]
status = 0
try:
    runpy.run_module(module, run_name="__main__", alter_sys=True)
except SystemExit as exit:
    status = exit.code if isinstance(exit.code, int) else (0 if exit.code is None else 1)
peak = [int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM")][0] / 1024.0
# To file descriptor 1 itself: the module may have closed sys.stdout.
os.write(1, ("\nBENCH_JSON " + json.dumps({"status": status, "max_rss_mb": peak}) + "\n").encode())
"""
# ResNet50 is exported from the run `latency` exports (one training per code version).
EXPORT_CASE = "resnet50_hymenoptera"


def _child(arguments):
    return common.run_python(CHILD % json.dumps(arguments))


def module_peak_rss(module, arguments, timeout=3600):
    """Runs `python -m module *arguments` in a fresh process; returns `{"status", "max_rss_mb"}`.

    Args:
        module: the module run as `__main__`, e.g. "export.run".
        arguments: its command-line arguments.
        timeout: seconds before the child is killed.

    Example:
        >>> module_peak_rss("export.run", ["runs/resnet50/20261128-011800", "--quantize", "int8"])["max_rss_mb"]
    """
    return common.run_python(MODULE_CHILD % json.dumps([module, list(arguments)]), timeout=timeout)


def export_peak_rss(rows, notes, floor, quick):
    """Peak RSS of `python -m export.run` on the shared ResNet50 run, without and with `--quantize int8`."""
    from benchmarks import specs

    table = specs.specs(quick)
    if EXPORT_CASE not in table:
        notes.append(f"resnet50 export peak RSS: skipped, its run ({EXPORT_CASE}) is not in this run's specs (data absent, or a toy run)")
        return
    run_dir, _ = specs.train(EXPORT_CASE, table[EXPORT_CASE], log=lambda line: print(line, flush=True))
    model = table[EXPORT_CASE]["model"]
    measured = {}
    with common.temporary_folder("kerasdl-bench-export-") as folder:
        for label, extra in (("python -m export.run", []), ("python -m export.run --quantize int8", ["--quantize", "int8"])):
            # The accuracy gate is lifted: a briefly trained ResNet50 must not stop the export
            # before every step whose memory is measured has run.
            arguments = [run_dir, "--base", os.path.join(folder, label.replace(" ", "_")), "--max-accuracy-drop", "100", *extra]
            measured[label] = module_peak_rss("export.run", arguments)
            if measured[label]["status"] != 0:
                notes.append(f"{model} {label}: exit status {measured[label]['status']} (peak RSS measured to that point)")
    plain, quantized = measured["python -m export.run"], measured["python -m export.run --quantize int8"]
    rows.append(common.row(f"{model} export: python -m export.run", "peak RSS", plain["max_rss_mb"], "MiB", "import tensorflow+keras+kerasdl only", floor["max_rss_mb"], higher_is_better=False))
    rows.append(common.row(f"{model} export: python -m export.run --quantize int8", "peak RSS", quantized["max_rss_mb"], "MiB", f"{model} export without --quantize", plain["max_rss_mb"], higher_is_better=False))
    notes.append(f"{model} export: run {run_dir}; default formats; peak RSS is the export process's own VmHWM")


def run(quick):
    started = time.time()
    rows, targets, notes = [], [], []
    floor = _child({})
    sizes = (200, 400) if common.TOY else ((1000, 2000, 4000) if quick else (1000, 5000, 10000))
    epochs = 2
    if common.data_path("cifar10-test-jpg"):
        with common.temporary_folder() as folder:
            measured = {}
            for size in sizes:
                images = common.image_folder_of(size, os.path.join(folder, str(size)))
                measured[size] = _child({"model": "cnn", "data": images, "epochs": epochs, "batch_size": 64})
            images = os.path.join(folder, str(sizes[-1]))
            no_cache = _child({"model": "cnn", "data": images, "epochs": epochs, "batch_size": 64, "sets": ["data.cache=false"]})
        small, large = measured[sizes[0]], measured[sizes[-1]]
        for size in sizes:
            rows.append(common.row(f"cnn from {size} JPEGs (cache on)", "peak RSS", measured[size]["max_rss_mb"], "MiB", f"cnn from {sizes[0]} JPEGs", small["max_rss_mb"], higher_is_better=False))
        rows.append(common.row(f"cnn from {sizes[-1]} JPEGs (data.cache=false)", "peak RSS", no_cache["max_rss_mb"], "MiB", f"cnn from {sizes[0]} JPEGs", small["max_rss_mb"], higher_is_better=False))
        per_epoch = {size: measured[size]["fit_time_s"] / max(measured[size]["epochs"], 1) for size in sizes}
        for size in sizes:
            rows.append(common.row(f"cnn from {size} JPEGs", "seconds per epoch per 1k files", 1000 * per_epoch[size] / size, "s", f"cnn from {sizes[0]} JPEGs", 1000 * per_epoch[sizes[0]] / sizes[0], higher_is_better=False))
        rows.append(common.row(f"cnn from {sizes[-1]} JPEGs (data.cache=false)", "seconds per epoch per 1k files", 1000 * no_cache["fit_time_s"] / max(no_cache["epochs"], 1) / sizes[-1], "s", f"cnn from {sizes[0]} JPEGs", 1000 * per_epoch[sizes[0]] / sizes[0], higher_is_better=False))
        peaks = ", ".join(f"{size} files {measured[size]['max_rss_mb']:.0f} MiB" for size in sizes)
        cache_mib = 0.9 * sizes[-1] * 12 / 1024  # Decoded float32 32x32x3 images, 12 KiB each.
        targets.append(common.target("memory_rss_growth", f"peak RSS, {sizes[-1]} / {sizes[0]} files (default pipeline, cache on)", large["max_rss_mb"] / small["max_rss_mb"], 1.2, "<=",
                                     reason=f"peak RSS {peaks}; with data.cache=false {no_cache['max_rss_mb']:.0f} MiB; the decoded-image cache of {sizes[-1]} files is ~{cache_mib:.0f} MiB"))
        targets.append(common.target("memory_rss_growth_no_cache", f"peak RSS, {sizes[-1]} files with data.cache=false / {sizes[0]} files", no_cache["max_rss_mb"] / small["max_rss_mb"], 1.2, "<=",
                                     reason=f"peak RSS {peaks}; with data.cache=false {no_cache['max_rss_mb']:.0f} MiB"))
        linearity = (per_epoch[sizes[-1]] / sizes[-1]) / (per_epoch[sizes[0]] / sizes[0])
        targets.append(common.target("memory_time_linear", f"epoch time per file, {sizes[-1]} / {sizes[0]} files (linear)", linearity, 1.25, "<=",
                                     reason="seconds per epoch: " + ", ".join(f"{size} files {per_epoch[size]:.2f} s" for size in sizes)))
        notes.append(f"{epochs} epochs each, batch 64, fit time (both epochs, incl. validation) / epochs; 80/10/10 split, so {int(0.8 * sizes[0])}..{int(0.8 * sizes[-1])} training images")
        notes.append(f"decoded float32 CIFAR images are 12 KiB each: the cache of {int(0.9 * sizes[-1])} train+validation images alone is {0.9 * sizes[-1] * 12 / 1024:.0f} MiB")
    models = ("mlp",) if common.TOY else ("mlp", "cnn", "lstm", "resnet50", "bert")
    for model in models:
        try:
            # ImageNet weights cannot be fetched offline; memory does not depend on their values.
            measured = _child({"model": model, "epochs": 1, "weights": "none" if model == "resnet50" else None})
            rows.append(common.row(f"{model} training (built-in data, 1 epoch)", "peak RSS", measured["max_rss_mb"], "MiB", "import tensorflow+keras+kerasdl only", floor["max_rss_mb"], higher_is_better=False))
        except Exception as error:
            notes.append(f"{model}: {type(error).__name__}: {str(error)[:200]}")
    try:
        export_peak_rss(rows, notes, floor, quick)
    except Exception as error:  # Reported; the training measurements above stand.
        notes.append(f"resnet50 export peak RSS: {type(error).__name__}: {str(error)[:300]}")
    return common.result("memory", started, rows, targets, notes)
