"""The classical baseline (kerasdl/baseline.py): fits, caps, comparison line and suggestions."""

import numpy as np
import pytest

from kerasdl import baseline
from kerasdl.baseline import compare, fit_baseline, text_statistics


@pytest.fixture(scope="module")
def digits():
    from sklearn.datasets import load_digits

    bunch = load_digits()
    order = np.random.default_rng(0).permutation(len(bunch.target))
    return bunch.data[order].astype(np.float32), bunch.target[order].astype(np.int64)


def test_features_baseline_scores_digits_and_reports_what_it_used(digits):
    x, y = digits
    result = fit_baseline("features", x[:1400], y[:1400], x[1400:], y[1400:], seed=0)
    assert result["name"] == "logistic_regression"
    assert 0.93 <= result["test_accuracy"] <= 1.0
    assert (result["train_examples"], result["train_examples_used"], result["test_examples"]) == (1400, 1400, 397)
    # Without a validation split, scikit-learn's default C is used and said so.
    assert result["C"] == 1.0 and result["validation_accuracy"] is None and "default" in result["description"]
    assert result["seconds"] > 0 and result["converged"] is True


def test_training_examples_above_the_cap_are_subsampled_uniformly(digits):
    x, y = digits
    result = fit_baseline("features", x[:1400], y[:1400], x[1400:], y[1400:], seed=0, max_train_examples=200)
    assert (result["train_examples"], result["train_examples_used"]) == (1400, 200)
    assert result["test_accuracy"] > 0.8
    positions = baseline._subsample(1400, 200, seed=0)
    # Seeded, sorted, without repeats, and spread over the whole range (not the first 200).
    assert np.array_equal(positions, baseline._subsample(1400, 200, seed=0))
    assert len(set(positions.tolist())) == 200 and positions.max() > 1000


def test_regularization_is_chosen_on_validation(monkeypatch):
    # Imbalanced (70/30) and separable on the first feature: C=0.001 shrinks the weights to
    # almost nothing, so it predicts the majority class (0.7); C=1000 separates (1.0).
    rng = np.random.default_rng(0)
    y = (np.arange(200) % 10 < 3).astype(np.int64)
    x = rng.normal(size=(200, 2)).astype(np.float32)
    x[:, 0] = np.where(y == 1, 1.0, -1.0) + 0.1 * x[:, 0]
    monkeypatch.setattr(baseline, "C_GRID", (0.001, 1000.0))
    result = fit_baseline("features", x[:100], y[:100], x[150:], y[150:], seed=0, validation=(x[100:150], y[100:150]))
    assert (result["C"], result["validation_accuracy"], result["test_accuracy"]) == (1000.0, 1.0, 1.0)
    assert "C=1000 chosen on the validation split" in result["description"]
    # When every C scores the same on validation, the strongest regularization is kept.
    balanced = np.where(np.arange(200) % 2 == 0, 1, 0)
    x[:, 0] = np.where(balanced == 1, 5.0, -5.0)
    tie = fit_baseline("features", x[:100], balanced[:100], x[150:], balanced[150:], seed=0, validation=(x[100:150], balanced[100:150]))
    assert (tie["C"], tie["validation_accuracy"]) == (0.001, 1.0)


def test_text_baseline_reads_word_bigrams():
    # Only the bigram "not good" separates the classes; unigrams are shared by both.
    train = ["not good film", "good not film", "film not good", "good film not"] * 5
    labels = [0, 1, 0, 1] * 5
    result = fit_baseline("text", train, labels, ["a not good one", "a good not one"], [0, 1], seed=0)
    assert result["name"] == "tfidf_logistic_regression" and "1-2 grams" in result["description"]
    assert result["test_accuracy"] == 1.0


def test_series_baseline_is_1nn_euclidean_over_zero_padded_series():
    rng = np.random.default_rng(0)
    train = rng.normal(size=(30, 12, 1)).astype(np.float32)
    train[:10, 8:] = 0.0  # ten shorter series, zero-padded at the end
    labels = rng.integers(0, 3, 30)
    test = rng.normal(size=(20, 12, 1)).astype(np.float32)
    result = fit_baseline("sequence", train, labels, test, np.zeros(20, dtype=np.int64), seed=0)
    distances = np.linalg.norm(test.reshape(20, 1, -1) - train.reshape(1, 30, -1), axis=-1)
    expected = labels[np.argmin(distances, axis=1)]
    assert result["name"] == "1nn_euclidean" and "zero-padded" in result["description"]
    assert result["test_accuracy"] == pytest.approx(np.mean(expected == 0))
    assert result["C"] is None


