"""LeafSynthetic: the embedded default dataset, ten classes of synthetic sounds.

Nothing to download: every clip is computed from a seed, so the dataset is
the same on every machine. It is small enough to train a frontend on a laptop
in minutes yet needs frequency and time resolution to solve: the classes
differ by pitch band, temporal envelope, sweep direction and spectral shape,
never by loudness.

Classes (label index, name, what it is):

  0 steady_tone_low    sine, 220-330 Hz
  1 steady_tone_mid    sine, 660-990 Hz
  2 steady_tone_high   sine, 2-3 kHz
  3 pulsed_tone_low    steady_tone_low gated on/off at 5-8 Hz, duty 30-70%
  4 pulsed_tone_high   steady_tone_high gated the same way
  5 chirp_up           log sweep, 300-600 Hz up to 2-4 kHz, spanning the clip
  6 chirp_down         log sweep, 2-4 kHz down to 300-600 Hz, spanning the clip
  7 harmonic_complex   f0 110-220 Hz with harmonics 1-6 at amplitude 1/k
  8 noise_band_low     white noise band-passed to about 100-600 Hz
  9 noise_band_high    white noise band-passed to about 3-6 kHz

Every parameter in a range above is drawn per clip. Each clip then gets white
background noise at an SNR uniform in [0, 20] dB, short raised-cosine fades
(5-50 ms) at both ends and a gain that puts its peak uniformly in [0.05, 0.9].
Clips last 1-2 s (uniform) at 16 kHz.

Splits: train 2000, validation 300, test 500 clips, exactly balanced across
the classes (clip i has label i % 10). Clip i of a split is
synthesize_example(i % 10, numpy.random.default_rng((SEED, s, i))) with s = 0,
1, 2 for train, validation, test, stored as int16 (x 32768).
"""

import abc
import numbers
import sys
import types

import numpy as np
import tensorflow_datasets as tfds

from experiments.data import audio_feature
from experiments.data import wav

SAMPLE_RATE = 16000
CLASS_NAMES = (
    'steady_tone_low',
    'steady_tone_mid',
    'steady_tone_high',
    'pulsed_tone_low',
    'pulsed_tone_high',
    'chirp_up',
    'chirp_down',
    'harmonic_complex',
    'noise_band_low',
    'noise_band_high',
)
SPLIT_SIZES = types.MappingProxyType({'train': 2000, 'validation': 300,
                                      'test': 500})

# Frequency bands in Hz, shared by the steady and pulsed tones.
TONE_LOW_HZ = (220., 330.)
TONE_MID_HZ = (660., 990.)
TONE_HIGH_HZ = (2000., 3000.)
PULSE_RATE_HZ = (5., 8.)
PULSE_DUTY = (0.3, 0.7)
CHIRP_LOW_HZ = (300., 600.)
CHIRP_HIGH_HZ = (2000., 4000.)
HARMONIC_F0_HZ = (110., 220.)
NUM_HARMONICS = 6
# Band edges are jittered per clip; a 4th-order Butterworth keeps the band
# roughly where the name says.
NOISE_LOW_EDGES_HZ = ((80., 150.), (500., 700.))
NOISE_HIGH_EDGES_HZ = ((2800., 3500.), (5500., 6500.))
DURATION_S = (1.0, 2.0)
SNR_DB = (0., 20.)
PEAK = (0.05, 0.9)
FADE_MS = (5., 50.)
# The highest band edge (6.5 kHz) must stay below Nyquist.
MIN_SAMPLE_RATE = 14000

# Any fixed value works; changing it changes every clip (bump VERSION).
SEED = 20210125
_SPLIT_INDEX = {'train': 0, 'validation': 1, 'test': 2}
# Gate edges are smoothed over this long so pulses do not click.
_GATE_RAMP_MS = 3.


def synthesize_example(label, rng, sample_rate=SAMPLE_RATE):
  """One clip of class `label`, with every random choice drawn from `rng`.

  Args:
    label: int in [0, 10), an index into CLASS_NAMES.
    rng: numpy.random.Generator; the clip is a pure function of its state.
    sample_rate: int, Hz, at least 14000 (the highest band reaches 6.5 kHz).

  Returns:
    float32 [samples], 1-2 s long, peak in [0.05, 0.9].
  """
  if (isinstance(label, bool) or not isinstance(label, numbers.Integral) or
      not 0 <= label < len(CLASS_NAMES)):
    raise ValueError('synthesize_example: label must be an int in [0, '
                     f'{len(CLASS_NAMES)}); got {label!r}.')
  if (isinstance(sample_rate, bool) or
      not isinstance(sample_rate, numbers.Integral) or
      sample_rate < MIN_SAMPLE_RATE):
    raise ValueError('synthesize_example: sample_rate must be an int of at '
                     f'least {MIN_SAMPLE_RATE} Hz so every band fits below '
                     f'Nyquist; got {sample_rate!r}.')
  num_samples = int(round(rng.uniform(*DURATION_S) * sample_rate))
  t = np.arange(num_samples) / sample_rate
  signal = _SOURCES[CLASS_NAMES[label]](t, rng, sample_rate)
  signal = signal / (np.sqrt(np.mean(signal**2)) + 1e-12)
  snr_db = rng.uniform(*SNR_DB)
  signal = signal + rng.standard_normal(num_samples) * 10**(-snr_db / 20)
  signal = signal * fades(num_samples, rng, sample_rate)
  signal = signal * (rng.uniform(*PEAK) / np.max(np.abs(signal)))
  return signal.astype(np.float32)


def _steady_tone(band):
  def source(t, rng, sample_rate):
    del sample_rate  # Unused: t is already in seconds.
    return np.sin(2 * np.pi * rng.uniform(*band) * t +
                  rng.uniform(0, 2 * np.pi))
  return source


