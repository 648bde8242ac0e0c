"""Downsampling in time after the filterbank: lowpass pooling.

  GaussianLowpassPooling  one learnable Gaussian window per channel (LEAF)
  LearnablePooling1D      one learnable window shared by all channels (TD-fbanks)
  MaxPooling1D            max over each window (SincNet)

All take [batch, time, channels] and share the constructor protocol the
frontends use: (kernel_size, strides, padding, ...). Layers with a kernel also
take kernel_initializer and kernel_regularizer.
"""

import keras
import numpy as np
import tensorflow as tf

from leaf_audio import blocks
from leaf_audio import framing
from leaf_audio import impulse_responses
from leaf_audio import initializers
from leaf_audio import serialization
from leaf_audio import stages
from leaf_audio import validation


def strided_window_sum(inputs, windows, stride: int, padding: str):
  """sum_j x[f * stride + j - left, c] * windows[j, c], for the kept frames f.

  The same function as a depthwise convolution with TF's padding, but computed
  only at the frames that the stride keeps, block by block (`blocks`): for
  LEAF's 401-tap window and 160-sample stride, 3 small matrix products
  instead of a convolution evaluated at every sample and then subsampled
  (whose backward pass dominated a training step).

  Args:
    inputs: float [batch, time, channels].
    windows: float [kernel_size, channels] (or [kernel_size, 1] for one
      window shared by all channels).
    stride: hop in samples.
    padding: 'same' or 'valid'.

  Returns:
    float [batch, frames, channels].
  """
  kernel_size = windows.shape[0]
  pieces = blocks.num_pieces(kernel_size, stride)
  frames, left, _ = framing.frames_and_padding(tf.shape(inputs)[1],
                                               kernel_size, stride, padding)
  # [channels, batch * blocks, stride]: channels lead, so that one batched
  # matmul applies every piece of each channel's window to every block.
  signal = tf.transpose(inputs, (2, 0, 1))
  cut = blocks.to_blocks(signal, -left, frames - 1 + pieces, stride)
  products = tf.matmul(
      tf.reshape(cut, [tf.shape(signal)[0], -1, stride]),
      tf.transpose(blocks.window_pieces(windows, stride), (2, 1, 0)))
  products = tf.reshape(products, [tf.shape(signal)[0], tf.shape(inputs)[0],
                                   -1, pieces])
  return tf.transpose(blocks.diagonal_sum(products, frames), (1, 2, 0))


class _Pooling1D(stages.Stage, keras.layers.Layer):
  """Shared arguments and output shape of the pooling layers."""

  def __init__(self, kernel_size, strides, padding, **kwargs):
    super().__init__(**kwargs)
    owner = type(self).__name__
    self.kernel_size = validation.check_positive_int(owner, 'kernel_size',
                                                     kernel_size)
    self.strides = validation.check_positive_int(owner, 'strides', strides)
    self.padding = validation.check_padding(owner, 'padding', padding)

  def _check_input(self, input_shape):
    if len(input_shape) != 3:
      raise ValueError(f'{type(self).__name__} expects [batch, time, '
                       f'channels]; got shape {tuple(input_shape)}.')
    length = input_shape[1]
    if self.padding == 'valid' and length is not None and (
        length < self.kernel_size):
      raise ValueError(
          f"{type(self).__name__} with 'valid' padding needs at least "
          f'kernel_size={self.kernel_size} time steps; got shape '
          f'{tuple(input_shape)}.')

  def compute_output_shape(self, input_shape):
    return (input_shape[0],
            framing.num_frames(input_shape[1], self.kernel_size, self.strides,
                               self.padding), input_shape[2])

  # The stage interface (`stages.Stage`).

  def stage_geometry(self):
    return stages.Geometry(self.kernel_size, self.strides, self.padding)

  def _check_streamable(self):
    if self.padding != 'same':
      raise stages.StreamingRefused(
          "its pooling has 'valid' padding, so its frame count is (samples - "
          "window) // hop + 1, not ceil(samples / hop); only 'same' pooling "
          'is streamed (TimeDomainFilterbanks is refused).')

  def get_config(self):
    config = super().get_config()
    config.update({
        'kernel_size': self.kernel_size,
        'strides': self.strides,
        'padding': self.padding,
    })
    return config


