"""`python -m benchmarks.reliability_doc RESULTS_JSON`: docs/RELIABILITY.md, rendered from the robustness benchmark's results.

Every figure (cases tried, crashes, 5xx, mismatched rows, lost epochs, partial versions seen)
is read from the `robustness` entry of a `results.json` written by
`python -m benchmarks.run --only robustness`; the prose around them (what each check does,
the defects the fault injection found, how to reproduce) is this module's text and holds no
figure. Regenerate the page with:

    python -m benchmarks.run --only robustness --out benchmarks/out
    python -m benchmarks.reliability_doc benchmarks/out/results.json > docs/RELIABILITY.md

Example:
>>> markdown = render(json.load(open("benchmarks/out/results.json")), "benchmarks/out/results.json")
"""

import argparse
import json
import shlex
import sys

from benchmarks.report import run_markdown, targets_markdown

DEFECTS = """\
## Defects the fault injection found, and their fixes

Each was found by a kill -9 run of `benchmarks.fault_injection`, fixed in the module that owns
the behaviour, and has a regression test that fails on the code before the fix
(`tests/reliability/test_resume_regressions.py`, which injects the same crash in process):

1. **`history.csv` held an epoch twice** after a kill between an epoch's history row and its
   backup (CSVLogger writes first; the resumed run trains the epoch again and appends it again).
   `kerasdl.rundir.trim_history` cuts the file back to the committed epochs when a run resumes
   (`kerasdl/train.py`, `open_run_dir`).
2. **A kill after the last epoch, before the artifacts, trained everything again from epoch 0**:
   Keras deletes the backup when `fit` ends, and only a phase that another phase followed was
   recorded. Every phase is now recorded in `progress.json` (`kerasdl/phases.py`); such a run
   only evaluates and writes its artifacts.
3. **`checkpoints/best.keras` was written in place**: a kill inside the write left a broken zip,
   and a kill between the write and the epoch's backup left the checkpoint of an epoch the
   resumed run never committed; either could stay for good when no later epoch improved.
   ModelCheckpoint now writes `checkpoints/.pending-best-<epoch>.keras`, renamed to `best.keras`
   when BackupAndRestore commits that epoch (`kerasdl/callbacks.py`, `commit_checkpoint`).
4. **The backup's weights were renamed into place before the metadata naming the epoch**: a kill
   in between resumed from the previous epoch with weights one epoch ahead. Each epoch's weights
   now get their own file, named by `training_metadata.json`, whose atomic write is the one step
   that commits an epoch (`kerasdl/distribute/files.py`).
5. **The lock was released last** after the cleanup of a finished run, so a kill between removing
   `progress.json` and the lock would have trained the run again from epoch 0. The lock now goes
   first (`kerasdl/outputs.py`); such a kill leaves only files a finished run no longer needs.
"""

HOW = """\
## What is tried

- **Data loaders** (`benchmarks/robustness_data.py`): Hypothesis-generated CSV/TSV/JSONL/JSON/TXT
  tables and series files (quotes, delimiters, encodings, byte-order marks, torn files, stray
  bytes, huge fields) through `kerasdl.data.load_data`. Property: three non-empty, consistent
  splits, or a one-line `DataError` naming the file; nothing else.
- **`training.run` config values** (`benchmarks/robustness_config.py`): generated `--set`
  values for every key of five models, typed values in `--config` YAML files, flag values, and
  a few real one-epoch trainings. Property: exit 0 with a well-typed config, or exit 2 with
  one `error:` line; never a traceback.
- **The edge server** (`benchmarks/robustness_serving.py`): a CNN (built-in digits, 32x32x3,
  with a JPEG/PNG `image_bytes` signature) and a text LSTM (SST-2 dev) trained, published with
  `python -m export.run` (SavedModel and ONNX), served by `python -m serving.edge` with
  `--backend onnx` and with `--backend savedmodel`. Generated REST bodies and gRPC
  `TensorProto`s (`benchmarks/serving_fuzz.py`): no 5xx, no gRPC INTERNAL/UNKNOWN/DATA_LOSS or
  timeout, every REST error body `{"error": "..."}`, and the server still answers. Concurrent
  clients with distinct inputs across both models, both backends and both protocols
  (`benchmarks/serving_concurrency.py`): every answer row equals the in-process answer of the
  same backend for its own input.
- **Fault injection** (`benchmarks/robustness_faults.py`): training killed with SIGKILL at
  named points (`benchmarks/fault_child.py` pauses there so that the kill lands exactly; the
  points are listed below), then the same command run again until it finishes; checked: each
  resume starts from the epoch the backup held at the kill, `history.csv` has each epoch once,
  and `model.keras` and `checkpoints/best.keras` have, on the validation split recomputed from
  the saved files, the lowest `val_loss` of `history.csv`. `python -m export.run` killed at
  seeded points of its write while a thread lists the model base path every 5 ms as TF
  Serving would (only integer-named folders are versions; each must hold `saved_model.pb`,
  `variables/`, `assets.extra/model_card.json` and `model.onnx`); then the next export.
"""


