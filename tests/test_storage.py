"""Tests for experiments/storage.py: every path of a run through tf.io.gfile.

TensorFlow's in-memory file system `ram://` stands in for gs://: no `os` or
`pathlib` call can reach it, so a run that works there touches its files only
through tf.io.gfile. It lives as long as the process, so the run is made in
this process, twice, with gin and flags reset in between.
"""

import json
import os

from absl import flags
import gin
import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import REPO_ROOT
from experiments import storage
from experiments import train as train_binary
from experiments.data import wav
from experiments.training import model_files
from experiments.training import run_files
import experiments_helpers as helpers


def test_urls_keep_their_double_slash_and_local_paths_expand_the_home():
  assert storage.expand('gs://bucket/run/') == 'gs://bucket/run'
  assert storage.join('gs://bucket/run', 'checkpoints') == (
      'gs://bucket/run/checkpoints')
  assert storage.parent('gs://bucket/run/best.keras') == 'gs://bucket/run'
  assert storage.expand('~/runs/x') == os.path.join(
      os.path.expanduser('~'), 'runs', 'x')
  assert not storage.is_url('/tmp/runs') and storage.is_url('ram://a')


def test_atomic_writes_and_json_state_on_ram():
  path = 'ram://storage_test/state/best.keras.json'
  storage.makedirs(storage.parent(path))
  run_files.write_text_atomically(path, json.dumps({'epoch': 3}))
  run_files.write_text_atomically(path, json.dumps({'epoch': 4}))
  assert run_files.read_json_state(path) == {'epoch': 4}
  # Nothing but the file itself is left beside it.
  assert storage.listdir(storage.parent(path)) == ['best.keras.json']


def test_keras_files_save_and_load_on_ram():
  model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
  path = 'ram://storage_test/models/model.keras'
  storage.makedirs(storage.parent(path))
  storage.save_keras_model(model, path)
  run_files.check_keras_file(path)  # A complete archive: no error.
  loaded = model_files.load_keras_file(path)
  x = np.arange(6, dtype=np.float32).reshape(2, 3)
  np.testing.assert_allclose(loaded(x), model(x), rtol=1e-6)
  storage.write_bytes(path, storage.read_bytes(path)[:200])
  with pytest.raises(run_files.RunFileError, match='model.keras is damaged'):
    run_files.check_keras_file(path)


def _run_binary(argv):
  """experiments.train's main in this process, with fresh flags and gin."""
  gin.clear_config()
  flags.FLAGS.unparse_flags()
  try:
    flags.FLAGS(['train'] + argv)
    train_binary.main(['train'])
  finally:
    flags.FLAGS.unparse_flags()
    gin.clear_config()


@pytest.mark.slow
def test_a_wav_folder_run_on_ram_trains_resumes_and_exports(tmp_path, capsys):
  data = 'ram://storage_run/data'
  rng = np.random.default_rng(1)
  for label, frequency in (('low', 300.), ('high', 3000.)):
    storage.makedirs(storage.join(data, label))
    for i in range(8):
      wav.write_wav(storage.join(data, label, f'{i}.wav'),
                    helpers.tone(frequency, 0.6, rng), helpers.SAMPLE_RATE)
  model_dir = 'ram://storage_run/runs/mel'
  # TFDS' data_dir follows TFDS' own path layer, where ram:// does not work.
  bindings = helpers.tiny_bindings(data, tmp_path / 'tfds', **{
      'ConvNet.filters': '[4, 8]'})
  configs = [str(REPO_ROOT / 'gin_configs' / name)
             for name in ('common.gin', 'mel.gin', 'convnet.gin')]

  def command(epochs, export=False):
    return helpers.train_args(model_dir, configs, bindings + [
        f'train.num_epochs = {epochs}', f'train.export = {export}'])

  _run_binary(command(1))
  assert f'Run folder: {model_dir}' in capsys.readouterr().out
  assert not (REPO_ROOT / 'ram:').exists()  # Nothing folded into a local path.
  for name in ('run.json', 'config.gin', 'best.keras', 'last.keras',
               'metrics.csv', 'test_metrics.json', 'checkpoints'):
    assert storage.exists(storage.join(model_dir, name)), name
  assert storage.listdir(storage.join(model_dir, 'tensorboard')) == [
      'frontend', 'train', 'validation']

  # The same command with one more epoch resumes from ram://'s checkpoint.
  _run_binary(command(2))
  rows = run_files.read_metrics_rows(storage.join(model_dir, 'metrics.csv'))
  assert [row['epoch'] for row in rows] == ['0', '1']
  reader = tf.train.load_checkpoint(storage.join(model_dir, 'checkpoints'))
  epoch_keys = [key for key in reader.get_variable_to_shape_map()
                if key.startswith('epoch/')]
  assert [int(reader.get_tensor(key)) for key in epoch_keys] == [2]
  metrics = json.loads(storage.read_text(
      storage.join(model_dir, 'test_metrics.json')))
  assert metrics['last_epoch'] == 2 and metrics['chosen_epoch'] in (1, 2)

  # Rerun with the export: it is served from ram://, with best.keras's
  # probabilities.
  _run_binary(command(2, export=True))
  from experiments.serving import export_directory  # pylint: disable=g-import-not-at-top
  served = tf.saved_model.load(export_directory.saved_model_path(
      storage.join(model_dir, 'export')))
  clip = helpers.tone(300., 0.6, np.random.default_rng(2))[np.newaxis]
  outputs = served.signatures['serving_default'](waveform=tf.constant(clip))
  model = model_files.load_keras_file(storage.join(model_dir, 'best.keras'))
  run = json.loads(storage.read_text(storage.join(model_dir, 'run.json')))
  from experiments import models  # pylint: disable=g-import-not-at-top
  expected = keras.ops.softmax(models.WindowedClassifier(
      model, run['window_samples'])(clip, training=False))
  np.testing.assert_allclose(outputs['probabilities'], expected, atol=1e-5)
  assert not (REPO_ROOT / 'ram:').exists()