class _KernelPooling1D(_Pooling1D):
  """A pooling layer whose window is a learnable kernel."""

  def __init__(self, kernel_size, strides, padding, kernel_initializer,
               kernel_regularizer, **kwargs):
    super().__init__(kernel_size, strides, padding, **kwargs)
    self.kernel_initializer = keras.initializers.get(kernel_initializer)
    self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)

  def stream_kind(self):
    self._check_streamable()
    return 'sum_pooling'

  def stream_windows(self):
    return self.windows()

  def fft_problem(self, role):
    pieces = blocks.num_pieces(self.kernel_size, self.strides)
    if pieces > blocks.MAX_PIECES:
      return (f'the pooling window ({self.kernel_size} samples) spans '
              f'{pieces} hops of {self.strides} samples; at most '
              f'{blocks.MAX_PIECES} are supported')
    return ''

  def call(self, inputs):
    if blocks.uses_blocks(self.kernel_size, self.strides):
      return strided_window_sum(inputs, self.windows(), self.strides,
                                self.padding)
    return self._convolve(inputs)  # a strided convolution

  def get_config(self):
    config = super().get_config()
    config.update({
        'kernel_initializer': keras.initializers.serialize(
            self.kernel_initializer),
        'kernel_regularizer': keras.regularizers.serialize(
            self.kernel_regularizer),
    })
    return config


@serialization.register()
class GaussianLowpassPooling(_KernelPooling1D):
  """Depthwise lowpass pooling with a learnable Gaussian window per channel.

  Channel c is convolved with `impulse_responses.gaussian_lowpass` of width
  sigma_c (relative to half the window; clipped to [2 / kernel_size, 0.5] in
  the forward pass) and sampled every `strides` steps. sigma = 0.4 is close to
  a Hann window (Zeghidour et al., ICLR 2021, Section 3.2).

  Args:
    kernel_size: int, window length in samples (401 = 25 ms at 16 kHz).
    strides: int, hop in samples, default 1 (the frontends use 160 = 10 ms).
    padding: 'same' (default) or 'valid', as in `tf.nn.depthwise_conv2d`.
    kernel_initializer: initializer of sigma [1, 1, channels, 1], default
      Constant(0.4).
    kernel_regularizer: optional regularizer of sigma.

  Input shape: [batch, time, channels].
  Output shape: [batch, frames, channels].

  Example:
    >>> pool = GaussianLowpassPooling(kernel_size=401, strides=160)
    >>> pool(tf.ones([1, 16000, 40])).shape
    TensorShape([1, 100, 40])
  """

  def __init__(self,
               kernel_size: int,
               strides: int = 1,
               padding: str = 'same',
               kernel_initializer=None,
               kernel_regularizer=None,
               **kwargs):
    if kernel_initializer is None:
      kernel_initializer = keras.initializers.Constant(0.4)
    super().__init__(kernel_size, strides, padding, kernel_initializer,
                     kernel_regularizer, **kwargs)
    if self.kernel_size < framing.MIN_WINDOW_SAMPLES:
      raise ValueError(
          f'GaussianLowpassPooling: kernel_size must be at least '
          f'{framing.MIN_WINDOW_SAMPLES} samples (a one-tap Gaussian window '
          f'has no width: NaN outputs); got {kernel_size}.')

  def build(self, input_shape):
    self._check_input(input_shape)
    if input_shape[-1] is None:
      raise ValueError('GaussianLowpassPooling needs a known number of '
                       f'channels; got shape {tuple(input_shape)}.')
    self.kernel = self.add_weight(
        name='kernel',
        shape=(1, 1, input_shape[-1], 1),
        initializer=self.kernel_initializer,
        regularizer=self.kernel_regularizer)

  def impulse_responses(self):
    """Gaussian windows [1, kernel_size, channels, 1]."""
    return impulse_responses.gaussian_lowpass(self.kernel, self.kernel_size)

  def windows(self):
    """The pooling windows [kernel_size, channels]."""
    return self.impulse_responses()[0, :, :, 0]

  def stage_parameters(self, sample_rate):
    width = impulse_responses.gaussian_lowpass_fwhm(
        np.asarray(self.kernel).reshape(-1), self.kernel_size)
    return {'pooling_width': stages.parameter(width * 1000. / sample_rate,
                                              'ms', 'log')}

  def _convolve(self, inputs):
    outputs = tf.nn.depthwise_conv2d(
        inputs[:, tf.newaxis],
        self.impulse_responses(),
        strides=(1, self.strides, self.strides, 1),
        padding=self.padding.upper())
    return outputs[:, 0]


