"""Waveform augmentation for training crops: gain, shift, noise, speed,
microphone and room.

`WaveformAugmentation` maps one training crop (float32 [samples]) and a
stateless seed (int64 [2]) to an augmented crop of the same length. The
training pipeline (experiments/data/pipeline.py, `training_stream`) calls it
with the crop's seed (train.seed, global example index), so every
augmentation is a pure function of the run's seed and the example's place
in the stream: a resumed run and the workers of a multi-worker run see
exactly the examples an uninterrupted one-worker run sees. Evaluation,
testing and serving never augment. Labels are untouched.

Each transform is drawn independently with its probability, in the order a
recording would apply them: speed (the talker), shift, room, noise (in the
room), microphone, gain (the recording level). Every transform is off by
default (probability 0); a .gin file turns them on, e.g.

  WaveformAugmentation.gain_probability = 1.0
  WaveformAugmentation.max_gain_db = 20.0

All of it is TensorFlow ops (no Python per example), so it runs inside the
tf.data graph with the rest of the pipeline.
"""

import math
import pathlib
from typing import Optional

from absl import logging
import gin
import numpy as np
import tensorflow as tf

from experiments.data import wav

# Sub-seeds, one per transform, folded into the crop's seed.
_SPEED, _SHIFT, _ROOM, _NOISE, _MICROPHONE, _GAIN = range(1, 7)


def _check_probability(name, value):
  if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
      0.0 <= value <= 1.0):
    raise ValueError(f'WaveformAugmentation.{name} must be a probability in '
                     f'[0, 1]; got {value!r}.')
  return float(value)


def _check_range(name, value, low=-math.inf, high=math.inf):
  if (not isinstance(value, (tuple, list)) or len(value) != 2 or
      any(isinstance(v, bool) or not isinstance(v, (int, float))
          for v in value) or not low <= value[0] <= value[1] <= high):
    raise ValueError(
        f'WaveformAugmentation.{name} must be a pair (low, high) with '
        f'{low} <= low <= high <= {high}; got {value!r}.')
  return (float(value[0]), float(value[1]))


def _check_non_negative(name, value):
  if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
      value >= 0):
    raise ValueError(f'WaveformAugmentation.{name} must be a number >= 0; '
                     f'got {value!r}.')
  return float(value)


def _uniform(seed, low, high, shape=()):
  return tf.random.stateless_uniform(shape, seed, low, high)


def _rms(audio):
  return tf.sqrt(tf.reduce_mean(tf.square(audio)) + 1e-12)


def _fft_frequencies(samples, sample_rate):
  """Hz of the rfft bins of `samples` (a scalar int32 tensor)."""
  bins = samples // 2 + 1
  return tf.cast(tf.range(bins), tf.float32) * (
      float(sample_rate) / tf.cast(samples, tf.float32))


def _filter_in_frequency(audio, magnitude):
  """Zero-phase filtering: irfft(rfft(audio) * magnitude), same length."""
  samples = tf.shape(audio)[0]
  spectrum = tf.signal.rfft(audio[tf.newaxis], [samples])[0]
  return tf.signal.irfft(spectrum * tf.cast(magnitude, tf.complex64),
                         [samples])


def read_noise_folder(folder: str, sample_rate: int) -> np.ndarray:
  """Every *.wav under `folder` (recursively), mono at `sample_rate`, each
  scaled to unit RMS and concatenated: float32 [samples]. Damaged files
  raise wav.read_wav's ValueError, which names the file.

  Raises:
    ValueError: no WAV files, or none with any signal.
  """
  if not tf.io.gfile.isdir(folder):
    raise ValueError('WaveformAugmentation.noise_folder must be a folder of '
                     f'WAV files; got {folder!r}, which is not a folder.')
  paths = sorted(
      str(pathlib.PurePath(directory) / name)
      for directory, _, names in tf.io.gfile.walk(folder)
      for name in names if name.lower().endswith('.wav'))
  pieces = []
  for path in paths:
    samples, rate = wav.read_wav(path)
    samples = wav.to_mono(samples)
    if rate != sample_rate:
      samples = wav.resample(samples, rate, sample_rate)
    samples = np.asarray(samples, np.float32).reshape(-1)
    rms = float(np.sqrt(np.mean(samples**2))) if samples.size else 0.0
    if rms > 0:
      pieces.append(samples / rms)
  if not pieces:
    raise ValueError(
        f'WaveformAugmentation.noise_folder: {folder!r} holds no WAV file '
        'with any signal (expected *.wav files, searched recursively).')
  logging.info('Noise for augmentation: %d files, %.1f s from %s',
               len(pieces), sum(map(len, pieces)) / sample_rate, folder)
  return np.concatenate(pieces)


