"""The classical baseline every run is measured against (issue 12), with scikit-learn.

Fitted on the run's own train split and scored on its own test split:
    text                TF-IDF of word 1-2 grams (sublinear tf) + logistic regression;
    sequence            1-nearest-neighbour, Euclidean: the UCR archive's reference method;
    image, features     logistic regression on the standardized raw pixels or features.

Size caps keep the baseline cheap beside training (issue 12: under 10 % of a default
run); above a cap the training examples are subsampled (seeded, uniformly), and the result
says how many were used. `compare` turns the model's and the baseline's accuracy into the
report line "kerasdl 0.812 vs baseline 0.795 (+1.7 points)" and, when the model loses,
a plain statement with what to try. `text_statistics` gives the samples / words-per-sample
ratio and the model Google's text-classification guide recommends for it.

Only `baseline_for_splits` and `read_examples`, which read splits, import TensorFlow.
Over ~300 lines: the three baselines, the split reading that feeds them and the
comparison that reads their result are one measure and change together.
"""

import math
import time
import warnings

import numpy as np

# Training examples kept per modality, and why:
#   text: TF-IDF + logistic regression fit 67k SST-2 sentences in seconds, far below
#         what any network needs for them, so only very large tables are subsampled;
#   sequence: 1-NN costs train x test x length distances; 10k series keeps it in seconds;
#   image/features: logistic regression costs examples x features x iterations; 5k
#         examples of at most 16x16x3 values (see IMAGE_SIDE_CAP) fit in seconds.
MAX_TRAIN_EXAMPLES = {"text": 50_000, "sequence": 10_000, "image": 5_000, "features": 5_000}
# Images larger than this (height or width) are block-averaged down to it first: raw
# photos (224x224x3 = 150k values) would make the regression slow and memory-hungry, and
# a linear model does not use the detail: on 2,000 CIFAR-10 JPEGs, 16 px scored as well as
# 32 px (0.38-0.39 test accuracy) in a third of the time (measured).
IMAGE_SIDE_CAP = 16
# The logistic regressions' iteration cap per C: with warm starts along the grid, 50 per C
# chose the same C with the same test accuracy as 100 on 2,000 CIFAR-10 JPEGs, in half the
# time, and 25 the same C as 50 within 0.1 point on 5,000 MNIST digits (0.9045 both), 2,000
# CIFAR-10 JPEGs (0.343 / 0.342) and 20,000 SST-2 sentences (0.8089 both) in about half the
# image fits' time again (measured). The first, cold-started fit gets twice the cap (alone,
# without a validation split, 25 iterations left the digits regression unconverged). An
# unconverged fit is reported, not hidden.
MAX_ITERATIONS = 25
# The inverse regularization strengths tried on the validation split, strongest first.
C_GRID = (0.001, 0.01, 0.1, 1.0, 10.0)
# The grid stops after this many strengths in a row score below the best: validation accuracy
# over C rises to one peak and falls, and the weakest regularization costs the most iterations.
# On 7,200 MNIST digits (5,000 used) it chose the same C=0.1 in 3.2 s instead of 16.9 s
# (measured back to back on the loaded 2-core machine).
C_PATIENCE = 2
# Examples decoded per batch when reading a split.
READ_BATCH = 256
# Validation examples read for choosing C: at most the training cap divided by this.
VALIDATION_SHARE = 4
# Google's text-classification guide: below this samples / words-per-sample ratio an
# n-gram model (MLP) beat sequence models across its datasets; above it, a sequence model.
GUIDE_RATIO = 1500
# Fewer optimizer steps than this is a short run for a network on a small set (issue 12:
# a CNN on 720 images stopped after ~225 steps while still improving).
SHORT_RUN_STEPS = 1000


