"""The first stage of a time-domain frontend: a learnable filterbank.

  GaborConv1D   complex Gabor filters, 2 parameters each (LEAF)
  SincConv1D    sinc band-pass filters, 2 parameters each (SincNet)
  keras.layers.Conv1D is the unconstrained choice (TimeDomainFilterbanks).

All take a waveform [batch, samples, 1] and share the constructor protocol the
frontends use: (filters, kernel_size, strides, padding, use_bias,
kernel_initializer, kernel_regularizer, name, trainable).
"""

import math

import keras
import numpy as np
import tensorflow as tf

from leaf_audio import framing
from leaf_audio import impulse_responses
from leaf_audio import initializers
from leaf_audio import serialization
from leaf_audio import stages
from leaf_audio import validation

# FWHM of exp(-x**2 / 2) is 2 sqrt(2 ln 2) x-units.
_FWHM_PER_STD = 2. * math.sqrt(2. * math.log(2.))


def gabor_bandwidth_hz(sigma, sample_rate: float):
  """FWHM in Hz of the amplitude response of Gabor filters of width sigma.

  A Gaussian envelope of std sigma samples has a Gaussian frequency response
  of std 1 / sigma radians/sample, whose FWHM is 2 sqrt(2 ln 2) / sigma.
  """
  return _FWHM_PER_STD / np.asarray(sigma, np.float64) * sample_rate / (
      2 * np.pi)


def fft_conv1d(inputs, filters, stride=1, padding='same', dtype=tf.float64):
  """`tf.nn.conv1d` of one input channel, computed with FFTs (overlap-save).

  Gives the same function as tf.nn.conv1d(inputs, filters[:, None, :], stride,
  padding) (a cross-correlation, TF's padding), computed in `dtype`. In float64
  the result is exact to float32 rounding whatever the accumulation order of
  the platform's convolution kernels; memory grows linearly with the input
  (segments of `fft_length` samples), unlike a float64 im2col convolution.

  Args:
    inputs: float [batch, samples, 1].
    filters: float [kernel_size, channels].
    stride: int, hop of the output in samples.
    padding: 'same' or 'valid'.
    dtype: the precision of the FFTs, tf.float32 or tf.float64.

  Returns:
    [batch, frames, channels] in the dtype of `inputs`.
  """
  kernel_size = filters.shape[0]
  fft_length = max(4096, 1 << (8 * kernel_size - 1).bit_length())
  segment = fft_length - kernel_size + 1  # outputs per FFT
  signal = tf.cast(inputs[:, :, 0], dtype)
  length = tf.shape(signal)[1]
  frames, left, right = framing.frames_and_padding(length, kernel_size, stride,
                                                   padding)
  signal = tf.pad(signal, [[0, 0], [left, right]])
  # Each frame of fft_length samples yields `segment` valid correlations.
  framed = tf.signal.frame(signal, fft_length, segment, pad_end=True)
  spectra = tf.signal.rfft(framed, [fft_length])[:, :, tf.newaxis, :]
  filter_spectra = tf.signal.rfft(tf.transpose(tf.cast(filters, dtype)),
                                  [fft_length])
  correlations = tf.signal.irfft(spectra * tf.math.conj(filter_spectra),
                                 [fft_length])[..., :segment]
  # [batch, segments, channels, segment] -> [batch, samples, channels]
  correlations = tf.transpose(correlations, (0, 1, 3, 2))
  batch = tf.shape(correlations)[0]
  correlations = tf.reshape(correlations, [batch, -1, filters.shape[1]])
  outputs = correlations[:, :(frames - 1) * stride + 1:stride]
  return tf.cast(outputs, inputs.dtype)


def complex_filters(layer):
  """(real, imag) impulse responses, each [n_filters, kernel_size], of a filterbank.

  A filterbank whose `is_complex` is true gives its `impulse_responses()`; a
  `keras.layers.Conv1D` (TimeDomainFilterbanks) its kernel, whose output
  channels interleave real (2i) and imaginary (2i + 1) parts.
  """
  stage = stages.of(layer)
  if hasattr(stage, 'complex_filters'):
    return stage.complex_filters()
  raise TypeError(f'complex_filters: {type(layer).__name__} has no complex '
                  'impulse responses.')