@serialization.register()
class LearnablePooling1D(_KernelPooling1D):
  """Pooling with one learnable window shared by all channels.

  The window [1, kernel_size, 1, 1] is applied to every channel separately
  (a Conv2D over [batch, channels, time, 1]), as in Time-Domain filterbanks
  (Zeghidour et al., ICASSP 2018). Unlike the original release, `padding` is
  honoured; TimeDomainFilterbanks asks for 'valid'.

  Args:
    kernel_size: int, window length in samples.
    strides: int, hop in samples, default 1.
    padding: 'same' (default) or 'valid'.
    kernel_initializer: default `LowpassInit(window_len=None)`, a squared Hann
      window of kernel_size taps.
    kernel_regularizer: optional regularizer of the window.

  Input shape: [batch, time, channels].
  Output shape: [batch, frames, channels].
  """

  def __init__(self,
               kernel_size: int,
               strides: int = 1,
               padding: str = 'same',
               kernel_initializer=None,
               kernel_regularizer=None,
               **kwargs):
    if kernel_initializer is None:
      kernel_initializer = initializers.LowpassInit(window_len=None)
    super().__init__(kernel_size, strides, padding, kernel_initializer,
                     kernel_regularizer, **kwargs)

  def build(self, input_shape):
    self._check_input(input_shape)
    self.kernel = self.add_weight(
        name='kernel',
        shape=(1, self.kernel_size, 1, 1),
        initializer=self.kernel_initializer,
        regularizer=self.kernel_regularizer)

  def windows(self):
    """The window, shared by all channels, [kernel_size, 1]."""
    return tf.convert_to_tensor(self.kernel)[0, :, :, 0]

  def stage_parameters(self, sample_rate):
    window = np.asarray(self.kernel, np.float64).reshape(-1)
    width = impulse_responses.half_maximum_width(window)
    return {'pooling_width': stages.parameter(width * 1000. / sample_rate,
                                              'ms', 'log')}

  def _convolve(self, inputs):
    # [batch, time, channels] -> [batch, channels, time, 1]: one "image row"
    # per channel, so a single 2-D filter pools every channel alike.
    rows = tf.transpose(inputs, (0, 2, 1))[..., tf.newaxis]
    outputs = tf.nn.conv2d(
        rows,
        self.kernel,
        strides=(1, 1, self.strides, 1),
        padding=self.padding.upper())
    return tf.transpose(outputs[..., 0], (0, 2, 1))


@serialization.register()
class MaxPooling1D(_Pooling1D):
  """Max pooling over windows of `kernel_size` samples (SincNet).

  Args:
    kernel_size: int, window length in samples.
    strides: int, hop in samples, default 1.
    padding: 'same' (default) or 'valid'.

  Input shape: [batch, time, channels].
  Output shape: [batch, frames, channels].
  """

  def __init__(self,
               kernel_size: int,
               strides: int = 1,
               padding: str = 'same',
               **kwargs):
    super().__init__(kernel_size, strides, padding, **kwargs)

  def build(self, input_shape):
    self._check_input(input_shape)

  def stream_kind(self):
    self._check_streamable()
    return 'max_pooling'

  def fft_problem(self, role):
    return 'the pooling (MaxPooling1D) has no windows'

  def call(self, inputs):
    return tf.nn.max_pool1d(
        inputs,
        ksize=self.kernel_size,
        strides=self.strides,
        padding=self.padding.upper())
