"""The custom training loop: exact step budgets, precise BatchNorm, the files
of a run, frontend files composed on default.gin, run identity, and the
step itself against Keras' fit. Runs are tiny (a tone folder, a few steps)."""

import json
import logging
import os
import pathlib

import gin
import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import REPO_ROOT
from experiments.training import run_files as checkpoints
from experiments import configurables  # pylint: disable=unused-import
from experiments import gin_files as configuration
from experiments.training import loop
from experiments.training import evaluation
from experiments import models
from experiments.training import precise_batch_norm
from experiments.training import job as training
from experiments.data import pipeline
import experiments_helpers as helpers

import leaf_audio

GIN_DIR = REPO_ROOT / 'gin_configs'
FRONTEND_FILES = ['leaf', 'mel', 'tfbanks', 'sincnet', 'sincnet_plus',
                  'efficient_leaf']




def train_in_process(model_dir, configs, bindings, **kwargs):
  gin.clear_config()
  try:
    configuration.parse([str(c) for c in configs], bindings)
    return training.train(model_dir=str(model_dir), **kwargs)
  finally:
    gin.clear_config()


def tiny(tone_folder, data_dir, **overrides):
  return helpers.tiny_bindings(tone_folder, data_dir,
                               **{'ConvNet.filters': '[4, 8]', **overrides})


def assert_same_run(run, reference):
  """run ended with reference's metrics.csv and last.keras weights."""
  assert ((run / 'metrics.csv').read_text() ==
          (reference / 'metrics.csv').read_text())
  got = keras.saving.load_model(run / 'last.keras')
  want = keras.saving.load_model(reference / 'last.keras')
  for a, b in zip(got.weights, want.weights):
    np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-6, atol=1e-7)


MEL = [GIN_DIR / 'common.gin', GIN_DIR / 'mel.gin', GIN_DIR / 'convnet.gin']


def checkpoint_value(model_dir, suffix):
  reader = tf.train.load_checkpoint(str(model_dir / 'checkpoints'))
  keys = [k for k in reader.get_variable_to_shape_map() if k.endswith(suffix)]
  assert len(keys) == 1, keys
  return reader.get_tensor(keys[0])


def examples(n, length=8):
  audio = np.arange(n * length, dtype=np.float32).reshape(n, length)
  return tf.data.Dataset.from_tensor_slices(
      {'audio': audio, 'label': np.arange(n, dtype=np.int32)})


def test_training_stream_repeats_with_a_fresh_order_each_pass():
  # 6 examples, batches of 2: 3 batches per pass; 40 batches span 13+ passes.
  batches = list(pipeline.training_stream(
      examples(6), batch_size=2, crop_samples=8, shuffle_buffer=6,
      seed=1).take(40).as_numpy_iterator())
  assert len(batches) == 40
  labels = np.concatenate([label for _, label in batches])
  passes = labels[:78].reshape(13, 6)
  for one_pass in passes:
    assert sorted(one_pass) == list(range(6))  # Every example once a pass.
  assert len({tuple(p) for p in passes}) > 1  # A fresh order per pass.


def test_training_stream_restarts_exactly_at_any_batch():
  def stream(first_batch):
    return list(pipeline.training_stream(
        examples(7, length=50), batch_size=3, crop_samples=20,
        shuffle_buffer=7, seed=4, first_batch=first_batch).take(
            12 - first_batch).as_numpy_iterator())
  whole = stream(0)
  for first_batch in (1, 5, 9):
    for (audio, label), (want_audio, want_label) in zip(
        stream(first_batch), whole[first_batch:]):
      np.testing.assert_array_equal(label, want_label)
      np.testing.assert_array_equal(audio, want_audio)


def test_two_input_pipelines_share_each_global_batch():
  whole = list(pipeline.training_stream(
      examples(10), batch_size=4, crop_samples=8, seed=2).take(
          5).as_numpy_iterator())
  shares = []
  for pipeline_id in range(2):
    context = tf.distribute.InputContext(
        num_input_pipelines=2, input_pipeline_id=pipeline_id,
        num_replicas_in_sync=2)
    shares.append(list(pipeline.training_stream(
        examples(10), batch_size=4, crop_samples=8, seed=2,
        input_context=context).take(5).as_numpy_iterator()))
  for step, (audio, label) in enumerate(whole):
    joined = np.concatenate([shares[0][step][1], shares[1][step][1]])
    assert sorted(joined) == sorted(label)
    assert shares[0][step][0].shape == (2, 8)


