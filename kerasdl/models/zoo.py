"""The registry entries behind `python -m training.run <name>`.

Each entry fills a builder's data-dependent arguments (input shape, class count,
normalization statistics, vocabulary) from `DataFacts`; every other keyword comes
from the `model.*` config keys, which are the builders' own keyword arguments.
"""

import dataclasses
import inspect

from kerasdl.models.cnn import cnn as build_cnn
from kerasdl.models.mlp import mlp as build_mlp
from kerasdl.models.registry import register

# Builder arguments that the data provides; they are not config keys.
DATA_ARGUMENTS = frozenset({"input_shape", "num_classes", "normalization_mean", "normalization_variance", "vocabulary", "name"})


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
    accepted = inspect.signature(builder).parameters
    arguments = {key: value for key, value in options.items() if key in accepted}
    return builder(**data_arguments, **arguments)


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
