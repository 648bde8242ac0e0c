"""Classifiers built around a leaf_audio frontend, and the encoders they use.

  waveform [batch, samples]
    -> LoudnessNormalization   per-example gain, inside the graph
    -> frontend                e.g. leaf_audio.Leaf(): [batch, frames, channels]
    -> encoder                 ConvNet, PANNEncoder, EfficientNetB0Encoder on
                               [batch, frames, channels, 1] "images"
    -> global pooling, dropout, Dense -> logits [batch, num_outputs]

`AudioClassifier` is the model trained on fixed-length crops (1 s in the
paper); `WindowedClassifier` wraps a trained one to score clips of any length
by averaging the logits of consecutive windows, the paper's evaluation.

Every class is registered with Keras (package 'leaf_audio_experiments'), so
`.keras` files reload once this module is imported. This module does not use
gin: `experiments/configurables.py` registers the classes with gin.
"""

import functools
import math
import numbers
from typing import Optional, Sequence

import keras
import tensorflow as tf

import leaf_audio
from leaf_audio import serialization
from leaf_audio import validation

PACKAGE = 'leaf_audio_experiments'

register = functools.partial(
    keras.saving.register_keras_serializable, package=PACKAGE)


def _check_rate(owner: str, name: str, value) -> float:
  """A dropout rate: a number in [0, 1)."""
  if (isinstance(value, bool) or not isinstance(value, numbers.Real) or
      not 0 <= value < 1):
    raise ValueError(f'{owner}: {name} must be a number in [0, 1); got '
                     f'{value!r}.')
  return float(value)


def _check_finite(owner: str, name: str, value) -> float:
  if (isinstance(value, bool) or not isinstance(value, numbers.Real) or
      not math.isfinite(value)):
    raise ValueError(f'{owner}: {name} must be a finite number; got '
                     f'{value!r}.')
  return float(value)


def _as_layer(owner: str, name: str, value, allow_none: bool):
  """A layer argument given as a layer or as its Keras config."""
  if isinstance(value, dict):
    value = keras.saving.deserialize_keras_object(value)
  if value is None and allow_none:
    return None
  if not isinstance(value, keras.layers.Layer):
    expected = 'a Keras layer or None' if allow_none else 'a Keras layer'
    raise TypeError(f'{owner}: {name} must be {expected}; got {value!r}.')
  return value


def _check_image_shape(owner: str, input_shape):
  """Checks [batch, time, frequency, 1]; returns it as a tuple."""
  shape = tuple(input_shape)
  if len(shape) != 4 or shape[-1] not in (1, None):
    raise ValueError(
        f'{owner} expects a one-channel time-frequency image of shape '
        f'[batch, time, frequency, 1]; got shape {shape}. AudioClassifier '
        'adds the channel axis to the frontend output [batch, frames, '
        'channels].')
  return shape


