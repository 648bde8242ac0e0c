"""Initializers that make a learnable frontend start as a known filterbank.

  PreempInit   pre-emphasis y[n] = x[n+1] - alpha x[n]      kernel [2, 1, 1]
  GaborInit    Gabor filters matching mel filterbanks      [n, 2] or [k, 1, 2n]
  SincInit     sinc band-passes evenly spaced on the mel scale         [n, 2]
  LowpassInit  a fixed window (squared Hann by default)  [k, 1, c] or [1, k, c, 1]

All are Keras initializers: called with a shape and a dtype, serializable with
`get_config`, registered under the package name 'leaf_audio'.
"""

import numpy as np
import keras

from leaf_audio import framing
from leaf_audio import impulse_responses
from leaf_audio import melfilters
from leaf_audio import serialization
from leaf_audio import validation


def _as_tensor(array, dtype):
  return keras.ops.convert_to_tensor(np.asarray(array), dtype=dtype or 'float32')


@serialization.register()
class PreempInit(keras.initializers.Initializer):
  """Initialises a 2-tap convolution as pre-emphasis.

  The kernel [2, 1, 1] is [-alpha, 1]. With 'same' padding (which pads one
  sample at the end for a 2-tap kernel) the convolution computes
  y[n] = x[n+1] - alpha * x[n], the original release's form.

  Args:
    alpha: float, default 0.97; 0 < alpha < 1, larger boosts high frequencies
      more.
  """

  def __init__(self, alpha: float = 0.97):
    self.alpha = alpha

  def __call__(self, shape, dtype=None):
    if tuple(shape) != (2, 1, 1):
      raise ValueError('PreempInit initialises a kernel of shape (2, 1, 1); '
                       f'got shape {tuple(shape)}.')
    return _as_tensor([[[-self.alpha]], [[1.]]], dtype)

  def get_config(self):
    return {'alpha': self.alpha}


@serialization.register()
class GaborInit(keras.initializers.Initializer):
  """Initialises Gabor filters to match a mel filterbank.

  For a kernel of shape [n_filters, 2] (a `GaborConv1D`), returns the Gabor
  parameters: column 0 the centre frequencies in radians/sample, column 1 the
  widths sigma in samples. For a kernel of shape [kernel_size, 1, 2 * n_filters]
  (a plain `Conv1D`, as in TimeDomainFilterbanks), returns the time-domain Gabor
  filters scaled to their mel filter's gain, real and imaginary parts
  interleaved along the last axis.

  Args:
    sample_rate: sampling rate in Hz, default 16000.
    min_freq: lowest mel band edge in Hz, default 0.
    max_freq: highest mel band edge in Hz, default 8000; at most
      sample_rate / 2.
    n_fft: FFT size of the mel filterbank the filters imitate, default 512.
    normalize_energy: bool, default False; if True, all filters have the same
      energy (only used for the time-domain shape).
  """

  def __init__(self,
               sample_rate: float = 16000,
               min_freq: float = 0.,
               max_freq: float = 8000.,
               n_fft: int = 512,
               normalize_energy: bool = False):
    validation.check_positive_number('GaborInit', 'sample_rate', sample_rate)
    validation.check_positive_int('GaborInit', 'n_fft', n_fft)
    melfilters.check_frequency_range('GaborInit', sample_rate, min_freq,
                                     max_freq)
    self.sample_rate = sample_rate
    self.min_freq = min_freq
    self.max_freq = max_freq
    self.n_fft = n_fft
    self.normalize_energy = normalize_energy

  def __call__(self, shape, dtype=None):
    shape = tuple(shape)
    mel_args = dict(
        sample_rate=self.sample_rate,
        min_freq=self.min_freq,
        max_freq=self.max_freq,
        n_fft=self.n_fft)
    if len(shape) == 2 and shape[1] == 2:
      return _as_tensor(
          melfilters.gabor_params_from_mels(n_filters=shape[0], **mel_args),
          dtype)
    if len(shape) == 3 and shape[1] == 1 and shape[2] % 2 == 0:
      filters = melfilters.gabor_time_domain_filters(
          n_filters=shape[2] // 2,
          size=shape[0],
          normalize_energy=self.normalize_energy,
          **mel_args)
      interleaved = np.stack([filters.real, filters.imag], axis=1).reshape(
          shape[2], shape[0])
      return _as_tensor(interleaved.T[:, np.newaxis, :], dtype)
    raise ValueError(
        'GaborInit initialises a kernel of shape [n_filters, 2] (Gabor '
        'parameters) or [kernel_size, 1, 2 * n_filters] (time-domain filters); '
        f'got shape {shape}.')

  def get_config(self):
    return {
        'sample_rate': self.sample_rate,
        'min_freq': self.min_freq,
        'max_freq': self.max_freq,
        'n_fft': self.n_fft,
        'normalize_energy': self.normalize_energy,
    }


