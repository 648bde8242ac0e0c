"""The training job: data -> AudioClassifier -> custom loop -> test -> export.

Everything here is set from .gin files (see gin_configs/); `train.py` only
parses flags and gin, and calls `train`. The loop (experiments/training/loop.py) is
the same for every tf.distribute strategy: one device, mirrored, multi-worker
and TPU.

What a run leaves in model_dir (written by the chief only in a multi-worker
cluster; the other workers keep their checkpoints in temporary folders that
are removed at the end):
  run.json          what the run is: frontend, encoder, data, classes and
                    every gin binding that shapes model or data; a rerun
                    that differs in any of them is refused before anything
                    is written (RESUMABLE_BINDINGS may change)
  config.gin        the operative gin configuration
  checkpoints/      tf.train.Checkpoint of model, optimizer, epoch, step and
                    the epoch's running statistics: a killed run resumes
                    exactly where its last checkpoint was (the input
                    pipeline is indexed by global step)
  best.keras        the model of the best validation epoch (+ .json state:
                    epoch and the validation value)
  last.keras        the model after the last epoch (+ .json state)
  metrics.csv       one row per epoch: training loss/accuracy and full-clip
                    validation metrics of that epoch's weights
  tensorboard/      train/ and validation/ scalars per epoch; frontend/
                    holds the filter responses and learned parameters
  test_metrics.json full-clip test metrics of best.keras (top level) and of
                    last.keras ('last'), the chosen epoch and how it was
                    chosen
  export/           the serving SavedModel of best.keras (see serving.py)

Before evaluation and before best/last.keras are written, the BatchNorm
moving statistics are recomputed over `precise_batch_norm_batches` training
batches (experiments/training/precise_batch_norm.py), so that inference-mode models
use statistics of their own weights.
"""

import hashlib
import json
import numbers
import os
import pathlib
import shutil
import tempfile
from typing import Callable, Optional

from absl import logging
import gin
import keras
import numpy as np
import tensorflow as tf

from experiments.training import run_files as checkpoints
from experiments import configurables
from experiments import gin_files as configuration
from experiments.training import distribution
from experiments.training import evaluation
from experiments.serving import export_directory
from experiments.training import loop
from experiments.training import model_files
from experiments import models
from experiments.training import optimizers
from experiments.training import precise_batch_norm
from experiments.serving import signatures as serving
from experiments.training import tensorboard_figures
from experiments.data import augmentation as augmentation_lib
from experiments.data import pipeline

# Bindings a rerun of the same model_dir may change: how long to train, how
# much to print, where prepared data is kept, whether to export.
RESUMABLE_BINDINGS = (
    'train.num_epochs',
    'train.verbose',
    'train.export',
    'train.checkpoint_steps',
    'load_dataset.data_dir',
    'load_dataset.download',
)
# The frontends a frontend .gin file may configure; bindings of those this
# run does not build are expected when files are composed (default.gin's
# LEAF settings under mel.gin), so they are not reported as unused.
FRONTEND_CLASSES = ('Leaf', 'EfficientLeaf', 'MelFilterbanks', 'SincNet',
                    'SincNetPlus', 'TimeDomainFilterbanks')
CHECKPOINT_DIR = 'checkpoints'
_MIN_FREE_BYTES = 64 * 2**20


class RunDirectoryError(ValueError):
  """model_dir cannot hold the run (not writable, no space)."""


def _name_of(factory) -> Optional[str]:
  if factory is None:
    return None
  return getattr(factory, '__name__', type(factory).__name__)


def _check_positive_int(name, value, allow_none=False):
  if allow_none and value is None:
    return None
  if (isinstance(value, bool) or not isinstance(value, numbers.Integral) or
      value <= 0):
    expected = 'a positive integer' + (' or None' if allow_none else '')
    raise ValueError(f'train.{name} must be {expected}; got {value!r}.')
  return int(value)


def _check_non_negative_int(name, value):
  if (isinstance(value, bool) or not isinstance(value, numbers.Integral) or
      value < 0):
    raise ValueError(f'train.{name} must be an integer >= 0; got {value!r}.')
  return int(value)


def _check_positive_number(name, value):
  if (isinstance(value, bool) or not isinstance(value, numbers.Real) or
      not value > 0 or value == float('inf')):
    raise ValueError(f'train.{name} must be a positive number; got '
                     f'{value!r}.')
  return float(value)


