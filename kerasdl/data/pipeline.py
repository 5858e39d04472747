"""The input pipeline: decode, cache, shuffle, batch, augment, prefetch (tf.data), and the
in-memory feed that the JAX backend trains from (`training_input`)."""

import numpy as np

from kerasdl.config import DataConfig, TrainConfig


def make_pipeline(
    split, batch_size, training, seed=TrainConfig.seed, augmenter=None, cache=DataConfig.cache, cache_limit_mb=DataConfig.cache_limit_mb,
    shuffle_buffer=DataConfig.shuffle_buffer, drop_remainder=False, tokenizer=None, passes=1,
):
    """Turns a `Split` into a batched, prefetched `tf.data.Dataset`.

    Order, and why:
      1. shuffle references first when the split is streamed and not cached, so that the
         shuffle buffer holds file names, not decoded images;
      2. decode in parallel (`num_parallel_calls=AUTOTUNE`, deterministic order for repeatable runs);
      3. cache decoded examples when they fit (`cache_limit_mb`), so later epochs skip decoding;
      4. shuffle (training only, seeded, reshuffled every epoch), then repeat `passes`
         times (each pass shuffled anew), so that a small split's epoch holds enough steps;
      5. batch, then augment whole batches (vectorized Keras preprocessing layers, training only);
      6. prefetch, so the next batch is ready while the model trains.

    Args:
        split: a `kerasdl.data.Split`.
        batch_size: examples per batch.
        training: shuffle and augment (True for the training split only).
        seed: the shuffle seed.
        augmenter: a Keras layer applied to training batches, or None.
        cache: allow caching decoded examples.
        cache_limit_mb: the largest decoded split that is cached.
        shuffle_buffer: the shuffle buffer size (capped at the split size).
        drop_remainder: drop a last partial batch (multi-worker training splits every
            global batch evenly across workers).
        tokenizer: a layer mapping a batch of strings to token ids (e.g. the model's own
            TextVectorization), applied in the pipeline so the model trains on ids.
        passes: passes over the split in one epoch (`kerasdl.optim.passes_per_epoch`).

    Example:
    >>> dataset = make_pipeline(splits.train, batch_size=64, training=True)
    """
    import tensorflow as tf

    dataset = split.dataset
    decoded_bytes = split.decoded_bytes or 0
    use_cache = cache and decoded_bytes <= cache_limit_mb * 2**20
    buffer = max(1, min(shuffle_buffer, split.size))
    if split.decode is not None:
        if training and not use_cache:
            dataset = dataset.shuffle(split.size, seed=seed, reshuffle_each_iteration=True)
        dataset = dataset.map(split.decode, num_parallel_calls=tf.data.AUTOTUNE)
    if use_cache:
        dataset = dataset.cache()
    if training and (use_cache or split.decode is None):
        dataset = dataset.shuffle(buffer, seed=seed, reshuffle_each_iteration=True)
    if passes > 1:
        dataset = dataset.repeat(passes)
    dataset = dataset.batch(batch_size, drop_remainder=drop_remainder)
    if training and augmenter is not None:
        dataset = dataset.map(lambda x, y: (augmenter(x, training=True), y), num_parallel_calls=tf.data.AUTOTUNE)
    if tokenizer is not None:
        dataset = dataset.map(lambda x, y: (tokenizer(x), y), num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.prefetch(tf.data.AUTOTUNE)


class ArrayBatches:
    """A training split held as arrays, which Keras shuffles and batches itself every epoch.

    Why: on the JAX backend, Keras pulls every batch of a tf.data pipeline through eager
    TensorFlow in Python; from arrays it slices numpy directly. On a 784-128-10 MLP at batch 64
    that measured 1.25-1.38x the examples/s of the tf.data feed with the standard callbacks
    (`benchmarks/training_throughput.py`, the "feed" rows), and 105k against 39-45k examples/s
    with neither callbacks nor validation. Keras shuffles with NumPy's global generator, which
    `keras.utils.set_random_seed` seeds, so a run stays repeatable.

    Args:
        x, y: the examples (tokenized already for a text model) and their class ids.
        batch_size: examples per batch.

    Example:
    >>> batches = ArrayBatches(np.zeros((8, 3), np.float32), np.zeros(8, np.int64), batch_size=4)
    >>> sorted(fit_arguments(batches))
    ['batch_size', 'shuffle', 'x', 'y']
    """

    def __init__(self, x, y, batch_size):
        self.x, self.y, self.batch_size = x, y, batch_size

    @property
    def size(self):
        return len(self.y)


def training_input(
    split, batch_size, seed=TrainConfig.seed, augmenter=None, tokenizer=None, passes=1, drop_remainder=False, cache=DataConfig.cache,
    cache_limit_mb=DataConfig.cache_limit_mb, shuffle_buffer=DataConfig.shuffle_buffer, backend=None,
):
    """The training split as `fit` should draw it: `ArrayBatches` where they pay, else `make_pipeline`'s dataset.

    Arrays are used on the JAX backend for a split already in memory (not an image folder),
    without augmentation (it runs in tf.data), not sharded across workers, making one pass per
    epoch, and whose arrays (tokenized) fit in `cache_limit_mb`, the same memory budget as the
    cache. On TensorFlow, Keras would turn arrays back into a tf.data pipeline: no gain.

    One pass only: a small split that repeats within an epoch (`passes` > 1, `train.min_steps`)
    keeps the pipeline, which shuffles each pass on its own. Fed as the split tiled `passes`
    times and shuffled whole, the default LSTM on UCR Coffee (22 series, 145 passes an epoch)
    never left its 0.693 loss plateau within 10 epochs in 3 of 3 seeds, where the pipeline's
    order left it by epoch 5-8 in 3 of 3 (same model, schedule and seeds; the same order through
    either feed gave the same losses), and a Coffee run's test accuracy fell from 0.964 to 0.464.

    Args:
        split, batch_size, seed, augmenter, tokenizer, passes, drop_remainder, cache,
            cache_limit_mb, shuffle_buffer: as for `make_pipeline`.
        backend: the Keras backend to feed; the one loaded by default.

    Example:
    >>> train = training_input(splits.train, 64)
    >>> model.fit(**fit_arguments(train), epochs=3)
    """
    if backend is None:
        import keras

        backend = keras.backend.backend()
    if backend == "jax" and augmenter is None and not drop_remainder and passes == 1 and split.in_memory and split.decode is None:
        arrays = split_arrays(split, tokenizer, cache_limit_mb * 2**20)
        if arrays is not None:
            return ArrayBatches(*arrays, batch_size)
    return make_pipeline(
        split, batch_size, training=True, seed=seed, augmenter=augmenter, cache=cache, cache_limit_mb=cache_limit_mb,
        shuffle_buffer=shuffle_buffer, drop_remainder=drop_remainder, tokenizer=tokenizer, passes=passes,
    )


def split_arrays(split, tokenizer=None, limit_bytes=None, block=1024):
    """Returns an in-memory split's `(x, y)` as numeric arrays, tokenized if asked; None where it cannot.

    None when x is not numeric (strings without a tokenizer), when its examples differ in
    shape, or when the arrays would exceed `limit_bytes` (estimated from the first block
    before the rest is read).

    Example:
    >>> x, y = split_arrays(splits.train)
    """
    import tensorflow as tf

    dataset = split.dataset.batch(block)
    if tokenizer is not None:
        dataset = dataset.map(lambda x, y: (tokenizer(x), y), num_parallel_calls=tf.data.AUTOTUNE)
    xs, ys = [], []
    for x, y in dataset.as_numpy_iterator():
        if not xs:
            if not isinstance(x, np.ndarray) or not (np.issubdtype(x.dtype, np.number) or x.dtype == np.bool_):
                return None
            if limit_bytes is not None and x.nbytes / max(len(x), 1) * split.size > limit_bytes:
                return None
        if xs and x.shape[1:] != xs[0].shape[1:]:
            return None
        xs.append(x)
        ys.append(y)
    if not xs:
        return None
    return np.concatenate(xs), np.concatenate(ys).astype(np.int64)


def fit_arguments(training_data):
    """`model.fit` keyword arguments for what `training_input` returned.

    Example:
    >>> model.fit(**fit_arguments(training_input(splits.train, 64)), epochs=3)
    """
    if isinstance(training_data, ArrayBatches):
        return {"x": training_data.x, "y": training_data.y, "batch_size": training_data.batch_size, "shuffle": True}
    # The pipeline already shuffles (seeded); Keras ignores `shuffle` for datasets.
    return {"x": training_data, "shuffle": False}


def normalization_statistics(split, modality, max_examples=4096):
    """Returns per-feature `(mean, variance)` over the training split, or `(None, None)` for text.

    Statistics are taken over every axis but the last (channels for images, features for
    sequences), from at most `max_examples` examples, which estimates them closely enough
    without decoding a whole large folder twice. All-zero time steps of sequences are
    padding and are left out.

    Example:
    >>> mean, variance = normalization_statistics(splits.train, "image")
    """
    if modality == "text":
        return None, None
    dataset = split.dataset
    if split.decode is not None:
        import tensorflow as tf

        dataset = dataset.map(split.decode, num_parallel_calls=tf.data.AUTOTUNE)
    values = np.concatenate([np.asarray(x) for x, _ in dataset.take(max_examples).batch(512).as_numpy_iterator()])
    values = values.reshape(-1, values.shape[-1]).astype(np.float64)
    if modality == "sequence":
        values = values[np.any(values != 0.0, axis=-1)]
    mean = values.mean(axis=0)
    # A constant feature would divide by zero; variance 1 leaves it merely centred.
    variance = np.where(values.var(axis=0) > 1e-12, values.var(axis=0), 1.0)
    return mean.astype(np.float32), variance.astype(np.float32)


def take_examples(split, count, seed=0):
    """Returns up to `count` raw `(x, y)` examples of a split as arrays (x strings for text)."""
    import tensorflow as tf

    dataset = split.dataset
    if split.decode is not None:
        dataset = dataset.map(split.decode, num_parallel_calls=tf.data.AUTOTUNE)
    xs, ys = [], []
    for x, y in dataset.take(count).as_numpy_iterator():
        xs.append(x.decode("utf-8") if isinstance(x, bytes) else x)
        ys.append(int(y))
    if xs and isinstance(xs[0], str):
        return xs, np.asarray(ys, dtype=np.int64)
    return np.stack(xs) if xs else np.zeros((0,)), np.asarray(ys, dtype=np.int64)
