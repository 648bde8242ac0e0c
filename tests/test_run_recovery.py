"""Damaged runs (experiments/training/run_files.py): a rerun whose checkpoints
are missing or unreadable refuses, naming the file, instead of silently
starting again; damaged metrics.csv, run.json and foreign .keras files are
named; the offered recoveries work. Runs are tiny (a tone folder, 2 steps)."""

import json
import pathlib
import re
import shutil

import gin
import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import REPO_ROOT
from experiments import configurables  # pylint: disable=unused-import
from experiments.serving import exporting
from experiments import gin_files as configuration
from experiments import storage
from experiments.training import job as training
from experiments.training import run_files
import experiments_helpers as helpers

GIN_DIR = REPO_ROOT / 'gin_configs'
MEL = [GIN_DIR / 'common.gin', GIN_DIR / 'mel.gin', GIN_DIR / 'convnet.gin']


def train_in_process(model_dir, bindings):
  gin.clear_config()
  try:
    configuration.parse([str(c) for c in MEL], bindings)
    return training.train(model_dir=str(model_dir))
  finally:
    gin.clear_config()


def tiny(tone_folder, data_dir, **overrides):
  return helpers.tiny_bindings(tone_folder, data_dir, **{
      'ConvNet.filters': '[4, 8]', 'train.num_epochs': 2, **overrides})


@pytest.fixture(scope='module')
def finished(tmp_path_factory, tone_folder, data_dir):
  """A finished 2-epoch run (copied by `run` for each test)."""
  model_dir = tmp_path_factory.mktemp('finished') / 'run'
  train_in_process(model_dir, tiny(tone_folder, data_dir))
  return model_dir


@pytest.fixture
def run(finished, tmp_path):
  return pathlib_copy(finished, tmp_path / 'run')


def pathlib_copy(source, destination):
  shutil.copytree(source, destination)
  return destination


def snapshot(folder):
  return {str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns)
          for p in sorted(folder.rglob('*')) if p.is_file()}


def checkpoint_epoch(checkpoint_dir):
  reader = tf.train.load_checkpoint(str(checkpoint_dir))
  key, = [k for k in reader.get_variable_to_shape_map()
          if k.endswith('epoch/.ATTRIBUTES/VARIABLE_VALUE')]
  return int(reader.get_tensor(key))


def damage_state_file(run):
  (run / 'checkpoints' / 'checkpoint').write_text('garbage {{{\n')
  return r'checkpoints/checkpoint is damaged'


def delete_checkpoints(run):
  shutil.rmtree(run / 'checkpoints')
  return r'checkpoints/checkpoint is missing \(the folder is gone\)'


def truncate_index(run):
  index = run / 'checkpoints' / 'ckpt-2.index'
  index.write_bytes(index.read_bytes()[:500])
  return r'checkpoints/ckpt-2\.index is damaged'


def truncate_data(run):
  data, = (run / 'checkpoints').glob('ckpt-2.data-*')
  data.write_bytes(data.read_bytes()[:1000])
  return r'checkpoints/ckpt-2\.data-00000-of-00001 is damaged'


@pytest.mark.parametrize('damage', [damage_state_file, delete_checkpoints,
                                    truncate_index, truncate_data])
def test_a_run_with_unusable_checkpoints_refuses_to_restart(
    run, tone_folder, data_dir, damage):
  match = damage(run)
  before = snapshot(run)
  with pytest.raises(run_files.RunCheckpointError, match=match) as error:
    train_in_process(run, tiny(tone_folder, data_dir, **{
        'train.num_epochs': 3}))
  assert "train.resume_from = 'last.keras'" in str(error.value)
  assert 'new --model_dir' in str(error.value)
  assert snapshot(run) == before


@pytest.mark.slow
def test_resume_from_last_keras_after_a_damaged_state_file(
    run, tone_folder, data_dir):
  damage_state_file(run)
  rows_before = run_files.read_metrics_rows(run / 'metrics.csv')
  last = keras.saving.load_model(run / 'last.keras')
  train_in_process(run, tiny(tone_folder, data_dir, **{
      'train.num_epochs': 3, 'train.resume_from': "'last.keras'"}))
  rows = run_files.read_metrics_rows(run / 'metrics.csv')
  assert [row['epoch'] for row in rows] == ['0', '1', '2']
  assert rows[:2] == rows_before  # Epochs 1-2 are kept, not redone.
  # The damaged checkpoints are set aside; the new one holds epoch 3.
  assert (run / 'checkpoints.damaged-1' / 'checkpoint').read_text() == (
      'garbage {{{\n')
  assert checkpoint_epoch(run / 'checkpoints') == 3
  # Epoch 3 trained on from last.keras's weights: they changed.
  now = keras.saving.load_model(run / 'last.keras')
  assert any(not np.array_equal(a.numpy(), b.numpy())
             for a, b in zip(last.weights, now.weights))
  assert json.loads((run / 'last.keras.json').read_text())['epoch'] == 3


