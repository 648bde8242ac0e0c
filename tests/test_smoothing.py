"""The scan-free smoother equals the recurrence it replaces."""

import numpy as np
import pytest
import tensorflow as tf

from leaf_audio import smoothing


def numpy_recurrence(inputs, coeff, initial_state):
  """m[t] = s x[t] + (1 - s) m[t - 1], one frame at a time, in float64."""
  state = initial_state.astype(np.float64)
  outputs = np.empty(inputs.shape, np.float64)
  for t in range(inputs.shape[1]):
    state = coeff * inputs[:, t] + (1. - coeff) * state
    outputs[:, t] = state
  return outputs


@pytest.mark.parametrize('frames', [1, 2, 3, 10, 99, 100, 101, 1000])
@pytest.mark.parametrize('channels', [1, 4])
def test_matches_the_recurrence(frames, channels):
  rng = np.random.default_rng(frames)
  inputs = rng.random((3, frames, 4)).astype(np.float32)
  coeff = rng.uniform(0., 1., channels).astype(np.float32)
  initial = rng.random((3, 4)).astype(np.float32)
  got = smoothing.exponential_smoothing(inputs, coeff, initial)
  np.testing.assert_allclose(got, numpy_recurrence(inputs, coeff, initial),
                             rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize('coeff', [0., 1e-4, 0.5, 1.])
def test_extreme_coefficients_give_exact_values_and_finite_gradients(coeff):
  rng = np.random.default_rng(0)
  inputs = tf.constant(rng.random((2, 300, 3)), tf.float32)
  initial = inputs[:, 0]
  coeffs = tf.constant([coeff] * 3, tf.float32)
  with tf.GradientTape() as tape:
    tape.watch([inputs, coeffs])
    outputs = smoothing.exponential_smoothing(inputs, coeffs, initial)
    loss = tf.reduce_sum(outputs * tf.cos(inputs))
  grads = tape.gradient(loss, [inputs, coeffs])
  np.testing.assert_allclose(
      outputs, numpy_recurrence(inputs.numpy(), coeff, initial.numpy()),
      rtol=1e-5, atol=1e-6)
  for grad in grads:
    assert np.isfinite(grad.numpy()).all()


def test_gradient_matches_finite_differences():
  rng = np.random.default_rng(1)
  inputs = rng.random((1, 50, 2))
  initial = inputs[:, 0]
  coeff = np.array([0.04, 0.3])
  weights = rng.standard_normal(inputs.shape)

  def loss(c):
    return float(np.sum(numpy_recurrence(inputs, c, initial) * weights))

  coeffs = tf.constant(coeff, tf.float64)
  with tf.GradientTape() as tape:
    tape.watch(coeffs)
    value = tf.reduce_sum(smoothing.exponential_smoothing(
        tf.constant(inputs), coeffs, tf.constant(initial)) * weights)
  grad = tape.gradient(value, coeffs).numpy()
  step = 1e-6
  for c in range(2):
    shifted = coeff.copy()
    shifted[c] += step
    numeric = (loss(shifted) - loss(coeff)) / step
    assert abs(grad[c] - numeric) < 1e-4 * max(1., abs(numeric))


def test_ten_minutes_of_frames_are_finite_and_bounded():
  frames = 60000
  inputs = tf.ones([1, frames, 2])
  outputs = smoothing.exponential_smoothing(
      inputs, tf.constant([0.04, 1e-6]), tf.zeros([1, 2]))
  assert outputs.shape == (1, frames, 2)
  values = outputs.numpy()
  assert np.isfinite(values).all() and values.max() <= 1. + 1e-5
  # A constant input of 1 from state 0: m[t] = 1 - (1 - s)^(t + 1).
  t = np.arange(frames)
  np.testing.assert_allclose(values[0, :, 0], 1 - 0.96**(t + 1), atol=1e-5)
  np.testing.assert_allclose(values[0, :, 1], 1 - (1 - 1e-6)**(t + 1),
                             atol=1e-4)