@serialization.register()
class GaborConstraint(keras.constraints.Constraint):
  """Keeps Gabor parameters [n_filters, 2] in their valid range.

  The centre frequency mu (column 0) is clipped to [0, pi] radians/sample. The
  width sigma (column 1, samples) is clipped so that the full width at half
  maximum of the Gaussian's frequency response, 2 sqrt(2 ln 2) / sigma, stays
  within [2 pi / kernel_size, pi / 2]: sigma in [4 sqrt(2 ln 2) / pi,
  kernel_size sqrt(2 ln 2) / pi] (Zeghidour et al., 2018, Section 2.2).

  Args:
    kernel_size: int, length of the filters in samples.
  """

  def __init__(self, kernel_size: int):
    self.kernel_size = validation.check_positive_int('GaborConstraint',
                                                     'kernel_size', kernel_size)

  @property
  def sigma_range(self):
    """(lowest, highest) allowed sigma in samples."""
    unit = math.sqrt(2 * math.log(2)) / math.pi
    return 4 * unit, self.kernel_size * unit

  def __call__(self, kernel):
    sigma_lower, sigma_upper = self.sigma_range
    clipped_mu = tf.clip_by_value(kernel[:, 0], 0., math.pi)
    clipped_sigma = tf.clip_by_value(kernel[:, 1], sigma_lower, sigma_upper)
    return tf.stack([clipped_mu, clipped_sigma], axis=1)

  def get_config(self):
    return {'kernel_size': self.kernel_size}


