"""Trains a frontend + classifier from gin configs.

  python -m experiments.train \
      --gin_config=gin_configs/default.gin --model_dir=runs/default

  python -m experiments.train --gin_config=gin_configs/common.gin \
      --gin_config=gin_configs/leaf.gin \
      --gin_config=gin_configs/efficientnet_b0.gin \
      --gin_config=gin_configs/tasks/speech_commands.gin \
      --gin_bindings='train.num_epochs = 20' --model_dir=runs/sc_leaf

Rerunning the same command resumes a killed or finished run (more epochs
continue it); a model_dir that holds a different run is refused.
"""

import sys

from absl import app
from absl import flags
from absl import logging

from experiments import checkpoints
from experiments import configuration
from experiments import distribution

_GIN_CONFIG = flags.DEFINE_multi_string(
    'gin_config', [], 'A .gin file; repeat to compose (later files win).')
_GIN_BINDINGS = flags.DEFINE_multi_string(
    'gin_bindings', [], "A gin binding such as 'train.num_epochs = 5'; "
    'applied after the files.')
_MODEL_DIR = flags.DEFINE_string(
    'model_dir', None, 'Folder of the run: checkpoints, logs, export.',
    required=True)
_STRATEGY = flags.DEFINE_enum(
    'strategy', 'default', list(distribution.STRATEGIES),
    'tf.distribute strategy: default (one device), mirrored (all local GPUs, '
    'or the --logical_cpus), tpu (--tpu); multi_worker is refused because '
    "Keras 3's fit does not support it.")
_TPU = flags.DEFINE_string('tpu', '', "TPU name or address for --strategy=tpu.")
_LOGICAL_CPUS = flags.DEFINE_integer(
    'logical_cpus', 0, 'Split the CPU into this many logical devices (to try '
    '--strategy=mirrored without GPUs); 0 leaves it whole.')


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  if _LOGICAL_CPUS.value:
    distribution.split_cpu(_LOGICAL_CPUS.value)
  # Registers leaf_audio and the models with gin, then parses the configs.
  from experiments import configurables  # pylint: disable=g-import-not-at-top,unused-import
  from experiments import training  # pylint: disable=g-import-not-at-top
  try:
    configuration.parse(_GIN_CONFIG.value, _GIN_BINDINGS.value)
    strategy = distribution.make_strategy(_STRATEGY.value, _TPU.value)
  except ValueError as error:  # Includes GinConfigError.
    sys.exit(f'error: {error}')
  logging.info('Strategy %s with %d replica(s).', _STRATEGY.value,
               strategy.num_replicas_in_sync)
  try:
    metrics = training.train(model_dir=_MODEL_DIR.value, strategy=strategy)
  except checkpoints.RunMismatchError as error:
    sys.exit(f'error: {error}')
  print(f'Test metrics: {metrics}')
  print(f'Model directory: {_MODEL_DIR.value}')


if __name__ == '__main__':
  app.run(main)
