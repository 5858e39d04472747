"""The BERT text classifier (keras-hub), from a preset or from scratch: its builder, tokenizer support and entry.

Keras and keras-hub are imported inside the functions so that the registry
(and `--help`) loads without TensorFlow.

A little over 300 lines: everything the rest of the code must know about BERT (builder,
preset loading, WordPiece vocabulary, token features, tokenizer files) lives in its file.
"""

import json
import os
import shutil

import numpy as np

from kerasdl.models.registry import TextSupport, call_builder, register_model
from kerasdl.search_space import Float, Int

# The special tokens BertTokenizer requires, in the order keras-hub reserves them.
RESERVED_TOKENS = ["[PAD]", "[CLS]", "[SEP]", "[UNK]", "[MASK]"]

# The inputs of the backbone, as the ONNX export names them.
TOKEN_INPUTS = ("token_ids", "segment_ids", "padding_mask")


def bert(
    num_classes,
    preset=None,
    vocabulary=None,
    sequence_length=128,
    num_layers=2,
    num_heads=2,
    hidden_dim=128,
    intermediate_dim=512,
    dropout_rate=0.1,
    lowercase=True,
):
    """Builds a `keras_hub.models.BertTextClassifier` that returns logits, with its preprocessor attached.

    With a `preset` (a keras-hub preset name such as `"bert_tiny_en_uncased"`
    or a local preset directory) the backbone, tokenizer and preprocessor come
    from the preset. A preset directory written by `save_to_preset` of a
    `BertTextClassifier` with the same `num_classes` also brings its trained
    head back; otherwise the head is new. Without a preset the model is built
    from scratch: a `BertTokenizer` on `vocabulary` (see
    `build_wordpiece_vocabulary`) and a `BertBackbone` of the given size.

    The classifier's `fit`/`predict`/`evaluate` take raw strings `[batch]`: the
    attached preprocessor (`classifier.preprocessor`) tokenizes them inside the
    input pipeline. Calling the model itself, `classifier(features)`, takes the
    token features `{"token_ids", "segment_ids", "padding_mask"}`
    (`[batch, sequence_length]`), which is the part ONNX export converts; see
    `bert_token_model`.

    Args:
        num_classes: number of output classes.
        preset: None (from scratch), a keras-hub preset name or a local preset directory.
        vocabulary: WordPiece tokens (from scratch only), starting with the
            reserved tokens `[PAD] [CLS] [SEP] [UNK] [MASK]`.
        sequence_length: tokens per text, `[CLS]` and `[SEP]` included (at most the
            preset backbone's `max_sequence_length`).
        num_layers: transformer layers (from scratch only).
        num_heads: attention heads (from scratch only).
        hidden_dim: hidden width (from scratch only).
        intermediate_dim: feed-forward width (from scratch only).
        dropout_rate: dropout in the backbone (from scratch) and before the logits.
        lowercase: lowercase texts before tokenizing (from scratch only; a preset
            brings its own setting).

    Example:
    >>> vocabulary = build_wordpiece_vocabulary(["a good film", "a bad film"], vocabulary_size=100)
    >>> classifier = bert(num_classes=2, vocabulary=vocabulary, sequence_length=16, hidden_dim=32)
    >>> classifier.predict(numpy.array(["a good film"], dtype=object), verbose=0).shape
    (1, 2)
    """
    import keras_hub

    if preset is not None:
        classifier = _from_preset(keras_hub, preset, num_classes, dropout_rate)
        # The position embedding has max_sequence_length rows, so longer inputs cannot fit:
        # a preset trained with short sequences keeps its own limit.
        longest = classifier.backbone.max_sequence_length
        classifier.preprocessor.sequence_length = min(sequence_length, longest)
        return classifier

    if not vocabulary:
        raise ValueError(
            "bert without a preset needs a WordPiece vocabulary; build it with build_wordpiece_vocabulary(training texts)"
        )
    vocabulary = [str(token) for token in vocabulary]
    missing = [token for token in RESERVED_TOKENS if token not in vocabulary]
    if missing:
        raise ValueError(f"the bert vocabulary lacks the reserved tokens {missing}; build it with build_wordpiece_vocabulary")

    # Layers.
    tokenizer = keras_hub.models.BertTokenizer(vocabulary=vocabulary, lowercase=lowercase, name="bert_tokenizer")
    preprocessor = keras_hub.models.BertTextClassifierPreprocessor(
        tokenizer, sequence_length=sequence_length, name="bert_preprocessor"
    )
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=len(vocabulary),
        num_layers=num_layers,
        num_heads=num_heads,
        hidden_dim=hidden_dim,
        intermediate_dim=intermediate_dim,
        dropout=dropout_rate,
        max_sequence_length=sequence_length,
        name="bert_backbone",
    )

    # Functional model (keras-hub builds it: backbone pooled output, dropout, Dense "logits").
    return keras_hub.models.BertTextClassifier(
        backbone, num_classes=num_classes, preprocessor=preprocessor, activation=None, dropout=dropout_rate, name="bert"
    )


