"""LogTBN, EfficientLEAF's compression: log, median subtraction, batch norm.

  temporal_median  the median over time of each channel (pure TensorFlow)
  LogTBN           log(1 + 10**a x) -> minus the median over time ->
                   temporal batch normalisation

Schlüter & Gutenbrunner ("EfficientLEAF: A Faster LEarnable Audio Frontend of
Questionable Use", EUSIPCO 2022, Section 3.3) replace PCEN, whose recursive
smoother runs frame after frame and whose learned parameters can turn its
output into NaN, by operations that run in parallel over time and have no
parameter that can leave a valid range.
"""

import math
from typing import Optional

import keras
import tensorflow as tf

from leaf_audio import serialization
from leaf_audio import stages
from leaf_audio import validation

# 10**a is computed for a in this range; beyond it float32 overflows.
_MAX_ABS_LOG10_GAIN = 30.


def temporal_median(inputs, window: Optional[int] = None):
  """The median over time of each channel: lower median, as torch.median.

  Args:
    inputs: float [batch, frames, channels].
    window: None for one median over all frames (broadcast back over time),
      or an odd number of frames for a running median centred on each frame
      (the edges repeat the first and last frames). A running median holds
      frames x window values per channel at once.

  Returns:
    float [batch, 1, channels] (window None) or [batch, frames, channels].
  """
  # [batch, channels, frames]: top_k works along the last axis.
  values = tf.transpose(inputs, (0, 2, 1))
  if window is None:
    frames = tf.shape(values)[-1]
    # The (frames // 2 + 1)-th largest value is sorted[(frames - 1) // 2].
    largest = tf.math.top_k(values, k=frames // 2 + 1, sorted=True).values
    return tf.transpose(largest[..., -1:], (0, 2, 1))
  half = window // 2
  padded = tf.concat([tf.repeat(values[..., :1], half, axis=-1), values,
                      tf.repeat(values[..., -1:], half, axis=-1)], axis=-1)
  framed = tf.signal.frame(padded, window, 1)  # [batch, channels, frames, w]
  largest = tf.math.top_k(framed, k=half + 1, sorted=True).values
  return tf.transpose(largest[..., -1], (0, 2, 1))


@serialization.register()
class LogTBN(stages.Stage, keras.layers.Layer):
  """Log compression, median subtraction and temporal batch normalisation.

    y = log(1 + 10**a_c x)          a_c learnable per channel (init a = 5)
    y = y - median_t(y)             per example and channel ('subtract'), or
        [y, y - median_t(y)]        both, 2 x channels ('append', the paper's)
    y = BatchNorm(y)                statistics over batch and time, per
                                    channel ("temporal batch norm")

  Nothing here is recursive in time and no parameter has a range to leave:
  log1p is finite for any non-negative input, a is clipped to [-30, 30] in
  the forward pass (10**a stays finite in float32), and the batch norm adds
  its epsilon before the square root. Schlüter & Gutenbrunner, EUSIPCO 2022.

  Args:
    log10_gain: float, default 5.0; initial a.
    learn_log10_gain: bool, default True; learn a.
    per_channel_gain: bool, default True; one a per channel instead of one.
    median: 'subtract' (default), 'append' (output 2 x channels: the
      log-compressed input, then the median-subtracted one; CPJKU's
      "medfiltapp"), or None (no median).
    median_window: None (default) for the median over the whole input, as in
      the paper, or an odd number of frames for a running median.
    affine: bool, default True; learn the batch norm's scale and offset.
    momentum: float, default 0.9; of the batch norm's moving statistics
      (PyTorch's momentum 0.1).
    epsilon: float, default 1e-5; added to the variance.
    **kwargs: Keras layer arguments.

  In training, frames holding NaN or inf are left out of the batch
  statistics (their outputs stay non-finite), so that one bad clip changes
  neither the other clips' outputs nor the moving statistics.

  Input shape: [batch, frames, channels], non-negative energies.
  Output shape: [batch, frames, channels], or [batch, frames, 2 * channels]
    with median='append'.

  Example:
    >>> LogTBN()(tf.ones([2, 100, 40])).shape
    TensorShape([2, 100, 40])
  """

  def __init__(self,
               log10_gain: float = 5.0,
               learn_log10_gain: bool = True,
               per_channel_gain: bool = True,
               median: Optional[str] = 'subtract',
               median_window: Optional[int] = None,
               affine: bool = True,
               momentum: float = 0.9,
               epsilon: float = 1e-5,
               **kwargs):
    super().__init__(**kwargs)
    owner = type(self).__name__
    if not abs(log10_gain) <= _MAX_ABS_LOG10_GAIN:
      raise ValueError(f'{owner}: log10_gain must be in [-30, 30] (10**a must '
                       f'fit in float32); got {log10_gain!r}.')
    if median not in ('subtract', 'append', None):
      raise ValueError(f"{owner}: median must be 'subtract', 'append' or None;"
                       f' got {median!r}.')
    if median_window is not None:
      validation.check_positive_int(owner, 'median_window', median_window)
      if median_window % 2 == 0:
        raise ValueError(f'{owner}: median_window must be odd so that the '
                         f'window is centred; got {median_window}.')
      if median is None:
        raise ValueError(f'{owner}: median_window={median_window} was given '
                         'but median=None computes no median.')
    if not 0. <= momentum < 1.:
      raise ValueError(f'{owner}: momentum must be in [0, 1); got '
                       f'{momentum!r}.')
    validation.check_positive_number(owner, 'epsilon', epsilon)
    self.log10_gain = log10_gain
    self.learn_log10_gain = bool(learn_log10_gain)
    self.per_channel_gain = bool(per_channel_gain)
    self.median = median
    self.median_window = median_window
    self.affine = bool(affine)
    self.momentum = momentum
    self.epsilon = epsilon
    self.batch_norm = keras.layers.BatchNormalization(
        axis=-1,
        momentum=momentum,
        epsilon=epsilon,
        center=self.affine,
        scale=self.affine,
        dtype=self.dtype_policy,
        name='temporal_batch_norm')

  def build(self, input_shape):
    channels = input_shape[-1]
    if len(input_shape) != 3 or channels is None:
      raise ValueError(f'{type(self).__name__} expects [batch, frames, '
                       'channels] with a known number of channels; got shape '
                       f'{tuple(input_shape)}.')
    self.gain = self.add_weight(
        name='log10_gain',
        shape=(channels,) if self.per_channel_gain else (1,),
        initializer=keras.initializers.Constant(self.log10_gain),
        trainable=self.learn_log10_gain)
    self.batch_norm.build(self.compute_output_shape(input_shape))

  def call(self, inputs, training=None):
    gain = tf.clip_by_value(self.gain, -_MAX_ABS_LOG10_GAIN,
                            _MAX_ABS_LOG10_GAIN)
    outputs = tf.math.log1p(inputs * tf.exp(gain * math.log(10.)))
    if self.median is not None:
      filtered = outputs - temporal_median(outputs, self.median_window)
      outputs = (tf.concat([outputs, filtered], axis=-1)
                 if self.median == 'append' else filtered)
    # In training, the batch statistics come from the finite frames only: a
    # clip holding NaN (NaN throughout, validation.mark_non_finite_clips)
    # would otherwise make every clip's output and the moving statistics NaN.
    finite = tf.reduce_all(tf.math.is_finite(outputs), axis=-1)
    return self.batch_norm(outputs, training=training, mask=finite)

  # The stage interface (`stages.Stage`).

  def stage_parameters(self, sample_rate):
    del sample_rate
    return {'log10_gain': stages.parameter(self.gain)}

  def stream_kind(self):
    if self.median is not None:
      raise stages.StreamingRefused(
          'LogTBN subtracts the median over all the frames of a clip, which '
          "a stream never has. Stream EfficientLeaf with compression="
          "'pcen' or 'log_pcen' (or LogTBN(median=None)).")
    return 'pointwise'  # batch norm with its moving statistics (inference).

  def compute_output_shape(self, input_shape):
    channels = input_shape[-1]
    if self.median == 'append' and channels is not None:
      channels *= 2
    return tuple(input_shape[:-1]) + (channels,)

  def get_config(self):
    config = super().get_config()
    config.update({
        'log10_gain': self.log10_gain,
        'learn_log10_gain': self.learn_log10_gain,
        'per_channel_gain': self.per_channel_gain,
        'median': self.median,
        'median_window': self.median_window,
        'affine': self.affine,
        'momentum': self.momentum,
        'epsilon': self.epsilon,
    })
    return config
