"""The training job: `train()` and its phases.

Everything here is set from .gin files (see gin_configs/); `train.py` only
parses flags and gin, and calls `train`, which reads as its phases:

  Settings.checked        the arguments, checked (settings.py)
  load_data               the dataset of `load_dataset` and the epoch geometry
  build_model             AudioClassifier + optimizer under the strategy
  open_run_folder         refuse another run's folder; write run.json
  restore_state           the checkpoint, restored when there is one
  train_epochs            per epoch: train (loop.py), precise BatchNorm,
                          evaluate, metrics.csv, best/last.keras, TensorBoard,
                          checkpoint
  test_and_export         test best/last.keras; export best.keras

The loop (experiments/training/loop.py) is the same for every tf.distribute
strategy: one device, mirrored, multi-worker and TPU. model_dir may be on any
TensorFlow file system (gs://...): every file goes through tf.io.gfile
(experiments/storage.py).

What a run leaves in model_dir (written by the chief only in a multi-worker
cluster; the other workers keep their checkpoints in temporary folders that
are removed at the end):
  run.json          what the run is: frontend, encoder, data, classes and
                    every gin binding that shapes model or data; a rerun
                    that differs in any of them is refused before anything
                    is written (RESUMABLE_BINDINGS may change)
  config.gin        the operative gin configuration
  train.log         the log of the binary's runs in this folder, TensorFlow's
                    and absl's lines included (experiments/console.py)
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
  export/           the serving SavedModel of best.keras
                    (experiments/serving/signatures.py)

Before evaluation and before best/last.keras are written, the BatchNorm
moving statistics are recomputed over `precise_batch_norm_batches` training
batches (experiments/training/precise_batch_norm.py), so that inference-mode
models use statistics of their own weights.
"""

import contextlib
import dataclasses
import hashlib
import json
import os
import tempfile
from typing import Callable, Optional

from absl import logging
import gin
import keras
import numpy as np
import tensorflow as tf

from experiments import configurables
from experiments import console
from experiments import errors
from experiments import gin_files
from experiments import models
from experiments import storage
from experiments.data import augmentation as augmentation_lib
from experiments.data import pipeline
from experiments.serving import export_directory
from experiments.serving import signatures
from experiments.training import distribution
from experiments.training import divergence
from experiments.training import evaluation
from experiments.training import loop
from experiments.training import model_files
from experiments.training import optimizers
from experiments.training import precise_batch_norm
from experiments.training import run_files
from experiments.training import settings as settings_lib
from experiments.training import run_lock
from experiments.training import tensorboard_figures
from experiments.training import watchdog

# Bindings a rerun of the same model_dir may change: how long to train, how
# much to print, where prepared data is kept, whether to export.
RESUMABLE_BINDINGS = (
    'train.num_epochs',
    'train.verbose',
    'train.export',
    'train.checkpoint_steps',
    'train.resume_from',
    'train.max_loss',
    'load_dataset.data_dir',
    'load_dataset.download',
)
# The frontends a frontend .gin file may configure; bindings of those this
# run does not build are expected when files are composed (default.gin's
# LEAF settings under mel.gin), so they are not reported as unused.
FRONTEND_CLASSES = ('Leaf', 'EfficientLeaf', 'MelFilterbanks', 'SincNet',
                    'SincNetPlus', 'TimeDomainFilterbanks')
