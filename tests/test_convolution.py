"""Filterbank convolutions against numpy convolutions and closed forms."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from leaf_audio import convolution
from leaf_audio import impulse_responses


def numpy_same_conv(signal, taps):
  """'same' cross-correlation with TF's padding: (k - 1) // 2 zeros on the left."""
  k = len(taps)
  padded = np.pad(signal, ((k - 1) // 2, k - 1 - (k - 1) // 2))
  return np.correlate(padded, taps, mode='valid')


def test_gabor_constraint_bounds():
  constraint = convolution.GaborConstraint(kernel_size=401)
  kernel = tf.constant([[-1., 0.], [4., 1e6], [1., 20.]])
  clipped = constraint(kernel).numpy()
  unit = math.sqrt(2 * math.log(2)) / math.pi
  np.testing.assert_allclose(clipped[:, 0], [0., math.pi, 1.], rtol=1e-6)
  np.testing.assert_allclose(clipped[:, 1], [4 * unit, 401 * unit, 20.],
                             rtol=1e-6)


def test_gabor_constraint_is_serializable():
  # The original's constraint had no get_config, so saving a model failed.
  constraint = convolution.GaborConstraint(kernel_size=769)
  restored = keras.constraints.deserialize(
      keras.constraints.serialize(constraint))
  assert isinstance(restored, convolution.GaborConstraint)
  assert restored.kernel_size == 769


@pytest.mark.parametrize('kernel_size', [401, 26])
def test_gabor_conv_equals_numpy_convolution(kernel_size):
  conv = convolution.GaborConv1D(filters=8, kernel_size=kernel_size)
  signal = np.random.default_rng(1).standard_normal(600).astype(np.float32)
  outputs = conv(signal[None, :, None]).numpy()[0]
  real, imag = impulse_responses.gabor_filters_real_imag(
      conv.kernel.numpy().astype(np.float64), kernel_size)
  for i in range(4):
    np.testing.assert_allclose(
        outputs[:, 2 * i], numpy_same_conv(signal, real.numpy()[i]), atol=1e-5)
    np.testing.assert_allclose(
        outputs[:, 2 * i + 1], numpy_same_conv(signal, imag.numpy()[i]),
        atol=1e-5)


def test_gabor_conv_applies_its_constraint_in_the_forward_pass():
  conv = convolution.GaborConv1D(filters=2, kernel_size=101)
  signal = tf.random.normal([1, 300, 1], seed=0)
  conv(signal)
  conv.kernel.assign([[5., 1e4]])
  clipped = convolution.GaborConv1D(
      filters=2,
      kernel_size=101,
      kernel_initializer=keras.initializers.Constant(
          convolution.GaborConstraint(101)(tf.constant([[5., 1e4]])).numpy()))
  np.testing.assert_allclose(conv(signal), clipped(signal), atol=1e-6)


def test_gabor_conv_sort_filters_orders_by_centre_frequency():
  conv = convolution.GaborConv1D(filters=4, kernel_size=51, sort_filters=True)
  conv.build((None, None, 1))
  conv.kernel.assign([[2.0, 5.], [0.5, 5.]])
  real, _ = conv.impulse_responses()
  expected, _ = impulse_responses.gabor_filters_real_imag([[0.5, 5.], [2.0, 5.]],
                                                          51)
  np.testing.assert_allclose(real, expected, atol=1e-7)


def band_centre_hz(taps, sample_rate):
  spectrum = np.abs(np.fft.rfft(taps, 1 << 15))
  freqs = np.fft.rfftfreq(1 << 15, 1 / sample_rate)
  passband = spectrum > spectrum.max() / 2
  return freqs[passband].mean()


@pytest.mark.parametrize('sample_rate', [16000, 32000, 8000])
def test_sinc_conv_uses_its_sample_rate(sample_rate):
  # Lower edge 50 + 950 = 1000 Hz, upper 1000 + 50 + 950 = 2000 Hz. The
  # original computed the taps at 16 kHz whatever sample_rate said, which puts
  # this band at 2000-4000 Hz for 32 kHz audio.
  conv = convolution.SincConv1D(
      filters=2,
      kernel_size=801,
      sample_rate=sample_rate,
      kernel_initializer=keras.initializers.Constant([[950., 950.]]))
  conv.build((None, None, 1))
  low, high = conv.band_edges_hz()
  np.testing.assert_allclose([low.numpy()[0], high.numpy()[0]], [1000., 2000.])
  taps = conv.impulse_responses().numpy()[:, 0]
  assert band_centre_hz(taps, sample_rate) == pytest.approx(1500., rel=0.03)


def test_sinc_conv_clips_the_upper_edge_at_nyquist():
  conv = convolution.SincConv1D(
      filters=2, kernel_size=101, sample_rate=8000,
      kernel_initializer=keras.initializers.Constant([[3000., 5000.]]))
  conv.build((None, None, 1))
  _, high = conv.band_edges_hz()
  assert high.numpy()[0] == pytest.approx(4000.)


def test_sinc_conv_equals_numpy_convolution_for_even_kernels():
  conv = convolution.SincConv1D(filters=6, kernel_size=552, sample_rate=22050)
  signal = np.random.default_rng(2).standard_normal(1200).astype(np.float32)
  outputs = conv(signal[None, :, None]).numpy()[0]
  assert outputs.shape == (1200, 3)
  taps = conv.impulse_responses().numpy()
  for i in range(3):
    np.testing.assert_allclose(outputs[:, i], numpy_same_conv(signal, taps[:, i]),
                               atol=1e-5)


@pytest.mark.parametrize('layer', [
    convolution.GaborConv1D(filters=8, kernel_size=101, strides=2,
                            padding='valid', use_bias=True, sort_filters=True),
    convolution.SincConv1D(filters=8, kernel_size=101, sample_rate=22050,
                           min_low_hz=30., min_band_hz=20.),
])
def test_convolutions_round_trip_through_config(layer):
  signal = tf.random.normal([2, 500, 1], seed=3)
  outputs = layer(signal)
  restored = type(layer).from_config(layer.get_config())
  restored(signal)
  restored.set_weights(layer.get_weights())
  np.testing.assert_array_equal(restored(signal), outputs)
  assert restored.get_config() == layer.get_config()


@pytest.mark.parametrize('kwargs, match', [
    (dict(filters=7, kernel_size=11), 'even'),
    (dict(filters=0, kernel_size=11), 'filters'),
    (dict(filters=8, kernel_size=0), 'kernel_size'),
    (dict(filters=8, kernel_size=11, padding='causal'), 'padding'),
])
def test_invalid_arguments_are_rejected(kwargs, match):
  with pytest.raises(ValueError, match=match):
    convolution.GaborConv1D(**kwargs)


def test_sinc_conv_rejects_a_low_edge_above_nyquist():
  with pytest.raises(ValueError, match='min_low_hz.*Nyquist'):
    convolution.SincConv1D(filters=8, kernel_size=11, sample_rate=8000,
                           min_low_hz=5000.)


def test_convolutions_want_a_mono_waveform():
  with pytest.raises(ValueError, match=r'\[batch, samples, 1\]'):
    convolution.GaborConv1D(filters=8, kernel_size=11)(tf.zeros([1, 100, 2]))