def _rows(raw):
    """The summary table's rows: `(check, cases tried, crashes or faults, other failures, notes)`."""
    rows = []
    data = raw.get("robustness_data")
    if data:
        rows.append(("data loaders: generated tables", data["examples"], data["failures"], 0,
                     f"{data['loaded']} loaded, {data['refused']} refused with a one-line DataError"))
    config = raw.get("robustness_config")
    if config:
        rows.append(("training.run: generated config values", config["cases"], config["failures"], 0,
                     f"{config['accepted']} accepted, {config['refused']} refused in one line; "
                     f"{config['real_runs']} real runs ({config['real_trained']} trained, {config['real_refused']} refused)"))
    serving = raw.get("robustness_serving")
    if serving:
        for key, summary in serving["fuzz"].items():
            api, backend = key.split("-", 1)
            statuses = ", ".join(f"{status}: {count}" for status, count in summary["statuses"].items())
            rows.append((f"edge server {api.upper()} fuzzing, {backend} backend", summary["cases"], summary["server_errors"],
                         summary["bad_error_bodies"] + (0 if summary["answers_afterwards"] else 1),
                         f"answers: {statuses}; still answering afterwards: {summary['answers_afterwards']}"))
        concurrency = serving["concurrency"]
        rows.append((f"edge server, {concurrency['clients']} concurrent clients x {serving['requests_per_client']} requests",
                     concurrency["requests"], concurrency["errors"], concurrency["mismatched_rows"],
                     f"{concurrency['rows']} rows compared over {len(serving['cases'])} cases (2 backends x models x signatures x REST/gRPC)"))
    faults = raw.get("robustness_faults")
    if faults:
        for report in faults["training"]:
            broken = len(report.get("duplicated_epochs", [])) + len(report.get("missing_epochs", [])) + len(report.get("incomplete_rows", []))
            rows.append((f"training killed: {report['scenario']}", len(report["kills"]), len(report["problems"]), broken,
                         f"lost epochs {report.get('lost_epochs', '-')}; history epochs {report.get('history_epochs', '-')}; "
                         f"model.keras val_loss {_number(report.get('model_val_loss'))}, best in history {_number(report.get('best_val_loss'))}"))
        export = faults.get("export")
        if export:
            rows.append(("export.run killed", len(export["kills"]), export["partial_versions_seen"], export["incomplete_after_kill"] + int(export["next_export_status"] != 0),
                         f"{sum(kill['killed'] for kill in export['kills'])} killed inside the write; {export['checks']} looks at the versions; "
                         f"next export exit status {export['next_export_status']}; versions after: {', '.join(export['versions'])}"))
    return rows


def _number(value):
    return "-" if value is None else f"{value:.6f}"


def _kills_table(faults):
    lines = ["| scenario | kill point | worker | epoch at the kill | epoch in the backup | next launch resumed from |", "|---|---|---|---|---|---|"]
    for report in faults["training"]:
        for kill in report["kills"]:
            lines.append(f"| {report['scenario']} | {kill['point']} | {kill.get('worker', '-')} | {kill['epoch']} | {kill['saved_epoch']} | {kill['resumed_from']} |")
    return lines


