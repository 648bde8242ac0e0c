"""Tests for experiments/data/synthetic_fine.py, the LeafSyntheticFine set."""

import numpy as np
import pytest
import tensorflow_datasets as tfds

from experiments.data import synthetic_fine

SAMPLE_RATE = 16000


def power_spectrum(audio):
  return (np.fft.rfftfreq(len(audio), 1 / SAMPLE_RATE),
          np.abs(np.fft.rfft(audio * np.hanning(len(audio))))**2)


@pytest.mark.parametrize('label', range(5))
def test_tones_sit_in_their_25_hz_bands(label):
  low = synthetic_fine.TONE_LOW_HZ[label]
  for index in range(label, 200, 10):
    audio = synthetic_fine.synthesize_example(
        label, synthetic_fine.example_rng('train', index))
    hz, power = power_spectrum(audio)
    assert low - 2 <= hz[np.argmax(power)] <= low + 14, index


@pytest.mark.parametrize('label', range(5, 10))
def test_syllables_lie_above_4_khz(label):
  for index in range(label, 100, 10):
    audio = synthetic_fine.synthesize_example(
        label, synthetic_fine.example_rng('train', index))
    hz, power = power_spectrum(audio)
    noise = np.median(power)  # White noise: flat.
    assert 4000 <= hz[np.argmax(power)] <= 7500, index
    assert power[hz < 3500].max() < 100 * noise, index


def test_sweep_direction_tells_up_from_down():
  # The centroid of the first and last thirds of a syllable move apart in
  # the named direction.
  def centroid_shift(label):
    rng = synthetic_fine.example_rng('train', label)
    syllable = synthetic_fine._syllable(  # pylint: disable=protected-access
        synthetic_fine.CLASS_NAMES[label], 800, rng, SAMPLE_RATE)
    thirds = np.array_split(syllable, 3)
    centroids = []
    for part in (thirds[0], thirds[-1]):
      hz, power = power_spectrum(part)
      centroids.append((hz * power).sum() / power.sum())
    return centroids[1] - centroids[0]
  assert centroid_shift(5) > 300 and centroid_shift(7) > 300
  assert centroid_shift(6) < -300 and centroid_shift(8) < -300


def test_clips_are_reproducible_and_scaled():
  first = synthetic_fine.synthesize_example(
      7, synthetic_fine.example_rng('test', 17))
  again = synthetic_fine.synthesize_example(
      7, synthetic_fine.example_rng('test', 17))
  np.testing.assert_array_equal(first, again)
  assert first.shape == (SAMPLE_RATE,) and first.dtype == np.float32
  assert 0.05 <= np.abs(first).max() <= 0.9
  with pytest.raises(ValueError, match='label'):
    synthetic_fine.synthesize_example(10, np.random.default_rng(0))
  with pytest.raises(ValueError, match='sample_rate'):
    synthetic_fine.synthesize_example(0, np.random.default_rng(0), 8000)


def test_builder_prepares_balanced_splits(tmp_path, monkeypatch):
  monkeypatch.setattr(synthetic_fine, 'SPLIT_SIZES',
                      {'train': 20, 'validation': 10, 'test': 10})
  builder = synthetic_fine.LeafSyntheticFine(data_dir=str(tmp_path))
  builder.download_and_prepare()
  labels = [int(e['label']) for e in tfds.as_numpy(builder.as_dataset('train'))]
  assert sorted(labels) == sorted(list(range(10)) * 2)
  assert builder.info.features['label'].names == list(
      synthetic_fine.CLASS_NAMES)
  assert tfds.builder_cls('leaf_synthetic_fine') is (
      synthetic_fine.LeafSyntheticFine)