def test_steps_per_epoch_is_honoured_when_an_epoch_needs_more_than_a_pass(
    tmp_path, tone_folder, data_dir):
  # The tone folder holds 12 training clips: 3 batches of 4 per pass; an
  # epoch of 5 steps needs two passes.
  train_in_process(tmp_path, MEL, tiny(tone_folder, data_dir, **{
      'train.num_epochs': 2, 'train.steps_per_epoch': 5}))
  assert int(checkpoint_value(tmp_path, 'optimizer/_iterations/.ATTRIBUTES/'
                              'VARIABLE_VALUE')) == 10
  assert int(checkpoint_value(tmp_path, 'epoch/.ATTRIBUTES/VARIABLE_VALUE'))\
      == 2


def accuracies_on_training_crops(model, crops, labels):
  modes = {}
  for training_mode in (True, False):
    logits = model(crops, training=training_mode)
    modes[training_mode] = float(np.mean(np.argmax(logits, -1) == labels))
  return modes


def test_precise_batch_norm_repairs_stale_statistics(tmp_path, tone_folder,
                                                     data_dir):
  # Momentum 0.9999: the moving statistics barely leave their initial
  # values (mean 0, variance 1), so they are stale on purpose.
  bindings = tiny(tone_folder, data_dir, **{
      'train.num_epochs': 1, 'train.steps_per_epoch': 12,
      'train.learning_rate': 3e-3,
      'ConvNet.batch_norm_momentum': 0.9999, 'ConvNet.dropout': 0.0})
  crops = []
  splits, _ = (None, None)
  gin.clear_config()
  configuration.parse([str(c) for c in MEL], bindings)
  splits, _ = pipeline.load_dataset()
  gin.clear_config()
  data = list(splits['train'].as_numpy_iterator())
  crops = np.stack([d['audio'][:4800] for d in data])
  labels = np.array([d['label'] for d in data])
  results = {}
  for batches in (0, 8):
    model_dir = tmp_path / f'precise{batches}'
    train_in_process(model_dir, MEL, bindings + [
        f'train.precise_batch_norm_batches = {batches}'])
    for name in ('best', 'last'):
      model = keras.saving.load_model(model_dir / f'{name}.keras')
      results[batches, name] = accuracies_on_training_crops(
          model, crops, labels)
  for name in ('best', 'last'):
    modes = results[8, name]
    assert abs(modes[True] - modes[False]) <= 0.01, results
  # Without it the same run's stale statistics cost accuracy.
  stale = results[0, 'last']
  assert stale[True] - stale[False] > 0.01, results


def test_recompute_batch_norm_averages_batch_statistics():
  layer = keras.layers.BatchNormalization(momentum=0.99)
  model = keras.Sequential([keras.Input((3,)), layer])
  rng = np.random.default_rng(0)
  batches = [(rng.normal(loc, 2., (5, 3)).astype(np.float32), None)
             for loc in (1., 3.)]
  used = precise_batch_norm.recompute_batch_norm(model, batches)
  assert used == 2 and layer.momentum == 0.99
  want_mean = np.mean([b.mean(0) for b, _ in batches], axis=0)
  want_variance = np.mean([b.var(0) for b, _ in batches], axis=0)
  np.testing.assert_allclose(layer.moving_mean.numpy(), want_mean, rtol=1e-5)
  np.testing.assert_allclose(layer.moving_variance.numpy(), want_variance,
                             rtol=1e-4)
  nested = models.AudioClassifier(leaf_audio.MelFilterbanks(n_filters=8),
                                  models.ConvNet((4, 4)), num_outputs=2)
  assert len(precise_batch_norm.batch_norm_layers(nested)) == 4


def test_one_traced_forward_recomputes_batch_norm_after_every_epoch():
  """train_epochs keeps one forward function; each recomputation with it
  gives that call's batch statistics (momentum 0), not a blend."""
  layer = keras.layers.BatchNormalization(momentum=0.99)
  model = keras.Sequential([keras.Input((3,)), layer])
  forward = precise_batch_norm.training_forward(model)
  rng = np.random.default_rng(1)
  for loc in (1., -4.):
    batches = [(rng.normal(loc, 1., (6, 3)).astype(np.float32), None)
               for _ in range(2)]
    precise_batch_norm.recompute_batch_norm(model, batches, forward)
    np.testing.assert_allclose(
        layer.moving_mean.numpy(),
        np.mean([b.mean(0) for b, _ in batches], axis=0), rtol=1e-5)
  assert layer.momentum == 0.99
  assert forward.experimental_get_tracing_count() == 1


