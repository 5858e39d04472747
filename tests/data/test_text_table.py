"""Tests of the text table loader on SST-2 and on small written files."""

import json
from pathlib import Path

import numpy as np
import pytest

from kerasdl.data.source import DataError
from kerasdl.data.text_table import load_text_table

SST2 = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "sst2"


def _arrays(split):
    xs, ys = zip(*split.dataset.as_numpy_iterator())
    return [x.decode() for x in xs], np.array(ys)


@pytest.mark.skipif(not (SST2 / "train.tsv").exists(), reason="../shared/data/sst2 is absent")
def test_sst2_folder_uses_the_official_splits():
    splits = load_text_table(SST2, max_examples=300, seed=0)
    assert splits.modality == "text" and splits.input_shape == ()
    assert splits.class_names == ["0", "1"]
    assert (splits.train.size, splits.validation.size, splits.test.size) == (300, 300, 300)
    texts, labels = _arrays(splits.validation)
    assert set(labels) == {0, 1}
    dev = {}
    with open(SST2 / "dev.tsv", encoding="utf-8") as handle:
        next(handle)
        for line in handle:
            label, sentence = line.rstrip("\n").split("\t")
            dev[sentence] = int(label)
    assert all(dev[text] == label for text, label in zip(texts, labels))
    assert "official validation and test files" in splits.description


@pytest.mark.skipif(not (SST2 / "dev.tsv").exists(), reason="../shared/data/sst2 is absent")
def test_single_sst2_file_is_split_stratified():
    splits = load_text_table(SST2 / "dev.tsv", validation_fraction=0.1, test_fraction=0.1, seed=1)
    assert splits.train.size + splits.validation.size + splits.test.size == 872
    _, labels = _arrays(splits.test)
    assert 0.35 < labels.mean() < 0.65


def test_csv_with_named_columns_quotes_and_string_labels(tmp_path):
    path = tmp_path / "reviews.csv"
    path.write_text('id,Review,sentiment\n1,"Great, really great",pos\n2,dull,neg\n3,"said ""meh""",neutral\n4,ok,pos\n')
    splits = load_text_table(path, validation_fraction=0.0, test_fraction=0.0)
    assert splits.class_names == ["neg", "neutral", "pos"]
    texts, labels = _arrays(splits.train)
    assert texts == ["Great, really great", "dull", 'said "meh"', "ok"]
    assert labels.tolist() == [2, 0, 1, 2]


def test_jsonl_and_explicit_columns(tmp_path):
    path = tmp_path / "data.jsonl"
    rows = [{"body": f"text {index}", "stars": index % 2, "extra": None} for index in range(10)]
    path.write_text("\n".join(json.dumps(row) for row in rows) + "\n")
    splits = load_text_table(path, text_column="body", label_column="stars", validation_fraction=0.2, test_fraction=0.2)
    assert splits.class_names == ["0", "1"]
    assert (splits.train.size, splits.validation.size, splits.test.size) == (6, 2, 2)


def test_folder_without_test_file_carves_it_from_train(tmp_path):
    (tmp_path / "train.tsv").write_text("sentence\tlabel\n" + "".join(f"s{i}\t{i % 2}\n" for i in range(20)))
    (tmp_path / "validation.tsv").write_text("sentence\tlabel\na\t0\nb\t1\n")
    splits = load_text_table(tmp_path, test_fraction=0.2)
    assert (splits.train.size, splits.validation.size, splits.test.size) == (16, 2, 4)


def test_bad_inputs_fail_with_clear_messages(tmp_path):
    (tmp_path / "columns.csv").write_text("id,words,stars\n1,good,1\n2,bad,0\n")
    with pytest.raises(DataError, match="cannot tell which column holds the text; the columns are: id, words, stars"):
        load_text_table(tmp_path / "columns.csv")
    with pytest.raises(DataError, match="no label column 'grade'; the columns are: id, words, stars"):
        load_text_table(tmp_path / "columns.csv", text_column="words", label_column="grade")
    (tmp_path / "one.csv").write_text("text,label\na,x\nb,x\n")
    with pytest.raises(DataError, match=r"only one class \('x'\)"):
        load_text_table(tmp_path / "one.csv")
    (tmp_path / "empty.tsv").write_text("")
    with pytest.raises(DataError, match="empty.tsv: the file is empty"):
        load_text_table(tmp_path / "empty.tsv")
    (tmp_path / "header_only.tsv").write_text("text\tlabel\n")
    with pytest.raises(DataError, match="no examples found"):
        load_text_table(tmp_path / "header_only.tsv")
    (tmp_path / "unlabelled.tsv").write_text("text\tlabel\na\t1\nb\t\n")
    with pytest.raises(DataError, match="unlabelled.tsv:3: empty 'label'"):
        load_text_table(tmp_path / "unlabelled.tsv")
    with pytest.raises(DataError, match="no such file or folder"):
        load_text_table(tmp_path / "missing.csv")
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "dev.tsv").write_text("text\tlabel\na\t0\n")
    with pytest.raises(DataError, match="no train.tsv"):
        load_text_table(folder)