def bert_token_model(classifier):
    """Returns a plain functional model: int64 token features in, logits out, with no preprocessor attached.

    Its inputs are `token_ids`, `segment_ids` and `padding_mask` (int64
    `[batch, sequence_length]`, the padding mask as 0/1), as the ONNX contract
    asks; they are cast to the backbone's own input dtypes (int32) inside. It
    shares the classifier's weights. This is what an ONNX export converts; the
    tokenizer goes beside it (`save_bert_tokenizer`). Plain `classifier.predict`
    would run the string preprocessor on such features, this model does not.

    Args:
        classifier: a `BertTextClassifier` built by `bert` (or loaded from `.keras`).

    Example:
    >>> token_model = bert_token_model(classifier)
    >>> sorted(token_model.input)
    ['padding_mask', 'segment_ids', 'token_ids']
    """
    import keras

    backbone_inputs = classifier.backbone.input
    inputs = {name: keras.Input(shape=(None,), dtype="int64", name=name) for name in TOKEN_INPUTS}
    features = {name: keras.ops.cast(inputs[name], backbone_inputs[name].dtype) for name in TOKEN_INPUTS}
    logits = classifier(features)
    token_model = keras.Model(inputs, logits, name=f"{classifier.name}_token_ids")
    # `Model.export` refuses a model that was never called, so call it once on
    # a tiny padding-only batch.
    token_model({name: np.zeros((1, 2), dtype="int64") for name in TOKEN_INPUTS})
    return token_model


def save_bert_tokenizer(classifier, directory):
    """Writes the classifier's tokenizer to `directory`: `vocabulary.txt` (one token a line) and `tokenizer.json`.

    `tokenizer.json` holds what a client needs to reproduce the preprocessor:
    the lowercase flag, the sequence length and the special tokens with their ids.

    Args:
        classifier: a `BertTextClassifier` with its preprocessor.
        directory: the folder to write into (created if missing).

    Returns:
        The paths written, `(vocabulary_path, tokenizer_json_path)`.
    """
    preprocessor = classifier.preprocessor
    tokenizer = preprocessor.tokenizer
    os.makedirs(directory, exist_ok=True)
    tokenizer.save_assets(directory)
    vocabulary_path = os.path.join(directory, "vocabulary.txt")
    description = {
        "type": "bert_wordpiece",
        "vocabulary_file": "vocabulary.txt",
        "lowercase": bool(tokenizer.lowercase),
        "strip_accents": bool(getattr(tokenizer, "strip_accents", False)),
        "sequence_length": int(preprocessor.sequence_length),
        "special_tokens": {token: int(tokenizer.token_to_id(token)) for token in RESERVED_TOKENS},
        "inputs": list(TOKEN_INPUTS),
    }
    json_path = os.path.join(directory, "tokenizer.json")
    with open(json_path, "w") as handle:
        json.dump(description, handle, indent=2)
    return vocabulary_path, json_path