class _FilterbankConv1D(stages.Stage, keras.layers.Layer):
  """Shared argument handling of the parametric filterbank convolutions."""

  def __init__(self, filters, kernel_size, strides, padding, use_bias,
               kernel_initializer, kernel_regularizer, **kwargs):
    super().__init__(**kwargs)
    owner = type(self).__name__
    self.filters = validation.check_positive_int(owner, 'filters', filters)
    if self.filters % 2:
      raise ValueError(
          f'{owner}: filters counts real channels, two per complex filter '
          f'(the frontends pass 2 * n_filters), so it must be even; got '
          f'{filters}.')
    self.kernel_size = validation.check_positive_int(owner, 'kernel_size',
                                                     kernel_size)
    self.strides = validation.check_positive_int(owner, 'strides', strides)
    self.padding = validation.check_padding(owner, 'padding', padding)
    self.use_bias = bool(use_bias)
    self.kernel_initializer = keras.initializers.get(kernel_initializer)
    self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)

  def _kernel_constraint(self):
    return None

  def build(self, input_shape):
    self._check_input(input_shape)
    # Two parameters per filter: [filters // 2, 2].
    self.kernel = self.add_weight(
        name='kernel',
        shape=(self.filters // 2, 2),
        initializer=self.kernel_initializer,
        regularizer=self.kernel_regularizer,
        constraint=self._kernel_constraint())
    if self.use_bias:
      self.bias = self.add_weight(
          name='bias', shape=(self._output_channels(),), initializer='zeros')

  def _convolve(self, inputs, filters):
    """inputs [batch, samples, 1], filters [kernel_size, 1, channels]."""
    outputs = tf.nn.conv1d(
        inputs, filters, stride=self.strides, padding=self.padding.upper())
    if self.use_bias:
      outputs = tf.nn.bias_add(outputs, self.bias)
    return outputs

  def compute_output_shape(self, input_shape):
    return (input_shape[0],
            framing.num_frames(input_shape[1], self.kernel_size, self.strides,
                               self.padding), self._output_channels())

  def get_config(self):
    config = super().get_config()
    config.update({
        'filters': self.filters,
        'kernel_size': self.kernel_size,
        'strides': self.strides,
        'padding': self.padding,
        'use_bias': self.use_bias,
        'kernel_initializer': keras.initializers.serialize(
            self.kernel_initializer),
        'kernel_regularizer': keras.regularizers.serialize(
            self.kernel_regularizer),
    })
    return config

  # The stage interface (`stages.Stage`).

  def stage_geometry(self):
    return stages.Geometry(self.kernel_size, self.strides, self.padding)

  def _settings_problem(self):
    """'' for a stride-1, 'same', bias-free filterbank, else what differs."""
    for name, value, expected in (('strides', self.strides, 1),
                                  ('padding', self.padding, 'same'),
                                  ('use_bias', self.use_bias, False)):
      if value != expected:
        return f'the filterbank has {name}={value!r}, not {expected!r}'
    return ''

  def stream_kind(self):
    problem = self._settings_problem()
    if problem:
      raise stages.StreamingRefused(
          f"{problem} (filterbanks stream with stride 1, 'same' padding and "
          'no bias).')
    return 'filter'

  def _check_input(self, input_shape):
    if len(input_shape) != 3 or input_shape[-1] != 1:
      raise ValueError(
          f'{type(self).__name__} expects a waveform of shape [batch, samples,'
          f' 1]; got shape {tuple(input_shape)}.')


@serialization.register()
class GaborConv1D(_FilterbankConv1D):
  """Convolution with complex Gabor filters, the filterbank of LEAF.

  Each of the `filters // 2` complex filters has two learnable parameters, its
  centre frequency (radians/sample) and its width sigma (samples); see
  `impulse_responses.gabor_filters_real_imag`. The kernel [filters // 2, 2] is
  kept in range by `GaborConstraint`, both as a variable constraint (applied
  after each optimizer step) and in the forward pass.

  Args:
    filters: int, number of real output channels, 2 per complex filter.
    kernel_size: int, filter length in samples (401 = 25 ms at 16 kHz).
    strides: int, default 1.
    padding: 'same' (default) or 'valid'.
    use_bias: bool, default False.
    kernel_initializer: default `GaborInit(sample_rate=16000, min_freq=60,
      max_freq=7800)`, mel filterbanks at 16 kHz.
    kernel_regularizer: optional regularizer of the [filters // 2, 2] kernel.
    sort_filters: bool, default False; if True, order the filters by centre
      frequency in the forward pass.

  Input shape: [batch, samples, 1].
  Output shape: [batch, frames, filters], real and imaginary parts of each
    complex filter interleaved (channel 2i real, 2i + 1 imaginary).

  Example:
    >>> conv = GaborConv1D(filters=80, kernel_size=401)
    >>> conv(tf.zeros([2, 16000, 1])).shape
    TensorShape([2, 16000, 80])
  """

  def __init__(self,
               filters: int,
               kernel_size: int,
               strides: int = 1,
               padding: str = 'same',
               use_bias: bool = False,
               kernel_initializer=None,
               kernel_regularizer=None,
               sort_filters: bool = False,
               **kwargs):
    if kernel_initializer is None:
      kernel_initializer = initializers.GaborInit(
          sample_rate=16000, min_freq=60., max_freq=7800.)
    super().__init__(filters, kernel_size, strides, padding, use_bias,
                     kernel_initializer, kernel_regularizer, **kwargs)
    self.sort_filters = bool(sort_filters)

  def _output_channels(self):
    return self.filters

  def _kernel_constraint(self):
    return GaborConstraint(self.kernel_size)

  # impulse_responses() gives (real, imag) parts; see `complex_filters`.
  is_complex = True

  def gabor_parameters(self):
    """Constrained [filters // 2, 2], in output order: centre frequency
    (radians/sample) and sigma (samples) of each filter."""
    kernel = self.kernel.constraint(self.kernel)
    if self.sort_filters:
      kernel = tf.gather(kernel, tf.argsort(kernel[:, 0]), axis=0)
    return kernel

  def impulse_responses(self):
    """Constrained filters (real, imag), each [filters // 2, kernel_size]."""
    return impulse_responses.gabor_filters_real_imag(self.gabor_parameters(),
                                                     self.kernel_size)

  def interleaved_filters(self):
    """[kernel_size, filters]: channel 2i real and 2i + 1 imaginary."""
    real, imag = self.impulse_responses()
    return tf.reshape(
        tf.stack([tf.transpose(real), tf.transpose(imag)], axis=2),
        (self.kernel_size, self.filters))

  def call(self, inputs):
    return self._convolve(inputs, self.interleaved_filters()[:, tf.newaxis])

  def stage_parameters(self, sample_rate):
    kernel = np.asarray(self.gabor_parameters(), np.float64)
    return {
        'centre_frequency': stages.parameter(
            kernel[:, 0] * sample_rate / (2 * np.pi), 'Hz'),
        'bandwidth': stages.parameter(
            gabor_bandwidth_hz(kernel[:, 1], sample_rate), 'Hz', 'log'),
    }

  def stream_filters(self):
    return self.interleaved_filters(), tf.float32

  def complex_filters(self):
    return self.impulse_responses()

  def fft_problem(self, role):
    return self._settings_problem()

  def get_config(self):
    config = super().get_config()
    config['sort_filters'] = self.sort_filters
    return config


@serialization.register()
class SincConv1D(_FilterbankConv1D):
  """Convolution with Hamming-windowed sinc band-pass filters (SincNet).

  The kernel [filters // 2, 2] holds a lower edge and a band width in Hz. The
  forward pass, as in the original release, uses
    low  = min_low_hz + |kernel[:, 0]|,
    high = clip(low + min_band_hz + |kernel[:, 1]|, min_low_hz, sample_rate/2),
  so min_low_hz and min_band_hz are added on top of the initial values.

  Args:
    filters: int, twice the number of band-pass filters: the frontends pass
      2 * n_filters to every convolution and SincConv1D outputs filters // 2
      real channels (the original release's convention).
    kernel_size: int, filter length in samples.
    strides: int, default 1.
    padding: 'same' (default) or 'valid'.
    use_bias: bool, default False.
    kernel_initializer: default `SincInit(sample_rate)`.
    kernel_regularizer: optional regularizer of the kernel.
    sample_rate: sampling rate in Hz, default 16000; sets the time axis of the
      filters and the Nyquist clip.
    min_low_hz: float, default 50 Hz.
    min_band_hz: float, default 50 Hz.

  Input shape: [batch, samples, 1].
  Output shape: [batch, frames, filters // 2].
  """

  def __init__(self,
               filters: int,
               kernel_size: int,
               strides: int = 1,
               padding: str = 'same',
               use_bias: bool = False,
               kernel_initializer=None,
               kernel_regularizer=None,
               sample_rate: float = 16000,
               min_low_hz: float = 50.,
               min_band_hz: float = 50.,
               **kwargs):
    validation.check_positive_number('SincConv1D', 'sample_rate', sample_rate)
    if not 0 <= min_low_hz < sample_rate / 2:
      raise ValueError(
          f'SincConv1D: min_low_hz must be in [0, {sample_rate / 2}) Hz '
          f'(below Nyquist for sample_rate={sample_rate}); got {min_low_hz}.')
    if min_band_hz < 0:
      raise ValueError(f'SincConv1D: min_band_hz must be >= 0 Hz; got '
                       f'{min_band_hz}.')
    if kernel_initializer is None:
      kernel_initializer = initializers.SincInit(
          sample_rate=sample_rate,
          min_low_hz=min_low_hz,
          min_band_hz=min_band_hz)
    super().__init__(filters, kernel_size, strides, padding, use_bias,
                     kernel_initializer, kernel_regularizer, **kwargs)
    self.sample_rate = sample_rate
    self.min_low_hz = min_low_hz
    self.min_band_hz = min_band_hz

  is_complex = False

  def _output_channels(self):
    return self.filters // 2

  def band_edges_hz(self):
    """(low, high) cut-off frequencies in Hz, each [filters // 2]."""
    low = self.min_low_hz + tf.abs(self.kernel[:, 0])
    high = tf.clip_by_value(low + self.min_band_hz + tf.abs(self.kernel[:, 1]),
                            self.min_low_hz, self.sample_rate / 2)
    return low, high

  def impulse_responses(self):
    """Windowed band-pass filters, [kernel_size, filters // 2]."""
    low, high = self.band_edges_hz()
    filters = impulse_responses.sinc_filters(
        low[tf.newaxis, :], high[tf.newaxis, :], self.kernel_size,
        self.sample_rate)
    window = tf.constant(
        impulse_responses.hamming_window(self.kernel_size), filters.dtype)
    return filters * window[:, tf.newaxis]

  def stage_parameters(self, sample_rate):
    low, high = (np.asarray(edge, np.float64) for edge in self.band_edges_hz())
    return {'centre_frequency': stages.parameter((low + high) / 2, 'Hz'),
            'bandwidth': stages.parameter(high - low, 'Hz', 'log')}

  # The filters are computed in float64 (see `call`), which TFLite's
  # builtin ops do not offer.
  tflite_builtins = False

  def stream_filters(self):
    # In float64 as `call` computes (PCEN magnifies float32's rounding of
    # the upper bands).
    return self.impulse_responses(), tf.float64

  def fft_problem(self, role):
    return (f'the {role} (SincConv1D) has no complex impulse responses')

  def call(self, inputs):
    # The upper bands' outputs are small differences of large products, which
    # PCEN (SincNetPlus) magnifies: with float32 accumulation the output moved
    # by up to 4e-4 between platforms and oneDNN settings (the original release
    # shows the same spread). Float64 FFTs give the exact result, rounded once.
    outputs = fft_conv1d(inputs, self.impulse_responses(), self.strides,
                         self.padding, dtype=tf.float64)
    if self.use_bias:
      outputs = tf.nn.bias_add(outputs, self.bias)
    return outputs

  def get_config(self):
    config = super().get_config()
    config.update({
        'sample_rate': self.sample_rate,
        'min_low_hz': self.min_low_hz,
        'min_band_hz': self.min_band_hz,
    })
    return config
