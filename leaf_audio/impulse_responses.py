"""Impulse responses of the filters that LEAF-style frontends learn or fix.

Every function here is pure math: it takes filter parameters and returns the
filter taps, with no variables and no Keras state. Layers in `convolution.py`
and `pooling.py` hold the parameters and call these functions; tests compare
them with numpy.

Time axes are in samples and centred on the middle tap: a filter of `size` taps
is evaluated at t = -(size // 2), ..., (size + 1) // 2 - 1, so an odd size is
symmetric around 0 and an even size has one more tap on the left.
"""

import math

import numpy as np
import tensorflow as tf


def centred_time_axis(size: int, dtype=tf.float32) -> tf.Tensor:
  """Tap positions in samples, [size], centred on the middle tap."""
  return tf.range(-(size // 2), (size + 1) // 2, dtype=dtype)


def gabor_filters_real_imag(kernel: tf.Tensor, size: int):
  """Real and imaginary parts of complex Gabor filters.

  The filter of centre frequency mu (radians/sample) and Gaussian width sigma
  (samples) is
    phi(t) = exp(i * mu * t) * exp(-t**2 / (2 * sigma**2)) / (sqrt(2 pi) sigma),
  the complex Gabor wavelet of Zeghidour et al., "LEAF: A Learnable Frontend
  for Audio Classification", ICLR 2021, Section 3.1.

  Args:
    kernel: float tensor [n_filters, 2]; column 0 holds the centre frequencies
      mu in radians/sample, column 1 the widths sigma in samples (the inverse
      of the bandwidth).
    size: number of taps.

  Returns:
    A pair (real, imag) of float tensors [n_filters, size].
  """
  kernel = tf.convert_to_tensor(kernel)
  t = centred_time_axis(size, kernel.dtype)
  center = kernel[:, 0]
  sigma = kernel[:, 1]
  # Same operation order as the original release, so float32 results agree.
  scale = 1.0 / (math.sqrt(2.0 * math.pi) * sigma)
  gaussian = tf.exp(tf.tensordot(1.0 / (2.0 * sigma**2), -t**2, axes=0))
  phase = tf.tensordot(center, t, axes=0)
  envelope = scale[:, tf.newaxis] * gaussian
  return envelope * tf.cos(phase), envelope * tf.sin(phase)


def gabor_filters(kernel: tf.Tensor, size: int = 401) -> tf.Tensor:
  """Complex Gabor filters, complex64 [n_filters, size]; see `gabor_filters_real_imag`."""
  real, imag = gabor_filters_real_imag(tf.cast(kernel, tf.float32), size)
  return tf.complex(real, imag)


def sinc_filters(low_hz: tf.Tensor,
                 high_hz: tf.Tensor,
                 size: int = 401,
                 sample_rate: float = 16000.) -> tf.Tensor:
  """Band-pass filters as differences of two ideal low-pass (sinc) filters.

  As in SincNet (Ravanelli & Bengio, 2018), the band-pass [low, high] is
  2 high sinc(2 pi high t) - 2 low sinc(2 pi low t), with t in seconds. Each
  filter is then scaled so that its largest tap is 1.

  Args:
    low_hz: float tensor [1, n_filters], lower cut-off frequencies in Hz.
    high_hz: float tensor [1, n_filters], upper cut-off frequencies in Hz.
    size: number of taps.
    sample_rate: sampling rate in Hz, to convert taps to seconds.

  Returns:
    A float tensor [size, n_filters].
  """
  low_hz = tf.convert_to_tensor(low_hz)
  high_hz = tf.convert_to_tensor(high_hz, dtype=low_hz.dtype)
  t = centred_time_axis(size, low_hz.dtype)
  seconds = t / tf.cast(sample_rate, low_hz.dtype)
  is_centre = tf.equal(t, 0.)[:, tf.newaxis]
  # sin(x)/x is 1 at x = 0; a safe denominator keeps the gradient finite there.
  safe_seconds = tf.where(tf.equal(t, 0.), tf.ones_like(seconds), seconds)

  def lowpass(cutoff_hz):
    # The outer product (a tensordot) fixes the float32 rounding of
    # 2 pi f t: graph optimisers reorder a chain of broadcast multiplies, and
    # at |x| ~ 600 rad one ulp of x moves the taps by ~1e-4.
    x = tf.tensordot(safe_seconds, 2. * math.pi * cutoff_hz[0], axes=0)
    return 2. * cutoff_hz * tf.where(is_centre, tf.ones_like(x), tf.sin(x) / x)

  band_pass = lowpass(high_hz) - lowpass(low_hz)
  return band_pass / tf.reduce_max(band_pass, axis=0, keepdims=True)


def half_maximum_width(window) -> float:
  """Width in samples of the band around a window's peak at >= half its peak.

  Edges interpolated linearly between samples (the FWHM of a sampled window).
  """
  window = np.asarray(window, np.float64)
  top = int(np.argmax(window))
  half = window[top] / 2.

  def edge(step):
    index = top
    while 0 <= index + step < len(window) and window[index + step] >= half:
      index += step
    outside = index + step
    if not 0 <= outside < len(window):
      return float(index)
    fraction = (window[index] - half) / (window[index] - window[outside])
    return index + step * fraction

  return edge(1) - edge(-1)


def gaussian_lowpass_fwhm(sigma, filter_size: int):
  """FWHM in samples of `gaussian_lowpass` windows, float64 like sigma.

  2 sqrt(2 ln 2) sigma (n - 1) / 2, sigma clipped to [2 / n, 0.5] as the
  windows are.
  """
  sigma = np.clip(np.asarray(sigma, np.float64), 2. / filter_size, 0.5)
  return 2. * np.sqrt(2. * np.log(2.)) * sigma * (filter_size - 1) / 2.


def gaussian_lowpass(sigma: tf.Tensor, filter_size: int) -> tf.Tensor:
  """Gaussian low-pass windows, one per channel, centred on the middle tap.

  w[t] = exp(-0.5 * ((t - (n - 1) / 2) / (sigma * (n - 1) / 2))**2) for
  t = 0..n-1, n = filter_size. sigma is relative to half the window length and
  is clipped to [2 / n, 0.5] as in the original release, so a learned width can
  neither vanish nor exceed a Hann-like window.

  Args:
    sigma: float tensor [1, 1, channels, 1], the relative widths.
    filter_size: number of taps n.

  Returns:
    A float tensor [1, filter_size, channels, 1], ready for a depthwise conv.
  """
  sigma = tf.convert_to_tensor(sigma)
  sigma = tf.clip_by_value(sigma, 2. / filter_size, 0.5)
  t = tf.reshape(tf.range(0, filter_size, dtype=sigma.dtype),
                 (1, filter_size, 1, 1))
  numerator = t - 0.5 * (filter_size - 1)
  denominator = sigma * 0.5 * (filter_size - 1)
  return tf.exp(-0.5 * (numerator / denominator)**2)


def hamming_window(size: int) -> np.ndarray:
  """Periodic Hamming window, float64 [size]: 0.54 - 0.46 cos(2 pi n / size)."""
  n = np.arange(size)
  return 0.54 - 0.46 * np.cos(2 * np.pi * n / size)


def hann_window(size: int) -> np.ndarray:
  """Hann window of the original release, float64 [size].

  0.5 (1 - cos(2 pi (n - 1) / (size - 1))) for n = 0..size-1: a symmetric Hann
  window shifted right by one sample (its zero is at n = 1, not n = 0). Kept
  because it defines the published TimeDomainFilterbanks initialisation.
  """
  if size < 2:
    return np.ones(size)
  n = np.arange(size)
  return 0.5 * (1 - np.cos(2 * np.pi * (n - 1) / (size - 1)))


def squared_hann_window(size: int) -> np.ndarray:
  """Square of `hann_window`, float64 [size]."""
  return hann_window(size)**2


WINDOWS = {
    'hamming': hamming_window,
    'hanning': hann_window,
    'squared_hanning': squared_hann_window,
}
