"""Tests for experiments/training/model_files.py: damaged .keras files are named."""

import keras
import numpy as np
import pytest

from experiments.training import model_files


@pytest.fixture
def saved(tmp_path):
  model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
  path = tmp_path / 'best.keras'
  model.save(path)
  return model, path


def test_a_whole_file_loads(saved):
  model, path = saved
  loaded = model_files.load_keras_file(path, compile=False)
  x = np.ones((1, 3), np.float32)
  np.testing.assert_allclose(loaded(x), model(x), atol=1e-6)


@pytest.mark.parametrize('keep', [0.5, 0.9, 0.0])
def test_a_truncated_file_is_named_and_called_damaged(saved, keep):
  _, path = saved
  content = path.read_bytes()
  path.write_bytes(content[:int(len(content) * keep)])
  with pytest.raises(model_files.DamagedModelFileError,
                     match=rf'{path} is damaged .*not a complete \.keras'):
    model_files.load_keras_file(path)


def test_a_missing_file_is_not_found(tmp_path):
  with pytest.raises(FileNotFoundError, match='nothing.keras'):
    model_files.load_keras_file(tmp_path / 'nothing.keras')
