"""Precise BatchNorm: moving statistics that belong to the current weights.

BatchNormalization keeps exponential moving averages of its batch statistics
(momentum 0.9-0.99). When the layers before it change quickly, as a LEAF
frontend does while it learns its filters and compression, those averages
lag behind the features they normalise, and the inference-mode model scores
far below the training-mode one (issue 17: 0.62 vs 0.96 accuracy on the same
training clips). Following Wu & Johnson ("Rethinking 'Batch' in BatchNorm",
2021), `recompute_batch_norm` replaces the moving statistics of every
BatchNormalization layer with the average of its batch statistics over a
fixed set of training batches, computed with the weights as they are now.
Training calls it before each evaluation and before best/last.keras are
written (`train.precise_batch_norm_batches`).
"""

from typing import Iterable, List

import keras
import tensorflow as tf

from leaf_audio import sublayers


def batch_norm_layers(layer) -> List[keras.layers.BatchNormalization]:
  """Every BatchNormalization layer inside `layer` (itself included), once,
  in attribute order (`leaf_audio.sublayers.within`)."""
  return [inner for inner in sublayers.within(layer)
          if isinstance(inner, keras.layers.BatchNormalization)]


def training_forward(model):
  """A tf.function running `model(audio, training=True)`, for
  `recompute_batch_norm`; keep it to recompute again after more training
  (each new function traces the model again, seconds for LEAF)."""
  return tf.function(lambda audio: model(audio, training=True))


def recompute_batch_norm(model, batches: Iterable, forward=None) -> int:
  """Sets every BatchNorm's moving statistics to the mean over `batches`.

  Each batch goes through the model in training mode with momentum 0, so
  that each layer's moving mean and variance hold that batch's statistics,
  which are then averaged (over batches, equally weighted) and assigned.
  The trainable weights are not touched; layers that are not BatchNorm see
  a training-mode forward pass (dropout is random, but nothing is learned).

  Args:
    model: a built Keras model, called as model(audio, training=True).
    batches: iterable of (audio [batch, samples], label) pairs.
    forward: `training_forward(model)` made earlier, or None for a new one.
      Momentum is 0 whenever it runs here, so a function traced by an
      earlier call computes the same.

  Returns:
    The number of batches used (0 when the model has no BatchNorm, in which
    case nothing is run).
  """
  layers = [layer for layer in batch_norm_layers(model) if layer.trainable]
  if not layers:
    return 0
  momenta = [layer.momentum for layer in layers]
  statistics = [layer.moving_mean for layer in layers] + [
      layer.moving_variance for layer in layers]
  sums = [tf.zeros(v.shape, tf.float32) for v in statistics]
  count = 0
  try:
    for layer in layers:
      layer.momentum = 0.
    forward = forward or training_forward(model)
    for audio, _ in batches:
      forward(audio)
      sums = [total + tf.cast(v.value, tf.float32)
              for total, v in zip(sums, statistics)]
      count += 1
  finally:
    for layer, momentum in zip(layers, momenta):
      layer.momentum = momentum
  if count == 0:
    raise ValueError('recompute_batch_norm: batches is empty; it needs at '
                     'least one training batch.')
  for variable, total in zip(statistics, sums):
    variable.assign(tf.cast(total / count, variable.dtype))
  return count
