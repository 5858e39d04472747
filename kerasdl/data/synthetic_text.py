"""The built-in text set: generated sentiment-like sentences (not real reviews)."""

import numpy as np

from kerasdl.data.source import splits_from_arrays

CLASS_NAMES = ["negative", "positive"]

SUBJECTS = (
    "the film", "the plot", "the acting", "the soundtrack", "the ending", "the cast",
    "the dialogue", "the pacing", "this movie", "the script", "the camera work", "the story",
)
POSITIVE = (
    "good", "great", "excellent", "wonderful", "enjoyable", "charming",
    "brilliant", "moving", "delightful", "superb", "clever", "gripping",
)
NEGATIVE = (
    "bad", "awful", "boring", "dull", "terrible", "tedious",
    "weak", "clumsy", "poor", "disappointing", "bland", "forgettable",
)
INTENSIFIERS = ("very", "really", "extremely", "quite", "truly", "remarkably", "rather", "so")
VERBS = ("was", "is", "felt", "seemed")
# Sentiment-free clauses that add common words to both classes.
NEUTRAL = (
    "it runs about two hours",
    "i saw it on a sunday",
    "the story is set in a small town",
    "it was released last year",
    "my friend picked it",
    "there are three main characters",
    "it is based on a novel",
    "the theater was half full",
)


def load_synthetic_sentiment(num_examples=2000, seed=0, validation_fraction=0.1, test_fraction=0.1):
    """Generates a seeded, balanced set of sentiment-like sentences; they are not real reviews.

    Each sentence is built from templates: "<subject> <verb> [intensifier]
    [not] <adjective>", where "not" flips the polarity of the adjective, so
    "not good" is negative and "not bad" is positive. About a third of the
    sentences are mixed: two judged clauses of opposite polarity joined by
    "but", and the label is the polarity of the clause after "but". Neutral
    clauses (no sentiment) are added to some sentences. Every class therefore
    uses every word, and a bag of words cannot separate the classes; word
    order (negation, "but") decides the label. The label follows the rules
    exactly: there is no label noise.

    Args:
        num_examples: total number of sentences (half of each class).
        seed: seed of the generator and of the splits.
        validation_fraction: share held out for validation (stratified).
        test_fraction: share held out for test (stratified).

    Returns:
        `DataSplits` with modality "text", class names ["negative", "positive"].

    Example:
    >>> splits = load_synthetic_sentiment(num_examples=200, seed=0)
    >>> splits.class_names
    ['negative', 'positive']
    """
    if num_examples < 10:
        raise ValueError(f"num_examples must be at least 10, got {num_examples}")
    rng = np.random.default_rng(seed)
    labels = np.arange(num_examples) % 2
    rng.shuffle(labels)
    texts = np.array([_sentence(int(label), rng) for label in labels], dtype=object)
    description = (
        f"synthetic sentiment: {num_examples} generated sentiment-like sentences (not real reviews) "
        f"with negation, intensifiers, 'but' clauses and neutral clauses; seed {seed}"
    )
    return splits_from_arrays(
        texts, labels.astype("int64"), CLASS_NAMES, "text", description, validation_fraction, test_fraction, seed
    )


def _clause(polarity, rng, subject=None):
    """One judged clause whose sentiment is `polarity` (1 positive, 0 negative)."""
    negated = rng.random() < 0.35
    # With "not", the adjective has the opposite polarity of the clause.
    adjective_positive = polarity != negated
    adjective = rng.choice(POSITIVE if adjective_positive else NEGATIVE)
    words = [subject or rng.choice(SUBJECTS), rng.choice(VERBS)]
    if negated:
        words.append("not")
    if rng.random() < 0.4:
        words.append(rng.choice(INTENSIFIERS))
    words.append(adjective)
    return " ".join(words)


def _sentence(label, rng):
    if rng.random() < 0.35:
        # Mixed polarity: the clause after "but" carries the verdict.
        clauses = [_clause(1 - label, rng), "but", _clause(label, rng)]
    else:
        clauses = [_clause(label, rng)]
    sentence = " ".join(clauses)
    if rng.random() < 0.4:
        neutral = rng.choice(NEUTRAL)
        sentence = f"{neutral} and {sentence}" if rng.random() < 0.5 else f"{sentence} , {neutral}"
    return sentence
