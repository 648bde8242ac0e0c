"""LeafSyntheticFine: an embedded task where the filters' placement matters.

The embedded LeafSynthetic classes differ by octaves and by shape, which any
filterbank resolves. Here half of the classes are steady tones 25 Hz apart
at 100-215 Hz, where the 40 mel filters (60-7800 Hz) are about 60 Hz wide
and overlap, and the other half are bird-like syllables above 4 kHz, where
only a few wide mel filters lie; a frontend that can move or narrow its
filters has room to do better than mel. Nothing to download: every clip is
computed from a seed.

Classes (label index, name, what it is):

  0 tone_100    sine, 100-112 Hz
  1 tone_125    sine, 125-137 Hz
  2 tone_150    sine, 150-162 Hz
  3 tone_175    sine, 175-187 Hz
  4 tone_200    sine, 200-212 Hz
  5 syllables_up_low     20-60 ms upward sweeps 4.2-4.7 -> 5.2-5.7 kHz
  6 syllables_down_low   the same sweeps downward
  7 syllables_up_high    upward sweeps 5.8-6.3 -> 6.8-7.3 kHz
  8 syllables_down_high  the same sweeps downward
  9 trill                20-60 ms syllables at 5.2-6.2 kHz, frequency
                         modulated +-300 Hz at 40-80 Hz

Syllables repeat every 80-200 ms from a random start, each with a Hann
envelope. Every parameter in a range above is drawn per clip. Each clip gets
white background noise at an SNR uniform in [-5, 15] dB, 5-50 ms raised-
cosine fades and a peak uniform in [0.05, 0.9]. Clips last 1 s at 16 kHz.

Splits: train 2000, validation 300, test 500 clips, exactly balanced (clip i
has label i % 10). Clip i of a split is synthesize_example(i % 10,
numpy.random.default_rng((SEED, s, i))) with s = 0, 1, 2 for train,
validation, test, stored as int16 (x 32768).
"""

import numbers
import types

import numpy as np
import tensorflow_datasets as tfds

from experiments.data import synthetic

SAMPLE_RATE = 16000
TONE_LOW_HZ = (100., 125., 150., 175., 200.)
TONE_WIDTH_HZ = 12.
CLASS_NAMES = tuple(f'tone_{int(f)}' for f in TONE_LOW_HZ) + (
    'syllables_up_low',
    'syllables_down_low',
    'syllables_up_high',
    'syllables_down_high',
    'trill',
)
SPLIT_SIZES = types.MappingProxyType({'train': 2000, 'validation': 300,
                                      'test': 500})

# Sweep ends in Hz: (start of the lower end, start of the upper end); each
# end is drawn from [start, start + 500 Hz].
SWEEP_LOW_HZ = (4200., 5200.)
SWEEP_HIGH_HZ = (5800., 6800.)
SWEEP_JITTER_HZ = 500.
TRILL_HZ = (5200., 6200.)
TRILL_DEPTH_HZ = 300.
TRILL_RATE_HZ = (40., 80.)
SYLLABLE_MS = (20., 60.)
SYLLABLE_PERIOD_MS = (80., 200.)
DURATION_S = 1.0
SNR_DB = (-5., 15.)
PEAK = (0.05, 0.9)
# The highest sweep reaches 7.3 kHz, which must stay below Nyquist.
MIN_SAMPLE_RATE = 16000

# Any fixed value works; changing it changes every clip (bump VERSION).
SEED = 20220705


