"""Encodings, delimiters and quoting of text files, through the loaders that read them."""

import codecs

import numpy as np
import pytest

from kerasdl.config import DataConfig
from kerasdl.data import load_data
from kerasdl.data.source import DataError
from kerasdl.data.text_table import load_text_table
from kerasdl.data.textfile import choose_delimiter, decode, read_text
from kerasdl.data.ucr import load_ucr

ROWS = [("café crème, très bon", "pos"), ("naïve « plot »", "neg")] * 10


def _table(rows, delimiter=","):
    return "text" + delimiter + "label\n" + "".join(f'"{text}"{delimiter}{label}\n' for text, label in rows)


def _texts(split):
    return sorted(x.decode() for x, _ in split.dataset.as_numpy_iterator())


@pytest.mark.parametrize(
    "encoding, prefix",
    [("utf-8", b""), ("utf-8", codecs.BOM_UTF8), ("utf-16-le", codecs.BOM_UTF16_LE), ("utf-16-be", codecs.BOM_UTF16_BE), ("utf-32-le", codecs.BOM_UTF32_LE)],
)
def test_utf8_and_byte_order_marks_are_detected(tmp_path, encoding, prefix):
    path = tmp_path / "reviews.csv"
    path.write_bytes(prefix + _table(ROWS).encode(encoding))
    splits = load_text_table(path, validation_fraction=0.0, test_fraction=0.0)
    # The mark is not part of the first column's name, so "text" is still found.
    assert splits.class_names == ["neg", "pos"]
    assert _texts(splits.train) == sorted(text for text, _ in ROWS)


def test_latin1_file_is_read_as_cp1252_with_a_note_naming_file_and_line(tmp_path, capsys):
    # Before: UnicodeDecodeError "'utf-8' codec can't decode byte 0xe9", naming no file.
    path = tmp_path / "latin.csv"
    path.write_bytes(("text,label\nplain,pos\n" + _table(ROWS).split("\n", 1)[1]).encode("latin-1"))
    splits = load_data(DataConfig(source=str(path), validation_fraction=0.2, test_fraction=0.2), ("text",), seed=0)
    note = capsys.readouterr().out
    assert f"note: {path} is not UTF-8 (byte 0xe9 on line 3); read it as cp1252" in note
    assert "--set data.encoding=NAME" in note
    texts = _texts(splits.train) + _texts(splits.validation) + _texts(splits.test)
    assert "café crème, très bon" in texts and "naïve « plot »" in texts


def test_given_encoding_is_used_and_a_wrong_one_names_file_line_and_encoding(tmp_path, capsys):
    path = tmp_path / "latin.tsv"
    path.write_bytes(("text\tlabel\nok\ta\nnaïve\tb\n" + "plain\ta\nplain\tb\n" * 4).encode("latin-1"))
    text, used = read_text(path, "latin-1")
    assert used == "latin-1" and "naïve" in text and capsys.readouterr().out == ""
    with pytest.raises(DataError, match=r"latin.tsv:3: cannot decode the file as utf-8 \(byte 0xef: invalid continuation byte\); pass the file's encoding with --set data.encoding=NAME"):
        read_text(path, "utf-8")
    with pytest.raises(DataError, match="data.encoding 'klingon' is not a known encoding"):
        load_data(DataConfig(source=str(path), encoding="klingon"), ("text",), seed=0)
    splits = load_data(DataConfig(source=str(path), encoding="latin-1", validation_fraction=0.2, test_fraction=0.2), ("text",), seed=0)
    assert capsys.readouterr().out == ""  # No note: the encoding was given.
    texts = _texts(splits.train) + _texts(splits.validation) + _texts(splits.test)
    assert sorted(texts) == sorted(["naïve", "ok"] + ["plain"] * 8)


