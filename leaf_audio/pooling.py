"""Downsampling in time after the filterbank: lowpass pooling.

  GaussianLowpassPooling  one learnable Gaussian window per channel (LEAF)
  LearnablePooling1D      one learnable window shared by all channels (TD-fbanks)
  MaxPooling1D            max over each window (SincNet)

All take [batch, time, channels] and share the constructor protocol the
frontends use: (kernel_size, strides, padding, ...). Layers with a kernel also
take kernel_initializer and kernel_regularizer.
"""

import keras
import tensorflow as tf

from leaf_audio import framing
from leaf_audio import impulse_responses
from leaf_audio import initializers
from leaf_audio import serialization
from leaf_audio import validation


# Windows spanning at most this many hops are summed block by block (below);
# longer ones (small strides) use a depthwise convolution.
_MAX_BLOCKS_PER_WINDOW = 8


def strided_window_sum(inputs, windows, stride: int, padding: str):
  """sum_j x[f * stride + j - left, c] * windows[j, c], for the kept frames f.

  The same function as a depthwise convolution with TF's padding, but computed
  only at the frames that the stride keeps: the padded input is cut into
  blocks of `stride` samples, the window into ceil(k / stride) pieces, and
  each piece meets its block through one einsum. For LEAF's 401-tap window
  and 160-sample stride this is 3 small matrix products instead of a
  convolution evaluated at every sample and then subsampled (whose backward
  pass dominated a training step).

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
  blocks_per_window = -(-kernel_size // stride)
  length = tf.shape(inputs)[1]
  frames, left, _ = framing.frames_and_padding(length, kernel_size, stride,
                                               padding)
  padded_length = (frames - 1 + blocks_per_window) * stride
  right = tf.maximum(padded_length - length - left, 0)
  padded = tf.pad(inputs, [[0, 0], [left, right], [0, 0]])[:, :padded_length]
  batch, channels = tf.shape(inputs)[0], windows.shape[1]
  # [channels or 1, batch * blocks, stride]: channels lead, so that one batched
  # matmul applies every piece of each channel's window to every block.
  blocks = tf.reshape(tf.transpose(padded, (2, 0, 1)),
                      [tf.shape(padded)[2], -1, stride])
  pieces = tf.reshape(
      tf.pad(windows, [[0, blocks_per_window * stride - kernel_size], [0, 0]]),
      [blocks_per_window, stride, channels])
  products = tf.matmul(blocks, tf.transpose(pieces, (2, 1, 0)))
  products = tf.reshape(products, [tf.shape(padded)[2], batch, -1,
                                   blocks_per_window])
  # Frame f adds piece m applied to block f + m.
  outputs = 0.
  for piece in range(blocks_per_window):
    outputs += products[:, :, piece:piece + frames, piece]
  return tf.transpose(outputs, (1, 2, 0))


def _uses_blocks(kernel_size: int, stride: int) -> bool:
  return stride > 1 and -(-kernel_size // stride) <= _MAX_BLOCKS_PER_WINDOW


class _Pooling1D(keras.layers.Layer):
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
    length = input_shape[1]
    if length is not None:
      if self.padding == 'same':
        length = -(-length // self.strides)
      else:
        length = (length - self.kernel_size) // self.strides + 1
    return (input_shape[0], length, input_shape[2])

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

  def call(self, inputs):
    windows = self.impulse_responses()
    if _uses_blocks(self.kernel_size, self.strides):
      return strided_window_sum(inputs, windows[0, :, :, 0], self.strides,
                                self.padding)
    outputs = tf.nn.depthwise_conv2d(
        inputs[:, tf.newaxis],
        windows,
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

  def call(self, inputs):
    if _uses_blocks(self.kernel_size, self.strides):
      return strided_window_sum(inputs, self.windows(), self.strides,
                                self.padding)
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

  def call(self, inputs):
    return tf.nn.max_pool1d(
        inputs,
        ksize=self.kernel_size,
        strides=self.strides,
        padding=self.padding.upper())