def build_wordpiece_vocabulary(texts, vocabulary_size=8000, lowercase=True):
    """Trains a WordPiece vocabulary on `texts` with `keras_hub.tokenizers.compute_word_piece_vocabulary`.

    Args:
        texts: the training texts (a list or array of strings).
        vocabulary_size: the largest vocabulary, reserved tokens included.
        lowercase: lowercase before counting; use the same value for `bert`.

    Returns:
        A list of tokens starting with `[PAD] [CLS] [SEP] [UNK] [MASK]`.

    Example:
    >>> build_wordpiece_vocabulary(["a good film", "a bad film"], vocabulary_size=100)[:5]
    ['[PAD]', '[CLS]', '[SEP]', '[UNK]', '[MASK]']
    """
    import keras_hub
    import tensorflow as tf

    texts = [str(text) for text in texts]
    if not texts:
        raise ValueError("cannot build a WordPiece vocabulary from no texts")
    dataset = tf.data.Dataset.from_tensor_slices(texts).batch(1000)
    vocabulary = keras_hub.tokenizers.compute_word_piece_vocabulary(
        dataset, vocabulary_size=vocabulary_size, lowercase=lowercase, reserved_tokens=list(RESERVED_TOKENS)
    )
    return [str(token) for token in vocabulary]


def _from_preset(keras_hub, preset, num_classes, dropout_rate):
    """Loads a BertTextClassifier from a preset, failing with one line when it cannot be had."""
    preset = os.fspath(preset)
    looks_like_path = os.sep in preset or preset.startswith(".") or os.path.exists(preset)
    if looks_like_path and not os.path.isdir(preset):
        raise ValueError(f"bert preset directory {preset!r} not found; pass a folder written by save_to_preset, or a preset name")
    arguments = {"num_classes": num_classes, "activation": None, "dropout": dropout_rate}
    if looks_like_path and _saved_classifier_classes(preset) == num_classes:
        # keras-hub restores a task's own head only when `num_classes` is not
        # passed; with it, the head is new (the fine-tuning case).
        del arguments["num_classes"]
    try:
        return keras_hub.models.BertTextClassifier.from_preset(preset, **arguments)
    except (OSError, ConnectionError) as error:  # requests' ConnectionError is an OSError.
        if looks_like_path:
            raise ValueError(f"cannot read bert preset directory {preset!r}: {error}") from None
        raise ValueError(
            f"cannot download the keras-hub preset {preset!r} (offline?); download it on a connected machine "
            f"(keras_hub.models.BertTextClassifier.from_preset({preset!r}, num_classes={num_classes}).save_to_preset(dir)) "
            f"and pass --preset /local/dir, or train from scratch without --preset"
        ) from None
    except ValueError as error:
        if "Unknown preset identifier" in str(error):
            raise ValueError(
                f"unknown bert preset {preset!r}; pass a keras-hub preset name such as 'bert_tiny_en_uncased' "
                f"or a local preset directory, or train from scratch without --preset"
            ) from None
        raise


def _saved_classifier_classes(directory):
    """Returns `num_classes` of a BertTextClassifier saved in a preset directory, or None."""
    path = os.path.join(directory, "task.json")
    if not os.path.isfile(path):
        return None
    with open(path) as handle:
        task = json.load(handle)
    if task.get("class_name") != "BertTextClassifier":
        return None
    return task.get("config", {}).get("num_classes")


def bert_token_features(classifier, texts):
    """Returns the attached preprocessor's token features of `texts` as int64 arrays (for tokenizer parity).

    The preprocessor runs inside a tf.data map, as in training and in the SavedModel:
    keras-hub tokenizes eager calls with a pure-Python path that differs from its
    TensorFlow graph on rare input (a NUL, some combining marks), and the graph is
    what the exported tokenizer must match.
    """
    import tensorflow as tf

    texts = np.asarray(list(texts), dtype=object)
    dataset = tf.data.Dataset.from_tensor_slices(texts).batch(max(1, len(texts))).map(classifier.preprocessor)
    features = next(iter(dataset))
    return {name: np.asarray(features[name]).astype("int64") for name in TOKEN_INPUTS}


