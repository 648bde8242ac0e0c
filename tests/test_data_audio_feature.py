"""Tests for experiments/data/audio_feature.py, int16 audio stored as bytes."""

import numpy as np
import tensorflow_datasets as tfds

from experiments.data import audio_feature


def test_arrays_are_stored_as_their_raw_bytes_and_read_back():
  feature = audio_feature.pcm16_audio(16000)
  pcm = np.array([-32768, -1, 0, 1, 32767, 1234], np.int16)
  encoded = feature.encode_example(pcm)
  assert encoded == pcm.tobytes()  # 2 bytes a sample.
  decoded = feature.decode_example(encoded)
  assert decoded.dtype.name == 'int16'
  np.testing.assert_array_equal(decoded.numpy(), pcm)


def test_it_is_an_audio_feature_and_survives_json():
  feature = audio_feature.pcm16_audio(22050)
  assert isinstance(feature, tfds.features.Audio)
  assert feature.sample_rate == 22050 and feature.shape == (None,)
  restored = tfds.features.FeatureConnector.from_json(feature.to_json())
  assert type(restored) is audio_feature.PcmAudio
  assert restored.sample_rate == 22050 and restored.np_dtype == np.int16
  pcm = np.arange(-5, 5, dtype=np.int16)
  assert restored.encode_example(pcm) == pcm.tobytes()
