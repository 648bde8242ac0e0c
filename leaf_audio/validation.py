"""Argument and input checks shared by the layers, with messages that name the
layer, the argument, what was expected and what came.

The waveform policies every frontend follows live here:

  * Input: float samples in [-1, 1] (integer PCM scaled, e.g. int16 / 32768),
    shape [batch, samples] or [batch, samples, 1], as a tensor or numpy array
    (a Python list is refused with a message saying so). The frontends do
    not check the range on every call; `check_waveform` checks a batch
    before it goes in.
  * Non-finite samples: a clip holding a NaN or inf sample gets NaN in all of
    its features (`mark_non_finite_clips`); the other clips of the batch are
    computed as if alone. No frontend maps them to finite "silence".
  * Too short: fewer samples than a frontend needs (1, or a whole window for
    'valid' pooling) raise an error that names the frontend, the samples
    needed and the samples given, when the length is known at trace time and
    when it is known only at run time (`assert_enough_samples`).
"""

import numbers

import keras
import numpy as np
import tensorflow as tf

MAX_WINDOW_MS = 1000.


def check_positive_int(owner: str, name: str, value) -> int:
  if (isinstance(value, bool) or not isinstance(value, numbers.Integral) or
      value <= 0):
    raise ValueError(f'{owner}: {name} must be a positive integer; got '
                     f'{value!r}.')
  return int(value)


def check_positive_number(owner: str, name: str, value) -> float:
  if (isinstance(value, bool) or not isinstance(value, numbers.Real) or
      not value > 0):
    raise ValueError(f'{owner}: {name} must be a positive number; got '
                     f'{value!r}.')
  return value


def check_duration_ms(owner: str, name: str, value) -> float:
  """A window length or stride in ms: positive and at most 1 s."""
  check_positive_number(owner, name, value)
  if value > MAX_WINDOW_MS:
    raise ValueError(f'{owner}: {name} is in milliseconds and must be at most '
                     f'{MAX_WINDOW_MS:g} ms (1 s); got {value!r}.')
  return value


def check_padding(owner: str, name: str, value) -> str:
  if not isinstance(value, str) or value.lower() not in ('same', 'valid'):
    raise ValueError(f"{owner}: {name} must be 'same' or 'valid'; got "
                     f'{value!r}.')
  return value.lower()


def check_choice(owner: str, name: str, value, choices):
  if value not in choices:
    raise ValueError(f'{owner}: {name} must be one of {sorted(choices)}; got '
                     f'{value!r}.')
  return value


def _not_an_array(owner: str, what: str) -> TypeError:
  return TypeError(
      f'{owner} expects a float tensor or numpy array of shape [batch, '
      f'samples] or [batch, samples, 1] (samples in [-1, 1]); got {what}. '
      'Convert it first, e.g. np.asarray(clips, np.float32) for equal-length '
      'clips.')


def waveform_shape(owner: str, input_shape):
  """Checks a waveform shape and returns it as [batch, samples, 1].

  Accepts [batch, samples] or [batch, samples, 1]. No shape or a nested
  structure where a shape should be (what Keras passes to `build` for a
  Python list of samples) is refused with a TypeError saying what was
  expected.
  """
  if input_shape is None:  # Keras builds with no shape for a Python list.
    raise _not_an_array(owner, 'an input without a shape (a Python list?)')
  shape = tuple(input_shape)
  if not all(d is None or isinstance(d, numbers.Integral) for d in shape):
    raise _not_an_array(owner, 'a nested Python list or tuple')
  if len(shape) == 3 and shape[-1] not in (1, None):
    raise ValueError(
        f'{owner} expects mono audio of shape [batch, samples] or [batch, '
        f'samples, 1]; got shape {shape} with {shape[-1]} channels. Downmix '
        'to one channel first (for example, average the channels).')
  if len(shape) not in (2, 3):
    raise ValueError(
        f'{owner} expects audio of shape [batch, samples] or [batch, samples,'
        f' 1]; got shape {shape} (rank {len(shape)}).')
  if shape[1] is not None and shape[1] < 1:
    raise ValueError(f'{owner} expects at least one sample; got shape {shape}.')
  return (shape[0], shape[1], 1)


def check_float_waveform(owner: str, waveform) -> None:
  """Rejects integer PCM, other non-float audio and Python lists.

  Args:
    owner: the layer's name, for the message.
    waveform: the layer's input: a tensor (anything with a dtype), or a dtype.
  """
  if isinstance(waveform, (list, tuple)):
    raise _not_an_array(owner, f'a Python {type(waveform).__name__}')
  dtype = keras.backend.standardize_dtype(getattr(waveform, 'dtype',
                                                  waveform))
  if 'float' not in dtype:
    raise TypeError(
        f'{owner} expects floating-point audio in [-1, 1]; got dtype {dtype}.'
        ' Integer PCM must be scaled first, e.g. int16 samples / 32768.0.')