CHECKPOINT_DIR = 'checkpoints'
# The full log of the binary's runs in this folder (experiments/console.py).
LOG_FILE = 'train.log'


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
          verbose='auto',
          resume_from: Optional[str] = None,
          max_loss: Optional[float] = divergence.DEFAULT_MAX_LOSS) -> dict:
  """Trains a frontend + encoder classifier, tests it and exports it.

  Args:
    model_dir: folder of the run (created; see the module docstring): a local
      path (`~` is expanded) or a URL of any TensorFlow file system
      (gs://bucket/run).
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
    resume_from: None, or 'last.keras' / 'best.keras': when the run's
      checkpoints are missing or damaged (a rerun refuses them, see
      docs/recovery.md), continue from that whole-model file with a fresh
      optimizer instead; ignored while a readable checkpoint exists.
    max_loss: a mean training loss above this (or a non-finite one) stops
      the run with divergence.RunDivergedError before the epoch is written
      or anything exported; None: only non-finite losses stop it.

  Returns:
    The full-clip test metrics of the chosen (best validation) model, as
    at the top level of test_metrics.json; {} on non-chief workers.

  Raises:
    errors.ConfigurationError: a bad argument (named, e.g. train.num_epochs),
      or a frontend or encoder that cannot be built; raised before anything
      is written.
    errors.DataError: the dataset cannot be loaded.
    run_files.RunDirectoryError: model_dir not writable, nearly full or
      holding user files (before anything is written).
    run_files.RunMismatchError: model_dir holds a different run.
    run_files.RunFileError: best.keras or last.keras of a resumed run is
      damaged or of another model, metrics.csv or run.json is damaged; its
      subclass RunCheckpointError: the run has finished epochs but its
      checkpoints are missing or damaged (see resume_from).
    run_lock.RunLockedError: another process works in model_dir.
    divergence.RunDivergedError: the training loss became non-finite or
      exceeded max_loss; nothing of that epoch is written, nothing exported.
  """
  settings = settings_lib.Settings.checked(
      model_dir=model_dir, strategy=strategy, frontend=frontend,
      encoder=encoder, batch_size=batch_size, learning_rate=learning_rate,
      frontend_learning_rate_multiplier=frontend_learning_rate_multiplier,
      frontend_stage_learning_rates=frontend_stage_learning_rates,
      num_epochs=num_epochs, steps_per_epoch=steps_per_epoch,
      window_seconds=window_seconds, shuffle_buffer=shuffle_buffer,
      seed=seed, mixed_precision=mixed_precision,
      precise_batch_norm_batches=precise_batch_norm_batches,
      checkpoint_steps=checkpoint_steps, export=export, verbose=verbose,
      resume_from=resume_from, max_loss=max_loss)
  if settings.chief:
    run_files.check_model_dir_writable(settings.model_dir)
  data = load_data(settings)
  with _run_lock(settings), _precision_policy(settings), _checkpoint_folder(
      settings) as folder:
    keras.utils.set_random_seed(settings.seed)
    model, optimizer = build_model(settings, data)
    resume_point = open_run_folder(settings, data, model)
    state = restore_state(settings, model, optimizer, folder, resume_point)
    train_epochs(settings, data, model, optimizer, state)
    # Every worker of a cluster logs this; equal lines mean equal models.
    logging.info('Final weights fingerprint: %s', weights_fingerprint(model))
    if not settings.chief:
      return {}
    return test_and_export(settings, data)


@dataclasses.dataclass(frozen=True)
class Data:
  """The run's data: splits, what they are, and the epoch's geometry.

  Attributes:
    splits: dict 'train'/'eval'/'test' -> tf.data.Dataset (pipeline).
    info: pipeline's DatasetInfo (name, label_names, sample_rate, ...).
    window_samples: training crop and evaluation window, samples.
    num_train: training examples.
    steps: optimizer steps per epoch.
    augmentation: the training batches' WaveformAugmentation (gin), or None
      when it changes nothing. Precise BatchNorm reads augmented batches
      too, so that its statistics are those the weights were trained with.
  """
  splits: dict
  info: object
  window_samples: int
  num_train: int
  steps: int
  augmentation: Optional[augmentation_lib.WaveformAugmentation] = None

  def training_stream(self, settings, first_batch, input_context=None):
    """The training batches from global batch `first_batch` on."""
    return pipeline.training_stream(
        self.splits['train'], settings.batch_size,
        crop_samples=self.window_samples,
        shuffle_buffer=settings.shuffle_buffer, seed=settings.seed,
        first_batch=first_batch, num_examples=self.num_train,
        input_context=input_context, augmentation=self.augmentation)


def load_data(settings) -> Data:
  """The dataset of `load_dataset` (gin), counted and checked against the
  batch size.

  Raises:
    errors.DataError: the dataset cannot be loaded (unknown name, a missing
      or empty folder, a damaged file, a bad load_dataset binding).
  """
  try:
    splits, info = pipeline.load_dataset()
  except ValueError as error:
    if isinstance(error, errors.LeafAudioError):
      raise
    raise errors.DataError(errors.one_line(error)) from error
  window_samples = int(round(settings.window_seconds * info.sample_rate))
  num_train = pipeline.count_examples(splits['train'])
  if num_train < settings.batch_size and settings.steps_per_epoch is None:
    raise errors.ConfigurationError(
        f'train.batch_size = {settings.batch_size} is larger than the '
        f'{num_train} training examples; set train.steps_per_epoch (the data '
        'repeats) or a smaller batch.')
  augmentation = augmentation_lib.WaveformAugmentation(
      sample_rate=info.sample_rate)
  return Data(splits=splits, info=info, window_samples=window_samples,
              num_train=num_train,
              steps=settings.steps_per_epoch or num_train // settings.batch_size,
              augmentation=augmentation if augmentation.active else None)


