"""Fuzzing the data loaders with generated tables (Hypothesis): the property and its runner.

Hypothesis generates CSV/TSV/JSONL/JSON/TXT tables as bytes: random headers (known
column names or arbitrary text), cells with quotes, commas, tabs, newlines and unicode,
empty lines, byte-order marks, latin-1/cp1252/UTF-16 bytes, missing labels, one class,
huge fields, and series files of numbers (NaN, inf, empty fields, mixed delimiters).
Each file goes through `kerasdl.data.load_data` as a text model or a sequence model
would load it. The property (`check_loader`):

  - the loader returns `DataSplits` with three non-empty splits whose sizes match their
    datasets and whose labels are class ids; or
  - it raises `DataError` with a one-line message naming the file (or, for a bad
    `data.*` setting, naming the setting);
  - never any other exception.

The test suite runs a small budget (`tests/data/test_fuzz_tables.py`); `fuzz_data_loaders`
runs any number for `benchmarks.run --only robustness`:

    python -c "from benchmarks.robustness_data import fuzz_data_loaders; print(fuzz_data_loaders(1000))"
"""

import contextlib
import csv
import io
import json
import os
import tempfile
import time
import traceback

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

TEXT_NAMES = ("text", "sentence", "review", "content", "Text")
LABEL_NAMES = ("label", "sentiment", "target", "Label")
# Cells: the characters that break naive parsers, plus any unicode text.
HOSTILE = st.sampled_from([",", "\t", '"', "'", "\n", "\r\n", ";", "|", " ", "\\", "é", "€", "\ufeff", "\u2028", "{", "}", "\x00"])
# Plain words (letters, digits, spaces, any script) most of the time, so that many tables load.
PLAIN = st.text(alphabet=st.characters(categories=("L", "N", "Zs")), max_size=20)
CELL = st.one_of(
    PLAIN,
    st.text(max_size=30),
    st.lists(st.one_of(HOSTILE, st.text(alphabet=st.characters(codec="utf-8"), max_size=5)), max_size=8).map("".join),
)
LABEL = st.one_of(st.sampled_from(["0", "1", "pos", "neg", "2"]), st.sampled_from(["", " ", "1.0", "é"]), st.text(max_size=4))
ENCODINGS = st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "latin-1", "cp1252", "utf-8"])
SUFFIXES = st.sampled_from([".csv", ".tsv", ".jsonl", ".json", ".txt"])