def assert_enough_samples(waveform, needed: int, message: str):
  """waveform [batch, samples, ...], checked to hold at least `needed` samples.

  With the length known (eagerly, or a static shape in a graph) a short input
  raises ValueError at once; with a length known only at run time (a graph
  traced for [batch, None]) the returned tensor depends on a
  `tf.debugging.Assert`, so everything computed from it fails with
  InvalidArgumentError, with the same message (quotes left out), before any
  stage sees the short input.

  Args:
    waveform: tensor [batch, samples] or [batch, samples, 1].
    needed: int, the fewest samples accepted.
    message: what is needed, e.g. "Leaf expects at least 1 sample"; the
      error appends "; got {samples} samples.".

  Returns:
    `waveform` (an identity of it when the check runs in the graph).
  """
  length = waveform.shape[1]
  if length is not None:
    if length < needed:
      raise ValueError(f'{message}; got {length} samples.')
    return waveform
  length = tf.shape(waveform)[1]
  # Assert escapes the quotes in its data (as \'); the message goes without.
  template = message.replace("'", '').replace('{', '{{').replace('}', '}}')
  check = tf.debugging.Assert(
      length >= needed,
      [tf.strings.format(template + '; got {} samples.', length)])
  with tf.control_dependencies([check]):
    return tf.identity(waveform)


def mark_non_finite_clips(waveform, features):
  """`features` with NaN in every frame of each clip holding NaN or inf.

  The frontends' non-finite policy: a clip with a NaN or inf sample gets NaN
  features throughout (whatever its stages would make of it: a max pooling,
  a floor and a layer norm turned such clips into zeros, the features of
  silence), and the other clips keep theirs.

  Args:
    waveform: float [batch, samples] or [batch, samples, 1].
    features: float [batch, frames, channels].

  Returns:
    float [batch, frames, channels].
  """
  axes = list(range(1, waveform.shape.rank))
  finite = tf.reduce_all(tf.math.is_finite(waveform), axis=axes)
  nan = tf.constant(float('nan'), features.dtype)
  return tf.where(finite[:, tf.newaxis, tf.newaxis], features, nan)


def check_waveform(waveform, max_abs: float = 1.0):
  """Checks a batch of audio before it goes into a frontend; returns it.

  The frontends expect float samples in [-1, 1] (WAV int16 PCM divided by
  32768) and do not check the range on every call: samples at int16 scale
  give features of a much louder sound, without a word. This eager check
  (numpy) refuses integer or non-numeric audio, shapes other than
  [batch, samples] or [batch, samples, 1], NaN and inf samples, and samples
  beyond `max_abs`, naming the clip.

  Args:
    waveform: array-like (numpy array, eager tensor, nested list of floats).
    max_abs: float, default 1.0; the largest |sample| accepted. Raise it to
      allow the small overshoot of resampled audio, e.g. 1.05.

  Returns:
    The waveform as a float32 numpy array of the same shape.

  Raises:
    TypeError: integer, boolean or non-numeric samples.
    ValueError: a wrong shape, a non-finite sample, or |sample| > max_abs.

  Example:
    >>> check_waveform(np.zeros([2, 16000], np.float32)).shape
    (2, 16000)
  """
  owner = 'check_waveform'
  check_positive_number(owner, 'max_abs', max_abs)
  array = np.asarray(waveform)
  if array.dtype.kind != 'f':
    raise TypeError(
        f'{owner}: expects floating-point audio in [-1, 1]; got dtype '
        f'{array.dtype}. Integer PCM must be scaled first, e.g. int16 samples '
        '/ 32768.0.')
  waveform_shape(owner, array.shape)
  if array.shape[0] == 0 or array.size == 0:
    return array.astype(np.float32)
  clips = array.reshape(array.shape[0], -1)
  bad = np.flatnonzero(~np.isfinite(clips).all(axis=1))
  if bad.size:
    raise ValueError(
        f'{owner}: clip(s) {bad[:10].tolist()} hold NaN or inf samples '
        f'({bad.size} of {clips.shape[0]} clips). Every frontend returns NaN '
        'features for such a clip; remove or repair it.')
  peaks = np.abs(clips).max(axis=1)
  loud = np.flatnonzero(peaks > max_abs)
  if loud.size:
    first = int(loud[0])
    raise ValueError(
        f'{owner}: samples must lie in [-{max_abs:g}, {max_abs:g}] (float '
        f'audio); clip {first} reaches |x| = {peaks[first]:g} ({loud.size} '
        f'of {clips.shape[0]} clips beyond). Integer PCM must be scaled, e.g. '
        'int16 samples / 32768.0; pass a larger max_abs to accept more '
        'headroom.')
  return array.astype(np.float32)
