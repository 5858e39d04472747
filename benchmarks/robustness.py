"""`benchmarks.run --only robustness`: every robustness check (fuzzing, concurrency) in one result.

Each part is a function `run(quick) -> dict` in the `benchmarks.common` result shape,
named in `PARTS` as `"module:function"`; its rows, targets and notes are gathered into
one result, and a part that fails is recorded by name (in the result's `error`) while
the others still run. Adding a check is one line in `PARTS`.

Example:
>>> from benchmarks import robustness
>>> robustness.run(quick=True)["targets"][0]["id"]
'data-loader-fuzz'
"""

import importlib
import time
import traceback

from benchmarks import common

# Run in this order. The serving fuzz and concurrency checks join as one line each.
PARTS = (
    "benchmarks.robustness_data:run",
)


def _load(part):
    module_name, _, function_name = part.partition(":")
    return getattr(importlib.import_module(module_name), function_name or "run")


def run(quick, parts=PARTS):
    """Runs every part; returns their rows, targets and notes in one result dict.

    Args:
        quick: passed to every part (a smaller budget).
        parts: `"module:function"` names (defaults to `PARTS`).
    """
    started = time.time()
    rows, targets, notes, errors = [], [], [], []
    for part in parts:
        try:
            outcome = _load(part)(quick)
            problems = common.check_result(outcome)
            if problems:
                raise ValueError(f"malformed result: {'; '.join(problems)}")
        except Exception as error:  # Recorded by name: one broken check must not hide the others.
            traceback.print_exc()
            errors.append(f"{part}: {type(error).__name__}: {error}")
            continue
        rows += outcome["rows"]
        targets += outcome["targets"]
        notes += [f"{outcome['name']}: {note}" for note in outcome["notes"]] + [f"{outcome['name']}: {outcome['seconds']:.0f} s"]
        if outcome.get("error"):
            errors.append(f"{part}: {outcome['error']}")
    result = common.result("robustness", started, rows, targets, notes)
    if errors:
        result["error"] = " | ".join(errors)
    return result