@gin.configurable
class WaveformAugmentation:
  """Random, seeded transforms of one training crop.

  Args:
    sample_rate: int, Hz of the waveforms.
    gain_probability: float in [0, 1]; chance of a random gain.
    max_gain_db: float >= 0; the gain is uniform in +-max_gain_db dB.
    shift_probability: float in [0, 1]; chance of a time shift.
    max_shift_ms: float >= 0; the shift is uniform in +-max_shift_ms ms
      (samples shifted out are dropped, zeros shifted in).
    noise_probability: float in [0, 1]; chance of additive noise.
    snr_db: (low, high) dB; the noise's level below the crop's RMS is uniform
      in this range.
    noise_folder: str or None. None: coloured Gaussian noise, power spectrum
      proportional to 1 / f**beta with beta uniform in [0, 2] (white to
      brown). A folder: random 1-crop excerpts of its WAV files (each scaled
      to unit RMS, resampled to sample_rate when read).
    speed_probability: float in [0, 1]; chance of a speed change.
    speed_range: (low, high), factors > 0; the crop is resampled (linear
      interpolation about its centre) to play `factor` times as fast, which
      moves pitch and tempo together (as a sped-up tape; sox's `speed`).
      Samples that fall outside the crop are zeros.
    microphone_probability: float in [0, 1]; chance of a microphone
      response.
    highpass_hz: (low, high) Hz; cut-off of a 2nd-order Butterworth-shaped
      high-pass (magnitude only, zero phase).
    lowpass_hz: (low, high) Hz; cut-off of a 4th-order Butterworth-shaped
      low-pass.
    tilt_db_per_octave: (low, high); a spectral tilt about 1 kHz.
    room_probability: float in [0, 1]; chance of a synthetic room.
    rt60_seconds: (low, high) s; the room's reverberation time (60 dB decay
      of an exponentially decaying Gaussian tail).
    direct_to_reverberant_db: (low, high) dB; energy of the direct path
      (a unit impulse) over the tail's.

  Call: `augmentation(audio, seed)` with audio float32 [samples] and seed
  int64 [2] returns float32 [samples]; it is a pure function of both. The
  output is not clipped: gains above 0 dBFS keep their peaks.
  """

  def __init__(self,
               sample_rate: int = 16000,
               gain_probability: float = 0.0,
               max_gain_db: float = 20.0,
               shift_probability: float = 0.0,
               max_shift_ms: float = 100.0,
               noise_probability: float = 0.0,
               snr_db=(5.0, 30.0),
               noise_folder: Optional[str] = None,
               speed_probability: float = 0.0,
               speed_range=(0.9, 1.1),
               microphone_probability: float = 0.0,
               highpass_hz=(20.0, 400.0),
               lowpass_hz=(3000.0, 8000.0),
               tilt_db_per_octave=(-3.0, 3.0),
               room_probability: float = 0.0,
               rt60_seconds=(0.1, 0.6),
               direct_to_reverberant_db=(0.0, 15.0)):
    if (isinstance(sample_rate, bool) or not isinstance(sample_rate, int) or
        sample_rate <= 0):
      raise ValueError('WaveformAugmentation.sample_rate must be a positive '
                       f'integer (Hz); got {sample_rate!r}.')
    self.sample_rate = sample_rate
    self.gain_probability = _check_probability('gain_probability',
                                               gain_probability)
    self.max_gain_db = _check_non_negative('max_gain_db', max_gain_db)
    self.shift_probability = _check_probability('shift_probability',
                                                shift_probability)
    self.max_shift_ms = _check_non_negative('max_shift_ms', max_shift_ms)
    self.noise_probability = _check_probability('noise_probability',
                                                noise_probability)
    self.snr_db = _check_range('snr_db', snr_db)
    self.noise_folder = noise_folder
    self.speed_probability = _check_probability('speed_probability',
                                                speed_probability)
    self.speed_range = _check_range('speed_range', speed_range, low=1e-3)
    self.microphone_probability = _check_probability(
        'microphone_probability', microphone_probability)
    nyquist = sample_rate / 2
    self.highpass_hz = _check_range('highpass_hz', highpass_hz, 0.0, nyquist)
    self.lowpass_hz = _check_range('lowpass_hz', lowpass_hz, 1.0, nyquist)
    self.tilt_db_per_octave = _check_range('tilt_db_per_octave',
                                           tilt_db_per_octave)
    self.room_probability = _check_probability('room_probability',
                                               room_probability)
    self.rt60_seconds = _check_range('rt60_seconds', rt60_seconds, 1e-3, 5.0)
    self.direct_to_reverberant_db = _check_range(
        'direct_to_reverberant_db', direct_to_reverberant_db)
    self._noise = None
    if noise_folder is not None and self.noise_probability > 0:
      self._noise = tf.constant(read_noise_folder(noise_folder, sample_rate))

  @property
  def active(self) -> bool:
    """Whether any transform has a probability above 0."""
    return any(p > 0 for p in (
        self.gain_probability, self.shift_probability, self.noise_probability,
        self.speed_probability, self.microphone_probability,
        self.room_probability))

  def __call__(self, audio, seed):
    audio = tf.convert_to_tensor(audio, tf.float32)
    seed = tf.cast(seed, tf.int64)
    steps = (
        (_SPEED, self.speed_probability, self.speed),
        (_SHIFT, self.shift_probability, self.shift),
        (_ROOM, self.room_probability, self.room),
        (_NOISE, self.noise_probability, self.noise),
        (_MICROPHONE, self.microphone_probability, self.microphone),
        (_GAIN, self.gain_probability, self.gain),
    )
    for index, probability, transform in steps:
      if probability <= 0:
        continue
      step_seed = tf.random.experimental.stateless_fold_in(seed, index)
      draw_seed, transform_seed = tf.unstack(
          tf.random.experimental.stateless_split(step_seed, 2))
      if probability >= 1:
        audio = transform(audio, transform_seed)
      else:
        audio = tf.cond(
            _uniform(draw_seed, 0.0, 1.0) < probability,
            lambda a=audio, s=transform_seed, t=transform: t(a, s),
            lambda a=audio: a)
    return audio

  # Each transform: (audio float32 [samples], seed int64 [2]) -> same shape.

  def gain(self, audio, seed):
    """audio * 10 ** (g / 20), g uniform in +-max_gain_db dB."""
    gain_db = _uniform(seed, -self.max_gain_db, self.max_gain_db)
    return audio * tf.pow(10.0, gain_db / 20.0)

  def shift(self, audio, seed):
    """audio delayed (or advanced) by up to max_shift_ms, zero-filled."""
    max_shift = int(round(self.max_shift_ms * self.sample_rate / 1000))
    samples = tf.shape(audio)[0]
    shift = tf.random.stateless_uniform([], seed, -max_shift, max_shift + 1,
                                        dtype=tf.int32)
    index = tf.range(samples) - shift
    inside = (index >= 0) & (index < samples)
    return tf.where(inside, tf.gather(audio, tf.clip_by_value(
        index, 0, samples - 1)), 0.0)

  def noise(self, audio, seed):
    """audio + noise whose RMS is snr dB below the audio's."""
    level_seed, noise_seed = tf.unstack(
        tf.random.experimental.stateless_split(seed, 2))
    samples = tf.shape(audio)[0]
    if self._noise is not None:
      noise = self._folder_excerpt(samples, noise_seed)
    else:
      noise = self._coloured_noise(samples, noise_seed)
    snr_db = _uniform(level_seed, *self.snr_db)
    scale = _rms(audio) / _rms(noise) * tf.pow(10.0, -snr_db / 20.0)
    return audio + noise * scale

  def _coloured_noise(self, samples, seed):
    beta_seed, white_seed = tf.unstack(
        tf.random.experimental.stateless_split(seed, 2))
    beta = _uniform(beta_seed, 0.0, 2.0)
    white = tf.random.stateless_normal([samples], white_seed)
    frequencies = _fft_frequencies(samples, self.sample_rate)
    # Amplitude ~ f^(-beta/2); DC and sub-20 Hz held at the 20 Hz value.
    magnitude = tf.pow(tf.maximum(frequencies, 20.0) / 1000.0, -beta / 2.0)
    return _filter_in_frequency(white, magnitude)

  def _folder_excerpt(self, samples, seed):
    noise = self._noise
    length = tf.shape(noise)[0]
    repeats = samples // length + 2
    noise = tf.tile(noise, [repeats])
    start = tf.random.stateless_uniform([], seed, 0, length, dtype=tf.int32)
    return noise[start:start + samples]

  def speed(self, audio, seed):
    """audio played `factor` times as fast, about its centre."""
    factor = _uniform(seed, *self.speed_range)
    samples = tf.shape(audio)[0]
    centre = tf.cast(samples - 1, tf.float32) / 2.0
    positions = centre + (tf.cast(tf.range(samples), tf.float32) - centre
                          ) * factor
    below = tf.floor(positions)
    fraction = positions - below
    below = tf.cast(below, tf.int32)
    last = samples - 1
    left = tf.gather(audio, tf.clip_by_value(below, 0, last))
    right = tf.gather(audio, tf.clip_by_value(below + 1, 0, last))
    value = left * (1.0 - fraction) + right * fraction
    inside = (positions >= 0.0) & (positions <= tf.cast(last, tf.float32))
    return tf.where(inside, value, 0.0)

  def microphone(self, audio, seed):
    """A random band-limit (high-pass, low-pass) and spectral tilt."""
    high_seed, low_seed, tilt_seed = tf.unstack(
        tf.random.experimental.stateless_split(seed, 3))
    highpass = _uniform(high_seed, *self.highpass_hz)
    lowpass = _uniform(low_seed, *self.lowpass_hz)
    tilt = _uniform(tilt_seed, *self.tilt_db_per_octave)
    samples = tf.shape(audio)[0]
    frequencies = tf.maximum(_fft_frequencies(samples, self.sample_rate),
                             1.0)
    magnitude = (
        tf.math.rsqrt(1.0 + tf.pow(highpass / frequencies, 4.0)) *
        tf.math.rsqrt(1.0 + tf.pow(frequencies / lowpass, 8.0)) *
        tf.pow(10.0, tilt * tf.math.log(frequencies / 1000.0) /
               math.log(2.0) / 20.0))
    return _filter_in_frequency(audio, magnitude)

  def room(self, audio, seed):
    """audio convolved with a synthetic room impulse response.

    The response is a unit direct path plus a Gaussian tail decaying by
    60 dB in rt60 seconds, scaled to the drawn direct-to-reverberant ratio;
    the output keeps the first `samples` of the linear convolution.
    """
    rt60_seed, ratio_seed, tail_seed = tf.unstack(
        tf.random.experimental.stateless_split(seed, 3))
    rt60 = _uniform(rt60_seed, *self.rt60_seconds)
    ratio_db = _uniform(ratio_seed, *self.direct_to_reverberant_db)
    length = int(math.ceil(self.rt60_seconds[1] * self.sample_rate))
    time = tf.cast(tf.range(length), tf.float32) / float(self.sample_rate)
    tail = tf.random.stateless_normal([length], tail_seed) * tf.exp(
        -math.log(1000.0) * time / rt60)
    tail = tf.tensor_scatter_nd_update(tail, [[0]], [0.0])
    tail *= tf.math.rsqrt(tf.reduce_sum(tf.square(tail)) + 1e-12) * tf.pow(
        10.0, -ratio_db / 20.0)
    response = tf.tensor_scatter_nd_update(tail, [[0]], [1.0])
    samples = tf.shape(audio)[0]
    size = samples + length - 1
    fft_length = tf.cast(2**tf.math.ceil(
        tf.math.log(tf.cast(size, tf.float32)) / math.log(2.0)), tf.int32)
    product = (tf.signal.rfft(audio[tf.newaxis], [fft_length]) *
               tf.signal.rfft(response[tf.newaxis], [fft_length]))
    return tf.signal.irfft(product, [fft_length])[0, :samples]
