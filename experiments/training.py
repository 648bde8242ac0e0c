"""The training job: data -> AudioClassifier -> fit -> test -> SavedModel.

Everything here is set from .gin files (see gin_configs/); `train.py` only
parses flags and gin, and calls `train`.

What a run leaves in model_dir:
  run.json          what the run is (frontend, encoder, data, classes); a later
                    run with a different identity is refused
  config.gin        the operative gin configuration
  best.keras        the model of the best validation epoch (+ .json state)
  last.keras        the model after the last epoch (+ .json state)
  backup/           BackupAndRestore state: a killed run resumes from here
  metrics.csv       one row per epoch, appended across resumed runs
  tensorboard/      TensorBoard logs; frontend/ holds the filter responses
                    and learned parameters of every epoch
  test_metrics.json full-clip test metrics of best.keras
  export/           the serving SavedModel (see serving.py)
"""

import json
import pathlib
from typing import Callable, Optional

from absl import logging
import gin
import keras
import tensorflow as tf

from experiments import checkpoints
from experiments import configurables
from experiments import configuration
from experiments import evaluation
from experiments import models
from experiments import serving
from experiments import tensorboard_figures
from experiments.data import pipeline


def _name_of(factory) -> Optional[str]:
  if factory is None:
    return None
  return getattr(factory, '__name__', type(factory).__name__)


def _loss(multi_label: bool):
  if multi_label:
    return keras.losses.BinaryCrossentropy(from_logits=True)
  return keras.losses.SparseCategoricalCrossentropy(from_logits=True)


@gin.configurable(denylist=['model_dir', 'strategy'])
def train(model_dir: str,
          strategy: Optional[tf.distribute.Strategy] = None,
          frontend: Callable[[], keras.layers.Layer] = gin.REQUIRED,
          encoder: Optional[Callable[[], keras.layers.Layer]] = None,
          batch_size: int = 64,
          learning_rate: float = 1e-4,
          num_epochs: int = 10,
          steps_per_epoch: Optional[int] = None,
          window_seconds: float = 1.0,
          shuffle_buffer: int = 1000,
          seed: int = 0,
          mixed_precision: bool = False,
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
    batch_size: global batch size (split over replicas).
    learning_rate: Adam's learning rate (1e-4 in the paper).
    num_epochs: total epochs; a resumed run continues up to this number.
    steps_per_epoch: batches per epoch; None for one pass over the training
      data.
    window_seconds: training crop and evaluation window in seconds (1 s in
      the paper).
    shuffle_buffer: examples in the shuffle buffer.
    seed: seeds initialisation, shuffling and cropping.
    mixed_precision: train with the mixed_float16 policy (the frontends keep
      computing in float32).
    export: write the serving SavedModel at the end.
    verbose: Keras `fit` verbosity ('auto' shows progress bars).

  Returns:
    The test metrics (full clips), as written to test_metrics.json.
  """
  strategy = strategy or tf.distribute.get_strategy()
  model_dir = pathlib.Path(model_dir)
  splits, info = pipeline.load_dataset()
  window_samples = int(round(window_seconds * info.sample_rate))
  identity = {
      'frontend': _name_of(frontend),
      'encoder': _name_of(encoder),
      'dataset': info.name,
      'label_names': list(info.label_names),
      'sample_rate': info.sample_rate,
      'window_samples': window_samples,
      'multi_label': info.multi_label,
  }
  previous_policy = keras.mixed_precision.global_policy()
  if mixed_precision:
    keras.mixed_precision.set_global_policy('mixed_float16')
  try:
    keras.utils.set_random_seed(seed)
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
      # bindings (pooling, dropout, target level) apply.
      model = configurables.configured(models.AudioClassifier)(
          frontend=frontend_layer,
          encoder=encoder() if encoder is not None else None,
          num_outputs=num_classes,
          normalization=configurables.configured(
              models.LoudnessNormalization)())
      model.build((None, window_samples))
      model.compile(
          optimizer=keras.optimizers.Adam(learning_rate),
          loss=_loss(info.multi_label),
          metrics=evaluation.clip_metrics(num_classes, info.multi_label))
    # Only now that the run is known to be buildable does model_dir change.
    model_dir.mkdir(parents=True, exist_ok=True)
    checkpoints.check_or_write_run_identity(model_dir, identity)

    monitor = 'val_map' if info.multi_label else 'val_accuracy'
    callbacks = [
        evaluation.ClipEvaluation(
            pipeline.eval_clips(splits['eval']), num_classes,
            info.multi_label, window_samples),
        checkpoints.KerasFileCheckpoint(model_dir / 'best.keras',
                                        monitor=monitor),
        checkpoints.KerasFileCheckpoint(model_dir / 'last.keras'),
        keras.callbacks.CSVLogger(str(model_dir / 'metrics.csv'), append=True),
        keras.callbacks.TensorBoard(str(model_dir / 'tensorboard')),
        tensorboard_figures.FrontendSummaries(
            model_dir / 'tensorboard' / 'frontend'),
        keras.callbacks.BackupAndRestore(
            str(model_dir / 'backup'),
            double_checkpoint=True,
            delete_checkpoint=False),
    ]
    train_data = pipeline.train_batches(
        splits['train'],
        batch_size=batch_size,
        crop_samples=window_samples,
        shuffle_buffer=shuffle_buffer,
        seed=seed)
    checkpoints.write_text_atomically(model_dir / 'config.gin',
                                      gin.operative_config_str())
    for binding in configuration.unused_bindings():
      logging.warning('gin binding %s was not used by this run: is it a '
                      'parameter of something the run does not build?',
                      binding)
    model.fit(
        train_data,
        epochs=num_epochs,
        steps_per_epoch=steps_per_epoch,
        callbacks=callbacks,
        verbose=verbose)

    best = keras.saving.load_model(model_dir / 'best.keras')
    windowed = models.WindowedClassifier(best, window_samples)
    test_metrics = evaluation.evaluate_clips(
        windowed, pipeline.eval_clips(splits['test']),
        evaluation.clip_metrics(num_classes, info.multi_label))
    checkpoints.write_text_atomically(
        model_dir / 'test_metrics.json',
        json.dumps(test_metrics, indent=2, sort_keys=True))
    logging.info('Test metrics (full clips, best epoch): %s', test_metrics)
    if export:
      path = serving.export_saved_model(
          windowed, info.label_names, info.sample_rate, window_samples,
          info.multi_label, model_dir / 'export')
      logging.info('Serving SavedModel written to %s', path)
    return test_metrics
  finally:
    keras.mixed_precision.set_global_policy(previous_policy)
