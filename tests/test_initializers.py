"""Initializers against the original release's initial weights."""

import keras
import numpy as np
import pytest

from leaf_audio import initializers
from leaf_audio import melfilters


def test_gabor_init_parameters_match_original(reference):
  init = initializers.GaborInit(sample_rate=16000, min_freq=60., max_freq=7800.)
  np.testing.assert_allclose(
      init((40, 2)).numpy(), reference['gabor_init_16k'], rtol=1e-6, atol=1e-6)


def test_gabor_init_time_domain_kernel_matches_original(reference):
  init = initializers.GaborInit(sample_rate=16000, min_freq=60., max_freq=7800.)
  kernel = init((401, 1, 80)).numpy()
  np.testing.assert_allclose(
      kernel, reference['tfbanks_init_conv_kernel'], atol=1e-6)


def test_gabor_init_time_domain_kernel_interleaves_real_and_imag():
  init = initializers.GaborInit(sample_rate=16000, min_freq=60., max_freq=7800.)
  kernel = init((401, 1, 8)).numpy()[:, 0, :]
  filters = melfilters.gabor_time_domain_filters(4, 401, 16000, 60., 7800.)
  np.testing.assert_allclose(kernel[:, 0::2], filters.real.T, atol=1e-7)
  np.testing.assert_allclose(kernel[:, 1::2], filters.imag.T, atol=1e-7)


def test_sinc_init_matches_original(reference):
  np.testing.assert_allclose(
      initializers.SincInit()((40, 2)).numpy(),
      reference['sincnet_init_kernel'], rtol=1e-6)


def test_sinc_init_tiles_the_band_in_equal_mel_steps():
  kernel = initializers.SincInit(sample_rate=8000)((10, 2)).numpy()
  edges = np.append(kernel[:, 0], kernel[-1, 0] + kernel[-1, 1])
  np.testing.assert_allclose(edges[[0, -1]], [50., 4000. - 100.], rtol=1e-5)
  np.testing.assert_allclose(np.diff(melfilters.hz_to_mel(edges)),
                             np.diff(melfilters.hz_to_mel(edges))[0],
                             rtol=1e-4)


def test_lowpass_and_preemp_init_match_original(reference):
  np.testing.assert_allclose(
      initializers.LowpassInit()((1, 401, 1, 1)).numpy(),
      reference['tfbanks_init_lowpass_kernel'], atol=1e-7)
  np.testing.assert_allclose(
      initializers.PreempInit()((2, 1, 1)).numpy(),
      reference['leaf_custom_init_preemp_kernel'], atol=1e-7)


def test_lowpass_init_fills_every_channel_of_a_conv1d_kernel():
  kernel = initializers.LowpassInit(window_len=None)((25, 1, 3)).numpy()
  for channel in range(3):
    np.testing.assert_allclose(kernel[:, 0, channel], kernel[:, 0, 0])


@pytest.mark.parametrize('init, shape, match', [
    (initializers.PreempInit(), (3, 1, 1), r'\(2, 1, 1\)'),
    (initializers.GaborInit(), (40, 3), r'\[n_filters, 2\]'),
    (initializers.SincInit(), (40,), r'\[n_filters, 2\]'),
    (initializers.LowpassInit(), (1, 400, 1, 1), '401 samples.*400 taps'),
])
def test_wrong_shapes_are_rejected(init, shape, match):
  with pytest.raises(ValueError, match=match):
    init(shape)


def test_invalid_arguments_are_rejected():
  with pytest.raises(ValueError, match='Nyquist'):
    initializers.GaborInit(sample_rate=8000, max_freq=7800.)
  with pytest.raises(ValueError, match='window_type'):
    initializers.LowpassInit(window_type='triangle')
  with pytest.raises(ValueError, match='min_low_hz'):
    initializers.SincInit(sample_rate=200, min_low_hz=50, min_band_hz=50)


@pytest.mark.parametrize('init', [
    initializers.PreempInit(alpha=0.9),
    initializers.GaborInit(sample_rate=24000, min_freq=60., max_freq=7800.),
    initializers.SincInit(sample_rate=22050, min_low_hz=30.),
    initializers.LowpassInit(sample_rate=8000, window_len=32.,
                             window_type='hamming'),
])
def test_initializers_round_trip_through_keras_serialization(init):
  restored = keras.initializers.deserialize(keras.initializers.serialize(init))
  assert type(restored) is type(init)
  assert restored.get_config() == init.get_config()