def _verbosity(verbose) -> int:
  if verbose == 'auto':
    return 1
  if verbose in (0, 1, 2) and not isinstance(verbose, bool):
    return int(verbose)
  raise ValueError(f"train.verbose must be 'auto', 0, 1 or 2; got "
                   f'{verbose!r}.')


def check_model_dir_writable(model_dir: pathlib.Path) -> None:
  """Raises RunDirectoryError early, without writing anything, when model_dir
  (or the folder it would be created in) is not writable or nearly full."""
  existing = model_dir
  while not existing.exists():
    if existing.parent == existing:
      break
    existing = existing.parent
  if existing.exists() and not existing.is_dir():
    raise RunDirectoryError(
        f'--model_dir {model_dir}: {existing} is a file, not a folder.')
  if not os.access(existing, os.W_OK | os.X_OK):
    raise RunDirectoryError(
        f'--model_dir {model_dir}: {existing} is not writable by this user; '
        'choose another --model_dir or fix its permissions.')
  free = shutil.disk_usage(existing).free
  if free < _MIN_FREE_BYTES:
    raise RunDirectoryError(
        f'--model_dir {model_dir}: only {free / 2**20:.1f} MiB free on its '
        f'file system (at least {_MIN_FREE_BYTES // 2**20} MiB needed for '
        'checkpoints and models); free some space or choose another '
        '--model_dir.')


def check_model_dir_is_new(model_dir: pathlib.Path) -> None:
  """Raises RunDirectoryError if model_dir holds files but no run.json.

  A new run writes config.gin, metrics.csv, best.keras, checkpoints/ and
  more into model_dir; in a folder of the user's (`--model_dir=.`, a parent
  of runs) they would replace the user's files of those names. A new run
  therefore starts only in a missing or empty folder (what a kill right
  after creating it leaves counts as empty).
  """
  if not model_dir.is_dir():
    return
  leftovers = {f'.{checkpoints.RUN_FILE}.tmp'}
  entries = sorted(entry.name for entry in model_dir.iterdir()
                   if entry.name not in leftovers)
  if entries:
    shown = ', '.join(entries[:5]) + (', ...' if len(entries) > 5 else '')
    raise RunDirectoryError(
        f'--model_dir {model_dir} holds files but no {checkpoints.RUN_FILE} '
        f'({shown}): it is not a run of this package, and a new run would '
        'write over files of the same names. Use a new or empty folder.')


def _operative_bindings() -> dict:
  """Every gin parameter the run used so far, 'configurable.param' -> repr,
  minus RESUMABLE_BINDINGS."""
  bindings = {}
  for (scope, selector), parameters in (
      gin.config._OPERATIVE_CONFIG.items()):  # pylint: disable=protected-access
    name = selector.rsplit('.', 1)[-1]
    if selector.startswith('leaf_audio.'):
      name = selector
    for parameter, value in parameters.items():
      key = '/'.join(filter(None, [scope, f'{name}.{parameter}']))
      if key in RESUMABLE_BINDINGS:
        continue
      bindings[key] = (str(value) if isinstance(
          value, gin.config.ConfigurableReference) else repr(value))
  return bindings


def _gin_binds(parameter: str) -> bool:
  """Whether a gin binding sets `parameter` ('Configurable.argument')."""
  try:
    gin.query_parameter(parameter)
  except ValueError:
    return False
  return True


def _report_unused_bindings(frontend_name: Optional[str]) -> None:
  other_frontends = []
  for binding in configuration.unused_bindings():
    parts = binding.split('.')
    if (len(parts) >= 2 and parts[-2] in FRONTEND_CLASSES and
        parts[-2] != frontend_name):
      other_frontends.append(binding)
      continue
    if (len(parts) >= 2 and parts[-2] == 'LoudnessNormalization' and
        _gin_binds('AudioClassifier.normalization')):
      # common.gin's settings, under a recipe that replaces the layer.
      other_frontends.append(binding)
      continue
    logging.warning('gin binding %s was not used by this run: is it a '
                    'parameter of something the run does not build?',
                    binding)
  if other_frontends:
    logging.info('Bindings of layers this run does not build (from '
                 'composed .gin files): %s', ', '.join(other_frontends))