def write_wordpiece_tokenizer(classifier, folder):
    """Writes the TensorFlow-free WordPiece tokenizer (`kerasdl.tokenizer`) equal to the classifier's preprocessor."""
    from kerasdl.tokenizer import WordPieceTokenizer, write_tokenizer_files

    preprocessor = classifier.preprocessor
    tokenizer = preprocessor.tokenizer
    python_tokenizer = WordPieceTokenizer(
        tokenizer.get_vocabulary(),
        sequence_length=preprocessor.sequence_length,
        lowercase=bool(getattr(tokenizer, "lowercase", True)),
        strip_accents=bool(getattr(tokenizer, "strip_accents", False)),
        split_on_cjk=bool(getattr(tokenizer, "split_on_cjk", True)),
        suffix_indicator=getattr(tokenizer, "suffix_indicator", "##"),
        cls_token=getattr(tokenizer, "cls_token", "[CLS]"),
        sep_token=getattr(tokenizer, "sep_token", "[SEP]"),
        pad_token=getattr(tokenizer, "pad_token", "[PAD]"),
        unknown_token=getattr(tokenizer, "oov_token", None) or getattr(tokenizer, "unk_token", "[UNK]"),
    )
    return write_tokenizer_files(folder, python_tokenizer)


def _strings_to_logits(classifier):
    # Calling a keras-hub task takes token features; its preprocessor makes them from strings.
    def call(texts):
        return classifier(classifier.preprocessor(texts), training=False)

    return call


def save_preset(classifier, run_dir):
    """Writes `run_dir/preset/` with `save_to_preset`, atomically, so a trained BERT reloads with `--preset`."""
    folder = os.path.join(run_dir, "preset")
    temporary = folder + ".tmp"
    shutil.rmtree(temporary, ignore_errors=True)
    classifier.save_to_preset(temporary)
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(temporary, folder)


# Transformers train best with warmup then linear decay (as BERT was trained), and
# a smaller peak rate than the small CNNs use. Twelve attention and layer-norm
# blocks drift more than the small models between kernels, hence tolerances ten
# times the formats' defaults.
@register_model(
    "bert",
    modalities=("text",),
    builders=(bert, build_wordpiece_vocabulary),
    defaults={"train.lr_schedule": "linear", "train.learning_rate": 5e-4, "train.weight_decay": 0.01},
    text=TextSupport(
        tokenizer="bert",
        token_model=bert_token_model,
        token_features=bert_token_features,
        write_tokenizer=write_wordpiece_tokenizer,
        raw_call=_strings_to_logits,
    ),
    tolerances={"savedmodel": 1e-4, "onnx": 1e-3, "litert": 1e-3},
    # TensorFlow: benchmarks/backends.py --quick (BERT-Tiny's shape, 64 tokens, 1,000 SST-2
    # sentences, batch 64, spe=16, best steady epoch) finds no steady winner in wall time (JAX
    # 0.67x, 2.1x and 1.05x TensorFlow's examples/s in three runs on a shared 2-core CPU), while
    # TensorFlow takes less CPU per example every time (7.6 against 8.6 ms in results/8-backends.json)
    # and compiles its first epoch sooner; test accuracy 0.513 against 0.514.
    backend="tensorflow",
    save_extras=save_preset,
    search_space={
        "train.learning_rate": Float(1e-4, 1e-3, log=True, reason="from-scratch transformers diverge above ~1e-3 and crawl below 1e-4; 5e-4 is the default"),
        "model.num_layers": Int(1, 4, reason="2 layers is the default; small sets rarely use more, larger ones may"),
        "model.dropout_rate": Float(0.0, 0.3, step=0.1, reason="BERT's 0.1; a small set from scratch may want more"),
    },
)
def build_from_data(facts, **options):
    """The `bert` entry: a WordPiece vocabulary from the training texts unless a preset brings its own."""
    vocabulary = None
    if not options.get("preset"):
        vocabulary = call_builder(build_wordpiece_vocabulary, options, texts=facts.train_texts)
    return call_builder(bert, options, num_classes=facts.num_classes, vocabulary=vocabulary)