def _run_lock(settings):
  """The chief holds model_dir's lock for the whole run (run_lock.py)."""
  if not settings.chief:
    return contextlib.nullcontext()
  return run_lock.acquire(settings.model_dir, 'train')


@contextlib.contextmanager
def _precision_policy(settings):
  """mixed_float16 inside when asked; the previous policy back after."""
  previous_policy = keras.mixed_precision.global_policy()
  if settings.mixed_precision:
    keras.mixed_precision.set_global_policy('mixed_float16')
  try:
    yield
  finally:
    keras.mixed_precision.set_global_policy(previous_policy)


@contextlib.contextmanager
def _checkpoint_folder(settings):
  """Where this process writes checkpoints: model_dir/checkpoints on the
  chief; on other workers (saving is collective, only the chief's counts) a
  temporary folder, one fixed name per worker and run so that a rerun after
  a kill replaces what the killed worker left, removed at the end."""
  if settings.chief:
    yield settings.path(CHECKPOINT_DIR)
    return
  run_hash = hashlib.sha256(settings.model_dir.encode()).hexdigest()[:12]
  worker = distribution.worker_name(settings.strategy)
  folder = storage.join(tempfile.gettempdir(),
                        f'leaf-audio-{worker}-{run_hash}')
  with distribution.worker_folder(folder):
    yield folder


def build_model(settings, data):
  """The AudioClassifier and its optimizer, built under the strategy.

  Raises:
    errors.ConfigurationError: the frontend or encoder cannot be built from
      its bindings (e.g. Leaf.n_filters = 0), or runs at another sample rate
      than the data.
  """
  info = data.info
  with settings.strategy.scope():
    try:
      frontend_layer = settings.frontend()
      encoder_layer = (settings.encoder() if settings.encoder is not None
                       else None)
    except (ValueError, TypeError) as error:
      raise errors.from_configurable(error, 'building the model') from error
    if getattr(frontend_layer, 'sample_rate', info.sample_rate) != (
        info.sample_rate):
      raise errors.ConfigurationError(
          f'The frontend runs at sample_rate={frontend_layer.sample_rate} '
          f'Hz but {info.name} is at {info.sample_rate} Hz; set the '
          'frontend\'s sample_rate (gin macro SAMPLE_RATE) to match.')
    try:
      # Through gin, so that AudioClassifier.* and LoudnessNormalization.*
      # bindings (pooling, dropout, target level) apply.
      model = configurables.configured(models.AudioClassifier)(
          frontend=frontend_layer,
          encoder=encoder_layer,
          num_outputs=len(info.label_names),
          **_default_normalization())
      model.build((None, data.window_samples))
    except (ValueError, TypeError) as error:
      raise errors.from_configurable(error, 'building the model') from error
    optimizer = _build_optimizer(settings, model, frontend_layer)
  return model, optimizer


def _build_optimizer(settings, model, frontend_layer):
  """Adam (per-group learning rates when the frontend's differ), with loss
  scaling under mixed precision; built on the model's variables."""
  stage_rates = optimizers.check_stage_rates(
      frontend_layer, settings.frontend_stage_learning_rates)
  optimizers.freeze_stages(frontend_layer, stage_rates)
  groups = optimizers.stage_groups(
      frontend_layer, stage_rates, settings.frontend_learning_rate_multiplier)
  if settings.frontend_learning_rate_multiplier == 1 and not groups:
    optimizer = keras.optimizers.Adam(settings.learning_rate)
  else:
    optimizer = optimizers.GroupScaledAdam(
        settings.learning_rate, frontend_layer.trainable_variables,
        settings.frontend_learning_rate_multiplier, groups=groups)
  if settings.mixed_precision:
    optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
  optimizer.build(model.trainable_variables)
  return optimizer


def _name_of(factory) -> Optional[str]:
  if factory is None:
    return None
  return getattr(factory, '__name__', type(factory).__name__)


def _operative_bindings():
  """(bindings, defaults): every gin parameter the run used so far,
  'configurable.param' -> its gin text, minus RESUMABLE_BINDINGS; and the
  keys whose value is the code's default (not bound by the user)."""
  bindings, defaults = {}, set()
  bound = gin.config._CONFIG  # pylint: disable=protected-access
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
      if parameter not in bound.get((scope, selector), {}):
        defaults.add(key)
  return bindings, defaults