def _pooled_size(size: Optional[int], times_halved: int) -> Optional[int]:
  """Length of an axis after `times_halved` 2x poolings with 'same' padding."""
  if size is None:
    return None
  for _ in range(times_halved):
    size = -(-size // 2)
  return size


@register()
class LoudnessNormalization(keras.layers.Layer):
  """Scales each example to a target level, with a bounded gain.

  gain = min(10 ** (max_gain_db / 20), 10 ** (target_db / 20) / (std + 1e-9))
  output = audio * gain

  where std is the example's standard deviation over time (all non-batch
  axes). This is the original LEAF release's preprocessing; as a layer it runs
  inside the model graph, so training, evaluation and serving apply the same
  normalisation. The cap keeps near-silent clips from being amplified into
  noise: silence (std 0) gets the maximal gain and stays 0. The gain is
  treated as a constant in backpropagation, as preprocessing would be (its
  gradient at silence would be infinite).

  Args:
    target_db: float, default 15; target standard deviation in dB relative to
      an amplitude of 1 (20 log10(std)); 15 dB is a std of 5.62.
    max_gain_db: float, default 30; largest gain in dB (a factor of 31.6).
    **kwargs: Keras layer arguments (name, dtype; dtype defaults to float32
      so that waveforms are never rounded to float16 under mixed precision).

  Input shape: [batch, samples] or [batch, samples, 1], float.
  Output shape: same as the input.

  Example:
    >>> LoudnessNormalization()(tf.ones([2, 16000]) * 0.1).shape
    TensorShape([2, 16000])
  """

  def __init__(self, target_db: float = 15.0, max_gain_db: float = 30.0,
               **kwargs):
    kwargs.setdefault('dtype', 'float32')
    super().__init__(**kwargs)
    owner = type(self).__name__
    self.target_db = _check_finite(owner, 'target_db', target_db)
    self.max_gain_db = _check_finite(owner, 'max_gain_db', max_gain_db)

  def build(self, input_shape):
    validation.waveform_shape(type(self).__name__, input_shape)

  def call(self, inputs):
    axes = list(range(1, len(inputs.shape)))
    std = tf.math.reduce_std(inputs, axis=axes, keepdims=True)
    target = 10.0**(self.target_db / 20.0)
    max_gain = 10.0**(self.max_gain_db / 20.0)
    gain = tf.minimum(max_gain, target / (std + 1e-9))
    return inputs * tf.stop_gradient(gain)

  def compute_output_shape(self, input_shape):
    return tuple(input_shape)

  def get_config(self):
    config = super().get_config()
    config.update({
        'target_db': self.target_db,
        'max_gain_db': self.max_gain_db,
    })
    return config


@register()
class ConvNet(keras.layers.Layer):
  """The original LEAF release's encoder: separable time/frequency conv blocks.

  Block i: Conv2D(filters[i], [3, 1]) (along time) -> activation ->
  [BatchNorm] -> [Dropout], then Conv2D(filters[i], [1, 3]) (along
  frequency) -> activation -> [BatchNorm] -> [Dropout]; 'same' padding.
  Blocks 0, 1, 3, 5, ... (the first and every odd one) end with 2x2 max
  pooling with 'same' padding, so an axis of length 1 stays 1 instead of
  vanishing.

  Args:
    filters: sequence of positive ints, default (64, 128, 256, 256, 512,
      512); output channels of each block (its length is the depth).
    activation: Keras activation (name or function), default 'relu'.
    dropout: rate in [0, 1), default 0.1; after each activation (and batch
      norm), in training only. 0 disables it.
    normalization: bool, default True; batch normalisation after each
      activation.
    batch_norm_momentum: float, default 0.99 (Keras'); momentum of the batch
      norm moving statistics. Short runs want less (0.9): with a learnable
      frontend the features drift while it trains, and statistics that lag
      behind make the inference-mode model much worse than the training one.
    **kwargs: Keras layer arguments (name, dtype).

  Input shape: [batch, time, frequency, 1].
  Output shape: [batch, ceil(time / 2**p), ceil(frequency / 2**p),
    filters[-1]] where p = 1 + len(filters) // 2 poolings (4 by default:
    100 frames x 40 filters -> 7 x 3).

  Example:
    >>> ConvNet(filters=(8, 16))(tf.zeros([2, 100, 40, 1])).shape
    TensorShape([2, 25, 10, 16])
  """

  def __init__(self,
               filters: Sequence[int] = (64, 128, 256, 256, 512, 512),
               activation='relu',
               dropout: float = 0.1,
               normalization: bool = True,
               batch_norm_momentum: float = 0.99,
               **kwargs):
    super().__init__(**kwargs)
    owner = type(self).__name__
    if isinstance(filters, numbers.Integral) or not filters:
      raise ValueError(f'{owner}: filters must be a non-empty sequence of '
                       f'positive integers; got {filters!r}.')
    self.filters = tuple(
        validation.check_positive_int(owner, 'filters', f) for f in filters)
    self.activation = keras.activations.get(activation)
    self.dropout = _check_rate(owner, 'dropout', dropout)
    self.normalization = bool(normalization)
    self.batch_norm_momentum = _check_rate(owner, 'batch_norm_momentum',
                                           batch_norm_momentum)
    self._stages = []
    for block, block_filters in enumerate(self.filters):
      for axis_name, kernel_size in (('time', (3, 1)), ('frequency', (1, 3))):
        prefix = f'block{block}_{axis_name}'
        self._stages.append(
            keras.layers.Conv2D(block_filters, kernel_size, padding='same',
                                name=f'{prefix}_conv'))
        self._stages.append(
            keras.layers.Activation(self.activation, name=f'{prefix}_act'))
        if self.normalization:
          self._stages.append(
              keras.layers.BatchNormalization(
                  momentum=self.batch_norm_momentum, name=f'{prefix}_bn'))
        if self.dropout > 0:
          self._stages.append(
              keras.layers.Dropout(self.dropout, name=f'{prefix}_dropout'))
      if self._pools_after(block):
        self._stages.append(
            keras.layers.MaxPooling2D((2, 2), padding='same',
                                      name=f'block{block}_pool'))

  @staticmethod
  def _pools_after(block: int) -> bool:
    return block == 0 or block % 2 == 1

  def build(self, input_shape):
    shape = _check_image_shape(type(self).__name__, input_shape)
    for layer in self._stages:
      layer.build(shape)
      shape = layer.compute_output_shape(shape)

  def call(self, inputs, training=None):
    outputs = inputs
    for layer in self._stages:
      outputs = layer(outputs, training=training)
    return outputs

  def compute_output_shape(self, input_shape):
    shape = _check_image_shape(type(self).__name__, input_shape)
    poolings = sum(self._pools_after(b) for b in range(len(self.filters)))
    return (shape[0], _pooled_size(shape[1], poolings),
            _pooled_size(shape[2], poolings), self.filters[-1])

  def get_config(self):
    config = super().get_config()
    config.update({
        'filters': list(self.filters),
        'activation': keras.activations.serialize(self.activation),
        'dropout': self.dropout,
        'normalization': self.normalization,
        'batch_norm_momentum': self.batch_norm_momentum,
    })
    return config


@register()
class PANNEncoder(keras.layers.Layer):
  """CNN14-style encoder of PANNs (Kong et al., 2020, arXiv:1912.10211).

  BatchNorm over the frequency axis of the input (one mean and variance per
  frequency channel, PANN's `bn0`), then `depth` blocks: two times
  (Conv2D 3x3 without bias -> BatchNorm -> ReLU), then 2x2 average pooling
  ('same' padding) for the first 5 blocks only, then dropout. Block i has
  min(64 * 2**i, 2048) filters; depth 6 is CNN14's 64 ... 2048.

  Args:
    depth: positive int, default 6; number of blocks.
    dropout_rate: rate in [0, 1), default 0.2; after each block, in training
      only.
    **kwargs: Keras layer arguments (name, dtype).

  Input shape: [batch, time, frequency, 1]; frequency must be known when the
    layer is built (the input batch norm has one statistic per frequency).
  Output shape: [batch, ceil(time / 2**p), ceil(frequency / 2**p),
    min(64 * 2**(depth - 1), 2048)], p = min(depth, 5) (100 x 40 -> 4 x 2
    with 2048 channels by default).

  Example:
    >>> PANNEncoder(depth=2)(tf.zeros([2, 100, 40, 1])).shape
    TensorShape([2, 25, 10, 128])
  """

  MAX_FILTERS = 2048
  POOLED_BLOCKS = 5

  def __init__(self, depth: int = 6, dropout_rate: float = 0.2, **kwargs):
    super().__init__(**kwargs)
    owner = type(self).__name__
    self.depth = validation.check_positive_int(owner, 'depth', depth)
    self.dropout_rate = _check_rate(owner, 'dropout_rate', dropout_rate)
    self._input_norm = keras.layers.BatchNormalization(
        axis=2, name='frequency_bn')
    self._stages = []
    for block in range(self.depth):
      filters = self._filters(block)
      for conv in range(2):
        prefix = f'block{block}_conv{conv}'
        self._stages += [
            keras.layers.Conv2D(filters, 3, padding='same', use_bias=False,
                                name=prefix),
            keras.layers.BatchNormalization(name=f'{prefix}_bn'),
            keras.layers.ReLU(name=f'{prefix}_relu'),
        ]
      if block < self.POOLED_BLOCKS:
        self._stages.append(
            keras.layers.AveragePooling2D((2, 2), padding='same',
                                          name=f'block{block}_pool'))
      self._stages.append(
          keras.layers.Dropout(self.dropout_rate, name=f'block{block}_dropout'))

  def _filters(self, block: int) -> int:
    return min(64 * 2**block, self.MAX_FILTERS)

  def build(self, input_shape):
    owner = type(self).__name__
    shape = _check_image_shape(owner, input_shape)
    if shape[2] is None:
      raise ValueError(
          f'{owner} normalises each frequency channel of its input and needs '
          f'a known frequency axis; got input shape {shape}.')
    self._input_norm.build(shape)
    for layer in self._stages:
      layer.build(shape)
      shape = layer.compute_output_shape(shape)

  def call(self, inputs, training=None):
    outputs = self._input_norm(inputs, training=training)
    for layer in self._stages:
      outputs = layer(outputs, training=training)
    return outputs

  def compute_output_shape(self, input_shape):
    shape = _check_image_shape(type(self).__name__, input_shape)
    poolings = min(self.depth, self.POOLED_BLOCKS)
    return (shape[0], _pooled_size(shape[1], poolings),
            _pooled_size(shape[2], poolings), self._filters(self.depth - 1))

  def get_config(self):
    config = super().get_config()
    config.update({
        'depth': self.depth,
        'dropout_rate': self.dropout_rate,
    })
    return config


@register()
class EfficientNetB0Encoder(keras.layers.Layer):
  """`keras.applications.EfficientNetB0` as a one-channel encoder (the paper's).

  The network is EfficientNetB0 without its classification top, randomly
  initialised (weights=None), built for inputs (None, None, 1). Keras'
  EfficientNet (V1) always starts with ImageNet pixel preprocessing
  (Rescaling(1 / 255) and a Normalization layer) and, unlike EfficientNetV2,
  has no `include_preprocessing` switch; this class cuts those two layers off
  so the network sees the frontend features unscaled. Wrapping the
  application in a registered layer also makes `.keras` files rebuild it from
  this class's config.

  Both spatial axes are downsampled 5 times by stride-2 'valid' convolutions
  after a (0, 1) zero padding, so each axis of length n becomes floor(n / 32);
  inputs need at least 32 frames and 32 frequency channels (shorter axes give
  an empty output, so `build` and `call` reject them).

  Args:
    **kwargs: Keras layer arguments (name, dtype).

  Input shape: [batch, time, frequency, 1]; time, frequency >= 32.
  Output shape: [batch, time // 32, frequency // 32, 1280]
    (100 frames x 40 filters -> 3 x 1 x 1280).

  Example:
    >>> EfficientNetB0Encoder()(tf.zeros([2, 100, 40, 1])).shape
    TensorShape([2, 3, 1, 1280])
  """

  MIN_SIZE = 32
  DOWNSAMPLING = 32
  OUTPUT_CHANNELS = 1280

  def __init__(self, **kwargs):
    super().__init__(**kwargs)
    application = keras.applications.EfficientNetB0(
        include_top=False, weights=None, input_shape=(None, None, 1),
        pooling=None)
    # The layer after the ImageNet preprocessing: starting the graph at its
    # input drops Rescaling and Normalization (Keras clones the graph from an
    # intermediate tensor).
    stem = application.get_layer('stem_conv_pad')
    self._network = keras.Model(stem.input, application.output,
                                name='efficientnetb0')

  def _check_size(self, shape):
    for axis, name in ((1, 'time'), (2, 'frequency')):
      if shape[axis] is not None and shape[axis] < self.MIN_SIZE:
        raise ValueError(
            f'{type(self).__name__} downsamples by {self.DOWNSAMPLING} and '
            f'needs at least {self.MIN_SIZE} steps along {name} (axis '
            f'{axis}); got input shape {shape}. Use longer windows or more '
            'frontend filters.')

  def build(self, input_shape):
    shape = _check_image_shape(type(self).__name__, input_shape)
    self._check_size(shape)

  def call(self, inputs, training=None):
    self._check_size(tuple(inputs.shape))
    if None in inputs.shape[1:3]:
      tf.debugging.assert_greater_equal(
          tf.shape(inputs)[1:3], self.MIN_SIZE,
          message=(f'{type(self).__name__} needs at least {self.MIN_SIZE} '
                   'frames and frequency channels'))
    return self._network(inputs, training=training)

  def compute_output_shape(self, input_shape):
    shape = _check_image_shape(type(self).__name__, input_shape)
    downsample = lambda n: None if n is None else n // self.DOWNSAMPLING
    return (shape[0], downsample(shape[1]), downsample(shape[2]),
            self.OUTPUT_CHANNELS)


_POOLING_2D = {
    'max': keras.layers.GlobalMaxPooling2D,
    'mean': keras.layers.GlobalAveragePooling2D,
}
_POOLING_1D = {
    'max': keras.layers.GlobalMaxPooling1D,
    'mean': keras.layers.GlobalAveragePooling1D,
}


@register()
class AudioClassifier(keras.Model):
  """Waveforms -> loudness normalisation -> frontend -> encoder -> logits.

  inputs [batch, samples] -> `normalization` -> `frontend` [batch, frames,
  channels] -> add a channel axis [batch, frames, channels, 1] -> `encoder`
  [batch, time', frequency', features] -> global max or mean pooling over
  time and frequency [batch, features] -> dropout -> Dense -> logits.

  Without an encoder, the frontend output is pooled over time only, so the
  head sees one feature per frontend channel [batch, channels] (pooling a
  one-channel image over both axes would leave a single number).

  Args:
    frontend: Keras layer mapping [batch, samples] to [batch, frames,
      channels], e.g. `leaf_audio.Leaf()`.
    encoder: Keras layer on [batch, frames, channels, 1], e.g. `ConvNet()`;
      None for none.
    num_outputs: positive int; number of logits (classes).
    normalization: layer applied to the waveforms first; DEFAULT makes a new
      `LoudnessNormalization()`, None disables it.
    pooling: 'max' (default, as in the original release) or 'mean'.
    dropout: rate in [0, 1), default 0; before the Dense head, in training
      only.
    **kwargs: Keras model arguments (name, trainable, dtype). The dtype
      policy is the global one by default (so `compile` adds loss scaling
      under mixed_float16), but the model does not autocast its inputs: the
      waveforms reach the normalisation and the frontend (float32 layers)
      unrounded.

  Input shape: [batch, samples], float (1 s crops in training).
  Output shape: [batch, num_outputs] float32 logits (the head computes in
    float32 so that losses stay stable under mixed precision).

  Example:
    >>> model = AudioClassifier(leaf_audio.MelFilterbanks(), ConvNet((8, 16)),
    ...                         num_outputs=10)
    >>> model(tf.zeros([2, 16000])).shape
    TensorShape([2, 10])
  """

  def __init__(self,
               frontend,
               encoder,
               num_outputs: int,
               normalization=leaf_audio.DEFAULT,
               pooling: str = 'max',
               dropout: float = 0.0,
               **kwargs):
    # Casting waveforms to float16 would add noise at -66 dB of their level.
    kwargs.setdefault('autocast', False)
    super().__init__(**kwargs)
    owner = type(self).__name__
    self.num_outputs = validation.check_positive_int(owner, 'num_outputs',
                                                     num_outputs)
    self.pooling = validation.check_choice(owner, 'pooling', pooling,
                                           set(_POOLING_2D))
    self.dropout = _check_rate(owner, 'dropout', dropout)
    if normalization is leaf_audio.DEFAULT:
      normalization = LoudnessNormalization(name='loudness_normalization')
    self._normalization = _as_layer(owner, 'normalization', normalization,
                                    allow_none=True)
    self._frontend = _as_layer(owner, 'frontend', frontend, allow_none=False)
    self._encoder = _as_layer(owner, 'encoder', encoder, allow_none=True)
    pooling_cls = (_POOLING_2D if self._encoder is not None else
                   _POOLING_1D)[self.pooling]
    self._global_pooling = pooling_cls(name=f'global_{self.pooling}_pooling')
    self._dropout = (
        keras.layers.Dropout(self.dropout, name='dropout')
        if self.dropout > 0 else None)
    self._head = keras.layers.Dense(
        self.num_outputs, dtype='float32', name='logits')

  @property
  def frontend(self) -> keras.layers.Layer:
    return self._frontend

  @property
  def encoder(self) -> Optional[keras.layers.Layer]:
    return self._encoder

  @property
  def normalization(self) -> Optional[keras.layers.Layer]:
    return self._normalization

  def build(self, input_shape):
    shape = tuple(input_shape)
    if len(shape) != 2:
      raise ValueError(
          f'{type(self).__name__} expects waveforms of shape [batch, '
          f'samples]; got shape {shape}.')
    # Tracing the model once on a symbolic input builds every layer in order
    # with the shape it will see, whatever the frontend and encoder are.
    self.call(keras.KerasTensor(shape, dtype='float32'))

  def call(self, inputs, training=None):
    outputs = inputs
    if self._normalization is not None:
      outputs = self._normalization(outputs, training=training)
    outputs = self._frontend(outputs, training=training)
    return self.classify_features(outputs, training=training)

  def classify_features(self, features, training=None):
    """Logits [batch, num_outputs] of frontend features [batch, frames, channels].

    The encoder, global pooling, dropout and head: what `call` applies after
    the frontend (the streaming classifier feeds it streamed frames).
    """
    outputs = features
    if self._encoder is not None:
      outputs = self._encoder(
          keras.ops.expand_dims(outputs, -1), training=training)
    outputs = self._global_pooling(outputs)
    if self._dropout is not None:
      outputs = self._dropout(outputs, training=training)
    return self._head(outputs)

  def compute_output_shape(self, input_shape):
    return (tuple(input_shape)[0], self.num_outputs)

  def get_config(self):
    config = super().get_config()
    config.update({
        'frontend': serialization.serialize(self._frontend),
        'encoder': serialization.serialize(self._encoder),
        'num_outputs': self.num_outputs,
        # Always a layer config or None, never DEFAULT: a reloaded model keeps
        # the normalisation it was trained with.
        'normalization': serialization.serialize(self._normalization),
        'pooling': self.pooling,
        'dropout': self.dropout,
    })
    return config

  @classmethod
  def from_config(cls, config):
    config = dict(config)
    for key in ('frontend', 'encoder', 'normalization'):
      if key in config:
        config[key] = serialization.deserialize(config[key])
    return cls(**config)


def window_starts(samples, window: int):
  """int32 [windows]: where `WindowedClassifier` cuts a clip of `samples`.

  ceil(samples / window) windows of `window` samples: consecutive ones from
  the start, the last one ending at the clip's end; one window (starting at
  0, the clip zero-padded) when the clip is shorter than a window.
  """
  length = tf.maximum(samples, window)
  return tf.minimum(
      tf.range((length + window - 1) // window) * window, length - window)


@register()
class WindowedClassifier(keras.Model):
  """Scores clips of any length with a classifier trained on fixed windows.

  A clip of n >= window_samples samples is cut into ceil(n / window_samples)
  windows: consecutive ones from the start, and the last one ending at the
  clip's end (so it overlaps its neighbour instead of being zero-padded: a
  mostly silent padded window would skew the average). A clip shorter than a
  window is zero-padded at the end to one window, as training pads short
  clips. The classifier runs on all windows of the batch at once ([batch *
  windows, window_samples]) and each clip's logits are the mean over its
  windows: the evaluation protocol of the LEAF paper. Any normalisation inside
  the classifier (e.g. `LoudnessNormalization`) applies to each window, as it
  did to each training crop.

  Works with unknown batch size and clip length, e.g. inside a tf.function
  with input_signature [tf.TensorSpec([None, None], tf.float32)].

  Args:
    classifier: Keras model mapping [batch, window_samples] to logits [batch,
      num_outputs], e.g. a trained `AudioClassifier`.
    window_samples: positive int, default 16000 (1 s at 16 kHz); the window
      the classifier was trained on.
    **kwargs: Keras model arguments (name, dtype; dtype defaults to float32,
      the dtype of `AudioClassifier`'s inputs and logits).

  Input shape: [batch, samples], float, samples >= 1.
  Output shape: [batch, num_outputs], the mean logits.

  Example:
    >>> windowed = WindowedClassifier(model, window_samples=16000)
    >>> windowed(tf.zeros([2, 40000])).shape  # 3 windows per clip.
    TensorShape([2, 10])
  """

  def __init__(self, classifier, window_samples: int = 16000, **kwargs):
    kwargs.setdefault('dtype', 'float32')
    super().__init__(**kwargs)
    owner = type(self).__name__
    self._classifier = _as_layer(owner, 'classifier', classifier,
                                 allow_none=False)
    self.window_samples = validation.check_positive_int(
        owner, 'window_samples', window_samples)
    if self._classifier.built:
      # No state of its own: wrapping a trained classifier gives a built
      # model, which exporting (keras.export.ExportArchive) requires.
      self.build((None, None))

  @property
  def classifier(self) -> keras.layers.Layer:
    return self._classifier

  def _check_shape(self, shape):
    if len(shape) != 2 or (shape[1] is not None and shape[1] < 1):
      raise ValueError(
          f'{type(self).__name__} expects waveforms of shape [batch, samples]'
          f' with at least one sample; got shape {tuple(shape)}.')

  def build(self, input_shape):
    self._check_shape(tuple(input_shape))
    if not self._classifier.built:
      self._classifier.build((None, self.window_samples))

  def call(self, inputs, training=None):
    self._check_shape(tuple(inputs.shape))
    if inputs.shape[1] is None:
      # An empty clip would have no window and a NaN mean.
      tf.debugging.assert_positive(
          tf.shape(inputs)[1],
          message=f'{type(self).__name__} needs at least one sample')
    window = self.window_samples
    samples = tf.shape(inputs)[1]
    padded = tf.pad(inputs, [[0, 0], [0, tf.maximum(window - samples, 0)]])
    starts = window_starts(samples, window)
    windows = tf.gather(  # [batch, windows, window_samples]
        padded, starts[:, tf.newaxis] + tf.range(window)[tf.newaxis], axis=1)
    batch_and_windows = tf.shape(windows)[:2]
    logits = self._classifier(
        tf.reshape(windows, [-1, self.window_samples]), training=training)
    logits = tf.reshape(
        logits, tf.concat([batch_and_windows, tf.shape(logits)[1:]], axis=0))
    return tf.reduce_mean(logits, axis=1)

  def compute_output_shape(self, input_shape):
    shape = self._classifier.compute_output_shape(
        (None, self.window_samples))
    return (tuple(input_shape)[0],) + tuple(shape[1:])

  def get_config(self):
    config = super().get_config()
    config.update({
        'classifier': serialization.serialize(self._classifier),
        'window_samples': self.window_samples,
    })
    return config

  @classmethod
  def from_config(cls, config):
    config = dict(config)
    config['classifier'] = serialization.deserialize(config.get('classifier'))
    return cls(**config)