def test_metrics_csv_and_test_metrics_json(tmp_path, tone_folder, data_dir):
  metrics = train_in_process(tmp_path, MEL, tiny(tone_folder, data_dir, **{
      'train.num_epochs': 3}))
  rows = checkpoints.read_metrics_rows(tmp_path / 'metrics.csv')
  assert [row['epoch'] for row in rows] == ['0', '1', '2']
  assert {'loss', 'accuracy', 'val_accuracy', 'val_top5_accuracy'} <= set(
      rows[0])
  saved = json.loads((tmp_path / 'test_metrics.json').read_text())
  best = json.loads((tmp_path / 'best.keras.json').read_text())
  val = [float(row['val_accuracy']) for row in rows]
  # The chosen epoch is the first with the highest validation accuracy.
  assert saved['chosen_epoch'] == best['epoch'] == int(np.argmax(val)) + 1
  assert saved['last_epoch'] == 3
  assert 'val_accuracy' in saved['selection']
  assert saved['accuracy'] == metrics['accuracy']
  assert set(saved['last']) == {'accuracy', 'top5_accuracy'}
  if saved['chosen_epoch'] == 3:
    assert saved['last']['accuracy'] == saved['accuracy']


@pytest.mark.slow
@pytest.mark.parametrize('frontend', FRONTEND_FILES)
def test_frontend_files_compose_on_default_gin_without_warnings(
    tmp_path, tone_folder, data_dir, frontend, caplog):
  configs = [GIN_DIR / 'default.gin', GIN_DIR / f'{frontend}.gin']
  bindings = tiny(tone_folder, data_dir, **{
      'train.steps_per_epoch': 1, 'train.precise_batch_norm_batches': 1})
  with caplog.at_level(logging.INFO, logger='absl'):
    metrics = train_in_process(tmp_path, configs, bindings)
  warnings = [r.getMessage() for r in caplog.records
              if r.levelno >= logging.WARNING and 'not used' in r.getMessage()]
  assert not warnings
  # The run and its documented files.
  assert set(metrics) >= {'accuracy', 'top5_accuracy'}
  assert 0. <= metrics['accuracy'] <= 1.
  run = json.loads((tmp_path / 'run.json').read_text())
  assert run['label_names'] == ['high', 'low']
  for name in ('config.gin', 'last.keras', 'metrics.csv', 'test_metrics.json'):
    assert (tmp_path / name).exists(), name
  assert f'@leaf_audio.{run["frontend"]}' in (
      tmp_path / 'config.gin').read_text()
  model = keras.saving.load_model(tmp_path / 'best.keras')
  assert type(model.frontend).__name__ == run['frontend']


def test_a_changed_frontend_argument_is_refused_and_nothing_changes(
    tmp_path, tone_folder, data_dir):
  train_in_process(tmp_path, MEL, tiny(tone_folder, data_dir))
  def snapshot():
    return {str(p.relative_to(tmp_path)): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(tmp_path.rglob('*')) if p.is_file()}
  before = snapshot()
  with pytest.raises(checkpoints.RunMismatchError,
                     match=r'leaf_audio.MelFilterbanks.n_filters: 40 there, '
                           r'20 now'):
    train_in_process(tmp_path, MEL, tiny(tone_folder, data_dir, **{
        'leaf_audio.MelFilterbanks.n_filters': 20}))
  assert snapshot() == before
  # Changing a resumable binding is allowed and continues the run.
  train_in_process(tmp_path, MEL, tiny(tone_folder, data_dir, **{
      'train.num_epochs': 2}))
  rows = checkpoints.read_metrics_rows(tmp_path / 'metrics.csv')
  assert [row['epoch'] for row in rows] == ['0', '1']


@pytest.mark.parametrize('binding, match', [
    ("train.num_epochs = 'two'", r"train.num_epochs must be a positive "
                                 r"integer; got 'two'"),
    ('train.steps_per_epoch = 0', 'train.steps_per_epoch'),
    ('train.learning_rate = -1.', 'train.learning_rate'),
    ('train.precise_batch_norm_batches = -2',
     'train.precise_batch_norm_batches'),
])
def test_bad_arguments_fail_before_anything_is_written(
    tmp_path, tone_folder, data_dir, binding, match):
  with pytest.raises(ValueError, match=match):
    train_in_process(tmp_path / 'run', MEL,
                     tiny(tone_folder, data_dir) + [binding])
  assert not (tmp_path / 'run').exists()