# The gin name stays `experiments.training.train`, as run folders record it.
@gin.configurable(module='experiments.training',
                  denylist=['model_dir', 'strategy'])
def train(model_dir: str,
          strategy: Optional[tf.distribute.Strategy] = None,
          frontend: Callable[[], keras.layers.Layer] = gin.REQUIRED,
          encoder: Optional[Callable[[], keras.layers.Layer]] = None,
          batch_size: int = 64,
          learning_rate: float = 1e-4,
          frontend_learning_rate_multiplier: float = 1.0,
          frontend_stage_learning_rates: Optional[dict] = None,
          num_epochs: int = 10,
          steps_per_epoch: Optional[int] = None,
          window_seconds: float = 1.0,
          shuffle_buffer: int = 1000,
          seed: int = 0,
          mixed_precision: bool = False,
          precise_batch_norm_batches: int = 16,
          checkpoint_steps: Optional[int] = None,
          export: bool = True,
          verbose='auto') -> dict:
  """Trains a frontend + encoder classifier, tests it and exports it.

  Args:
    model_dir: folder of the run (created; see the module docstring).
    strategy: a tf.distribute strategy; None for the default one.
    frontend: a factory of the frontend layer, e.g. `@leaf_audio.Leaf` in gin;
      its sample rate must be the data's.
    encoder: a factory of the encoder (`@ConvNet`, `@EfficientNetB0Encoder`,
      `@PANNEncoder`), or None for pooling the frontend output directly.
    batch_size: global batch size (split over replicas; a multiple of their
      number).
    learning_rate: Adam's learning rate (1e-4 in the paper).
    frontend_learning_rate_multiplier: the frontend's variables step with
      Adam at learning_rate times this (>= 0; 0 freezes the frontend; 1, the
      default, is plain Adam for every variable). See
      experiments/training/optimizers.py.
    frontend_stage_learning_rates: None, or a dict stage name -> multiplier
      for the stages of a `leaf_audio.Frontend` ('preemphasis',
      'filterbank', 'activation', 'pooling', 'compression',
      'normalization', 'spec_augment'), on top of
      frontend_learning_rate_multiplier; 0 freezes the stage (its weights
      and statistics), unnamed stages keep 1. E.g. {'filterbank': 0,
      'pooling': 0, 'preemphasis': 0} trains only the compression.
    num_epochs: total epochs; a resumed run continues up to this number.
    steps_per_epoch: optimizer steps per epoch, honoured exactly (the
      training data repeats, freshly shuffled each pass); None for one pass
      (training examples // batch_size steps).
    window_seconds: training crop and evaluation window in seconds (1 s in
      the paper).
    shuffle_buffer: examples in the shuffle buffer.
    seed: seeds initialisation, shuffling, cropping and the waveform
      augmentation (`WaveformAugmentation.*` bindings, training batches
      only; experiments/data/augmentation.py).
    mixed_precision: train with the mixed_float16 policy and loss scaling
      (the frontends keep computing in float32).
    precise_batch_norm_batches: training batches over which BatchNorm moving
      statistics are recomputed after each epoch, before evaluation and
      before best/last.keras are written; 0 keeps the moving averages.
      Nothing is run for models without BatchNorm.
    checkpoint_steps: also checkpoint every this many steps inside an epoch
      (None: at the end of each epoch only). A resumed run restarts from the
      last checkpoint either way, exactly.
    export: write the serving SavedModel at the end.
    verbose: 'auto' or 1 (progress bar), 2 (one line per epoch), 0.

  Returns:
    The full-clip test metrics of the chosen (best validation) model, as
    at the top level of test_metrics.json; {} on non-chief workers.

  Raises:
    ValueError: a bad argument (named, e.g. train.num_epochs), raised before
      anything is written.
    RunDirectoryError: model_dir not writable or nearly full (before
      anything is built).
    checkpoints.RunMismatchError: model_dir holds a different run.
    checkpoints.RunFileError: best.keras or last.keras of a resumed run is
      damaged.
  """
  batch_size = _check_positive_int('batch_size', batch_size)
  num_epochs = _check_positive_int('num_epochs', num_epochs)
  steps_per_epoch = _check_positive_int('steps_per_epoch', steps_per_epoch,
                                        allow_none=True)
  learning_rate = _check_positive_number('learning_rate', learning_rate)
  if (isinstance(frontend_learning_rate_multiplier, bool) or
      not isinstance(frontend_learning_rate_multiplier, numbers.Real) or
      not frontend_learning_rate_multiplier >= 0):
    raise ValueError(
        'train.frontend_learning_rate_multiplier must be a number >= 0; got '
        f'{frontend_learning_rate_multiplier!r}.')
  window_seconds = _check_positive_number('window_seconds', window_seconds)
  shuffle_buffer = _check_non_negative_int('shuffle_buffer', shuffle_buffer)
  precise_batch_norm_batches = _check_non_negative_int(
      'precise_batch_norm_batches', precise_batch_norm_batches)
  checkpoint_steps = _check_positive_int('checkpoint_steps', checkpoint_steps,
                                         allow_none=True)
  if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
    raise ValueError(f'train.seed must be an integer; got {seed!r}.')
  for name, value in (('mixed_precision', mixed_precision),
                      ('export', export)):
    if not isinstance(value, bool):
      raise ValueError(f'train.{name} must be True or False; got {value!r}.')
  verbosity = _verbosity(verbose)
  strategy = strategy or tf.distribute.get_strategy()
  replicas = strategy.num_replicas_in_sync
  if batch_size % replicas:
    raise ValueError(
        f'train.batch_size must be a multiple of the {replicas} replicas of '
        f'the strategy (each replica gets an equal share); got {batch_size}.')
  model_dir = pathlib.Path(model_dir)
  chief = distribution.is_chief(strategy)
  if chief:
    check_model_dir_writable(model_dir)

  splits, info = pipeline.load_dataset()
  window_samples = int(round(window_seconds * info.sample_rate))
  num_train = pipeline.count_examples(splits['train'])
  if num_train < batch_size and steps_per_epoch is None:
    raise ValueError(
        f'train.batch_size = {batch_size} is larger than the {num_train} '
        'training examples; set train.steps_per_epoch (the data repeats) '
        'or a smaller batch.')
  steps = steps_per_epoch or num_train // batch_size

  previous_policy = keras.mixed_precision.global_policy()
  if mixed_precision:
    keras.mixed_precision.set_global_policy('mixed_float16')
  temporary_dir = None
  try:
    keras.utils.set_random_seed(int(seed))
    num_classes = len(info.label_names)
    with strategy.scope():
      frontend_layer = frontend()
      if getattr(frontend_layer, 'sample_rate', info.sample_rate) != (
          info.sample_rate):
        raise ValueError(
            f'The frontend runs at sample_rate={frontend_layer.sample_rate} '
            f'Hz but {info.name} is at {info.sample_rate} Hz; set the '
            'frontend\'s sample_rate (gin macro SAMPLE_RATE) to match.')
      # Through gin, so that AudioClassifier.* and LoudnessNormalization.*
      # bindings (pooling, dropout, target level) apply; a gin binding of
      # AudioClassifier.normalization (e.g. None) wins.
      normalization = {}
      if not _gin_binds('AudioClassifier.normalization'):
        normalization['normalization'] = configurables.configured(
            models.LoudnessNormalization)()
      model = configurables.configured(models.AudioClassifier)(
          frontend=frontend_layer,
          encoder=encoder() if encoder is not None else None,
          num_outputs=num_classes, **normalization)
      model.build((None, window_samples))
      stage_rates = optimizers.check_stage_rates(
          frontend_layer, frontend_stage_learning_rates)
      optimizers.freeze_stages(frontend_layer, stage_rates)
      groups = optimizers.stage_groups(frontend_layer, stage_rates,
                                       frontend_learning_rate_multiplier)
      if frontend_learning_rate_multiplier == 1 and not groups:
        optimizer = keras.optimizers.Adam(learning_rate)
      else:
        optimizer = optimizers.GroupScaledAdam(
            learning_rate, frontend_layer.trainable_variables,
            frontend_learning_rate_multiplier, groups=groups)
      if mixed_precision:
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
      optimizer.build(model.trainable_variables)

    # Training batches only (also those precise BatchNorm reads, so that
    # its statistics are those the weights were trained with).
    augmentation = augmentation_lib.WaveformAugmentation(
        sample_rate=info.sample_rate)

    identity = {
        'frontend': _name_of(frontend),
        'encoder': _name_of(encoder),
        'dataset': info.name,
        'label_names': list(info.label_names),
        'sample_rate': info.sample_rate,
        'window_samples': window_samples,
        'multi_label': info.multi_label,
        'bindings': _operative_bindings(),
    }
    # Only now that the run is known to be buildable, and to be this
    # model_dir's run, does model_dir change (on the chief only).
    resumed = checkpoints.check_run_identity(model_dir, identity)
    if resumed:
      for name in ('best.keras', 'last.keras'):
        checkpoints.check_keras_file(model_dir / name)
    if chief and export:
      # A user folder at model_dir/export is refused now, not after training.
      export_directory.check_destination(model_dir / 'export', model_dir)
    if chief and not resumed:
      check_model_dir_is_new(model_dir)
    if chief:
      model_dir.mkdir(parents=True, exist_ok=True)
      checkpoints.check_or_write_run_identity(model_dir, identity)
      checkpoints.write_text_atomically(model_dir / 'config.gin',
                                        gin.operative_config_str())
      _report_unused_bindings(identity['frontend'])

    totals = loop.EpochTotals()
    epoch_counter = tf.Variable(0, dtype=tf.int64, trainable=False)
    step_counter = tf.Variable(0, dtype=tf.int64, trainable=False)
    # Every model variable by position: Keras 3 models do not expose all of
    # theirs (BatchNorm statistics, dropout seed states) to tf.train tracking
    # through their attributes.
    checkpoint = tf.train.Checkpoint(
        model_variables=list(model.variables), optimizer=optimizer,
        epoch=epoch_counter,
        step=step_counter, loss_sum=totals.loss_sum,
        examples=totals.examples, correct=totals.correct)
    chief_checkpoints = model_dir / CHECKPOINT_DIR
    if chief:
      write_dir = chief_checkpoints
    else:
      # Saving is collective: every worker saves, only the chief's counts.
      # One fixed folder per worker and run, so that a rerun after a kill
      # replaces what the killed worker left.
      run_hash = hashlib.sha256(str(model_dir.resolve()).encode()).hexdigest()
      temporary_dir = pathlib.Path(tempfile.gettempdir()) / (
          f'leaf-audio-{distribution.worker_name(strategy)}-{run_hash[:12]}')
      shutil.rmtree(temporary_dir, ignore_errors=True)
      temporary_dir.mkdir(parents=True)
      write_dir = temporary_dir
    manager = tf.train.CheckpointManager(checkpoint, str(write_dir),
                                         max_to_keep=2)
    latest = tf.train.latest_checkpoint(str(chief_checkpoints))
    if latest:
      checkpoint.restore(latest).assert_existing_objects_matched()
      logging.info('Resuming from %s: epoch %d, step %d.', latest,
                   int(epoch_counter.numpy()), int(step_counter.numpy()))

    monitor = 'val_map' if info.multi_label else 'val_accuracy'
    callbacks = []
    if chief:
      callbacks = [
          evaluation.ClipEvaluation(
              pipeline.eval_clips(splits['eval']), num_classes,
              info.multi_label, window_samples),
          checkpoints.KerasFileCheckpoint(model_dir / 'best.keras',
                                          monitor=monitor),
          checkpoints.KerasFileCheckpoint(model_dir / 'last.keras'),
          tensorboard_figures.EpochScalars(model_dir / 'tensorboard'),
          tensorboard_figures.FrontendSummaries(
              model_dir / 'tensorboard' / 'frontend'),
      ]
      for callback in callbacks:
        callback.set_model(model)

    def stream(first_batch, input_context=None):
      return pipeline.training_stream(
          splits['train'], batch_size, crop_samples=window_samples,
          shuffle_buffer=shuffle_buffer, seed=int(seed),
          first_batch=first_batch, num_examples=num_train,
          input_context=input_context,
          augmentation=augmentation if augmentation.active else None)

    step_function = loop.TrainStep(strategy, model, optimizer,
                                   info.multi_label, batch_size)
    start_epoch = int(epoch_counter.numpy())
    start_step = int(step_counter.numpy())
    for epoch in range(start_epoch, num_epochs):
      first_step = start_step if epoch == start_epoch else 0
      if first_step == 0:
        totals.reset()
      if verbosity:
        print(f'Epoch {epoch + 1}/{num_epochs}', flush=True)
      first_batch = epoch * steps + first_step
      data = strategy.distribute_datasets_from_function(
          lambda context, first_batch=first_batch: stream(first_batch,
                                                          context))

      def save_mid_epoch(done, epoch=epoch):
        if checkpoint_steps and done % checkpoint_steps == 0 and done < steps:
          epoch_counter.assign(epoch)
          step_counter.assign(done)
          manager.save()

      logs = loop.run_epoch(step_function, iter(data), first_step, steps,
                            totals, verbosity, save_mid_epoch)
      if precise_batch_norm_batches:
        precise_batch_norm.recompute_batch_norm(
            model, stream(epoch * steps).take(precise_batch_norm_batches))
      if chief:
        callbacks[0].on_epoch_end(epoch, logs)  # Adds val_* to logs.
        checkpoints.write_metrics_row(model_dir / 'metrics.csv', epoch, logs)
        for callback in callbacks[1:]:
          callback.on_epoch_end(epoch, logs)
        if verbosity:
          print(' - '.join(f'{k}: {v:.4f}' for k, v in sorted(logs.items())),
                flush=True)
      # The checkpoint comes last: a kill before it redoes this epoch, whose
      # batches are the same, and rewrites its metrics row.
      epoch_counter.assign(epoch + 1)
      step_counter.assign(0)
      manager.save()
    for callback in callbacks:
      callback.on_train_end()
    # Every worker of a cluster logs this; equal lines mean equal models.
    logging.info('Final weights fingerprint: %s', weights_fingerprint(model))

    if not chief:
      return {}
    return _test_and_export(model_dir, splits, info, window_samples, monitor,
                            export)
  finally:
    keras.mixed_precision.set_global_policy(previous_policy)
    if temporary_dir is not None:
      shutil.rmtree(temporary_dir, ignore_errors=True)


