"""Shared fixtures: the original release's reference outputs and its input."""

import os
import pathlib

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import numpy as np  # pylint: disable=g-import-not-at-top,wrong-import-position
import pytest  # pylint: disable=g-import-not-at-top,wrong-import-position

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
REFERENCE_PATH = (REPO_ROOT / 'tests' / 'data' / 'reference' /
                  'original_leaf_reference.npz')


@pytest.fixture(scope='session')
def reference():
  """Outputs of google-research/leaf-audio (see tests/data/reference/README.md)."""
  with np.load(REFERENCE_PATH) as data:
    return {key: data[key] for key in data.files}


@pytest.fixture(scope='session')
def reference_input():
  """The reference input, rebuilt from its recipe: float32 [2, 16000].

  Row 0: 0.5 sin(2 pi 440 t) + 0.3 sin(2 pi (100 t + 3450 t^2)), a 440 Hz tone
  plus a 100 -> 7000 Hz linear chirp; row 1: Gaussian noise, std 0.1, seed 0.
  """
  t = np.arange(16000) / 16000
  tone_and_chirp = (0.5 * np.sin(2 * np.pi * 440 * t) +
                    0.3 * np.sin(2 * np.pi * (100 * t + 0.5 * 6900 * t**2)))
  noise = np.random.default_rng(0).standard_normal(16000) * 0.1
  return np.stack([tone_and_chirp, noise]).astype(np.float32)


def max_abs(a, b):
  return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b,
                                                                   np.float64))))


@pytest.fixture(scope='module')
def tone_folder(tmp_path_factory):
  """A WAV folder of tones, one class per pitch (experiments_helpers)."""
  import experiments_helpers  # pylint: disable=g-import-not-at-top
  return experiments_helpers.make_tone_folder(tmp_path_factory.mktemp('tones'))


@pytest.fixture(scope='module')
def data_dir(tmp_path_factory):
  """A TFDS data_dir of the module's own."""
  return tmp_path_factory.mktemp('tfds')


# The main recipe's held-out splits, cut for the test suite: 100 validation
# clips pick the epoch, and the first 40 test clips are the ones the tests
# play at several levels. The training split and every training setting are
# default.gin's.
MAIN_RECIPE_SPLITS = {'train': 2000, 'validation': 100, 'test': 40}


@pytest.fixture(scope='session')
def main_recipe_run(tmp_path_factory):
  """A run folder of the README's main recipe, trained once per session.

  `python -m experiments.train --gin_config=gin_configs/default.gin` (what
  `make train` runs) on the embedded LeafSynthetic set: every training
  setting is default.gin's (LEAF, ConvNet 16-32-64, 3 epochs x 40 steps of
  16 clips from the same 2000 training clips, random gain, no loudness
  normalisation), so the weights are those of a real main run. What differs
  is only what costs test time without changing the training: the
  validation split that picks the epoch holds 100 clips instead of 300, the
  test split the 40 clips the tests use instead of 500 (each clip is drawn
  from its split and index alone, so these are the first clips of the full
  splits), and the run is not exported (`train.export = False`: each test
  exports what it needs). tests/test_docs.py's tutorial trains the same
  command on 8 clips for 2 steps, a smoke run, not a trained model, so it
  cannot stand in for this one. The README times the whole main run at
  75 s on an idle 2-core machine; here the training took 4.5 min on a
  shared one at load average 7 to 12.

  Returns:
    The run folder (best.keras, run.json, test_metrics.json, ...). Tests
    must not write into it (export elsewhere with export_dir=).
  """
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  import experiments_helpers  # pylint: disable=g-import-not-at-top
  from experiments.data import synthetic  # pylint: disable=g-import-not-at-top
  root = tmp_path_factory.mktemp('main_recipe')
  data_dir = root / 'tfds'
  tfds.disable_progress_bar()
  with pytest.MonkeyPatch.context() as patch:
    patch.setattr(synthetic, 'SPLIT_SIZES', MAIN_RECIPE_SPLITS)
    synthetic.LeafSynthetic(data_dir=str(data_dir)).download_and_prepare()
  model_dir = root / 'run'
  result = experiments_helpers.run_module(
      'experiments.train', '--gin_config=gin_configs/default.gin',
      f"--gin_bindings=load_dataset.data_dir = '{data_dir}'",
      '--gin_bindings=train.export = False',
      '--gin_bindings=train.verbose = 0', f'--model_dir={model_dir}',
      timeout=3600)
  assert result.returncode == 0, result.stderr[-3000:]
  return model_dir
