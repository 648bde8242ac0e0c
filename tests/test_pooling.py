"""Pooling layers against explicit numpy windows."""

import numpy as np
import pytest
import tensorflow as tf

from leaf_audio import impulse_responses
from leaf_audio import pooling


def numpy_pool(x, windows, stride, padding, reduce=None):
  """Strided windowed sums (or reductions) of x [time, channels], TF padding."""
  k = windows.shape[0]
  n = x.shape[0]
  if padding == 'same':
    frames = -(-n // stride)
    pad = max((frames - 1) * stride + k - n, 0)
    fill = -np.inf if reduce is np.max else 0.
    x = np.pad(x, ((pad // 2, pad - pad // 2), (0, 0)), constant_values=fill)
  else:
    frames = (n - k) // stride + 1
  out = []
  for i in range(frames):
    segment = x[i * stride:i * stride + k]
    out.append(reduce(segment, axis=0) if reduce else (segment *
                                                        windows).sum(axis=0))
  return np.stack(out)


@pytest.mark.parametrize('padding', ['same', 'valid'])
def test_gaussian_lowpass_pooling_matches_numpy(padding):
  x = np.random.default_rng(0).random((2, 1000, 3)).astype(np.float32)
  layer = pooling.GaussianLowpassPooling(kernel_size=101, strides=40,
                                         padding=padding)
  out = layer(x).numpy()
  layer.kernel.assign(np.array([0.1, 0.4, 0.3]).reshape(1, 1, 3, 1))
  out = layer(x).numpy()
  windows = impulse_responses.gaussian_lowpass(layer.kernel, 101).numpy()[0, :,
                                                                           :, 0]
  for b in range(2):
    np.testing.assert_allclose(out[b], numpy_pool(x[b], windows, 40, padding),
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('padding, frames', [('same', 25), ('valid', 23)])
def test_learnable_pooling_honours_padding(padding, frames):
  # The original built its Conv2D with 'valid' whatever `padding` said.
  x = np.random.default_rng(1).random((2, 1000, 3)).astype(np.float32)
  layer = pooling.LearnablePooling1D(kernel_size=101, strides=40,
                                     padding=padding)
  out = layer(x).numpy()
  assert out.shape == (2, frames, 3)
  window = layer.kernel.numpy()[0, :, 0, 0]
  np.testing.assert_allclose(
      window, impulse_responses.squared_hann_window(101), atol=1e-7)
  windows = np.repeat(window[:, None], 3, axis=1)
  for b in range(2):
    np.testing.assert_allclose(out[b], numpy_pool(x[b], windows, 40, padding),
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('padding', ['same', 'valid'])
def test_max_pooling_matches_numpy(padding):
  x = np.random.default_rng(2).standard_normal((1, 1000, 4)).astype(np.float32)
  out = pooling.MaxPooling1D(kernel_size=101, strides=40, padding=padding)(x)
  np.testing.assert_array_equal(
      out.numpy()[0], numpy_pool(x[0], np.ones((101, 4)), 40, padding,
                                 reduce=np.max))


def test_valid_pooling_of_a_too_short_input_is_an_error():
  with pytest.raises(ValueError, match='kernel_size=101'):
    pooling.LearnablePooling1D(kernel_size=101, padding='valid')(
        tf.zeros([1, 50, 2]))


@pytest.mark.parametrize('layer', [
    pooling.GaussianLowpassPooling(kernel_size=31, strides=4, padding='valid'),
    pooling.LearnablePooling1D(kernel_size=31, strides=4),
    pooling.MaxPooling1D(kernel_size=31, strides=4),
])
def test_pooling_round_trips_through_config(layer):
  x = tf.random.uniform([2, 200, 3], seed=4)
  outputs = layer(x)
  restored = type(layer).from_config(layer.get_config())
  restored(x)
  restored.set_weights(layer.get_weights())
  np.testing.assert_array_equal(restored(x), outputs)
  assert layer.compute_output_shape((2, 200, 3)) == tuple(outputs.shape)