def _report_unused_bindings(frontend_name: Optional[str]) -> None:
  other_frontends = []
  for binding in gin_files.unused_bindings():
    parts = binding.split('.')
    if (len(parts) >= 2 and parts[-2] in FRONTEND_CLASSES and
        parts[-2] != frontend_name):
      other_frontends.append(binding)
      continue
    if (len(parts) >= 2 and parts[-2] == 'LoudnessNormalization' and
        configurables.is_bound(models.AudioClassifier, 'normalization')):
      # common.gin's settings, under a recipe that replaces the layer.
      other_frontends.append(binding)
      continue
    logging.warning('gin binding %s was not used by this run: is it a '
                    'parameter of something the run does not build?',
                    binding)
  if other_frontends:
    logging.info('Bindings of layers this run does not build (from '
                 'composed .gin files): %s', ', '.join(other_frontends))


def open_run_folder(settings, data, model) -> Optional[str]:
  """Checks that model_dir may hold this run, then (chief) writes run.json
  and config.gin. Only now that the run is known to be buildable, and to be
  this model_dir's run, does model_dir change. Returns where a resumed run
  continues (a checkpoint prefix, or settings.resume_from's .keras file when
  the checkpoints are unusable), else None; both are checked before anything
  is written.

  Raises:
    run_files.RunMismatchError, run_files.RunFileError (and its
    RunCheckpointError: finished epochs but unusable checkpoints),
    run_files.RunDirectoryError, export_directory.ExportDirectoryError.
  """
  info = data.info
  bindings, defaults = _operative_bindings()
  identity = {
      'frontend': _name_of(settings.frontend),
      'encoder': _name_of(settings.encoder),
      'dataset': info.name,
      'label_names': list(info.label_names),
      'sample_rate': info.sample_rate,
      'window_samples': data.window_samples,
      'multi_label': info.multi_label,
      'bindings': bindings,
  }
  resumed = run_files.check_run_identity(settings.model_dir, identity,
                                         defaults)
  resume_point = None
  if resumed:
    for name in ('best.keras', 'last.keras'):
      run_files.check_keras_file_matches(settings.path(name), model)
    resume_point = _checkpoint_or_recovery(settings)
  if not settings.chief:
    return resume_point
  if settings.export:
    # A user folder at model_dir/export is refused now, not after training.
    destination = export_directory.check_destination(settings.path('export'),
                                                     settings.model_dir)
    if (storage.is_url(settings.model_dir) and destination is not None and
        not storage.is_url(os.fspath(destination))):
      # The export folder's module folded the URL into a local path.
      raise errors.ConfigurationError(
          f'train.export: this version writes exports only to local folders, '
          f'and --model_dir {settings.model_dir} is a URL; set train.export '
          '= False and export the run with python -m experiments.export '
          '--model_dir=... --export_dir=<a local folder> after copying it.')
  if not resumed:
    run_files.check_model_dir_is_new(settings.model_dir)
  storage.makedirs(settings.model_dir)
  run_files.check_or_write_run_identity(settings.model_dir, identity,
                                        defaults)
  console.keep_log_in(settings.path(LOG_FILE))
  run_files.write_text_atomically(settings.path('config.gin'),
                                  gin.operative_config_str())
  _report_unused_bindings(identity['frontend'])
  return resume_point


@dataclasses.dataclass
class TrainingState:
  """What a checkpoint holds beside the model, and where it goes.

  Attributes:
    epoch, step: int64 tf.Variables, the position of the next step.
    totals: the epoch's running statistics (loop.EpochTotals).
    manager: the tf.train.CheckpointManager writing this process's folder.
  """
  epoch: tf.Variable
  step: tf.Variable
  totals: loop.EpochTotals
  manager: tf.train.CheckpointManager

  def save(self, epoch, step):
    self.epoch.assign(epoch)
    self.step.assign(step)
    self.manager.save()