def test_a_read_only_model_dir_is_refused_early(tmp_path, tone_folder,
                                                data_dir, monkeypatch):
  locked = tmp_path / 'locked'
  locked.mkdir()
  locked.chmod(0o500)
  if os.geteuid() == 0:
    # Root writes into a 0500 folder; what it cannot write is a read-only
    # file system, where os.access says no to root too: simulated here.
    access = os.access
    monkeypatch.setattr(os, 'access', lambda path, mode, **kwargs: (
        False if pathlib.Path(path) == locked else access(path, mode,
                                                          **kwargs)))
  try:
    with pytest.raises(checkpoints.RunDirectoryError, match='not writable'):
      train_in_process(locked / 'run', MEL, tiny(tone_folder, data_dir))
  finally:
    locked.chmod(0o700)


def test_a_nearly_full_file_system_is_refused_early(
    tmp_path, tone_folder, data_dir, monkeypatch):
  monkeypatch.setattr(checkpoints, '_MIN_FREE_BYTES', 2**62)
  with pytest.raises(checkpoints.RunDirectoryError, match='MiB free'):
    train_in_process(tmp_path / 'run', MEL, tiny(tone_folder, data_dir))
  assert not (tmp_path / 'run').exists()


def test_a_truncated_keras_file_is_named_at_resume(tmp_path, tone_folder,
                                                   data_dir):
  train_in_process(tmp_path, MEL, tiny(tone_folder, data_dir))
  best = tmp_path / 'best.keras'
  best.write_bytes(best.read_bytes()[:100])
  with pytest.raises(checkpoints.RunFileError, match='best.keras is damaged'):
    train_in_process(tmp_path, MEL, tiny(tone_folder, data_dir, **{
        'train.num_epochs': 2}))


def test_one_loop_step_equals_a_keras_fit_step():
  rng = np.random.default_rng(0)
  audio = rng.normal(size=(4, 1600)).astype(np.float32)
  labels = np.array([0, 1, 1, 0], np.int32)

  def make():
    keras.utils.set_random_seed(3)
    model = models.AudioClassifier(leaf_audio.MelFilterbanks(n_filters=8),
                                   models.ConvNet((4,)), num_outputs=2)
    model.build((None, 1600))
    return model

  fitted = make()
  fitted.compile(optimizer=keras.optimizers.Adam(1e-2),
                 loss=keras.losses.SparseCategoricalCrossentropy(
                     from_logits=True))
  fitted.fit(audio, labels, batch_size=4, epochs=2, shuffle=False, verbose=0)
  looped = make()
  optimizer = keras.optimizers.Adam(1e-2)
  optimizer.build(looped.trainable_variables)
  step = loop.TrainStep(tf.distribute.get_strategy(), looped, optimizer,
                        multi_label=False, global_batch_size=4)
  for _ in range(2):
    loss_sum, count, _ = step((tf.constant(audio), tf.constant(labels)))
  assert float(count) == 4
  for want, got in zip(fitted.weights, looped.weights):
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-5,
                               atol=1e-6, err_msg=want.path)


def test_the_loop_runs_under_a_one_device_strategy(tmp_path, tone_folder,
                                                   data_dir):
  # TPUStrategy needs a TPU; the same loop (strategy.run over
  # distribute_datasets_from_function, fixed-shape batches) runs here under
  # another non-default strategy.
  strategy = tf.distribute.OneDeviceStrategy('/cpu:0')
  metrics = train_in_process(tmp_path, MEL, tiny(tone_folder, data_dir),
                             strategy=strategy)
  assert 0. <= metrics['accuracy'] <= 1.
  assert checkpoints.read_metrics_rows(tmp_path / 'metrics.csv')


class Killed(BaseException):
  """Stands for a SIGKILL at a chosen line of the loop."""


