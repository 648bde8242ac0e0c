"""Tests for experiments/data/synthetic.py, the embedded LeafSynthetic set."""

import collections

import numpy as np
import pytest
import tensorflow_datasets as tfds

from experiments.data import synthetic

SAMPLE_RATE = 16000
TONE_BANDS = {
    'steady_tone_low': (220, 330),
    'steady_tone_mid': (660, 990),
    'steady_tone_high': (2000, 3000),
    'pulsed_tone_low': (220, 330),
    'pulsed_tone_high': (2000, 3000),
    'harmonic_complex': (110, 220),  # The fundamental is the loudest part.
}


@pytest.fixture(scope='session')
def builder(tmp_path_factory):
  """The full dataset, prepared once per test session (about 25 s)."""
  tfds.disable_progress_bar()
  prepared = synthetic.LeafSynthetic(
      data_dir=tmp_path_factory.mktemp('leaf_synthetic'))
  prepared.download_and_prepare()
  return prepared


@pytest.fixture(scope='session')
def clips(builder):
  """split -> list of (float64 audio [samples], label)."""
  return {split: [(example['audio'] / 32768., int(example['label']))
                  for example in tfds.as_numpy(builder.as_dataset(split))]
          for split in synthetic.SPLIT_SIZES}


def by_class(examples):
  grouped = collections.defaultdict(list)
  for audio, label in examples:
    grouped[synthetic.CLASS_NAMES[label]].append(audio)
  return grouped


def dominant_hz(audio):
  spectrum = np.abs(np.fft.rfft(audio * np.hanning(len(audio))))
  return np.fft.rfftfreq(len(audio), 1 / SAMPLE_RATE)[np.argmax(spectrum)]


def band_power_fraction(audio, low_hz, high_hz):
  power = np.abs(np.fft.rfft(audio))**2
  hz = np.fft.rfftfreq(len(audio), 1 / SAMPLE_RATE)
  return power[(hz >= low_hz) & (hz <= high_hz)].sum() / power.sum()


