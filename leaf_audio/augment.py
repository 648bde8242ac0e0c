"""SpecAugment for frontend outputs, without lingvo.

Park et al., "SpecAugment: A Simple Data Augmentation Method for Automatic
Speech Recognition", Interspeech 2019: a random time warp, then frequency
masks and time masks that set bands of channels / runs of frames to zero.
Randomness comes from a `keras.random.SeedGenerator`, so a seeded layer gives
the same masks run after run.
"""

import keras
import tensorflow as tf

from leaf_audio import serialization


@serialization.register()
class SpecAugment(keras.layers.Layer):
  """Random time warp, frequency masks and time masks, in training only.

  Each example gets its own masks. A frequency mask zeroes w consecutive
  channels, w uniform in [0, freq_mask_max_bins]; a time mask zeroes w
  consecutive frames, w uniform in [0, min(time_mask_max_frames,
  time_mask_max_ratio * frames)]. The time warp moves a random anchor frame by
  up to min(time_warp_max_frames, time_warp_max_ratio * frames) frames and
  stretches the two sides linearly (first and last frames stay in place).

  Args:
    freq_mask_max_bins: int, default 10.
    freq_mask_count: int, default 2.
    time_mask_max_frames: int, default 10.
    time_mask_count: int, default 2.
    time_mask_max_ratio: float, default 1.0.
    time_warp_max_frames: int, default 8; 0 disables the warp.
    time_warp_max_ratio: float, default 1.0.
    seed: int or None, default None.

  Input and output shape: [batch, frames, channels].

  Call arguments:
    training: bool; the input passes unchanged unless True.
  """

  def __init__(self,
               freq_mask_max_bins: int = 10,
               freq_mask_count: int = 2,
               time_mask_max_frames: int = 10,
               time_mask_count: int = 2,
               time_mask_max_ratio: float = 1.0,
               time_warp_max_frames: int = 8,
               time_warp_max_ratio: float = 1.0,
               seed=None,
               **kwargs):
    super().__init__(**kwargs)
    for name, value in [('freq_mask_max_bins', freq_mask_max_bins),
                        ('freq_mask_count', freq_mask_count),
                        ('time_mask_max_frames', time_mask_max_frames),
                        ('time_mask_count', time_mask_count),
                        ('time_warp_max_frames', time_warp_max_frames)]:
      if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f'SpecAugment: {name} must be an integer >= 0; got '
                         f'{value!r}.')
    for name, value in [('time_mask_max_ratio', time_mask_max_ratio),
                        ('time_warp_max_ratio', time_warp_max_ratio)]:
      if not 0. <= value <= 1.:
        raise ValueError(f'SpecAugment: {name} must be in [0, 1]; got '
                         f'{value!r}.')
    self.freq_mask_max_bins = freq_mask_max_bins
    self.freq_mask_count = freq_mask_count
    self.time_mask_max_frames = time_mask_max_frames
    self.time_mask_count = time_mask_count
    self.time_mask_max_ratio = time_mask_max_ratio
    self.time_warp_max_frames = time_warp_max_frames
    self.time_warp_max_ratio = time_warp_max_ratio
    self.seed = seed
    self.seed_generator = keras.random.SeedGenerator(seed)

  def _uniform(self, shape):
    return keras.random.uniform(shape, seed=self.seed_generator)

  def _band_mask(self, batch, length, max_width, count):
    """1.0 outside `count` random bands of up to max_width, [batch, length]."""
    max_width = tf.minimum(tf.cast(max_width, tf.float32),
                           tf.cast(length, tf.float32))
    widths = tf.floor(self._uniform((batch, count)) * (max_width + 1.))
    widths = tf.minimum(widths, max_width)
    starts = tf.floor(
        self._uniform((batch, count)) *
        (tf.cast(length, tf.float32) - widths + 1.))
    positions = tf.range(length, dtype=tf.float32)[tf.newaxis, tf.newaxis, :]
    inside = ((positions >= starts[..., tf.newaxis]) &
              (positions < (starts + widths)[..., tf.newaxis]))
    return 1. - tf.cast(tf.reduce_any(inside, axis=1), tf.float32)

  def _time_warp(self, inputs):
    batch = tf.shape(inputs)[0]
    frames = tf.shape(inputs)[1]
    last = tf.cast(frames - 1, tf.float32)
    max_shift = tf.minimum(
        float(self.time_warp_max_frames),
        tf.floor(self.time_warp_max_ratio * tf.cast(frames, tf.float32)))
    # Keep the anchor and its destination strictly inside (0, last).
    max_shift = tf.minimum(max_shift, tf.floor((last - 1.) / 2.))
    max_shift = tf.maximum(max_shift, 0.)
    anchor = max_shift + 1. + tf.floor(
        self._uniform((batch,)) * tf.maximum(last - 2. * max_shift - 1., 0.))
    anchor = tf.minimum(anchor, tf.maximum(last - 1., 0.))
    shift = tf.floor(self._uniform((batch,)) * (2. * max_shift + 1.)) - max_shift
    destination = anchor + shift
    out = tf.range(frames, dtype=tf.float32)[tf.newaxis, :]
    a = anchor[:, tf.newaxis]
    d = destination[:, tf.newaxis]
    # Piecewise-linear map from output frame to source frame through
    # (0, 0), (d, a) and (last, last).
    left = out * a / tf.maximum(d, 1.)
    right = a + (out - d) * (last - a) / tf.maximum(last - d, 1.)
    source = tf.clip_by_value(tf.where(out < d, left, right), 0., last)
    lower = tf.floor(source)
    upper = tf.minimum(lower + 1., last)
    frac = (source - lower)[..., tf.newaxis]
    lower_frames = tf.gather(inputs, tf.cast(lower, tf.int32), batch_dims=1)
    upper_frames = tf.gather(inputs, tf.cast(upper, tf.int32), batch_dims=1)
    warped = (1. - frac) * lower_frames + frac * upper_frames
    return tf.cond(frames >= 3, lambda: warped, lambda: inputs)

  def call(self, inputs, training=None):
    if not training:
      return inputs
    outputs = inputs
    if self.time_warp_max_frames > 0 and self.time_warp_max_ratio > 0:
      outputs = self._time_warp(outputs)
    batch = tf.shape(outputs)[0]
    frames = tf.shape(outputs)[1]
    channels = tf.shape(outputs)[2]
    if self.freq_mask_count:
      mask = self._band_mask(batch, channels, self.freq_mask_max_bins,
                             self.freq_mask_count)
      outputs = outputs * tf.cast(mask, outputs.dtype)[:, tf.newaxis, :]
    if self.time_mask_count:
      max_frames = tf.minimum(
          float(self.time_mask_max_frames),
          tf.floor(self.time_mask_max_ratio * tf.cast(frames, tf.float32)))
      mask = self._band_mask(batch, frames, max_frames, self.time_mask_count)
      outputs = outputs * tf.cast(mask, outputs.dtype)[:, :, tf.newaxis]
    return outputs

  def compute_output_shape(self, input_shape):
    return input_shape

  def get_config(self):
    config = super().get_config()
    config.update({
        'freq_mask_max_bins': self.freq_mask_max_bins,
        'freq_mask_count': self.freq_mask_count,
        'time_mask_max_frames': self.time_mask_max_frames,
        'time_mask_count': self.time_mask_count,
        'time_mask_max_ratio': self.time_mask_max_ratio,
        'time_warp_max_frames': self.time_warp_max_frames,
        'time_warp_max_ratio': self.time_warp_max_ratio,
        'seed': self.seed,
    })
    return config