def weights_fingerprint(model) -> str:
  """SHA-256 (first 16 hex digits) of every weight's bytes, in model order."""
  digest = hashlib.sha256()
  for weight in model.weights:
    digest.update(np.ascontiguousarray(keras.ops.convert_to_numpy(
        weight.value)).tobytes())
  return digest.hexdigest()[:16]


def _test_and_export(model_dir, splits, info, window_samples, monitor,
                     export) -> dict:
  """Tests best.keras and last.keras on full clips; exports best.keras."""
  num_classes = len(info.label_names)
  results = {}
  for name in ('best', 'last'):
    model = model_files.load_keras_file(model_dir / f'{name}.keras')
    windowed = models.WindowedClassifier(model, window_samples)
    results[name] = (windowed, evaluation.evaluate_clips(
        windowed, pipeline.eval_clips(splits['test']),
        evaluation.clip_metrics(num_classes, info.multi_label)))
  best_state = checkpoints.read_json_state(model_dir / 'best.keras.json')
  last_state = checkpoints.read_json_state(model_dir / 'last.keras.json')
  test_metrics = dict(results['best'][1])
  test_metrics.update({
      'last': results['last'][1],
      'chosen_epoch': best_state['epoch'],
      'last_epoch': last_state['epoch'],
      'selection': (f'best.keras: the epoch with the highest {monitor} '
                    "(full clips of the 'eval' split, "
                    f"{info.num_examples.get('eval', '?')} clips)"),
      'splits': dict(info.split_names),
  })
  checkpoints.write_text_atomically(
      model_dir / 'test_metrics.json',
      json.dumps(test_metrics, indent=2, sort_keys=True))
  logging.info(
      'Chosen epoch %d of %d (highest %s = %.4f on the eval split). Test '
      'metrics (full clips): chosen %s; last epoch %s', best_state['epoch'],
      last_state['epoch'], monitor, best_state[monitor], results['best'][1],
      results['last'][1])
  if export:
    path = serving.export_saved_model(
        results['best'][0], info.label_names, info.sample_rate,
        window_samples, info.multi_label, model_dir / 'export',
        model_dir=model_dir)
    logging.info('Serving SavedModel written to %s', path)
  return results['best'][1]