def test_nul_bytes_are_refused_by_name(tmp_path):
    path = tmp_path / "utf16_without_mark.csv"
    path.write_bytes("text,label\nabc,1\n".encode("utf-16-le"))
    with pytest.raises(DataError, match=r"utf16_without_mark.csv:1: holds NUL characters: a binary file, or UTF-16/32 without a byte-order mark"):
        load_text_table(path)
    assert decode("text,label\n".encode("utf-16-le"), "x.csv", errors="replace")[0].startswith("t\x00e")


def test_delimiter_follows_the_extension_and_sniffs_only_among_header_delimiters(capsys):
    sample = 'label\tsentence\n1\t"wow", she said, "what a film"\n0\t"dull", he said\n'
    assert choose_delimiter("x.tsv", sample) == "\t"
    assert choose_delimiter("x.csv", "text,label\na\tb,1\n") == ","
    # Other extensions: sniffed, but a guess absent from the header is never taken.
    assert choose_delimiter("x.txt", sample) == "\t"
    assert choose_delimiter("x.txt", "text;label\n1,2,3,4;a\n5,6,7,8;b\n") == ";"
    assert choose_delimiter("x.txt", "text|label\na|1\n") == "|"
    assert capsys.readouterr().out == ""
    # A ';' CSV (European Excel) would read as one column: its header delimiter is used, with a note.
    assert choose_delimiter("eu.csv", "text;label\nbon, très;1\n") == ";"
    assert "note: eu.csv: the header has no ','; reading the file as ';'-separated" in capsys.readouterr().out


def test_tsv_with_commas_and_quotes_parses(tmp_path):
    # Before: sniffed as comma-separated, "q.tsv:2: 3 fields but the header has 1".
    path = tmp_path / "q.tsv"
    rows = ['1\t"wow", she said, "what a film"', '0\t"dull", he said', "1\tit 's \"fine\", i guess", '0\t" unbalanced quote , here']
    path.write_text("label\tsentence\n" + "\n".join(rows * 3) + "\n")
    splits = load_text_table(path, validation_fraction=0.0, test_fraction=0.0)
    assert splits.train.size == 12
    assert _texts(splits.train) == sorted(row.split("\t")[1] for row in rows * 3)


def test_tsv_written_with_all_fields_quoted_is_unquoted(tmp_path):
    # R's write.table(sep="\t") quotes every field; the quotes are not part of the names or texts.
    path = tmp_path / "r.tsv"
    path.write_text('"text"\t"label"\n' + "".join(f'"say ""hi"" {index}"\t"{index % 2}"\n' for index in range(4)))
    splits = load_text_table(path, validation_fraction=0.0, test_fraction=0.0)
    assert splits.class_names == ["0", "1"] and _texts(splits.train)[0] == 'say "hi" 0'


def test_unclosed_quote_in_csv_names_where_it_opened(tmp_path):
    path = tmp_path / "quote.csv"
    path.write_text('text,label\nfine,1\n"never closed,0\nmore,1\nand more,0\n')
    with pytest.raises(DataError, match=r"quote.csv:3: 1 fields but the header has 2 \(text, label\); a quoted field opened on line 3 runs to line 5"):
        load_text_table(path)


@pytest.mark.parametrize(
    "content, message",
    [
        ('{"text": "a", "label": 1}\n{"text": "b", "label": \n', r"bad.jsonl:2: not valid JSON"),
        ('{"text": "a", "label": 1}\n' + "[" * 100000 + "\n", r"bad.jsonl:2: (JSON that cannot be read \(RecursionError|not valid JSON)"),
        ('{"text": "a", "label": ' + "9" * 5000 + "}\n", r"bad.jsonl:1: JSON that cannot be read \(ValueError"),
        ('{"text": "a", "label": 1}\n[1, 2]\n', r"bad.jsonl:2: each line must be a JSON object"),
    ],
)
def test_malformed_json_lines_name_the_line(tmp_path, content, message):
    path = tmp_path / "bad.jsonl"
    path.write_text(content)
    with pytest.raises(DataError, match=message):
        load_text_table(path)


