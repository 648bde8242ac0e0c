"""Windows, strides and frame counts: how milliseconds become samples and frames.

All frontends share the original release's conventions:
  window length = sample_rate * window_len_ms // 1000 + 1 samples (odd at
    16 kHz: 401 for 25 ms; even at 22.05 kHz: 552 for 25 ms),
  stride        = sample_rate * window_stride_ms // 1000 samples.
With 'same' padding a clip of n samples gives ceil(n / stride) frames; with
'valid' padding it gives (n - window) // stride + 1 frames and needs at least
one full window.
"""

import math
import numbers

import tensorflow as tf

from leaf_audio import blocks
from leaf_audio import validation


def window_length_samples(sample_rate: float, window_len_ms: float) -> int:
  """Window length in samples for a window of `window_len_ms` milliseconds."""
  return int(sample_rate * window_len_ms // 1000 + 1)


def window_stride_samples(sample_rate: float, window_stride_ms: float) -> int:
  """Hop size in samples for a stride of `window_stride_ms` milliseconds."""
  return int(sample_rate * window_stride_ms // 1000)


def num_frames(num_samples, window: int, stride: int, padding: str):
  """Frames produced from `num_samples` samples (None if unknown).

  Args:
    num_samples: int or None, the length of the input in samples.
    window: window length in samples.
    stride: hop size in samples.
    padding: 'same' or 'valid'.

  Returns:
    The number of frames, or None when `num_samples` is None. Raises
    ValueError with 'valid' padding when the input is shorter than a window.
  """
  if num_samples is None:
    return None
  if padding.lower() == 'same':
    return int(math.ceil(num_samples / stride))
  if num_samples < window:
    raise ValueError(
        f"'valid' padding needs at least one full window of {window} samples;"
        f' got an input of {num_samples} samples.')
  return (num_samples - window) // stride + 1


def too_short_message(owner: str, window: int) -> str:
  """What a 'valid'-framed input shorter than `window` samples is told."""
  return (f"{owner} pools with 'valid' padding and needs at least {window} "
          'samples')


def check_enough_samples(owner: str, num_samples, window: int, padding: str,
                         input_shape):
  """Raises if 'valid' framing of `num_samples` (None: unknown) lacks a window."""
  if padding == 'valid' and num_samples is not None and num_samples < window:
    raise ValueError(f'{too_short_message(owner, window)}; got input shape '
                     f'{tuple(input_shape)}.')


# A window needs two samples: a Gaussian pooling window of one tap has no
# width (0 / 0, NaN features).
MIN_WINDOW_SAMPLES = 2


def checked_window_and_stride(owner: str, sample_rate, window_len_ms,
                              window_stride_ms):
  """Validates a frontend's framing arguments; returns (window, stride) in samples."""
  validation.check_positive_number(owner, 'sample_rate', sample_rate)
  validation.check_duration_ms(owner, 'window_len', window_len_ms)
  validation.check_duration_ms(owner, 'window_stride', window_stride_ms)
  stride = window_stride_samples(sample_rate, window_stride_ms)
  if stride < 1:
    raise ValueError(
        f'{owner}: window_stride={window_stride_ms} ms at sample_rate='
        f'{sample_rate} Hz is less than one sample.')
  window = window_length_samples(sample_rate, window_len_ms)
  if window < MIN_WINDOW_SAMPLES:
    minimum_ms = (MIN_WINDOW_SAMPLES - 1) * 1000. / sample_rate
    raise ValueError(
        f'{owner}: window_len={window_len_ms} ms at sample_rate={sample_rate}'
        f' Hz is a window of {window} sample(s); at least '
        f'{MIN_WINDOW_SAMPLES} are needed (window_len >= {minimum_ms:g} ms), '
        'or the pooling window has no width and every feature is NaN.')
  return window, stride


def frames_and_padding(length, kernel_size: int, stride: int, padding: str):
  """(frames, left, right) of TF's strided 1-D convolution.

  The same counts as `num_frames`, as ints for an int length and as tensors
  for one known only at run time; left/right are the zeros TF's 'SAME'
  padding adds (0 for 'valid').
  """
  if padding == 'same':
    frames = (length + stride - 1) // stride
    maximum = max if isinstance(length, numbers.Integral) else tf.maximum
    total = maximum((frames - 1) * stride + kernel_size - length, 0)
    return frames, total // 2, total - total // 2
  return (length - kernel_size) // stride + 1, 0, 0


def overlapping_frames(signal, frame_length: int, frame_step: int,
                       pad_end: bool = False):
  """Frames of the last axis, as `tf.signal.frame` makes them, without a gather.

  Frame i holds samples [i * frame_step, i * frame_step + frame_length). With
  `pad_end` there are ceil(samples / frame_step) frames and samples past the
  end read as 0; without it, max((samples - frame_length) // frame_step + 1,
  0) frames. The values are `tf.signal.frame`'s exactly, but they are built
  from ceil(frame_length / frame_step) shifted views of the signal cut into
  hops of `frame_step` samples: `tf.signal.frame` gathers single samples when
  the two lengths have no common factor (401 and 160 for 25 ms windows every
  10 ms at 16 kHz), which costs more than the STFT's FFTs.

  Args:
    signal: tensor [..., samples].
    frame_length: int > 0, samples per frame.
    frame_step: int > 0, hop between frames in samples.
    pad_end: bool, whether frames may run past the end (zeros).

  Returns:
    tensor [..., frames, frame_length] of the signal's dtype; the frame count
    is static when the signal's length is.
  """
  for name, value in (('frame_length', frame_length),
                      ('frame_step', frame_step)):
    if (not isinstance(value, numbers.Integral) or isinstance(value, bool) or
        value < 1):
      raise ValueError(f'overlapping_frames: {name} must be an int >= 1; got '
                       f'{value!r}.')
  frame_length, frame_step = int(frame_length), int(frame_step)
  signal = tf.convert_to_tensor(signal)
  if signal.shape.rank is None or signal.shape.rank < 1:
    raise ValueError('overlapping_frames: signal must have a known rank >= 1 '
                     f'(samples on the last axis); got shape {signal.shape}.')
  # Python ints where the length is static, so that the shapes stay static.
  samples = signal.shape[-1]
  maximum = max
  if samples is None:
    samples, maximum = tf.shape(signal)[-1], tf.maximum
  if pad_end:
    frames = (samples + frame_step - 1) // frame_step
  else:
    frames = maximum((samples - frame_length) // frame_step + 1, 0)
  pieces = blocks.num_pieces(frame_length, frame_step)
  by_hop = blocks.to_blocks(signal, 0, frames + pieces - 1, frame_step)
  framed = tf.concat(
      [by_hop[..., piece:piece + frames, :] for piece in range(pieces)],
      axis=-1)
  return framed[..., :frame_length]
