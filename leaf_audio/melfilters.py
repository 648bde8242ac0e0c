"""Mel scale, mel filterbanks and the Gabor filters that match them.

LEAF starts as mel filterbanks: each Gabor filter takes the centre frequency
and the bandwidth of one triangular mel filter (Zeghidour et al., ICLR 2021,
Section 3.1 and Appendix A.1). These functions compute that mapping and return
numpy arrays; no Keras state is involved.

Units: frequencies in Hz unless the name says radians (radians/sample, where pi
is the Nyquist frequency); widths in samples.
"""

import math

import numpy as np
import tensorflow as tf

from leaf_audio import impulse_responses

# HTK mel scale, the one tf.signal uses: mel = 1127 ln(1 + hz / 700).
_MEL_BREAK_FREQUENCY_HZ = 700.0
_MEL_HIGH_FREQUENCY_Q = 1127.0


def hz_to_mel(hz):
  """Converts frequencies in Hz to the HTK mel scale (float or array)."""
  return _MEL_HIGH_FREQUENCY_Q * np.log1p(np.asarray(hz, np.float64) /
                                          _MEL_BREAK_FREQUENCY_HZ)


def mel_to_hz(mel):
  """Converts HTK mel values back to Hz (float or array)."""
  return _MEL_BREAK_FREQUENCY_HZ * np.expm1(
      np.asarray(mel, np.float64) / _MEL_HIGH_FREQUENCY_Q)


def check_frequency_range(owner: str, sample_rate: float, min_freq: float,
                          max_freq: float) -> None:
  """Raises ValueError unless 0 <= min_freq < max_freq <= sample_rate / 2."""
  nyquist = sample_rate / 2.
  if min_freq < 0:
    raise ValueError(f'{owner}: min_freq must be >= 0 Hz; got {min_freq}.')
  if max_freq > nyquist:
    raise ValueError(
        f'{owner}: max_freq={max_freq} Hz is above the Nyquist frequency '
        f'{nyquist} Hz of sample_rate={sample_rate}.')
  if min_freq >= max_freq:
    raise ValueError(f'{owner}: min_freq ({min_freq} Hz) must be below '
                     f'max_freq ({max_freq} Hz).')


def mel_filterbank(n_filters: int = 40,
                   n_fft: int = 512,
                   sample_rate: float = 16000.,
                   min_freq: float = 0.,
                   max_freq: float = 8000.) -> np.ndarray:
  """Triangular mel filters on the bins of an n_fft-point real FFT.

  This is `tf.signal.linear_to_mel_weight_matrix` (HTK mel, DC bin zeroed),
  evaluated eagerly so that the exact float32 values of the original release
  are reproduced even when called while a graph is being traced.

  Returns:
    float32 array [n_fft // 2 + 1, n_filters]; column j is filter j.
  """
  check_frequency_range('mel_filterbank', sample_rate, min_freq, max_freq)
  with tf.init_scope():
    matrix = tf.signal.linear_to_mel_weight_matrix(
        num_mel_bins=n_filters,
        num_spectrogram_bins=n_fft // 2 + 1,
        sample_rate=sample_rate,
        lower_edge_hertz=min_freq,
        upper_edge_hertz=max_freq)
    return matrix.numpy()


def mel_filter_areas(filters: np.ndarray, n_fft: int) -> np.ndarray:
  """Approximate area under each mel filter, float32 [n_filters, 1].

  peak * (number of non-zero bins + 2) * pi / n_fft: a triangle's base in
  radians times its height, as in the original release.

  Args:
    filters: float32 [n_filters, n_bins], one filter per row.
    n_fft: FFT size the bins come from.
  """
  filters = np.asarray(filters, np.float32)
  peaks = filters.max(axis=1, keepdims=True)
  widths = (filters > 0).sum(axis=1, keepdims=True).astype(np.float32)
  return peaks * (widths + np.float32(2)) * np.float32(np.pi) / np.float32(
      n_fft)


def gabor_params_from_mel_filters(filters: np.ndarray,
                                  n_fft: int) -> np.ndarray:
  """Centre frequency and width of the Gabor filter matching each mel filter.

  The centre is the bin where the filter's square root peaks; the width comes
  from the full width at half maximum (FWHM, counted in bins) of the square root
  of the filter: for a Gaussian of std sigma samples, the frequency response has
  FWHM = 2 sqrt(2 ln 2) / sigma radians, so sigma = sqrt(2 ln 2) n_fft /
  (pi * FWHM_bins). The arithmetic is float32 in the original's order.

  Args:
    filters: float32 [n_filters, n_bins], one mel filter per row.
    n_fft: FFT size of the bins.

  Returns:
    float32 [n_filters, 2]: centre frequencies in radians/sample, and sigma in
    samples.
  """
  f32 = np.float32
  sqrt_filters = np.sqrt(np.asarray(filters, f32))
  empty = int((sqrt_filters.max(axis=1) <= 0).sum())
  if empty:
    raise ValueError(
        f'{empty} of the {len(sqrt_filters)} mel filters cover no FFT bin: too '
        f'many filters for n_fft={n_fft}; use fewer filters or a larger n_fft.')
  centre_bins = np.argmax(sqrt_filters, axis=1).astype(f32)
  half_peaks = sqrt_filters.max(axis=1, keepdims=True) / f32(2)
  fwhm_bins = (sqrt_filters >= half_peaks).sum(axis=1).astype(f32)
  coeff = np.sqrt(f32(2) * np.log(f32(2))) * f32(n_fft)
  centres = centre_bins * f32(2) * f32(np.pi) / f32(n_fft)
  sigmas = coeff / (f32(np.pi) * fwhm_bins)
  return np.stack([centres, sigmas], axis=1).astype(f32)


def gabor_params_from_mels(n_filters: int = 40,
                           sample_rate: float = 16000.,
                           min_freq: float = 0.,
                           max_freq: float = 8000.,
                           n_fft: int = 512) -> np.ndarray:
  """Gabor parameters [n_filters, 2] matching a mel filterbank; see above."""
  filters = mel_filterbank(n_filters, n_fft, sample_rate, min_freq, max_freq).T
  return gabor_params_from_mel_filters(filters, n_fft)


def gabor_time_domain_filters(n_filters: int = 40,
                              size: int = 401,
                              sample_rate: float = 16000.,
                              min_freq: float = 0.,
                              max_freq: float = 8000.,
                              n_fft: int = 512,
                              normalize_energy: bool = False) -> np.ndarray:
  """Complex Gabor impulse responses scaled to the gain of their mel filter.

  Used to initialise a plain convolution (TimeDomainFilterbanks) as mel
  filterbanks. Each filter is multiplied by sqrt(area * 2 sqrt(pi) sigma), so
  its squared-modulus response has the mel filter's area.

  Args:
    normalize_energy: if True, divide each mel filter by its area first, so
      all filters have the same energy.

  Returns:
    complex64 array [n_filters, size].
  """
  filters = mel_filterbank(n_filters, n_fft, sample_rate, min_freq, max_freq).T
  if normalize_energy:
    filters = filters / mel_filter_areas(filters, n_fft)
  params = gabor_params_from_mel_filters(filters, n_fft)
  with tf.init_scope():
    real, imag = impulse_responses.gabor_filters_real_imag(
        tf.constant(params), size)
    gains = np.sqrt(
        mel_filter_areas(filters, n_fft) * np.float32(2) *
        np.sqrt(np.float32(math.pi)) * params[:, 1:2]).astype(np.float32)
    return (real.numpy() * gains) + 1j * (imag.numpy() * gains)
