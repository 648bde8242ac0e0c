"""The non-linearity after a complex filterbank: the squared modulus."""

import keras
import tensorflow as tf

from leaf_audio import serialization
from leaf_audio import stages


@serialization.register()
class SquaredModulus(stages.Stage, keras.layers.Layer):
  """Energy of complex channels given as interleaved real/imaginary parts.

  Computes real**2 + imag**2 for each pair of channels (2i, 2i + 1).

  Input shape: [batch, time, 2 * channels], real and imaginary interleaved.
  Output shape: [batch, time, channels].

  Example:
    >>> SquaredModulus()(tf.constant([[[3., 4., 1., 0.]]])).numpy()
    array([[[25.,  1.]]], dtype=float32)
  """

  def build(self, input_shape):
    if input_shape[-1] is not None and input_shape[-1] % 2:
      raise ValueError(
          'SquaredModulus expects an even number of channels (real and '
          f'imaginary parts interleaved); got shape {tuple(input_shape)}.')

  def call(self, inputs):
    channels = inputs.shape[-1]
    if channels is None:
      return tf.square(inputs[..., 0::2]) + tf.square(inputs[..., 1::2])
    # The same sums, pairs as a new last axis: TFLite's STRIDED_SLICE with
    # a stride copies element by element (4x slower in LiteRT than this).
    pairs = tf.reshape(tf.square(inputs), tf.concat(
        [tf.shape(inputs)[:-1], [channels // 2, 2]], axis=0))
    return tf.reduce_sum(pairs, axis=-1)

  def stream_kind(self):
    return 'pointwise'

  def fft_problem(self, role):
    return ''  # the FFT method computes the squared modulus itself.

  def compute_output_shape(self, input_shape):
    channels = input_shape[-1]
    return tuple(input_shape[:-1]) + (None if channels is None else
                                      channels // 2,)

  def get_config(self):
    # No arguments of its own; defined so that Keras does not try to derive
    # the config from the constructor call (a dtype policy object).
    return super().get_config()