@serialization.register()
class SincInit(keras.initializers.Initializer):
  """Initialises sinc band-pass filters evenly spaced on the mel scale.

  Returns [n_filters, 2]: column 0 the lower edge in Hz, column 1 the band width
  in Hz. The bands tile [min_low_hz, sample_rate / 2 - (min_low_hz +
  min_band_hz)] in equal mel steps. `SincConv1D` adds min_low_hz and
  min_band_hz on top of these values in its forward pass (as the original
  release does), so the first filter starts at 2 * min_low_hz.

  Args:
    sample_rate: sampling rate in Hz, default 16000.
    min_low_hz: lowest lower edge in Hz, default 50.
    min_band_hz: smallest band width in Hz, default 50.
  """

  def __init__(self,
               sample_rate: float = 16000,
               min_low_hz: float = 50.,
               min_band_hz: float = 50.):
    validation.check_positive_number('SincInit', 'sample_rate', sample_rate)
    high_hz = 0.5 * sample_rate - (min_low_hz + min_band_hz)
    if min_low_hz < 0 or min_band_hz < 0 or high_hz <= min_low_hz:
      raise ValueError(
          'SincInit: need 0 <= min_low_hz and 0 <= min_band_hz with '
          'min_low_hz < sample_rate / 2 - (min_low_hz + min_band_hz); got '
          f'min_low_hz={min_low_hz}, min_band_hz={min_band_hz}, '
          f'sample_rate={sample_rate}.')
    self.sample_rate = sample_rate
    self.min_low_hz = min_low_hz
    self.min_band_hz = min_band_hz

  def __call__(self, shape, dtype=None):
    shape = tuple(shape)
    if len(shape) != 2 or shape[1] != 2:
      raise ValueError('SincInit initialises a kernel of shape [n_filters, 2];'
                       f' got shape {shape}.')
    high_hz = 0.5 * self.sample_rate - (self.min_low_hz + self.min_band_hz)
    edges_mel = np.linspace(
        melfilters.hz_to_mel(self.min_low_hz), melfilters.hz_to_mel(high_hz),
        shape[0] + 1)
    edges_hz = melfilters.mel_to_hz(edges_mel)
    return _as_tensor(np.stack([edges_hz[:-1], np.diff(edges_hz)], axis=1),
                      dtype)

  def get_config(self):
    return {
        'sample_rate': self.sample_rate,
        'min_low_hz': self.min_low_hz,
        'min_band_hz': self.min_band_hz,
    }


@serialization.register()
class LowpassInit(keras.initializers.Initializer):
  """Initialises pooling kernels with a fixed window.

  Fills every channel of a kernel [kernel_size, 1, channels] (a Conv1D) or
  [1, kernel_size, channels, 1] (a Conv2D/depthwise kernel) with the window.

  Args:
    sample_rate: sampling rate in Hz, default 16000.
    window_len: window length in ms, default 25; None takes the length from the
      kernel shape. A given length must match the kernel.
    window_type: 'squared_hanning' (default), 'hanning' or 'hamming'; see
      `impulse_responses` for the exact formulas.
  """

  def __init__(self,
               sample_rate: float = 16000,
               window_len: float = 25.,
               window_type: str = 'squared_hanning'):
    validation.check_positive_number('LowpassInit', 'sample_rate', sample_rate)
    if window_len is not None:
      validation.check_duration_ms('LowpassInit', 'window_len', window_len)
    window_type = getattr(window_type, 'name', window_type)  # Enum from gin.
    window_type = str(window_type).lower()
    validation.check_choice('LowpassInit', 'window_type', window_type,
                            impulse_responses.WINDOWS)
    self.sample_rate = sample_rate
    self.window_len = window_len
    self.window_type = window_type

  def __call__(self, shape, dtype=None):
    shape = tuple(shape)
    if len(shape) == 3:
      size = shape[0]
    elif len(shape) == 4 and shape[0] == 1:
      size = shape[1]
    else:
      raise ValueError(
          'LowpassInit initialises a kernel of shape [kernel_size, 1, channels]'
          f' or [1, kernel_size, channels, 1]; got shape {shape}.')
    if self.window_len is not None:
      expected = framing.window_length_samples(self.sample_rate,
                                               self.window_len)
      if expected != size:
        raise ValueError(
            f'LowpassInit: window_len={self.window_len} ms at sample_rate='
            f'{self.sample_rate} is {expected} samples, but the kernel has '
            f'{size} taps (shape {shape}).')
    window = impulse_responses.WINDOWS[self.window_type](size)
    if len(shape) == 3:
      kernel = np.broadcast_to(window[:, None, None], shape)
    else:
      kernel = np.broadcast_to(window[None, :, None, None], shape)
    return _as_tensor(kernel, dtype)

  def get_config(self):
    return {
        'sample_rate': self.sample_rate,
        'window_len': self.window_len,
        'window_type': self.window_type,
    }
