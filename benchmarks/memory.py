"""Peak memory (RSS) and epoch time of training, each measured in a fresh subprocess.

1. The CNN trained from image folders of 1k, 5k and 10k CIFAR-10 JPEGs (symlinks into
   `../shared/data/cifar10-test-jpg`, built in a temporary folder): peak RSS should
   grow <= 1.2x from 1k to 10k files and time per epoch linearly. The default
   pipeline caches decoded images (`data.cache`); the largest folder is also run
   with `data.cache=false` to show what the cache itself holds.
2. Peak RSS of each model's training on its built-in data, against a child that only
   imports TensorFlow, Keras and kerasdl (the floor).
3. Peak RSS of `python -m export.run` on a ResNet50 run, with the default formats and with
   `--quantize int8`, for this code and for the code before the export memory fixes
   (issue 15), both trained and exported in this run: `benchmarks.memory_export`.

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
from benchmarks.memory_export import export_peak_rss, module_peak_rss  # noqa: F401 (module_peak_rss: this module's API too)

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


def _child(arguments):
    return common.run_python(CHILD % json.dumps(arguments))


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
        export_peak_rss(rows, targets, notes, floor)
    except Exception as error:  # Reported; the training measurements above stand.
        notes.append(f"resnet50 export peak RSS: {type(error).__name__}: {str(error)[:300]}")
    return common.result("memory", started, rows, targets, notes)