def envelope_rate_hz(audio):
  """Dominant frequency of the 10 ms RMS envelope, in Hz."""
  frames = audio[:len(audio) // 160 * 160].reshape(-1, 160)
  envelope = np.sqrt(np.mean(frames**2, axis=1))
  envelope -= envelope.mean()
  spectrum = np.abs(np.fft.rfft(envelope * np.hanning(len(envelope)), 1024))
  return np.fft.rfftfreq(1024, 1 / 100)[np.argmax(spectrum)]


def test_split_sizes(builder, clips):
  assert synthetic.SPLIT_SIZES == {'train': 2000, 'validation': 300,
                                   'test': 500}
  for split, size in synthetic.SPLIT_SIZES.items():
    assert builder.info.splits[split].num_examples == size
    assert len(clips[split]) == size


def test_features_and_names(builder):
  assert builder.info.name == 'leaf_synthetic'
  assert str(builder.info.version) == '1.0.0'
  assert builder.info.features['audio'].sample_rate == SAMPLE_RATE
  assert builder.info.features['audio'].np_dtype == np.int16
  assert builder.info.features['label'].names == list(synthetic.CLASS_NAMES)
  assert len(set(synthetic.CLASS_NAMES)) == 10


def test_classes_are_exactly_balanced(clips):
  for split, examples in clips.items():
    counts = collections.Counter(label for _, label in examples)
    assert counts == {label: synthetic.SPLIT_SIZES[split] // 10
                      for label in range(10)}, split


def test_clip_lengths_and_peaks_are_in_range(clips):
  for examples in clips.values():
    lengths = np.array([len(audio) for audio, _ in examples])
    peaks = np.array([np.max(np.abs(audio)) for audio, _ in examples])
    assert lengths.min() >= SAMPLE_RATE and lengths.max() <= 2 * SAMPLE_RATE
    assert np.all(peaks >= 0.05 - 1e-4) and np.all(peaks <= 0.9 + 1e-4)
  # Uniform lengths: both halves of the range are used.
  assert np.mean(lengths < 1.5 * SAMPLE_RATE) == pytest.approx(0.5, abs=0.1)


def test_loudness_does_not_give_the_class_away(clips):
  """The peak is drawn uniformly in [0.05, 0.9] whatever the class."""
  for name, audios in by_class(clips['train']).items():
    peaks = np.array([np.max(np.abs(audio)) for audio in audios])
    assert peaks.mean() == pytest.approx(0.475, abs=0.06), name
    assert peaks.min() < 0.15 and peaks.max() > 0.8, name


def test_prepared_data_is_what_synthesize_example_draws(clips):
  """Every stored clip is the int16 of synthesize_example(i % 10, rng(i))."""
  expected = []
  for i in range(synthetic.SPLIT_SIZES['validation']):
    audio = synthetic.synthesize_example(
        i % 10, np.random.default_rng((synthetic.SEED, 1, i)))
    pcm = np.clip(np.round(audio * 32768.), -32768, 32767).astype(np.int16)
    expected.append((i % 10, pcm.tobytes()))
  stored = [(label, np.round(audio * 32768).astype(np.int16).tobytes())
            for audio, label in clips['validation']]
  assert sorted(stored) == sorted(expected)


def test_two_builds_are_identical(tmp_path, monkeypatch):
  # Small splits: determinism does not need the full 2800 clips.
  monkeypatch.setattr(synthetic, 'SPLIT_SIZES',
                      {'train': 12, 'validation': 12, 'test': 12})
  builds = []
  for attempt in range(2):
    builder = synthetic.LeafSynthetic(data_dir=tmp_path / str(attempt))
    builder.download_and_prepare()
    builds.append([(example['audio'].tobytes(), int(example['label']))
                   for split in ('train', 'test')
                   for example in tfds.as_numpy(builder.as_dataset(split))])
  assert len(builds[0]) == 24
  assert builds[0] == builds[1]


@pytest.mark.parametrize('name', sorted(TONE_BANDS))
def test_tonal_classes_peak_in_their_band(clips, name):
  low_hz, high_hz = TONE_BANDS[name]
  for audio in by_class(clips['test'])[name]:
    # One FFT bin (at most 1 Hz for 1-2 s clips) of slack.
    assert low_hz - 1 <= dominant_hz(audio) <= high_hz + 1


def test_pulsed_tones_are_gated_at_5_to_8_hz(clips):
  grouped = by_class(clips['test'])
  for name in ('pulsed_tone_low', 'pulsed_tone_high'):
    for audio in grouped[name]:
      assert 4.5 <= envelope_rate_hz(audio) <= 8.5, name


@pytest.mark.parametrize('name, rises', [('chirp_up', True),
                                         ('chirp_down', False)])
def test_chirps_sweep_over_the_clip(clips, name, rises):
  for audio in by_class(clips['test'])[name]:
    quarter = len(audio) // 4
    start_hz, end_hz = dominant_hz(audio[:quarter]), dominant_hz(
        audio[-quarter:])
    assert (end_hz > 1.5 * start_hz) if rises else (start_hz > 1.5 * end_hz)
    assert 250 <= min(start_hz, end_hz) and max(start_hz, end_hz) <= 4100


def test_noise_bands_hold_their_power_in_band(clips):
  grouped = by_class(clips['test'])
  # White background noise at 0 dB SNR alone would put 8% of the power in
  # 80-700 Hz and 46% in 2.8-6.5 kHz.
  for audio in grouped['noise_band_low']:
    assert band_power_fraction(audio, 80, 700) > 0.45
  for audio in grouped['noise_band_high']:
    assert band_power_fraction(audio, 2800, 6500) > 0.65


def test_synthesize_example_is_a_pure_function_of_the_rng():
  first = synthetic.synthesize_example(5, np.random.default_rng(7))
  again = synthetic.synthesize_example(5, np.random.default_rng(7))
  other = synthetic.synthesize_example(5, np.random.default_rng(8))
  assert first.dtype == np.float32
  np.testing.assert_array_equal(first, again)
  assert not np.array_equal(first[:len(other)], other[:len(first)])


def test_synthesize_example_at_another_rate():
  audio = synthetic.synthesize_example(
      0, np.random.default_rng(0), sample_rate=22050)
  assert 22050 <= len(audio) <= 2 * 22050
  spectrum = np.abs(np.fft.rfft(audio))
  assert 220 <= np.fft.rfftfreq(len(audio), 1 / 22050)[
      np.argmax(spectrum)] <= 330


@pytest.mark.parametrize('label', [-1, 10, 2.0, True])
def test_synthesize_example_rejects_bad_labels(label):
  with pytest.raises(ValueError, match='label'):
    synthetic.synthesize_example(label, np.random.default_rng(0))


def test_synthesize_example_rejects_rates_below_the_highest_band():
  with pytest.raises(ValueError, match='sample_rate'):
    synthetic.synthesize_example(0, np.random.default_rng(0), sample_rate=8000)
