"""Generated tables through `load_data`: valid splits or a one-line DataError naming the file, nothing else."""

import pytest

from benchmarks.robustness_data import check_loader, data_loader_property


def test_generated_tables_load_or_are_refused_by_name():
    outcomes = {}
    data_loader_property(80, outcomes)()
    # Both sides of the property were exercised, not only refusals.
    assert outcomes.get("loaded", 0) >= 1 and outcomes.get("refused", 0) >= 1


@pytest.mark.parametrize(
    "name, data, modalities",
    [
        # Cases the generator found before the fixes (kept as fixed examples).
        ("table.csv", b'text,label\n"a\x00b",1\n', ("text",)),
        ("table.jsonl", b'{"text": "a", "label": ' + b"9" * 5000 + b"}\n", ("text",)),
        ("table.jsonl", b"[" * 100000, ("text",)),
        ("table.csv", "text,label\ncafé,1\n".encode("latin-1"), ("text",)),
        ("series.csv", b"1,inf,2\n2,1,2\n" * 10, ("sequence",)),
    ],
)
def test_known_hostile_files(name, data, modalities):
    assert check_loader(name, data, modalities) == "refused"
