"""WAV files as numpy arrays: read, write, downmix, resample.

  read_wav    file -> float32 [samples, channels] in [-1, 1], sample rate (Hz)
  write_wav   float [samples] or [samples, channels] -> 16-bit PCM file
  to_int16    float in [-1, 1] -> int16 PCM, the inverse of reading int16
  to_mono     [samples, channels] -> [samples], the mean over channels
  resample    polyphase resampling between integer rates (Hz)

numpy and scipy do the work: the builders in this package call these while
they prepare a dataset, long before TensorFlow sees the audio. Files are read
and written as bytes through tf.io.gfile (experiments/storage.py), so paths
may be on any TensorFlow file system (gs://, ram://).
"""

import io
import math
import numbers
import os
import struct
import warnings

import numpy as np
import scipy.io.wavfile

from experiments import errors
from experiments import storage

# Full scale of each integer PCM type as scipy returns it. scipy left-justifies
# every integer depth into the smallest type that holds it (24-bit PCM comes
# back as int32 with the low byte zero), so one divisor per type is exact.
# 8-bit PCM is unsigned with its zero at 128.
_INT_FULL_SCALE = {
    np.dtype(np.int16): 2.0**15,
    np.dtype(np.int32): 2.0**31,
    np.dtype(np.int64): 2.0**63,
}
_UINT8_ZERO = 128.0
# Header sample rates above this are taken as damage, not audio: 768 kHz is
# the highest rate recorders use (ultrasound, bat recordings), and resampling
# from a rate such as 2**31 - 1 Hz would need gigabytes for its filter.
MAX_SAMPLE_RATE = 1_000_000


class DamagedWavError(errors.DataError):
  """A file that exists but is not readable audio; the message names it.

  Raised for empty, corrupt, truncated and non-WAV files, files without
  samples or with non-finite float samples, and headers whose sample rate is
  0 or above MAX_SAMPLE_RATE. A DataError (a ValueError).
  """


def read_wav(path):
  """Reads a WAV file as float32 samples in [-1, 1].

  Integer PCM (8, 16, 24 or 32 bit) is divided by its full scale (int16 by
  32768); float WAV is returned as stored, which is nominally [-1, 1].

  Args:
    path: str or os.PathLike, the .wav file (any TensorFlow file system).

  Returns:
    (samples, sample_rate): float32 [samples, channels] (mono files have one
    channel) and the sample rate in Hz, an int.

  Raises:
    ValueError: naming the path, when the file is missing or is not a
      regular file.
    DamagedWavError: (a ValueError) naming the path, when the file is empty,
      is not a WAV file, is corrupt, is truncated (its header declares more
      audio data than the file holds), holds no samples, holds non-finite
      (NaN or inf) float samples, or its header's sample rate is 0 or above
      MAX_SAMPLE_RATE Hz.
  """
  path = os.fspath(path)
  if not storage.exists(path):
    raise ValueError(f'read_wav: no file at {path!r}.')
  if storage.is_dir(path):
    raise ValueError(f'read_wav: {path!r} is not a regular file.')
  contents = storage.read_bytes(path)
  if not contents:
    raise DamagedWavError(
        f'read_wav: {path!r} is empty (0 bytes), not a WAV file.')
  _check_not_truncated(contents, path)
  try:
    with warnings.catch_warnings():
      # Unknown chunks (LIST, cue, ...) are harmless and common in the wild;
      # truncation, which scipy also only warns about, was checked above.
      warnings.simplefilter('ignore', scipy.io.wavfile.WavFileWarning)
      sample_rate, data = scipy.io.wavfile.read(io.BytesIO(contents))
  except Exception as error:  # pylint: disable=broad-except
    # scipy reports a bad file as ValueError, EOFError, struct.error or
    # IndexError depending on where the header breaks; all mean "not readable".
    raise DamagedWavError(f'read_wav: could not read {path!r} as a WAV file: '
                     f'{type(error).__name__}: {error}') from error
  if not 0 < sample_rate <= MAX_SAMPLE_RATE:
    raise DamagedWavError(
        f'read_wav: {path!r} is damaged: its header gives a sample rate of '
        f'{sample_rate} Hz (expected 1 to {MAX_SAMPLE_RATE} Hz).')
  if data.ndim == 1:
    data = data[:, np.newaxis]
  if data.shape[0] == 0:
    raise DamagedWavError(f'read_wav: {path!r} is a WAV file with no samples.')
  samples = _to_float(data, path)
  if not np.isfinite(samples).all():
    bad = int(np.size(samples) - np.isfinite(samples).sum())
    raise DamagedWavError(
        f'read_wav: {path!r} is damaged: {bad} of its {samples.size} float '
        'samples are not finite (NaN or inf).')
  return samples, int(sample_rate)