def _pulsed_tone(band):
  def source(t, rng, sample_rate):
    tone = _steady_tone(band)(t, rng, sample_rate)
    rate = rng.uniform(*PULSE_RATE_HZ)
    duty = rng.uniform(*PULSE_DUTY)
    cycle_position = (t * rate + rng.uniform()) % 1.0
    gate = (cycle_position < duty).astype(np.float64)
    ramp = np.hanning(max(3, int(_GATE_RAMP_MS * sample_rate / 1000)))
    gate = np.convolve(gate, ramp / ramp.sum(), mode='same')
    return tone * gate
  return source


def _log_chirp(start_band, end_band):
  def source(t, rng, sample_rate):
    del sample_rate  # Unused: t is already in seconds.
    import scipy.signal  # pylint: disable=g-import-not-at-top
    # Ends at the last sample so the sweep spans the whole clip.
    return scipy.signal.chirp(
        t, f0=rng.uniform(*start_band), t1=t[-1],
        f1=rng.uniform(*end_band), method='logarithmic',
        phi=rng.uniform(0, 360))
  return source


def _harmonic_complex(t, rng, sample_rate):
  del sample_rate  # Unused: t is already in seconds.
  f0 = rng.uniform(*HARMONIC_F0_HZ)
  phases = rng.uniform(0, 2 * np.pi, NUM_HARMONICS)
  return sum(np.sin(2 * np.pi * k * f0 * t + phases[k - 1]) / k
             for k in range(1, NUM_HARMONICS + 1))


def _noise_band(edges):
  def source(t, rng, sample_rate):
    low_hz, high_hz = rng.uniform(*edges[0]), rng.uniform(*edges[1])
    import scipy.signal  # pylint: disable=g-import-not-at-top
    sos = scipy.signal.butter(4, (low_hz, high_hz), btype='bandpass',
                              fs=sample_rate, output='sos')
    return scipy.signal.sosfilt(sos, rng.standard_normal(t.shape[0]))
  return source


_SOURCES = {
    'steady_tone_low': _steady_tone(TONE_LOW_HZ),
    'steady_tone_mid': _steady_tone(TONE_MID_HZ),
    'steady_tone_high': _steady_tone(TONE_HIGH_HZ),
    'pulsed_tone_low': _pulsed_tone(TONE_LOW_HZ),
    'pulsed_tone_high': _pulsed_tone(TONE_HIGH_HZ),
    'chirp_up': _log_chirp(CHIRP_LOW_HZ, CHIRP_HIGH_HZ),
    'chirp_down': _log_chirp(CHIRP_HIGH_HZ, CHIRP_LOW_HZ),
    'harmonic_complex': _harmonic_complex,
    'noise_band_low': _noise_band(NOISE_LOW_EDGES_HZ),
    'noise_band_high': _noise_band(NOISE_HIGH_EDGES_HZ),
}


def fades(num_samples, rng, sample_rate):
  """Raised-cosine fade-in and fade-out envelope, float64 [num_samples]."""
  envelope = np.ones(num_samples)
  for reverse in (False, True):
    length = int(rng.uniform(*FADE_MS) * sample_rate / 1000)
    ramp = 0.5 - 0.5 * np.cos(np.pi * np.arange(length) / length)
    if reverse:
      envelope[num_samples - length:] *= ramp[::-1]
    else:
      envelope[:length] *= ramp
  return envelope


def clip_rng(seed, split, index):
  """The generator that draws clip `index` of `split` of the set seeded `seed`."""
  return np.random.default_rng((seed, _SPLIT_INDEX[split], index))


def example_rng(split, index):
  """The generator that draws clip `index` of `split` ('train', ...)."""
  return clip_rng(SEED, split, index)


def example_label(index):
  """Clip `index` of any split has this label: the splits are balanced."""
  return index % len(CLASS_NAMES)


class SyntheticBuilder(tfds.core.GeneratorBasedBuilder):
  """A TFDS builder of generated clips: 16-bit audio and a class label each.

  The module that defines a subclass describes its set: the module's
  docstring, SAMPLE_RATE (Hz), CLASS_NAMES and SPLIT_SIZES, read when the
  set is built. Subclasses set `code_path` and draw the clips in `example`.
  Abstract, so TFDS does not register it as a dataset.
  """

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'First release.'}

  @abc.abstractmethod
  def example(self, split, index):
    """(float waveform [samples] in [-1, 1], int label) of clip `index`."""

  def _dataset_module(self):
    return sys.modules[type(self).__module__]

  def _info(self):
    module = self._dataset_module()
    return self.dataset_info_from_configs(
        description=module.__doc__,
        features=tfds.features.FeaturesDict({
            'audio': audio_feature.pcm16_audio(module.SAMPLE_RATE),
            'label': tfds.features.ClassLabel(names=module.CLASS_NAMES),
        }),
        supervised_keys=('audio', 'label'),
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # Nothing to download.
    return {split: self._generate_examples(split)
            for split in self._dataset_module().SPLIT_SIZES}

  def _generate_examples(self, split):
    for index in range(self._dataset_module().SPLIT_SIZES[split]):
      audio, label = self.example(split, index)
      yield index, {'audio': wav.to_int16(audio), 'label': label}


class LeafSynthetic(SyntheticBuilder):
  """Ten classes of synthetic sounds at 16 kHz; see the module docstring."""

  # TFDS 4.9 derives this from importlib_resources, a package it does not
  # install on Python >= 3.9 (tensorflow/datasets#11212); naming the file
  # directly avoids that path.
  code_path = tfds.core.Path(__file__)

  def example(self, split, index):
    label = example_label(index)
    return synthesize_example(label, example_rng(split, index)), label
