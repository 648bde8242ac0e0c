"""PCEN and log compression against numpy recursions and closed forms."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from leaf_audio import compression


def numpy_ema(x, coeff):
  """m[t] = c x[t] + (1 - c) m[t-1], m[-1] = x[0]; x [batch, time, channels]."""
  out = np.zeros_like(x)
  state = x[:, 0]
  for t in range(x.shape[1]):
    state = coeff * x[:, t] + (1 - coeff) * state
    out[:, t] = state
  return out


def numpy_pcen(x, alpha, smooth, delta, root, floor):
  m = numpy_ema(x, smooth)
  return (x / (floor + m)**alpha + delta)**(1 / root) - delta**(1 / root)


def energies(seed=0, shape=(2, 50, 6)):
  return np.random.default_rng(seed).random(shape).astype(np.float64)**4 * 10


def test_exponential_moving_average_matches_recursion():
  x = energies()
  coeff = np.linspace(0.01, 0.9, 6)
  ema = compression.ExponentialMovingAverage(coeff_init=0.5, per_channel=True)
  ema.build(x.shape)
  ema.smooth.assign(coeff)
  out = ema(x.astype(np.float32), initial_state=x[:, 0].astype(np.float32))
  np.testing.assert_allclose(out, numpy_ema(x, coeff), rtol=1e-5)


def test_pcen_matches_formula():
  x = energies()
  layer = compression.PCENCompression(alpha=0.8, smooth_coef=0.1, delta=1.5,
                                      root=3.0, floor=1e-6)
  out = layer(x.astype(np.float32)).numpy()
  np.testing.assert_allclose(
      out, numpy_pcen(x, 0.8, 0.1, 1.5, 3.0, 1e-6), rtol=1e-5, atol=1e-6)


def test_pcen_clips_alpha_and_root_in_the_forward_pass():
  x = energies(1)
  layer = compression.PCENCompression(trainable=True)
  layer.build(x.shape)
  layer.alpha.assign(np.full(6, 1.7))
  layer.root.assign(np.full(6, 0.2))
  np.testing.assert_allclose(
      layer(x.astype(np.float32)), numpy_pcen(x, 1.0, 0.04, 2.0, 1.0, 1e-6),
      rtol=1e-5, atol=1e-6)


def train_delta_downhill(min_delta):
  """A few large SGD steps that pull delta below zero."""
  layer = compression.PCENCompression(trainable=True, delta=0.5,
                                      min_delta=min_delta)
  x = tf.constant(energies(2).astype(np.float32))
  layer(x)
  optimizer = keras.optimizers.SGD(learning_rate=10.)
  for _ in range(3):
    with tf.GradientTape() as tape:
      # d loss / d delta = 1 on every channel: delta -> delta - 10 per step.
      loss = tf.reduce_sum(layer.delta)
    optimizer.apply_gradients(
        zip(tape.gradient(loss, [layer.delta]), [layer.delta]))
  return layer, x


def test_pcen_delta_stays_positive_and_outputs_finite():
  layer, x = train_delta_downhill(min_delta=1e-6)
  np.testing.assert_allclose(layer.delta.numpy(), 1e-6)
  assert np.isfinite(layer(x).numpy()).all()


def test_pcen_delta_unconstrained_option_keeps_the_original_behaviour():
  layer, x = train_delta_downhill(min_delta=None)
  assert (layer.delta.numpy() < 0).all()
  assert np.isnan(layer(x).numpy()).any()


def test_pcen_trainable_flags():
  learned = compression.PCENCompression(trainable=True, learn_smooth_coef=True,
                                        per_channel_smooth_coef=True)
  learned.build((None, None, 40))
  assert sum(int(np.prod(v.shape)) for v in learned.trainable_weights) == 160
  fixed = compression.PCENCompression()
  fixed.build((None, None, 40))
  assert not fixed.trainable_weights
  assert fixed.ema.smooth.shape == (1,)


def test_pcen_gradients_are_finite():
  layer = compression.PCENCompression(trainable=True, learn_smooth_coef=True,
                                      per_channel_smooth_coef=True,
                                      floor=1e-12)
  x = tf.constant(np.maximum(energies(3), 1e-5).astype(np.float32))
  with tf.GradientTape() as tape:
    loss = tf.reduce_mean(layer(x)**2)
  grads = tape.gradient(loss, layer.trainable_variables)
  assert len(grads) == 4
  for grad in grads:
    assert np.isfinite(grad.numpy()).all() and np.any(grad.numpy() != 0)


def test_log_compression():
  x = energies(4)
  np.testing.assert_allclose(
      compression.LogCompression(log_offset=1e-3)(x.astype(np.float32)),
      np.log(x + 1e-3), rtol=1e-5, atol=1e-6)
  with pytest.raises(ValueError, match='log_offset'):
    compression.LogCompression(log_offset=0.)


@pytest.mark.parametrize('layer', [
    compression.PCENCompression(alpha=0.9, floor=1e-12, trainable=True,
                                learn_smooth_coef=True,
                                per_channel_smooth_coef=True, min_delta=None),
    compression.LogCompression(log_offset=1e-3),
])
def test_compression_round_trips_through_config(layer):
  x = tf.constant(energies(5).astype(np.float32))
  outputs = layer(x)
  restored = keras.layers.deserialize(keras.layers.serialize(layer))
  restored(x)
  restored.set_weights(layer.get_weights())
  np.testing.assert_array_equal(restored(x), outputs)
  assert restored.get_config() == layer.get_config()
  assert ([v.trainable for v in restored.weights] ==
          [v.trainable for v in layer.weights])