def fit_baseline(modality, train_x, train_y, test_x, test_y, seed=42, max_train_examples=None, validation=None):
    """Fits the modality's classical baseline on the training examples and scores it on the test examples.

    The logistic regressions take their inverse regularization strength C from `C_GRID`
    by validation accuracy when `validation` is given (ties go to the stronger
    regularization), and scikit-learn's default C=1 otherwise: raw pixels want far
    stronger regularization than 64 digit features (2,000 CIFAR-10 JPEGs at 16 px: 0.39 at
    C=0.001 against 0.32 at C=1, measured), so no single C is fair to every set.

    Args:
        modality: "text", "sequence", "image" or "features".
        train_x, train_y: training examples as `kerasdl.data.pipeline.take_examples`
            returns them (a list of strings for text, else an array `[N, ...]`), int labels.
        test_x, test_y: the test examples, the same way.
        seed: the subsampling (and solver) seed.
        max_train_examples: subsample the training examples above this; None uses
            `MAX_TRAIN_EXAMPLES[modality]`.
        validation: `(x, y)` validation examples to choose C on, or None.

    Returns:
        `{"name", "description", "test_accuracy", "train_examples", "train_examples_used",
        "test_examples", "seconds", "converged", "C", "validation_accuracy"}`; `seconds`
        covers fitting, choosing and scoring; C and validation_accuracy are None where unused.

    Example:
    >>> result = fit_baseline("features", x_train, y_train, x_test, y_test, seed=0)
    >>> result["name"], round(result["test_accuracy"], 2)
    ('logistic_regression', 0.96)
    """
    if modality not in MAX_TRAIN_EXAMPLES:
        raise ValueError(f"no baseline for modality {modality!r}; expected one of {', '.join(MAX_TRAIN_EXAMPLES)}")
    cap = MAX_TRAIN_EXAMPLES[modality] if max_train_examples is None else max_train_examples
    train_y, test_y = np.asarray(train_y), np.asarray(test_y)
    started = time.perf_counter()
    used = _subsample(len(train_y), cap, seed)
    train_x = [train_x[index] for index in used] if modality == "text" else np.asarray(train_x)[used]
    from threadpoolctl import threadpool_limits

    # One BLAS thread: on 2 shared cores OpenBLAS' threads spin-wait on each other, and
    # the digits regression took 4 s with 2 threads against 0.04 s with 1 (measured).
    with threadpool_limits(limits=1):
        if modality == "sequence":
            chosen = _nearest_neighbour(train_x, train_y[used], test_x)
        else:
            chosen = _logistic_regression(modality, train_x, train_y[used], test_x, validation, seed)
    predictions = chosen["predictions"]
    name, description = _NAMES[modality]
    if chosen["C"] is not None:
        description += f", C={chosen['C']:g}" + (" chosen on the validation split" if chosen["validation_accuracy"] is not None else " (scikit-learn's default)")
    return {
        "name": name,
        "description": description,
        "test_accuracy": float(np.mean(predictions == test_y)) if len(test_y) else float("nan"),
        "train_examples": int(len(train_y)),
        "train_examples_used": int(len(used)),
        "test_examples": int(len(test_y)),
        "seconds": time.perf_counter() - started,
        "converged": chosen["converged"],
        "C": chosen["C"],
        "validation_accuracy": chosen["validation_accuracy"],
    }