@pytest.mark.slow
def test_a_run_killed_before_its_first_checkpoint_restarts(
    tmp_path, tone_folder, data_dir, monkeypatch):

  class Killed(BaseException):
    pass

  def die(*args, **kwargs):
    raise Killed()

  bindings = tiny(tone_folder, data_dir, **{'train.num_epochs': 1})
  monkeypatch.setattr(tf.train.CheckpointManager, 'save', die)
  with pytest.raises(Killed):
    train_in_process(tmp_path / 'run', bindings)
  monkeypatch.undo()
  assert (tmp_path / 'run' / 'last.keras').exists()
  assert not (tmp_path / 'run' / 'checkpoints').exists()
  train_in_process(tmp_path / 'run', bindings)
  assert checkpoint_epoch(tmp_path / 'run' / 'checkpoints') == 1


@pytest.mark.parametrize('text', ['garbage\n', 'epoch,loss\nx,1\n'])
def test_a_damaged_metrics_csv_is_refused_before_training(
    run, tone_folder, data_dir, text):
  (run / 'metrics.csv').write_text(text)
  before = snapshot(run)
  with pytest.raises(run_files.RunFileError, match='metrics.csv is damaged'):
    train_in_process(run, tiny(tone_folder, data_dir, **{
        'train.num_epochs': 3}))
  assert snapshot(run) == before


@pytest.mark.parametrize('text', ['[]', 'null', '"a run"'])
def test_a_run_json_that_is_not_an_object_is_named(run, tone_folder, data_dir,
                                                   text):
  (run / 'run.json').write_text(text)
  with pytest.raises(run_files.RunFileError,
                     match='run.json is damaged: it holds ' + re.escape(text)):
    train_in_process(run, tiny(tone_folder, data_dir))
  with pytest.raises(run_files.RunFileError, match='run.json is damaged'):
    exporting.export_run(run, export_dir=run.parent / 'export')


def test_a_foreign_best_keras_is_named(run, tone_folder, data_dir):
  foreign = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
  foreign.save(run / 'best.keras')
  with pytest.raises(run_files.RunFileError,
                     match=r'best.keras holds another model \(Sequential'):
    train_in_process(run, tiny(tone_folder, data_dir))


def test_a_deleted_best_keras_of_a_finished_run_is_written_again(
    run, tone_folder, data_dir):
  # What the damaged-best.keras message advises.
  (run / 'best.keras').unlink()
  (run / 'best.keras.json').unlink()
  (run / 'test_metrics.json').unlink()
  train_in_process(run, tiny(tone_folder, data_dir))
  state = json.loads((run / 'best.keras.json').read_text())
  rows = run_files.read_metrics_rows(run / 'metrics.csv')
  assert state == {'epoch': 2, 'val_accuracy': float(rows[1]['val_accuracy'])}
  best = keras.saving.load_model(run / 'best.keras')
  last = keras.saving.load_model(run / 'last.keras')
  for a, b in zip(best.weights, last.weights):
    np.testing.assert_array_equal(a.numpy(), b.numpy())
  assert json.loads((run / 'test_metrics.json').read_text())[
      'chosen_epoch'] == 2


def test_a_file_system_without_storage_is_named(tmp_path, tone_folder,
                                                data_dir, monkeypatch):
  monkeypatch.setattr(run_files.shutil, 'disk_usage',
                      lambda path: shutil._ntuple_diskusage(0, 0, 0))  # pylint: disable=protected-access
  with pytest.raises(run_files.RunDirectoryError,
                     match='stores no files'):
    train_in_process(tmp_path / 'run', tiny(tone_folder, data_dir))


def test_a_write_cut_short_by_a_full_disk_leaves_the_old_file(tmp_path,
                                                              monkeypatch):
  target = tmp_path / 'metrics.csv'
  target.write_text('epoch,loss\n0,1.0\n')
  original = storage.write_bytes

  def full_disk(path, data):
    original(path, data[:5])  # Part of it reached the disk.
    raise OSError(28, 'No space left on device', str(path))

  monkeypatch.setattr(storage, 'write_bytes', full_disk)
  with pytest.raises(OSError, match='No space left'):
    run_files.write_text_atomically(target, 'epoch,loss\n0,1.0\n1,0.5\n')
  monkeypatch.undo()
  assert target.read_text() == 'epoch,loss\n0,1.0\n'
  assert sorted(p.name for p in tmp_path.iterdir()) == ['metrics.csv']

  class FullDiskModel:
    def save(self, path):
      pathlib.Path(path).write_bytes(b'PK\x03\x04 partial')
      raise OSError(28, 'No space left on device', str(path))

  (tmp_path / 'best.keras').write_bytes(b'old')
  with pytest.raises(OSError, match='No space left'):
    run_files.save_model_atomically(FullDiskModel(), tmp_path / 'best.keras')
  assert (tmp_path / 'best.keras').read_bytes() == b'old'
  assert sorted(p.name for p in tmp_path.iterdir()) == ['best.keras',
                                                        'metrics.csv']