@st.composite
def text_tables(draw):
    """A table file as `(file name, bytes)`: header, rows, serialisation, encoding, damage.

    A third of the tables are well-formed (a known header, two balanced classes, plain
    cells, 20-45 rows) with only harmless oddities (byte-order marks, other encodings,
    empty lines, CRLF), so that the loading side of the property is exercised too.
    """
    suffix = draw(SUFFIXES)
    clean = draw(st.integers(0, 2)) == 0
    columns = draw(st.lists(st.one_of(st.sampled_from(TEXT_NAMES + LABEL_NAMES), st.text(max_size=8)), min_size=1, max_size=4))
    if clean or draw(st.integers(0, 3)) > 0:  # Mostly a header the loader recognises.
        columns = [draw(st.sampled_from(TEXT_NAMES)), draw(st.sampled_from(LABEL_NAMES))] + columns[2:]
    if clean:
        columns = [name.strip() or "extra" for name in columns[:2]] + [f"extra{index}" for index in range(len(columns) - 2)]
    good_labels = st.sampled_from(["0", "1", "2", "pos", "neg"])
    classes = draw(st.lists(good_labels if clean or draw(st.integers(0, 4)) else LABEL, min_size=2 if clean else 1, max_size=3, unique=True))
    cell = PLAIN if clean or draw(st.booleans()) else CELL
    count = draw(st.integers(20, 45) if clean else st.one_of(st.integers(0, 45), st.integers(20, 45)))
    rows = [draw(st.lists(cell, min_size=len(columns), max_size=len(columns))) for _ in range(count)]
    for index, row in enumerate(rows):
        if len(row) > 1 and (clean or draw(st.integers(0, 19)) > 0):
            row[1] = classes[index % len(classes)]  # Real, balanced labels, so that splits happen.
    if rows and draw(st.integers(0, 19)) == 0:
        rows[0][0] = "x" * draw(st.integers(10_000, 200_000))  # A huge field.
    if suffix in (".jsonl", ".json"):
        records = [dict(zip(columns, row)) for row in rows]
        text = json.dumps(records) if suffix == ".json" else "\n".join(json.dumps(record, ensure_ascii=draw(st.booleans())) for record in records)
    else:
        delimiter = {".csv": ",", ".tsv": "\t"}.get(suffix) or draw(st.sampled_from(["\t", ",", ";", "|"]))
        if draw(st.booleans()):
            buffer = io.StringIO()
            csv.writer(buffer, delimiter=delimiter, quoting=draw(st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL]))).writerows([columns] + rows)
            text = buffer.getvalue()
        else:  # Written by hand, no quoting at all (as many TSV files are).
            text = "\n".join(delimiter.join(row) for row in [columns] + rows)
    lines = text.split("\n")
    for _ in range(draw(st.integers(0, 3))):  # Empty lines anywhere.
        lines.insert(draw(st.integers(0, len(lines))), draw(st.sampled_from(["", " ", "\r"] + ([] if clean else ["\t"]))))
    text = draw(st.sampled_from(["\n", "\r\n"])).join(lines)
    data = text.encode(draw(ENCODINGS), errors="replace")
    damage = 2 if clean else draw(st.integers(0, 9))
    if damage == 0 and data:
        data = data[: draw(st.integers(0, len(data)))]  # Cut short anywhere.
    elif damage == 1:
        position = draw(st.integers(0, len(data)))
        data = data[:position] + draw(st.binary(min_size=1, max_size=8)) + data[position:]  # Stray bytes.
    return "table" + suffix, data


@st.composite
def series_tables(draw):
    """A series file (label, then numbers) as `(file name, bytes)`; a third well-formed."""
    suffix = draw(st.sampled_from([".txt", ".csv", ".tsv"]))
    clean = draw(st.integers(0, 2)) == 0
    delimiter = {".csv": ",", ".tsv": "\t"}.get(suffix) or draw(st.sampled_from([" ", "  ", "\t", ","]))
    plain = st.floats(-1e6, 1e6, width=32).map(repr)
    hostile = st.one_of(
        st.floats(allow_nan=True, allow_infinity=True, width=32).map(repr),
        st.sampled_from(["", "NaN", "nan", "inf", "1e400", "0,5", "abc", "-0"]),
    )
    number = plain if clean or draw(st.booleans()) else st.one_of(plain, plain, plain, hostile)
    length = draw(st.integers(1, 12))
    series = st.lists(number, min_size=length, max_size=length) if clean or draw(st.booleans()) else st.lists(number, max_size=length)
    if clean:
        labels = draw(st.lists(st.sampled_from(["1", "2", "-1", "3"]), min_size=2, max_size=3, unique=True))
        rows = [(labels[index % len(labels)], draw(series)) for index in range(draw(st.integers(20, 45)))]
    else:
        label = st.sampled_from(["1", "2", "-1", "1.0"]) if draw(st.integers(0, 4)) else st.sampled_from(["1", "2", "a", "", "nan"])
        rows = draw(st.lists(st.tuples(label, series), max_size=45))
    lines = [delimiter.join([label] + values) for label, values in rows]
    if not clean and draw(st.integers(0, 4)) == 0:
        lines.insert(0, delimiter.join(["label"] + [f"t{index}" for index in range(length)]))
    data = "\n".join(lines).encode(draw(ENCODINGS), errors="replace")
    return "series" + suffix, data


