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

import tensorflow as tf

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
  return window_length_samples(sample_rate, window_len_ms), stride


def frames_and_padding(length, kernel_size: int, stride: int, padding: str):
  """(frames, left, right) of TF's strided 1-D convolution, as tensors.

  The same counts as `num_frames`, for a length known only at run time;
  left/right are the zeros TF's 'SAME' padding adds (0 for 'valid').
  """
  if padding == 'same':
    frames = (length + stride - 1) // stride
    total = tf.maximum((frames - 1) * stride + kernel_size - length, 0)
    return frames, total // 2, total - total // 2
  return (length - kernel_size) // stride + 1, 0, 0
