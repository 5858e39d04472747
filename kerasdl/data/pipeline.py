"""The tf.data input pipeline: decode, cache, shuffle, batch, augment, prefetch."""

import numpy as np

from kerasdl.config import DataConfig, TrainConfig


def make_pipeline(
    split, batch_size, training, seed=TrainConfig.seed, augmenter=None, cache=DataConfig.cache, cache_limit_mb=DataConfig.cache_limit_mb,
    shuffle_buffer=DataConfig.shuffle_buffer, drop_remainder=False, tokenizer=None,
):
    """Turns a `Split` into a batched, prefetched `tf.data.Dataset`.

    Order, and why:
      1. shuffle references first when the split is streamed and not cached, so that the
         shuffle buffer holds file names, not decoded images;
      2. decode in parallel (`num_parallel_calls=AUTOTUNE`, deterministic order for repeatable runs);
      3. cache decoded examples when they fit (`cache_limit_mb`), so later epochs skip decoding;
      4. shuffle (training only, seeded, reshuffled every epoch);
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
    dataset = dataset.batch(batch_size, drop_remainder=drop_remainder)
    if training and augmenter is not None:
        dataset = dataset.map(lambda x, y: (augmenter(x, training=True), y), num_parallel_calls=tf.data.AUTOTUNE)
    if tokenizer is not None:
        dataset = dataset.map(lambda x, y: (tokenizer(x), y), num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.prefetch(tf.data.AUTOTUNE)


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
