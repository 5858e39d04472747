"""Tests of the generated sentiment set."""

import numpy as np

from kerasdl.data.synthetic_text import load_synthetic_sentiment


def _arrays(split):
    xs, ys = zip(*split.dataset.as_numpy_iterator())
    return [x.decode() for x in xs], np.array(ys)


def test_balanced_seeded_and_described_as_generated():
    splits = load_synthetic_sentiment(num_examples=400, seed=5, validation_fraction=0.1, test_fraction=0.1)
    assert splits.class_names == ["negative", "positive"]
    assert splits.modality == "text" and splits.input_shape == ()
    assert (splits.train.size, splits.validation.size, splits.test.size) == (320, 40, 40)
    assert "generated" in splits.description and "not real reviews" in splits.description
    texts, labels = _arrays(splits.train)
    assert labels.sum() == 160
    again, _ = _arrays(load_synthetic_sentiment(num_examples=400, seed=5).train)
    assert again == texts
    other, _ = _arrays(load_synthetic_sentiment(num_examples=400, seed=6).train)
    assert other != texts


def test_labels_follow_negation_and_but_clauses():
    texts, labels = _arrays(
        load_synthetic_sentiment(num_examples=2000, seed=0, validation_fraction=0.0, test_fraction=0.0).train
    )
    by_text = dict(zip(texts, labels))
    simple_not_good = [text for text in texts if text.endswith(" not good") and " but " not in text and "," not in text]
    assert simple_not_good and all(by_text[text] == 0 for text in simple_not_good)
    simple_not_bad = [text for text in texts if text.endswith(" not bad") and " but " not in text and "," not in text]
    assert simple_not_bad and all(by_text[text] == 1 for text in simple_not_bad)
    mixed = [text for text in texts if " but " in text]
    assert 0.25 < len(mixed) / len(texts) < 0.45
    assert any(" not " in text for text in texts) and any(" very " in text for text in texts)
    # Every sentiment word occurs in both classes, so single words do not give the label away.
    for word in ("good", "bad", "great", "awful"):
        classes = {label for text, label in zip(texts, labels) if word in text.split()}
        assert classes == {0, 1}, word