def test_gunpoint_1nn_matches_the_published_reference(shared_data):
    def read(path):
        table = np.loadtxt(path)
        return table[:, 1:, None].astype(np.float32), table[:, 0].astype(np.int64)

    train_x, train_y = read(shared_data / "ucr" / "GunPoint_TRAIN.txt")
    test_x, test_y = read(shared_data / "ucr" / "GunPoint_TEST.txt")
    result = fit_baseline("sequence", train_x, train_y, test_x, test_y)
    # The UCR archive's 1-NN Euclidean error on GunPoint is 0.087 (Wang et al. 2017: 91.3 %).
    assert result["test_accuracy"] == pytest.approx(1 - 0.087, abs=0.002)


def test_large_images_are_block_averaged_to_the_side_cap():
    images = np.arange(2 * 64 * 48 * 3, dtype=np.float32).reshape(2, 64, 48, 3)
    features = baseline._features("image", images)
    factor = int(np.ceil(64 / baseline.IMAGE_SIDE_CAP))
    assert features.shape == (2, (64 // factor) * (48 // factor) * 3)
    assert features[0, 0] == pytest.approx(images[0, :factor, :factor, 0].mean())
    small = np.ones((2, 8, 8, 1), dtype=np.float32)
    assert baseline._features("image", small).shape == (2, 64)


def test_unknown_modality_is_a_clear_error():
    with pytest.raises(ValueError, match="no baseline for modality 'audio'; expected one of text, sequence, image, features"):
        fit_baseline("audio", [], [], [], [])


def test_baseline_for_splits_samples_before_decoding_across_a_class_sorted_split():
    from kerasdl.data.source import DataSplits, Split

    x = np.concatenate([np.zeros((100, 4)), np.ones((100, 4))]).astype(np.float32)
    x += np.random.default_rng(0).normal(scale=0.1, size=x.shape).astype(np.float32)
    y = np.repeat([0, 1], 100)
    splits = DataSplits(Split.from_arrays(x, y), Split.from_arrays(x[::10], y[::10]), Split.from_arrays(x[::5], y[::5]), ["a", "b"], "features", (4,), "toy")
    result = baseline.baseline_for_splits(splits, seed=0, max_train_examples=40)
    # Had the first 40 rows been taken, only class 0 would be there and the fit would fail.
    assert (result["train_examples"], result["train_examples_used"], result["test_examples"]) == (200, 40, 40)
    assert result["test_accuracy"] == 1.0 and result["validation_accuracy"] == 1.0
    assert result["read_seconds"] > 0


def test_sst2_small_run_gets_the_guide_recommendation(shared_data):
    from kerasdl.config import DataConfig
    from kerasdl.data import load_data

    splits = load_data(DataConfig(source=str(shared_data / "sst2"), max_examples=300), ("text",), 42)
    result = baseline.baseline_for_splits(splits, seed=42)
    assert result["name"] == "tfidf_logistic_regression" and result["train_examples_used"] == 300
    assert 0.55 < result["test_accuracy"] < 0.85
    statistics = result["text_statistics"]
    assert statistics["samples"] == 300 and statistics["ratio"] < baseline.GUIDE_RATIO
    assert statistics["recommended_model"] == "n-gram MLP"


def test_text_statistics_follow_the_guide():
    statistics = text_statistics(["a good film", "bad", "not bad at all", "fine"])
    assert statistics["median_words_per_sample"] == 2.0 and statistics["ratio"] == 2.0
    assert statistics["recommended_model"] == "n-gram MLP"
    large = text_statistics(["one two"] * 3001)
    assert large["ratio"] == 1500.5 and large["recommended_model"] == "sequence model"
    assert "3,001 samples / 2 words per sample = 1,500" in large["reason"]


def test_comparison_line_and_verdicts():
    reference = {"test_accuracy": 0.795, "test_examples": 1000, "name": "logistic_regression", "seconds": 1.5}
    better = compare(0.855, reference, "image")
    assert better["line"] == "kerasdl 0.855 vs baseline 0.795 (+6.0 points)"
    assert better["verdict"] == "better" and better["suggestions"] == []
    assert compare(0.812, reference, "image")["line"] == "kerasdl 0.812 vs baseline 0.795 (+1.7 points)"
    # 1.7 points on 1,000 test examples is within the noise (about +-3.6 points).
    assert compare(0.812, reference, "image")["verdict"] == "tie"
    worse = compare(0.70, reference, "image", optimizer_steps=225, stopped_early=False)
    assert worse["line"] == "kerasdl 0.700 vs baseline 0.795 (-9.5 points)"
    assert worse["verdict"] == "worse" and worse["statement"].startswith("The model is 9.5 points below a classical baseline (logistic_regression)")
    assert any("only 225 optimizer steps" in suggestion for suggestion in worse["suggestions"])
    assert any("augmentation" in suggestion for suggestion in worse["suggestions"])


def test_losing_text_model_below_the_guide_ratio_is_pointed_to_the_ngram_mlp():
    reference = {"test_accuracy": 0.80, "test_examples": 2000, "name": "tfidf_logistic_regression", "seconds": 0.2}
    statistics = text_statistics(["word " * 8] * 300)
    worse = compare(0.70, reference, "text", text_stats=statistics, stopped_early=True)
    assert worse["suggestions"][0].startswith("the n-gram MLP (python -m training.run mlp --data <your table>: TF-IDF of word 1-2 grams into a small MLP): 300 samples / 8 words per sample = 38")
    assert any("early stopping ended the run" in suggestion for suggestion in worse["suggestions"])
    assert not any("optimizer steps" in suggestion for suggestion in worse["suggestions"])


def test_images_are_shrunk_batch_by_batch_as_they_are_read(monkeypatch):
    # Decoded photos are block-averaged as each batch is read, so only the small images are
    # ever held (5,000 decoded 224x224 photos would be 3 GB).
    from kerasdl.data.source import DataSplits, Split

    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 300)
    x = (rng.uniform(0, 100, size=(600, 60, 60, 3)) + 100 * y[:, None, None, None]).astype(np.float32)
    splits = DataSplits(Split.from_arrays(x, y), Split.from_arrays(x[::6], y[::6]), Split.from_arrays(x[1::3], y[1::3]), ["dark", "bright"], "image", (60, 60, 3), "toy")
    seen = []
    shrink = baseline._shrink_images
    monkeypatch.setattr(baseline, "_shrink_images", lambda batch: seen.append(batch.shape) or shrink(batch))
    result = baseline.baseline_for_splits(splits, seed=0)
    assert result["test_accuracy"] == 1.0 and result["train_examples_used"] == 600
    # Train (600 in 3 batches), test (200 in 1), validation (100 in 1): every batch shrunk.
    assert sorted(seen) == sorted([(256, 60, 60, 3), (256, 60, 60, 3), (88, 60, 60, 3), (200, 60, 60, 3), (100, 60, 60, 3)])
    shrunk, labels = baseline.read_examples(splits.test, baseline._shrink_images)
    # 60 px in blocks of ceil(60 / 16) = 4: 15 x 15.
    assert shrunk.shape == (200, 15, 15, 3) and shrunk.dtype == np.float32 and labels.shape == (200,)


def test_a_losing_ngram_model_is_not_pointed_to_itself():
    reference = {"test_accuracy": 0.80, "test_examples": 2000, "name": "tfidf_logistic_regression", "seconds": 0.2}
    small = compare(0.70, reference, "text", text_stats=text_statistics(["word " * 8] * 300), stopped_early=True, ngram_model=True)
    assert not any("n-gram MLP" in suggestion for suggestion in small["suggestions"])
    assert any("model.max_features" in suggestion for suggestion in small["suggestions"])
    large = compare(0.70, reference, "text", text_stats=text_statistics(["one two"] * 4000), stopped_early=True, ngram_model=True)
    assert large["suggestions"][0].startswith("a sequence model (python -m training.run lstm) trained longer: 4,000 samples")


def test_the_regularization_grid_stops_after_its_peak(monkeypatch):
    # A stand-in for LogisticRegression whose validation accuracy over C peaks at the second value.
    import sklearn.linear_model

    scores = {0.1: 0.6, 1.0: 0.9, 10.0: 0.8, 100.0: 0.7, 1000.0: 0.95}
    fitted, iteration_caps = [], []

    class Scripted:
        def __init__(self, **options):
            self.C = None

        def set_params(self, C, max_iter):
            self.C = C
            iteration_caps.append(max_iter)

        def fit(self, x, y):
            fitted.append(self.C)

        def predict(self, x):
            # Validation rows are marked by a first feature of 1: right on `scores[C]` of them.
            right = int(round(scores[self.C] * len(x)))
            return np.where(np.arange(len(x)) < right, 0, 1) if x[0, 0] == 1 else np.zeros(len(x), dtype=np.int64)

    monkeypatch.setattr(sklearn.linear_model, "LogisticRegression", Scripted)
    monkeypatch.setattr(baseline, "C_GRID", tuple(scores))
    x = np.zeros((20, 2), dtype=np.float32)
    validation = np.ones((20, 2), dtype=np.float32)
    result = fit_baseline("features", x, np.zeros(20), x, np.zeros(20), validation=(validation, np.zeros(20)))
    # Two strengths in a row below the best (10 and 100): 1000 is never fitted.
    assert fitted == [0.1, 1.0, 10.0, 100.0] and result["C"] == 1.0 and result["validation_accuracy"] == 0.9
    # The first, cold-started fit gets twice the iterations; the warm-started ones the cap.
    assert iteration_caps == [2 * baseline.MAX_ITERATIONS] + [baseline.MAX_ITERATIONS] * 3