def synthesize_example(label, rng, sample_rate=SAMPLE_RATE):
  """One clip of class `label`, with every random choice drawn from `rng`.

  Args:
    label: int in [0, 10), an index into CLASS_NAMES.
    rng: numpy.random.Generator; the clip is a pure function of its state.
    sample_rate: int, Hz, at least 16000 (the sweeps reach 7.3 kHz).

  Returns:
    float32 [samples], 1 s long, peak in [0.05, 0.9].
  """
  if (isinstance(label, bool) or not isinstance(label, numbers.Integral) or
      not 0 <= label < len(CLASS_NAMES)):
    raise ValueError('synthesize_example: label must be an int in [0, '
                     f'{len(CLASS_NAMES)}); got {label!r}.')
  if (isinstance(sample_rate, bool) or
      not isinstance(sample_rate, numbers.Integral) or
      sample_rate < MIN_SAMPLE_RATE):
    raise ValueError('synthesize_example: sample_rate must be an int of at '
                     f'least {MIN_SAMPLE_RATE} Hz so every sweep fits below '
                     f'Nyquist; got {sample_rate!r}.')
  num_samples = int(round(DURATION_S * sample_rate))
  t = np.arange(num_samples) / sample_rate
  if label < len(TONE_LOW_HZ):
    low = TONE_LOW_HZ[label]
    signal = np.sin(2 * np.pi * rng.uniform(low, low + TONE_WIDTH_HZ) * t +
                    rng.uniform(0, 2 * np.pi))
  else:
    signal = _syllables(CLASS_NAMES[label], num_samples, rng, sample_rate)
  signal = signal / (np.sqrt(np.mean(signal**2)) + 1e-12)
  snr_db = rng.uniform(*SNR_DB)
  signal = signal + rng.standard_normal(num_samples) * 10**(-snr_db / 20)
  signal = signal * synthetic.fades(num_samples, rng, sample_rate)
  signal = signal * (rng.uniform(*PEAK) / np.max(np.abs(signal)))
  return signal.astype(np.float32)


def _syllable(name, length, rng, sample_rate):
  """One syllable of `length` samples, Hann-windowed."""
  t = np.arange(length) / sample_rate
  if name == 'trill':
    centre = rng.uniform(*TRILL_HZ)
    rate = rng.uniform(*TRILL_RATE_HZ)
    # Instantaneous frequency centre + depth sin(2 pi rate t).
    phase = (2 * np.pi * centre * t -
             TRILL_DEPTH_HZ / rate * np.cos(2 * np.pi * rate * t))
  else:
    band = SWEEP_LOW_HZ if name.endswith('_low') else SWEEP_HIGH_HZ
    low = rng.uniform(band[0], band[0] + SWEEP_JITTER_HZ)
    high = rng.uniform(band[1], band[1] + SWEEP_JITTER_HZ)
    start, end = (low, high) if '_up_' in name else (high, low)
    # Linear sweep from start to end over the syllable.
    duration = length / sample_rate
    phase = 2 * np.pi * (start * t + 0.5 * (end - start) / duration * t**2)
  return np.sin(phase + rng.uniform(0, 2 * np.pi)) * np.hanning(length)


def _syllables(name, num_samples, rng, sample_rate):
  """Syllables repeated at one random period from a random start."""
  signal = np.zeros(num_samples)
  period = int(rng.uniform(*SYLLABLE_PERIOD_MS) * sample_rate / 1000)
  length = int(rng.uniform(*SYLLABLE_MS) * sample_rate / 1000)
  for start in range(int(rng.uniform(0, period)), num_samples - length,
                     period):
    signal[start:start + length] += _syllable(name, length, rng, sample_rate)
  return signal


def example_rng(split, index):
  """The generator that draws clip `index` of `split` ('train', ...)."""
  return synthetic.clip_rng(SEED, split, index)


def example_label(index):
  """Clip `index` of any split has this label: the splits are balanced."""
  return index % len(CLASS_NAMES)


class LeafSyntheticFine(synthetic.SyntheticBuilder):
  """Closely spaced low tones and high bird-like syllables; see the module."""

  # As in synthetic.LeafSynthetic: TFDS 4.9 would look for this file through
  # importlib_resources, which it does not install.
  code_path = tfds.core.Path(__file__)

  def example(self, split, index):
    label = example_label(index)
    return synthesize_example(label, example_rng(split, index)), label
