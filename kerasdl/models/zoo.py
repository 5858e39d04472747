"""The registry entries behind `python -m training.run <name>`.

Each entry fills a builder's data-dependent arguments (input shape, class count,
normalization statistics, vocabulary) from `DataFacts`; every other keyword comes
from the `model.*` config keys, which are the builders' own keyword arguments.
"""

import dataclasses
import inspect

from kerasdl.models.bert import bert as build_bert
from kerasdl.models.bert import build_wordpiece_vocabulary
from kerasdl.models.cnn import cnn as build_cnn
from kerasdl.models.lstm import lstm as build_lstm
from kerasdl.models.mlp import mlp as build_mlp
from kerasdl.models.registry import register
from kerasdl.models.resnet50 import resnet50 as build_resnet50
from kerasdl.models.resnet50 import set_trainable_blocks
from kerasdl.models.text_lstm import build_text_vocabulary, text_lstm as build_text_lstm

# Builder arguments that the data provides; they are not config keys.
DATA_ARGUMENTS = frozenset({"input_shape", "num_classes", "normalization_mean", "normalization_variance", "vocabulary", "texts", "name"})


@dataclasses.dataclass
class DataFacts:
    """What the training data tells a builder."""

    modality: str
    input_shape: tuple
    num_classes: int
    normalization_mean: object = None
    normalization_variance: object = None
    train_texts: object = None


def _call(builder, facts, options, **data_arguments):
    return builder(**data_arguments, **_accepted(builder, options))


def _numeric(builder, facts, options):
    return _call(
        builder, facts, options, input_shape=facts.input_shape, num_classes=facts.num_classes,
        normalization_mean=facts.normalization_mean, normalization_variance=facts.normalization_variance,
    )


@register(modalities=("features", "image"), builders=(build_mlp,))
def mlp(facts, **options):
    return _numeric(build_mlp, facts, options)


@register(modalities=("image",), builders=(build_cnn,))
def cnn(facts, **options):
    return _numeric(build_cnn, facts, options)


# The built-in digits are 8x8 grey; ResNet50 needs at least 32x32x3, so they are resized
# to that minimum rather than to ImageNet's 224, which would cost 49x the compute.
@register(
    modalities=("image",),
    builders=(build_resnet50,),
    default_data={"data.image_size": [32, 32], "data.channels": 3, "model.image_size": 32},
)
def resnet50(facts, **options):
    # ResNet50 brings its own ImageNet preprocessing (inside the model), so no statistics.
    model = _call(build_resnet50, facts, options, input_shape=facts.input_shape, num_classes=facts.num_classes)
    # Phase 1 trains the new head on the frozen base.
    set_trainable_blocks(model, 0)
    return model


resnet50.set_trainable_blocks = set_trainable_blocks


@register(modalities=("sequence", "text"), builders=(build_lstm, build_text_lstm, build_text_vocabulary))
def lstm(facts, **options):
    if facts.modality == "text":
        vocabulary = build_text_vocabulary(facts.train_texts, **_accepted(build_text_vocabulary, options))
        return _call(build_text_lstm, facts, options, num_classes=facts.num_classes, vocabulary=vocabulary)
    return _numeric(build_lstm, facts, options)


# Transformers train best with warmup then linear decay (as BERT was trained), and a
# smaller peak rate than the small CNNs use.
@register(
    modalities=("text",),
    builders=(build_bert, build_wordpiece_vocabulary),
    defaults={"train.lr_schedule": "linear", "train.learning_rate": 5e-4, "train.weight_decay": 0.01},
)
def bert(facts, **options):
    vocabulary = None
    if not options.get("preset"):
        vocabulary = build_wordpiece_vocabulary(facts.train_texts, **_accepted(build_wordpiece_vocabulary, options))
    return _call(build_bert, facts, options, num_classes=facts.num_classes, vocabulary=vocabulary)


def _accepted(function, options):
    parameters = inspect.signature(function).parameters
    return {key: value for key, value in options.items() if key in parameters}
