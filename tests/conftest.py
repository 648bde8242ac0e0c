"""Shared fixtures: the original release's reference outputs and its input."""

import os
import pathlib

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
# `make test` runs one test process per core: each process's TensorFlow (and
# the processes its tests start, which inherit the variable) computes an op
# on its own core's share. With a pool per core in every process, the pools'
# threads wait for work on each other's cores: TensorFlow's stream loops
# spent twice the CPU for the same wall time.
if os.environ.get('PYTEST_XDIST_WORKER_COUNT'):
  os.environ.setdefault('TF_NUM_INTRAOP_THREADS', str(max(
      1, (os.cpu_count() or 1) //
      int(os.environ['PYTEST_XDIST_WORKER_COUNT']))))

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


@pytest.fixture(scope='session')
def tiny_export(tmp_path_factory):
  """A tiny untrained LEAF classifier, saved as a training run and exported
  by `python -m experiments.export` to a SavedModel and every converted file
  (experiments_helpers.export_tiny_run): {'model_dir', 'saved_model' (the
  version folder), 'tflite', 'onnx', 'streaming_tflite', 'streaming_onnx':
  paths; 'label_names'; 'stdout' of the export}.

  Built once per test run and shared by the test processes, so READ ONLY:
  a test that writes into an export or replaces a file works on a copy.
  """
  import experiments_helpers  # pylint: disable=g-import-not-at-top
  written = experiments_helpers.built_once(
      experiments_helpers.shared_temp_root(tmp_path_factory) / 'tiny_export',
      experiments_helpers.export_tiny_run)
  return {key: (value if key in ('label_names', 'stdout') else
                pathlib.Path(value)) for key, value in written.items()}


# Test files whose tests take longest in all, longest first (from the
# durations table `make test` prints). `make test` runs files in parallel
# processes, a file at a time per process, in collection order: starting the
# longest ones first lets the processes end together instead of one running
# a long file alone at the end. Files not named here follow in pytest's
# order; the list orders the run and nothing else.
LONGEST_FILES_FIRST = (
    'test_main_recipe.py',
    'test_runtimes.py',
    'test_train_cli.py',
    'test_docs.py',
    'test_training.py',
    'test_serving.py',
    'test_frontend.py',
    'test_optimizers.py',
    'test_augmentation.py',
    'test_training_loop.py',
    'test_streaming_export.py',
    'test_conformance.py',
    'test_efficient_leaf.py',
    'test_stream_cadence.py',
    'test_storage.py',
)


def pytest_collection_modifyitems(config, items):  # pylint: disable=unused-argument
  """Orders the collected tests by LONGEST_FILES_FIRST (a stable sort: each
  file keeps its own order)."""
  rank = {name: index for index, name in enumerate(LONGEST_FILES_FIRST)}
  items.sort(key=lambda item: rank.get(item.path.name, len(rank)))