def _export_table(export):
    lines = [f"Reference export: {export['reference_seconds']} s, of which {export['write_window_seconds']} s from the staging folder to the published version.", "",
             "| seed | kill after the staging folder appeared (s) | killed | files staged at the kill | versions it published | folders left beside the versions |",
             "|---|---|---|---|---|---|"]
    for kill in export["kills"]:
        lines.append(f"| {kill['seed']} | {kill['after_staging_seconds']} | {kill['killed']} | {kill['staged_files']} | {', '.join(kill['published']) or 'none'} | "
                     f"{', '.join(kill['leftovers']) or 'none'} |")
    return lines


def render(document, source):
    """docs/RELIABILITY.md from one results.json holding a `robustness` result."""
    outcome = document["benchmarks"]["robustness"]
    raw = outcome.get("raw", {})
    command = shlex.join(["python", "-m", "benchmarks.reliability_doc", source])
    lines = [
        "# Reliability: hostile inputs, concurrent clients and kill -9", "",
        f"Generated by `{command}`; every figure comes from that file, written by the command below",
        "(edit the benchmark or `benchmarks/reliability_doc.py`, not this page).", "",
        run_markdown(1, document, source),
        "## Figures", "",
        "| check | cases tried | crashes / server faults | other failures | details |", "|---|---|---|---|---|",
    ]
    for check, cases, crashes, others, details in _rows(raw):
        lines.append(f"| {check} | {cases} | {crashes} | {others} | {details} |")
    lines += ["", "Crashes / server faults: loader or CLI errors other than the one-line kind, HTTP 5xx and gRPC",
              "INTERNAL/UNKNOWN/DATA_LOSS/timeouts, failed concurrent requests, training problems (a kill that did not",
              "land, a failed final run, files left behind), partial versions seen. Other failures: malformed error bodies",
              "or a server that stopped answering, mismatched rows, duplicated/missing/torn history rows, incomplete",
              "versions after a kill or a failed next export.", ""]
    lines += ["## Targets", "", targets_markdown([("robustness", outcome, 1)])]
    faults = raw.get("robustness_faults")
    if faults:
        lines += ["## Training kills", ""] + _kills_table(faults) + [""]
        if faults.get("export"):
            lines += ["## Export kills", ""] + _export_table(faults["export"]) + [""]
    lines += [HOW, _points(), DEFECTS, _reproduce(document, source)]
    return "\n".join(lines)


def _points():
    from benchmarks.fault_child import POINTS

    return "\n".join(["### Kill points (`benchmarks/fault_child.py`)", ""] + [f"- `{name}`: {text}" for name, text in POINTS.items()]) + "\n"


def _reproduce(document, source):
    return "\n".join([
        "## Reproduce", "",
        "```",
        f"{document.get('command')}",
        f"python -m benchmarks.reliability_doc {source} > docs/RELIABILITY.md",
        "# the same checks on small budgets, in the test suite:",
        "python -m pytest tests/reliability tests/serving/test_robustness.py tests/training/test_config_fuzz.py tests/data/test_fuzz_tables.py",
        "```", "",
    ])


def main(argv=None):
    """Prints docs/RELIABILITY.md rendered from a results.json; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.reliability_doc", description=__doc__.split("\n\n")[0])
    parser.add_argument("results", help="a results.json of `python -m benchmarks.run --only robustness`")
    arguments = parser.parse_args(argv)
    try:
        with open(arguments.results) as handle:
            document = json.load(handle)
    except (OSError, ValueError) as error:
        print(f"error: cannot read {arguments.results}: {error}; run `python -m benchmarks.run --only robustness` first", file=sys.stderr)
        return 2
    if "robustness" not in document.get("benchmarks", {}):
        print(f"error: {arguments.results} has no robustness result; run `python -m benchmarks.run --only robustness`", file=sys.stderr)
        return 2
    sys.stdout.write(render(document, arguments.results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