def test_json_array_file(tmp_path):
    path = tmp_path / "table.json"
    path.write_text('[{"text": "a", "label": "x"}, {"text": "b", "label": "y"}]')
    splits = load_text_table(path, validation_fraction=0.0, test_fraction=0.0)
    assert splits.class_names == ["x", "y"] and _texts(splits.train) == ["a", "b"]


def test_ucr_files_split_on_their_delimiter(tmp_path):
    # A decimal comma in a tab-separated file used to be read as two numbers, silently.
    (tmp_path / "comma.tsv").write_text("1\t0,5\t0,7\n2\t0,1\t0,2\n")
    # (Line 1 does not parse either, so it is taken for a header.)
    with pytest.raises(DataError, match=r"comma.tsv:2: expected a label then numbers separated by tabs, got '2\\t0,1\\t0,2'"):
        load_ucr(tmp_path / "comma.tsv")
    # An empty field is a missing value, not a shift of the next ones.
    (tmp_path / "gap.csv").write_text("1,0.5,,0.7\n2,0.1,0.2,0.3\n")
    with pytest.raises(DataError, match=r"gap.csv:1: missing values \(NaN\) inside the series"):
        load_data(DataConfig(source=str(tmp_path / "gap.csv")), ("sequence",), seed=0)


def test_numeric_table_with_byte_order_mark_goes_to_the_series_loader(tmp_path):
    # Before: "\ufeff1" did not parse as a number, so the file went to the text loader.
    lines = [f"{label},{','.join(str(value) for value in np.arange(5) + label)}" for label in (1, 2) * 10]
    (tmp_path / "series.csv").write_bytes(codecs.BOM_UTF8 + "\n".join(lines).encode())
    splits = load_data(DataConfig(source=str(tmp_path / "series.csv"), validation_fraction=0.2, test_fraction=0.2), ("sequence", "text"), seed=0)
    assert splits.modality == "sequence" and splits.class_names == ["1", "2"] and splits.input_shape == (5, 1)
    assert splits.train.size + splits.validation.size + splits.test.size == 20


def test_latin1_series_header_is_read(tmp_path, capsys):
    (tmp_path / "Toy_TRAIN.txt").write_bytes(("étiquette valeur\n" + "".join(f"{i % 2} {i}.5 {i}.25\n" for i in range(10))).encode("latin-1"))
    (tmp_path / "Toy_TEST.txt").write_text("0 1.0 2.0\n1 3.0 4.0\n")
    splits = load_data(DataConfig(source=str(tmp_path / "Toy"), validation_fraction=0.2), ("sequence",), seed=0)
    assert (splits.train.size, splits.validation.size, splits.test.size) == (8, 2, 2)
    assert "Toy_TRAIN.txt is not UTF-8" in capsys.readouterr().out


def test_sst2_row_counts(shared_data):
    """Quote handling swallows no line of the real SST-2 files (train has CRLF line ends)."""
    splits = load_text_table(shared_data / "sst2", seed=0)
    assert (splits.train.size, splits.validation.size, splits.test.size) == (67349, 872, 1821)
    first = next(iter(splits.train.dataset.take(1).as_numpy_iterator()))[0].decode()
    assert "\r" not in first and "\t" not in first


def test_numeric_csv_readers_of_predict_and_client_keep_a_first_row_behind_a_byte_order_mark(tmp_path):
    """The same defect in export.predict and serving.client (both read rows of numbers)."""
    from export.inputs import csv_rows as _csv_rows
    from serving.client import _read_csv

    (tmp_path / "rows.csv").write_bytes(codecs.BOM_UTF8 + b"1,2,3\n4,5,6\n")
    (tmp_path / "rows.tsv").write_bytes(b"\xe9t\xe9\tb\tc\n1\t2\t3\n4\t5\t6\n")  # a latin-1 header
    for name in ("rows.csv", "rows.tsv"):
        assert list(_csv_rows(tmp_path / name)) == [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]
        np.testing.assert_array_equal(_read_csv(str(tmp_path / name), [None, 3]), [[1, 2, 3], [4, 5, 6]])