def restore_state(settings, model, optimizer, folder,
                  resume_point: Optional[str]) -> TrainingState:
  """The checkpoint of model, optimizer and position, restored from the
  chief's last checkpoint when the run resumes (or, with
  settings.resume_from, from a whole-model file when the checkpoints are
  missing or damaged).

  Raises:
    run_files.RunCheckpointError: the checkpoint cannot be restored into
      this run (named).
  """
  totals = loop.EpochTotals()
  epoch = tf.Variable(0, dtype=tf.int64, trainable=False)
  step = tf.Variable(0, dtype=tf.int64, trainable=False)
  # Every model variable by position: Keras 3 models do not expose all of
  # theirs (BatchNorm statistics, dropout seed states) to tf.train tracking
  # through their attributes.
  checkpoint = tf.train.Checkpoint(
      model_variables=list(model.variables), optimizer=optimizer,
      epoch=epoch, step=step, loss_sum=totals.loss_sum,
      examples=totals.examples, correct=totals.correct)
  latest = resume_point
  if latest in run_files.KERAS_FILES:
    epoch.assign(run_files.resume_from_keras_file(
        settings.model_dir, latest, model, settings.path(CHECKPOINT_DIR),
        set_aside=settings.chief))
    logging.warning('Resuming from %s at epoch %d with a fresh optimizer '
                    '(train.resume_from).', settings.path(latest),
                    int(epoch.numpy()))
    latest = None
  manager = tf.train.CheckpointManager(checkpoint, folder, max_to_keep=2)
  if latest:
    run_files.restore_checkpoint(checkpoint, latest)
    logging.info('Resuming from %s: epoch %d, step %d.', latest,
                 int(epoch.numpy()), int(step.numpy()))
  return TrainingState(epoch=epoch, step=step, totals=totals, manager=manager)


def _checkpoint_or_recovery(settings):
  """The checkpoint to resume from, or settings.resume_from when the
  checkpoints are missing or damaged and it names a .keras file."""
  try:
    return run_files.find_checkpoint(settings.path(CHECKPOINT_DIR),
                                     settings.model_dir)
  except run_files.RunCheckpointError:
    if settings.resume_from is None:
      raise
    return settings.resume_from


def _epoch_callbacks(settings, data, model) -> list:
  """The chief's per-epoch work after training: full-clip evaluation first
  (it adds val_* to the logs), then best/last.keras and TensorBoard."""
  if not settings.chief:
    return []
  info = data.info
  monitor = _monitor(info)
  callbacks = [
      evaluation.ClipEvaluation(
          pipeline.eval_clips(data.splits['eval']), len(info.label_names),
          info.multi_label, data.window_samples),
      run_files.KerasFileCheckpoint(settings.path('best.keras'),
                                    monitor=monitor),
      run_files.KerasFileCheckpoint(settings.path('last.keras')),
      tensorboard_figures.EpochScalars(settings.path('tensorboard')),
      tensorboard_figures.FrontendSummaries(
          settings.path('tensorboard', 'frontend')),
  ]
  for callback in callbacks:
    callback.set_model(model)
  return callbacks


def train_epochs(settings, data, model, optimizer, state) -> None:
  """Epochs from the restored position to settings.num_epochs: train,
  recompute BatchNorm statistics, evaluate, write metrics and models, and
  checkpoint."""
  callbacks = _epoch_callbacks(settings, data, model)
  step_function = loop.TrainStep(settings.strategy, model, optimizer,
                                 data.info.multi_label, settings.batch_size)
  start_epoch, start_step = int(state.epoch.numpy()), int(state.step.numpy())
  batch_norm_forward = precise_batch_norm.training_forward(model)
  for epoch in range(start_epoch, settings.num_epochs):
    first_step = start_step if epoch == start_epoch else 0
    logs = _train_one_epoch(settings, data, state, step_function, epoch,
                            first_step)
    divergence.check(epoch, data.steps, logs['loss'], settings.max_loss,
                     settings.model_dir)
    if settings.precise_batch_norm_batches:
      precise_batch_norm.recompute_batch_norm(
          model, data.training_stream(settings, epoch * data.steps).take(
              settings.precise_batch_norm_batches), batch_norm_forward)
    if callbacks:
      _end_epoch(settings, callbacks, epoch, logs)
    # The checkpoint comes last: a kill before it redoes this epoch, whose
    # batches are the same, and rewrites its metrics row.
    state.save(epoch + 1, 0)
  for callback in callbacks:
    callback.on_train_end()
  if settings.chief:  # A finished run whose damaged .keras files were deleted.
    run_files.write_missing_keras_files(
        settings.model_dir, model, int(state.epoch.numpy()),
        _monitor(data.info))