def _check_not_truncated(contents: bytes, path):
  """Raises DamagedWavError when the data chunk is longer than the file.

  Walks the RIFF chunks to the 'data' chunk and compares the size its
  header declares with the bytes that follow it. Files that are not plain
  RIFF/RIFX (e.g. RF64, whose sizes live elsewhere) are left to scipy.
  """
  file_size = len(contents)
  with io.BytesIO(contents) as f:
    header = f.read(12)
    if len(header) < 12 or header[8:12] != b'WAVE':
      return
    if header[:4] == b'RIFF':
      size_format = '<I'
    elif header[:4] == b'RIFX':
      size_format = '>I'
    else:
      return
    offset = 12
    while offset + 8 <= file_size:
      f.seek(offset)
      chunk_id, = struct.unpack('4s', f.read(4))
      chunk_size, = struct.unpack(size_format, f.read(4))
      if chunk_id == b'data':
        available = file_size - offset - 8
        if chunk_size > available:
          raise DamagedWavError(
              f'read_wav: {path!r} is truncated: its header declares '
              f'{chunk_size} bytes of audio but the file holds only '
              f'{available} (a copy or recording cut short?).')
        return
      offset += 8 + chunk_size + (chunk_size % 2)  # Chunks are word-aligned.


def _to_float(data, path):
  """PCM of any supported type -> float32 in [-1, 1]."""
  if data.dtype == np.uint8:
    return ((data.astype(np.float32) - _UINT8_ZERO) / _UINT8_ZERO)
  if data.dtype in _INT_FULL_SCALE:
    return (data.astype(np.float64) /
            _INT_FULL_SCALE[data.dtype]).astype(np.float32)
  if np.issubdtype(data.dtype, np.floating):
    return data.astype(np.float32)
  raise DamagedWavError(f'read_wav: {path!r} holds samples of type {data.dtype}; '
                   'expected 8/16/24/32-bit integer PCM or float.')


def write_wav(path, samples, sample_rate):
  """Writes float audio in [-1, 1] as a 16-bit PCM WAV file.

  Values are scaled by 32768, rounded and clipped to the int16 range, so
  reading the file back with `read_wav` returns the samples to within 1/32768.

  Args:
    path: str or os.PathLike, the file to write (overwritten; any
      TensorFlow file system).
    samples: float array [samples] (mono) or [samples, channels].
    sample_rate: int, Hz.
  """
  sample_rate = _check_rate('write_wav', 'sample_rate', sample_rate)
  samples = np.asarray(samples)
  if not np.issubdtype(samples.dtype, np.floating):
    raise ValueError('write_wav: samples must be floats in [-1, 1]; got dtype '
                     f'{samples.dtype}.')
  if samples.ndim not in (1, 2):
    raise ValueError('write_wav: samples must have shape [samples] or '
                     f'[samples, channels]; got shape {samples.shape}.')
  encoded = io.BytesIO()
  scipy.io.wavfile.write(encoded, sample_rate, to_int16(samples))
  storage.write_bytes(path, encoded.getvalue())


def to_int16(samples):
  """float [-1, 1] -> int16 PCM: scaled by 32768, rounded, clipped.

  The inverse of reading int16 (divide by 32768), exact for every int16
  value; builders store audio this way.
  """
  return np.clip(np.round(np.asarray(samples) * 2.0**15), -2**15,
                 2**15 - 1).astype(np.int16)


def to_mono(samples):
  """Averages channels: float [samples, channels] -> float32 [samples].

  A 1-D array is already mono and comes back as float32.
  """
  samples = np.asarray(samples)
  if samples.ndim == 1:
    return samples.astype(np.float32)
  if samples.ndim != 2:
    raise ValueError('to_mono: samples must have shape [samples] or [samples, '
                     f'channels]; got shape {samples.shape}.')
  return samples.mean(axis=1, dtype=np.float64).astype(np.float32)


def resample(samples, from_rate, to_rate):
  """Resamples along the first axis from `from_rate` to `to_rate` (Hz).

  Polyphase filtering (scipy.signal.resample_poly) by the exact rational
  factor to_rate / from_rate reduced by their gcd, e.g. 44100 -> 16000 Hz is
  up 160, down 441. A clip of n samples becomes ceil(n * to_rate / from_rate)
  samples.

  Args:
    samples: float array [samples] or [samples, channels].
    from_rate: int, the sample rate of `samples` in Hz.
    to_rate: int, the wanted sample rate in Hz.

  Returns:
    float32 array with the same trailing shape; `samples` as float32 when
    the rates are equal.
  """
  from_rate = _check_rate('resample', 'from_rate', from_rate)
  to_rate = _check_rate('resample', 'to_rate', to_rate)
  samples = np.asarray(samples)
  if from_rate == to_rate:
    return samples.astype(np.float32)
  # Imported here: scipy.signal adds about a second to every process that
  # reads WAV files but never resamples one.
  import scipy.signal  # pylint: disable=g-import-not-at-top
  divisor = math.gcd(from_rate, to_rate)
  resampled = scipy.signal.resample_poly(
      samples.astype(np.float64), to_rate // divisor, from_rate // divisor,
      axis=0)
  return resampled.astype(np.float32)


def _check_rate(owner, name, value):
  if (isinstance(value, bool) or not isinstance(value, numbers.Integral) or
      value <= 0):
    raise ValueError(f'{owner}: {name} must be a positive integer number of '
                     f'Hz; got {value!r}.')
  return int(value)
