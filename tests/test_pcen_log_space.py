"""PCEN learned in log space: same function, parameters valid by construction.

The last tests train PCEN for 200 steps at 100 times the default learning
rate (Adam at 1e-2 instead of common.gin's 1e-4) on LEAF filterbank energies
of loud and quiet tones: the original release's linear parameterisation
leaves its valid range within a few steps, the log one never does.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from leaf_audio import compression
from leaf_audio import grouped_filterbank
from leaf_audio import logtbn

SPCEN = dict(alpha=0.96, smooth_coef=0.04, delta=2.0, root=2.0, floor=1e-12,
             trainable=True, learn_smooth_coef=True,
             per_channel_smooth_coef=True)


def energies(seed=0, shape=(2, 50, 6)):
  return np.maximum(np.random.default_rng(seed).random(shape)**4 * 10,
                    1e-5).astype(np.float32)


def test_log_space_computes_the_same_pcen():
  x = tf.constant(energies())
  linear = compression.PCENCompression(**SPCEN)
  log = compression.PCENCompression(**SPCEN, parameterization='log')
  np.testing.assert_allclose(log(x), linear(x), rtol=1e-5, atol=1e-6)
  assert sorted(w.name for w in log.trainable_weights) == [
      'log_alpha', 'log_delta', 'log_root', 'log_smooth']
  assert sum(int(np.prod(w.shape)) for w in log.trainable_weights) == 24
  parameters = log.effective_parameters()
  np.testing.assert_allclose(parameters['alpha'], 0.96, rtol=1e-6)
  np.testing.assert_allclose(parameters['smooth'], 0.04, rtol=1e-6)


def test_log_space_parameters_stay_in_range():
  x = tf.constant(energies(1))
  layer = compression.PCENCompression(**SPCEN, parameterization='log')
  layer(x)
  # Whatever the variables hold, the forward pass uses valid values ...
  layer.log_alpha.assign(np.full(6, 2.))
  layer.log_root.assign(np.full(6, -3.))
  layer.ema.log_smooth.assign(np.full(6, 1.))
  layer.log_delta.assign(np.full(6, -40.))
  parameters = {k: v.numpy() for k, v in layer.effective_parameters().items()}
  np.testing.assert_allclose(parameters['alpha'], 1.)
  np.testing.assert_allclose(parameters['root'], 1.)
  np.testing.assert_allclose(parameters['smooth'], 1.)
  np.testing.assert_allclose(parameters['delta'], 1e-6, rtol=1e-5)
  assert np.isfinite(layer(x).numpy()).all()
  # ... and the optimizer's constraints put the variables back in range.
  for variable in layer.trainable_weights:
    variable.assign(variable.constraint(variable))
  assert (layer.log_alpha.numpy() <= 0).all()
  assert (layer.log_root.numpy() >= 0).all()
  assert (layer.ema.log_smooth.numpy() <= 0).all()


def test_log_space_arguments_and_config():
  with pytest.raises(ValueError, match="'linear' or 'log'"):
    compression.PCENCompression(parameterization='cubic')
  with pytest.raises(ValueError, match='smooth_coef'):
    compression.PCENCompression(smooth_coef=0., parameterization='log')
  layer = compression.PCENCompression(**SPCEN, parameterization='log')
  x = tf.constant(energies(2))
  layer(x)
  restored = keras.layers.deserialize(keras.layers.serialize(layer))
  restored(x)
  restored.set_weights(layer.get_weights())
  np.testing.assert_array_equal(restored(x), layer(x))
  assert restored.get_config()['parameterization'] == 'log'


@pytest.fixture(scope='module')
def tone_energies():
  """20 batches of LEAF energies [8, 50, 40] of tones, labels 0 (low), 1."""
  rng = np.random.default_rng(0)
  t = np.arange(8000) / 16000
  bank = grouped_filterbank.GroupedGaborFilterbank(40, 401, 160)
  batches = []
  for _ in range(20):
    labels = rng.integers(0, 2, 8)
    hz = np.where(labels == 1, rng.uniform(2000, 3000, 8),
                  rng.uniform(200, 300, 8))
    gain = 10**rng.uniform(-3, 0, 8)  # -60 to 0 dB
    audio = (gain[:, None] * np.sin(2 * np.pi * hz[:, None] * t) +
             1e-3 * rng.standard_normal((8, t.size))).astype(np.float32)
    pooled = tf.maximum(bank(tf.constant(audio)[:, :, tf.newaxis]), 1e-5)
    batches.append((pooled, tf.constant(labels, tf.int32)))
  return batches


def train_fast(compression_layer, batches, check, steps=200):
  """Adam at 1e-2; returns check(layer) and the loss after every step."""
  keras.utils.set_random_seed(0)
  head = keras.layers.Dense(2)
  optimizer = keras.optimizers.Adam(1e-2)
  loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
  compression_layer(batches[0][0])
  head.build((None, 40))
  variables = compression_layer.trainable_weights + head.trainable_weights

  @tf.function
  def step(x, labels):
    with tf.GradientTape() as tape:
      features = tf.reduce_mean(compression_layer(x, training=True), axis=1)
      loss = loss_fn(labels, head(features))
    optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
    return loss

  history = []
  for i in range(steps):
    loss = step(*batches[i % len(batches)])
    history.append((check(compression_layer), float(loss)))
  return history


def linear_in_range(layer):
  return bool((layer.alpha.numpy() > 0).all() and
              (layer.alpha.numpy() <= 1).all() and
              (layer.delta.numpy() > 0).all() and
              (layer.root.numpy() >= 1).all() and
              (layer.ema.smooth.numpy() > 0).all() and
              (layer.ema.smooth.numpy() <= 1).all())


def log_in_range(layer):
  parameters = {k: v.numpy() for k, v in layer.effective_parameters().items()}
  return bool((layer.log_alpha.numpy() <= 0).all() and
              (layer.log_root.numpy() >= 0).all() and
              (layer.ema.log_smooth.numpy() <= 0).all() and
              all(np.isfinite(v).all() for v in parameters.values()) and
              (parameters['delta'] > 0).all() and
              (parameters['smooth'] > 0).all())


def test_original_pcen_leaves_its_valid_range_at_a_high_learning_rate(
    tone_energies):
  original = compression.PCENCompression(**SPCEN, min_delta=None)
  history = train_fast(original, tone_energies, linear_in_range)
  in_range = [ok and np.isfinite(loss) for ok, loss in history]
  assert not all(in_range)
  assert in_range.index(False) < 20  # Within the first 20 steps.


def test_log_space_pcen_stays_valid_at_a_high_learning_rate(tone_energies):
  log = compression.PCENCompression(**SPCEN, parameterization='log')
  history = train_fast(log, tone_energies, log_in_range)
  assert all(ok and np.isfinite(loss) for ok, loss in history)
  assert history[-1][1] < history[0][1]  # It still learns.


def test_log_tbn_stays_finite_at_a_high_learning_rate(tone_energies):
  finite = lambda layer: all(
      np.isfinite(w.numpy()).all() for w in layer.weights)
  history = train_fast(logtbn.LogTBN(), tone_energies, finite)
  assert all(ok and np.isfinite(loss) for ok, loss in history)