def baseline_for_splits(splits, seed=42, max_train_examples=None, train=None, test=None):
    """Reads a run's splits and fits the baseline: the training examples are sampled before decoding.

    Only the capped number of training examples is read (a seeded uniform sample of the
    split's positions, chosen before decoding, so a streamed image folder decodes only
    those), and of validation examples (for choosing C) a quarter of that cap. The test
    split is read whole, unless the run already holds its raw examples.

    Args:
        splits: `kerasdl.data.DataSplits`.
        seed: the sampling seed.
        max_train_examples: as in `fit_baseline`.
        train: `(x, y)`, every raw training example, if the caller already holds them
            (a text run reads its texts for the vocabulary); they are then not read again.
        test: `(x, y)`, the raw test examples if the caller has them (e.g. collected
            during evaluation), to avoid a second pass over the test split.

    Returns:
        `fit_baseline`'s dict plus `read_seconds` (reading examples) and, for text,
        `text_statistics` of the whole training split.

    Example:
    >>> baseline = baseline_for_splits(load_data(config.data, ("image",), 42), seed=42)
    """
    cap = MAX_TRAIN_EXAMPLES[splits.modality] if max_train_examples is None else max_train_examples
    # Images are block-averaged batch by batch as they are read: 5,000 decoded 224x224 photos
    # would hold 3 GB, their 16x16 averages 15 MB.
    shrink = _shrink_images if splits.modality == "image" else None
    started = time.perf_counter()
    train_x, train_y = train if train is not None else read_examples(_sampled_split(splits.train, cap, seed), shrink)
    test_x, test_y = test if test is not None else read_examples(splits.test, shrink)
    validation = None
    if splits.modality != "sequence" and splits.validation.size:
        validation_cap = max(1, cap // VALIDATION_SHARE)
        validation = read_examples(_sampled_split(splits.validation, validation_cap, seed), shrink)
    read_seconds = time.perf_counter() - started
    result = fit_baseline(splits.modality, train_x, train_y, test_x, test_y, seed=seed, max_train_examples=cap, validation=validation)
    result["train_examples"] = int(splits.train.size)
    result["read_seconds"] = read_seconds
    if splits.modality == "text":
        # The guide's ratio is about the whole training set, not the baseline's sample.
        texts = train_x if train is not None or splits.train.size <= cap else read_examples(splits.train)[0]
        result["text_statistics"] = text_statistics(texts)
    return result


def read_examples(split, transform=None):
    """Every raw `(x, y)` of a split as `kerasdl.data.pipeline.take_examples` returns them, read in batches.

    Batched because one-by-one iteration dominated the baseline's cost on small sets
    (0.45 s of 0.74 s on digits, measured).

    Args:
        split: a `kerasdl.data.Split`.
        transform: applied to each batch of numeric `x` as it is read (e.g. shrinking
            images), so that only its result is held; None keeps the raw values.

    Example:
    >>> x, y = read_examples(splits.test)
    """
    import tensorflow as tf

    dataset = split.dataset
    if split.decode is not None:
        dataset = dataset.map(split.decode, num_parallel_calls=tf.data.AUTOTUNE)
    xs, ys = [], []
    for x, y in dataset.batch(READ_BATCH).as_numpy_iterator():
        xs.append(transform(x) if transform is not None and x.dtype.kind not in "OSU" else x)
        ys.append(np.asarray(y, dtype=np.int64))
    labels = np.concatenate(ys) if ys else np.zeros((0,), dtype=np.int64)
    if not xs:
        return np.zeros((0,)), labels
    x = np.concatenate(xs)
    if x.dtype.kind in "OSU":
        return [value.decode("utf-8") if isinstance(value, bytes) else str(value) for value in x], labels
    return x, labels


def text_statistics(texts):
    """The samples / words-per-sample ratio and the model Google's text-classification guide recommends.

    Words per sample is the median count of whitespace-separated words, as in the guide
    (developers.google.com/machine-learning/guides/text-classification, step 2.5).

    Args:
        texts: the training texts.

    Returns:
        `{"samples", "median_words_per_sample", "ratio", "recommended_model", "reason"}`.

    Example:
    >>> text_statistics(["a good film", "bad", "not bad at all"])["recommended_model"]
    'n-gram MLP'
    """
    samples = len(texts)
    words = float(np.median([len(str(text).split()) for text in texts])) if samples else 0.0
    ratio = samples / max(words, 1.0)
    small = ratio < GUIDE_RATIO
    return {
        "samples": samples,
        "median_words_per_sample": words,
        "ratio": ratio,
        "recommended_model": "n-gram MLP" if small else "sequence model",
        "reason": (
            f"{samples:,} samples / {words:g} words per sample = {ratio:,.0f}, "
            f"{'below' if small else 'at or above'} the {GUIDE_RATIO:,} at which Google's text-classification guide "
            + ("found n-gram models (TF-IDF into an MLP) better than sequence models" if small else "found sequence models better than n-gram models")
        ),
    }


def compare(model_accuracy, baseline, modality, text_stats=None, optimizer_steps=None, stopped_early=None, ngram_model=False):
    """Puts the model's test accuracy beside the baseline's, with what to try when it loses.

    The difference counts as a tie when it is within two standard errors of the difference
    of two accuracies on this many test examples (binomial, each scored independently,
    which slightly overstates the noise of a paired comparison on the same examples).

    Args:
        model_accuracy: the kerasdl model's test accuracy.
        baseline: `fit_baseline`'s result.
        modality: the data's modality, for the suggestions.
        text_stats: `text_statistics` of the training texts (text only).
        optimizer_steps: optimizer steps the run made, when known.
        stopped_early: whether early stopping ended the run before its planned epochs.
        ngram_model: the model is already an n-gram text model (the `mlp` on text), so the
            suggestions are about it rather than pointing to it.

    Returns:
        `{"line", "model_accuracy", "baseline_accuracy", "difference_points", "noise_points",
        "verdict" ("better", "tie", "worse"), "statement", "suggestions"}`.

    Example:
    >>> compare(0.812, {"test_accuracy": 0.795, "test_examples": 1000, "name": "logistic_regression"}, "image")["line"]
    'kerasdl 0.812 vs baseline 0.795 (+1.7 points)'
    """
    baseline_accuracy = float(baseline["test_accuracy"])
    difference = 100.0 * (model_accuracy - baseline_accuracy)
    examples = max(1, int(baseline.get("test_examples") or 1))
    noise = 200.0 * math.sqrt((model_accuracy * (1 - model_accuracy) + baseline_accuracy * (1 - baseline_accuracy)) / examples)
    if abs(difference) <= noise:
        verdict = "tie"
        statement = f"The model and the baseline are within the test split's noise of each other (±{noise:.1f} points at {examples:,} test examples)."
    elif difference > 0:
        verdict = "better"
        statement = f"The model beats the classical baseline ({baseline['name']}) by {difference:.1f} points."
    else:
        verdict = "worse"
        statement = (
            f"The model is {-difference:.1f} points below a classical baseline ({baseline['name']}) that fits in "
            f"{baseline.get('seconds', float('nan')):.1f} s; beyond the test split's noise (±{noise:.1f} points)."
        )
    suggestions = []
    if verdict != "better":
        suggestions = _suggestions(modality, text_stats, optimizer_steps, stopped_early, ngram_model)
    return {
        "line": f"kerasdl {model_accuracy:.3f} vs baseline {baseline_accuracy:.3f} ({difference:+.1f} points)",
        "model_accuracy": float(model_accuracy),
        "baseline_accuracy": baseline_accuracy,
        "difference_points": difference,
        "noise_points": noise,
        "verdict": verdict,
        "statement": statement,
        "suggestions": suggestions,
    }


def _suggestions(modality, text_stats, optimizer_steps, stopped_early, ngram_model=False):
    """What to try when the model does not beat the baseline, most likely first."""
    suggestions = []
    if modality == "text" and text_stats is not None:
        if text_stats["ratio"] < GUIDE_RATIO and not ngram_model:
            suggestions.append(f"the n-gram MLP (python -m training.run mlp --data <your table>: TF-IDF of word 1-2 grams into a small MLP): {text_stats['reason']}")
        elif text_stats["ratio"] >= GUIDE_RATIO:
            suggestions.append(f"a sequence model{' (python -m training.run lstm)' if ngram_model else ''} trained longer: {text_stats['reason']}")
    if optimizer_steps is not None and optimizer_steps < SHORT_RUN_STEPS and not stopped_early:
        suggestions.append(f"more training: the run made only {optimizer_steps:,} optimizer steps and had not stopped early; raise train.epochs")
    elif stopped_early:
        suggestions.append("more regularization (dropout, weight decay) or more data: early stopping ended the run, so it stopped improving on validation")
    by_modality = {
        "text": (
            "more dropout (model.dropout_rate) or fewer n-grams (model.max_features), since a small text set overfits thousands of n-gram weights"
            if ngram_model else "a smaller vocabulary and embedding with more dropout, since small text sets overfit word embeddings"
        ),
        "sequence": "z-normalizing each series (the UCR archive's convention) and more epochs: small series sets need many steps",
        "image": "more epochs with augmentation checked (compare with --set augment.enabled=false) and batch normalization; a pretrained model for photos",
        "features": "more epochs, a wider network, or dropout and weight decay when validation loss rises",
    }
    suggestions.append(by_modality[modality])
    return suggestions


_NAMES = {
    "text": ("tfidf_logistic_regression", "TF-IDF of word 1-2 grams (sublinear tf) + logistic regression"),
    # Series of unequal length arrive zero-padded at the end (kerasdl.data.ucr); the distance
    # is taken over the padded vectors, so a shorter series' missing tail counts as zeros.
    # On equal-length archives (GunPoint, Coffee, ECG200) it is exactly the UCR reference.
    "sequence": ("1nn_euclidean", "1-nearest-neighbour, Euclidean distance over the zero-padded series (the UCR reference method)"),
    "image": ("logistic_regression", f"logistic regression on the standardized raw pixels (images block-averaged to at most {IMAGE_SIDE_CAP}x{IMAGE_SIDE_CAP})"),
    "features": ("logistic_regression", "logistic regression on the standardized raw features"),
}


def _nearest_neighbour(train_x, train_y, test_x):
    from sklearn.neighbors import KNeighborsClassifier

    model = KNeighborsClassifier(n_neighbors=1, algorithm="brute", metric="euclidean").fit(_features("sequence", train_x), train_y)
    predictions = model.predict(_features("sequence", test_x)) if len(test_x) else np.zeros((0,), dtype=np.int64)
    return {"predictions": predictions, "converged": True, "C": None, "validation_accuracy": None}


def _logistic_regression(modality, train_x, train_y, test_x, validation, seed):
    """Fits along `C_GRID` (strongest regularization first, each fit warm-starting the next) and keeps the best on validation.

    The grid stops once `C_PATIENCE` strengths in a row score below the best so far.
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    if modality == "text":
        from sklearn.feature_extraction.text import TfidfVectorizer

        transform = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True)
    else:
        from sklearn.preprocessing import StandardScaler

        transform = StandardScaler()
    train_features = transform.fit_transform(_features(modality, train_x))
    test_features = transform.transform(_features(modality, test_x)) if len(test_x) else None
    grid = C_GRID if validation is not None and len(validation[1]) else (1.0,)
    validation_features = transform.transform(_features(modality, validation[0])) if len(grid) > 1 else None
    model = LogisticRegression(max_iter=MAX_ITERATIONS, random_state=seed, warm_start=True)
    best, worse_in_a_row = None, 0
    for position, strength in enumerate(grid):
        if worse_in_a_row >= C_PATIENCE:
            break
        # The first fit starts cold and gets twice the cap; the others start from the previous one.
        model.set_params(C=strength, max_iter=MAX_ITERATIONS * (2 if position == 0 else 1))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            model.fit(train_features, train_y)
        converged = not any(issubclass(warning.category, ConvergenceWarning) for warning in caught)
        score = float(np.mean(model.predict(validation_features) == np.asarray(validation[1]))) if validation_features is not None else None
        if best is None or (score is not None and score > best["validation_accuracy"]):
            predictions = model.predict(test_features) if test_features is not None else np.zeros((0,), dtype=np.int64)
            best = {"predictions": predictions, "converged": converged, "C": strength, "validation_accuracy": score}
            worse_in_a_row = 0
        elif score is not None and score < best["validation_accuracy"]:
            worse_in_a_row += 1
    return best


def _features(modality, x):
    """The baseline's view of raw examples: strings for text, flat float32 vectors otherwise."""
    if modality == "text":
        return [value.decode("utf-8") if isinstance(value, bytes) else str(value) for value in x]
    x = np.asarray(x, dtype=np.float32)
    if modality == "image" and x.ndim == 4:
        x = _pool_image(x, IMAGE_SIDE_CAP)
    return x.reshape(len(x), -1)


def _shrink_images(images):
    """A batch of images as the baseline sees them: float32, block-averaged to `IMAGE_SIDE_CAP`."""
    images = np.asarray(images, dtype=np.float32)
    return _pool_image(images, IMAGE_SIDE_CAP) if images.ndim == 4 else images


def _pool_image(images, side_cap):
    """Block-averages `[N, H, W, C]` images so that neither side exceeds `side_cap` (edges cropped to whole blocks)."""
    height, width = images.shape[1:3]
    factor = math.ceil(max(height, width) / side_cap)
    if factor <= 1:
        return images
    rows, columns = height // factor, width // factor
    cropped = images[:, : rows * factor, : columns * factor]
    return cropped.reshape(len(images), rows, factor, columns, factor, images.shape[-1]).mean(axis=(2, 4))


def _subsample(count, cap, seed):
    """Sorted positions of a seeded uniform sample of `cap` of `count` examples (all when under the cap)."""
    if count <= cap:
        return np.arange(count)
    return np.sort(np.random.default_rng(seed).choice(count, size=cap, replace=False))


def _sampled_split(split, cap, seed):
    """The split restricted to `_subsample`'s positions, filtered before any decoding."""
    if split.size <= cap:
        return split
    import dataclasses

    import tensorflow as tf

    keep = np.zeros(split.size, dtype=bool)
    keep[_subsample(split.size, cap, seed)] = True
    keep = tf.constant(keep)

    def kept(index, example):
        return tf.gather(keep, index)

    def without_index(index, example):
        return example

    dataset = split.dataset.enumerate().filter(kept).map(without_index)
    return dataclasses.replace(split, dataset=dataset, size=cap)