def _train_one_epoch(settings, data, state, step_function, epoch,
                     first_step) -> dict:
  """The optimizer steps of one epoch from `first_step` on (with mid-epoch
  checkpoints every settings.checkpoint_steps); returns its training logs."""
  if first_step == 0:
    state.totals.reset()
  first_batch = epoch * data.steps + first_step
  batches = settings.strategy.distribute_datasets_from_function(
      lambda context: data.training_stream(settings, first_batch, context))

  def save_mid_epoch(done):
    # SIGINT/SIGTERM: a checkpoint at this step first (one process only:
    # saving is collective, and the other workers may not stop).
    watchdog.step_done()  # Progress for the watchdog's --step_timeout.
    stopping = watchdog.pending_stop()
    divergence.check(epoch, done, state.totals.logs(
        data.info.multi_label)['loss'], settings.max_loss, settings.model_dir)
    if (settings.checkpoint_steps and done % settings.checkpoint_steps == 0
        and done < data.steps) or (
            stopping and not distribution.is_multi_worker(settings.strategy)):
      state.save(epoch, done)
    if stopping:
      raise watchdog.RunInterrupted(stopping)

  with console.terminal():
    if settings.verbosity:
      print(f'Epoch {epoch + 1}/{settings.num_epochs}', flush=True)
    with watchdog.signals_deferred():
      return loop.run_epoch(step_function, iter(batches), first_step,
                            data.steps, state.totals, settings.verbosity,
                            save_mid_epoch)


def _end_epoch(settings, callbacks, epoch, logs) -> None:
  """Evaluation, metrics.csv, best/last.keras and TensorBoard of an epoch."""
  callbacks[0].on_epoch_end(epoch, logs)  # Adds val_* to logs.
  run_files.write_metrics_row(settings.path('metrics.csv'), epoch, logs)
  for callback in callbacks[1:]:
    callback.on_epoch_end(epoch, logs)
  if settings.verbosity:
    with console.terminal():
      print(' - '.join(f'{k}: {v:.4f}' for k, v in sorted(logs.items())),
            flush=True)
  logging.info('Epoch %d: %s', epoch + 1, logs)
  console.save_log()


def _default_normalization() -> dict:
  """AudioClassifier's normalization argument unless gin binds it.

  A binding (`AudioClassifier.normalization = None`, or another layer) is
  left to gin; without one the configured LoudnessNormalization is passed
  explicitly, as runs of earlier versions did, so that their recorded
  bindings (run.json) stay the same and they resume.
  """
  if configurables.is_bound(models.AudioClassifier, 'normalization'):
    return {}
  return {'normalization': configurables.configured(
      models.LoudnessNormalization)()}


def weights_fingerprint(model) -> str:
  """SHA-256 (first 16 hex digits) of every weight's bytes, in model order."""
  digest = hashlib.sha256()
  for weight in model.weights:
    digest.update(np.ascontiguousarray(keras.ops.convert_to_numpy(
        weight.value)).tobytes())
  return digest.hexdigest()[:16]


def _monitor(info) -> str:
  return 'val_map' if info.multi_label else 'val_accuracy'


def test_and_export(settings, data) -> dict:
  """Tests best.keras and last.keras on full clips, writes
  test_metrics.json, and exports best.keras (when settings.export).

  Returns:
    The chosen model's test metrics.
  """
  info = data.info
  best_state = run_files.read_json_state(settings.path('best.keras.json'))
  last_state = run_files.read_json_state(settings.path('last.keras.json'))
  results = {}
  for name in ('best', 'last'):
    if name == 'last' and last_state['epoch'] == best_state['epoch']:
      # The same epoch's weights: best.keras and last.keras were written
      # from one model state, so its test metrics are the same.
      results['last'] = results['best']
      break
    model = model_files.load_keras_file(settings.path(f'{name}.keras'))
    windowed = models.WindowedClassifier(model, data.window_samples)
    results[name] = (windowed, evaluation.evaluate_clips(
        windowed, pipeline.eval_clips(data.splits['test']),
        evaluation.clip_metrics(len(info.label_names), info.multi_label)))
  monitor = _monitor(info)
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
  run_files.write_text_atomically(
      settings.path('test_metrics.json'),
      json.dumps(test_metrics, indent=2, sort_keys=True))
  logging.info(
      'Chosen epoch %d of %d (highest %s = %.4f on the eval split). Test '
      'metrics (full clips): chosen %s; last epoch %s', best_state['epoch'],
      last_state['epoch'], monitor, best_state[monitor], results['best'][1],
      results['last'][1])
  if settings.export:
    path = signatures.export_saved_model(
        results['best'][0], info.label_names, info.sample_rate,
        data.window_samples, info.multi_label, settings.path('export'),
        model_dir=settings.model_dir)
    logging.info('Serving SavedModel written to %s', path)
  return results['best'][1]