@pytest.mark.slow
def test_a_kill_between_metrics_and_checkpoint_leaves_each_epoch_once(
    tmp_path, tone_folder, data_dir, monkeypatch):
  bindings = tiny(tone_folder, data_dir, **{'train.num_epochs': 3})
  train_in_process(tmp_path / 'reference', MEL, bindings)
  original_save = tf.train.CheckpointManager.save
  saves = []

  def save_or_die(manager, *args, **kwargs):
    saves.append(1)
    if len(saves) == 2:  # After epoch 1's metrics row and .keras files.
      raise Killed()
    return original_save(manager, *args, **kwargs)

  monkeypatch.setattr(tf.train.CheckpointManager, 'save', save_or_die)
  with pytest.raises(Killed):
    train_in_process(tmp_path / 'run', MEL, bindings)
  monkeypatch.setattr(tf.train.CheckpointManager, 'save', original_save)
  rows = checkpoints.read_metrics_rows(tmp_path / 'run' / 'metrics.csv')
  assert [row['epoch'] for row in rows] == ['0', '1']  # Row 1, no checkpoint.
  train_in_process(tmp_path / 'run', MEL, bindings)
  assert_same_run(tmp_path / 'run', tmp_path / 'reference')


@pytest.mark.slow
def test_a_kill_mid_epoch_resumes_from_the_step_checkpoint(
    tmp_path, tone_folder, data_dir, monkeypatch):
  bindings = tiny(tone_folder, data_dir, **{
      'train.num_epochs': 2, 'train.steps_per_epoch': 4,
      'train.checkpoint_steps': 2})
  train_in_process(tmp_path / 'reference', MEL, bindings)
  original_save = tf.train.CheckpointManager.save
  saves = []

  def save_or_die(manager, *args, **kwargs):
    result = original_save(manager, *args, **kwargs)
    saves.append(1)
    if len(saves) == 3:  # Epoch 0 step 2, end of epoch 0, epoch 1 step 2.
      raise Killed()
    return result

  monkeypatch.setattr(tf.train.CheckpointManager, 'save', save_or_die)
  with pytest.raises(Killed):
    train_in_process(tmp_path / 'run', MEL, bindings)
  monkeypatch.setattr(tf.train.CheckpointManager, 'save', original_save)
  assert int(checkpoint_value(tmp_path / 'run',
                              'step/.ATTRIBUTES/VARIABLE_VALUE')) == 2
  train_in_process(tmp_path / 'run', MEL, bindings)
  assert_same_run(tmp_path / 'run', tmp_path / 'reference')


def test_a_folder_of_user_files_is_not_taken_as_a_new_run(
    tmp_path, tone_folder, data_dir):
  folder = tmp_path / 'mine'
  folder.mkdir()
  (folder / 'metrics.csv').write_text('my,own\n1,2\n')
  before = {path.name: (path.read_bytes(), path.stat().st_mtime_ns)
            for path in folder.iterdir()}
  with pytest.raises(checkpoints.RunDirectoryError,
                     match=r'holds files but no run.json \(metrics.csv\)'):
    train_in_process(folder, MEL, tiny(tone_folder, data_dir))
  assert {path.name: (path.read_bytes(), path.stat().st_mtime_ns)
          for path in folder.iterdir()} == before


def test_a_damaged_state_file_is_named(tmp_path):
  state = tmp_path / 'best.keras.json'
  state.write_text('{"epoch": 2, "val_acc')
  with pytest.raises(checkpoints.RunFileError,
                     match='best.keras.json is damaged'):
    checkpoints.read_json_state(state)
  state.write_text('{"epoch": 2}')
  assert checkpoints.read_json_state(state) == {'epoch': 2}


def test_clip_evaluation_traces_the_model_once_for_every_epoch():
  """Validation after each epoch reuses one traced function, and each epoch
  sees the weights of that epoch (mean logits of 1 s windows)."""
  classifier = keras.Sequential([keras.Input((4,)), keras.layers.Dense(
      2, kernel_initializer='zeros')])
  waveform = np.array([[1., 2., 3., 4., 5., 6.]], np.float32)
  clips = tf.data.Dataset.from_tensors((waveform, np.array([1])))
  callback = evaluation.ClipEvaluation(clips, num_classes=2,
                                       multi_label=False, window_samples=4)
  callback.set_model(classifier)
  for sign in (1., -1.):  # Class 1 wins, then class 0.
    classifier.layers[-1].kernel.assign(
        sign * np.array([[0., 1.]] * 4, np.float32))
    logs = {}
    callback.on_epoch_end(0, logs)
    assert logs['val_accuracy'] == (1. if sign > 0 else 0.)
  assert callback._predict.experimental_get_tracing_count() == 1  # pylint: disable=protected-access
