"""Mel scale and mel-to-Gabor mapping against numpy and the original release."""

import numpy as np
import pytest

from leaf_audio import melfilters


def numpy_htk_mel_filterbank(n_filters, n_fft, sample_rate, min_freq,
                             max_freq):
  """Triangles linear in HTK mel, DC bin zeroed: [n_fft // 2 + 1, n_filters]."""
  hz = np.linspace(0, sample_rate / 2, n_fft // 2 + 1)
  mel = 1127 * np.log(1 + hz / 700)
  edges = np.linspace(1127 * np.log(1 + min_freq / 700),
                      1127 * np.log(1 + max_freq / 700), n_filters + 2)
  lower, centre, upper = edges[:-2], edges[1:-1], edges[2:]
  up = (mel[:, None] - lower) / (centre - lower)
  down = (upper - mel[:, None]) / (upper - centre)
  weights = np.maximum(0, np.minimum(up, down))
  weights[0] = 0
  return weights


def test_mel_scale_round_trip_and_known_values():
  hz = np.array([0., 700., 1000., 8000.])
  np.testing.assert_allclose(melfilters.mel_to_hz(melfilters.hz_to_mel(hz)),
                             hz, atol=1e-9)
  assert melfilters.hz_to_mel(700.) == pytest.approx(1127 * np.log(2))
  assert melfilters.hz_to_mel(1000.) == pytest.approx(1000., abs=0.1)


@pytest.mark.parametrize('args', [(40, 512, 16000, 60, 7800),
                                  (64, 1024, 24000, 60, 7800),
                                  (80, 512, 22050, 0, 11025)])
def test_mel_filterbank_matches_numpy(args):
  np.testing.assert_allclose(
      melfilters.mel_filterbank(*args), numpy_htk_mel_filterbank(*args),
      atol=5e-5)  # float32 (TF) against float64 (numpy).


def test_gabor_params_match_original_release(reference):
  params = melfilters.gabor_params_from_mels(
      n_filters=40, sample_rate=16000, min_freq=60, max_freq=7800)
  np.testing.assert_allclose(
      params, reference['gabor_params_from_mels_16k'], rtol=1e-6, atol=1e-6)
  custom = melfilters.gabor_params_from_mels(
      n_filters=64, sample_rate=24000, min_freq=60, max_freq=7800)
  np.testing.assert_allclose(
      custom, reference['leaf_custom_init_gabor_kernel'], rtol=1e-6,
      atol=1e-6)


def test_gabor_params_sit_on_the_mel_filters():
  n_fft, sample_rate = 512, 16000
  filters = numpy_htk_mel_filterbank(40, n_fft, sample_rate, 60, 7800).T
  params = melfilters.gabor_params_from_mels(40, sample_rate, 60, 7800, n_fft)
  centre_hz = params[:, 0] * sample_rate / (2 * np.pi)
  peak_hz = filters.argmax(axis=1) * sample_rate / n_fft
  np.testing.assert_allclose(centre_hz, peak_hz, atol=1e-3)
  # Wider mel filters (higher up) give narrower Gaussians in time.
  assert params[0, 1] > 5 * params[-1, 1]
  # FWHM of the Gaussian's response = 2 sqrt(2 ln 2) / sigma radians matches
  # the measured FWHM of sqrt(mel filter), in bins.
  sqrt_filters = np.sqrt(filters)
  fwhm_bins = (sqrt_filters >= sqrt_filters.max(1, keepdims=True) / 2).sum(1)
  np.testing.assert_allclose(2 * np.sqrt(2 * np.log(2)) / params[:, 1],
                             fwhm_bins * 2 * np.pi / n_fft, rtol=1e-5)


def test_frequency_range_errors_name_the_problem():
  with pytest.raises(ValueError, match='max_freq=9000.*Nyquist.*8000'):
    melfilters.mel_filterbank(40, 512, 16000, 60, 9000)
  with pytest.raises(ValueError, match='min_freq'):
    melfilters.mel_filterbank(40, 512, 16000, 5000, 4000)


def test_too_many_filters_for_the_fft_is_an_error():
  with pytest.raises(ValueError, match='n_fft'):
    melfilters.gabor_params_from_mels(n_filters=300, n_fft=128)