def check_loader(name, data, modalities, encoding=None, fractions=(0.1, 0.1)):
    """Writes `data` to a fresh folder as `name` and loads it; asserts the property.

    Returns:
        "loaded" or "refused" (a `DataError` that passed the checks).

    Raises:
        AssertionError: the property is broken (another exception, a multi-line or
            anonymous message, or inconsistent splits).
    """
    from kerasdl.config import DataConfig
    from kerasdl.data import DataError, DataSplits, load_data

    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, name)
        with open(path, "wb") as handle:
            handle.write(data)
        config = DataConfig(source=path, encoding=encoding, validation_fraction=fractions[0], test_fraction=fractions[1])
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                splits = load_data(config, modalities, seed=0)
        except DataError as error:
            message = str(error)
            assert "\n" not in message and "\r" not in message, f"multi-line message: {message!r}"
            assert path in message or message.startswith("data."), f"message names neither the file nor a setting: {message!r}"
            return "refused"
        except Exception as error:  # The property: nothing but DataError.
            raise AssertionError(f"{type(error).__name__} from {name} ({len(data)} bytes): {error}") from error
        assert isinstance(splits, DataSplits) and len(splits.class_names) >= 2
        for split in (splits.train, splits.validation, splits.test):
            labels = [int(y) for _, y in split.dataset.as_numpy_iterator()]
            assert split.size == len(labels) > 0
            assert all(0 <= label < len(splits.class_names) for label in labels)
        return "loaded"


def data_loader_property(examples, outcomes=None):
    """The Hypothesis test over tables and series with `examples` cases; call it to run.

    Args:
        examples: `max_examples`.
        outcomes: a dict that counts "loaded"/"refused" outcomes, or None.

    Example:
    >>> data_loader_property(50)()
    """

    @settings(max_examples=examples, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(
        case=st.one_of(
            st.tuples(text_tables(), st.just(("text",))),
            st.tuples(series_tables(), st.sampled_from([("sequence",), ("sequence", "text")])),
        ),
        encoding=st.sampled_from([None] * 8 + ["latin-1", "utf-16", "no-such-codec"]),
        fractions=st.sampled_from([(0.1, 0.1), (0.2, 0.2), (0.0, 0.1), (0.5, 0.5)]),
    )
    def property_holds(case, encoding, fractions):
        (name, data), modalities = case
        outcome = check_loader(name, data, modalities, encoding, fractions)
        if outcomes is not None:
            outcomes[outcome] = outcomes.get(outcome, 0) + 1

    return property_holds


def fuzz_data_loaders(examples=1000):
    """Runs the property over `examples` generated files; returns a summary dict.

    Returns:
        `{"examples", "loaded", "refused", "failures", "first_failure", "seconds"}`;
        `failures` is 0 or 1 (Hypothesis stops at the first broken case and shrinks it).

    Example:
    >>> fuzz_data_loaders(1000)["failures"]
    0
    """
    outcomes = {}
    started = time.time()
    failure = None
    try:
        data_loader_property(examples, outcomes)()
    except Exception as error:  # Reported, not raised: the benchmark records it.
        failure = "".join(traceback.format_exception_only(type(error), error)).strip()
    return {
        "examples": outcomes.get("loaded", 0) + outcomes.get("refused", 0),
        "loaded": outcomes.get("loaded", 0),
        "refused": outcomes.get("refused", 0),
        "failures": int(failure is not None),
        "first_failure": failure,
        "seconds": round(time.time() - started, 1),
    }


def run(quick):
    """The benchmark entry (`benchmarks.run` shape): 1,000 generated files (200 with --quick)."""
    from benchmarks import common

    started = time.time()
    summary = fuzz_data_loaders(200 if quick else 1000)
    rows = [common.row("data loaders, generated tables", "cases per second", summary["examples"] / max(summary["seconds"], 1e-9), "1/s", None, None)]
    targets = [common.target("data-loader-fuzz", "generated CSV/TSV/JSONL tables: loader errors other than a one-line DataError", summary["failures"], 0, "<=")]
    notes = [f"{summary['examples']} cases: {summary['loaded']} loaded, {summary['refused']} refused with a DataError"]
    if summary["first_failure"]:
        notes.append(f"first failure: {summary['first_failure'][:500]}")
    result = common.result("robustness_data", started, rows, targets, notes)
    result["raw"] = summary
    return result
