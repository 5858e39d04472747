"""Encode speed of the TensorFlow-free tokenizers (`kerasdl.tokenizer`) on real SST-2 sentences.

Texts per second of `encode_batch` on one batch of 1,000 SST-2 sentences
(dev, then test), median of repeated calls, for both tokenizers with
vocabularies built by the project's own builders on 20,000 training sentences.
A third row times WordPiece on the same sentences with "ß" appended, which
sends every text down the hand-written exact path (see `kerasdl.tokenizer`).

    python -m benchmarks.tokenizer_speed

Example:
>>> from benchmarks import tokenizer_speed
>>> [row["case"] for row in tokenizer_speed.run(quick=True)["rows"]]
['text_vectorization', 'wordpiece', 'wordpiece exact path']
"""

import json
import time

from benchmarks import common

BATCH = 1000


def _sentences(split, count):
    with open(common.data_path("sst2", f"{split}.tsv"), encoding="utf-8") as handle:
        next(handle)  # header: label<TAB>sentence
        return [line.rstrip("\n").split("\t", 1)[1] for _, line in zip(range(count), handle)]


def run(quick=False):
    """Returns the benchmark result (`common.result`): one row per tokenizer, in texts/s."""
    from kerasdl.models.bert import build_wordpiece_vocabulary
    from kerasdl.models.recurrent import build_text_vocabulary
    from kerasdl.tokenizer import TextVectorizationTokenizer, WordPieceTokenizer

    started = time.time()
    if common.data_path("sst2") is None:
        return common.result("tokenizer_speed", started, [], [], notes=["../shared/data/sst2 is absent"])
    train = _sentences("train", 2000 if quick else 20000)
    texts = (_sentences("dev", BATCH) + _sentences("test", BATCH))[:BATCH]
    wordpiece = WordPieceTokenizer(build_wordpiece_vocabulary(train, vocabulary_size=8000), sequence_length=128,
                                   strip_accents=False)
    cases = [
        ("text_vectorization", TextVectorizationTokenizer(build_text_vocabulary(train, max_tokens=10000), sequence_length=64), texts),
        ("wordpiece", wordpiece, texts),
        ("wordpiece exact path", wordpiece, [text + " ß" for text in texts]),
    ]
    rows = []
    for case, tokenizer, batch in cases:
        seconds = common.median_time(lambda: tokenizer.encode_batch(batch), repeats=3 if quick else 7)
        rows.append(common.row(case, f"encode_batch of {len(batch)} texts", len(batch) / seconds, "texts/s", None, None))
    return common.result("tokenizer_speed", started, rows, [], notes=[f"batch of {BATCH} SST-2 dev/test sentences"])


if __name__ == "__main__":
    common.quiet_tensorflow()
    print(json.dumps(run(), indent=2))
