"""Trains a frontend + classifier from gin configs.

  python -m experiments.train \
      --gin_config=gin_configs/default.gin --model_dir=runs/default

  python -m experiments.train --gin_config=gin_configs/common.gin \
      --gin_config=gin_configs/leaf.gin \
      --gin_config=gin_configs/efficientnet_b0.gin \
      --gin_config=gin_configs/tasks/speech_commands.gin \
      --gin_bindings='train.num_epochs = 20' --model_dir=runs/sc_leaf

Rerunning the same command resumes a killed, interrupted (Ctrl-C) or
finished run exactly from its last checkpoint (more epochs continue it); a
model_dir that holds a different run is refused. On several machines every
worker runs the same command with --strategy=multi_worker and its own
TF_CONFIG (docs/distributed.md).
"""

import json
import pathlib
import sys

from absl import app
from absl import flags
from absl import logging

from experiments.training import run_files as checkpoints
from experiments import gin_files as configuration
from experiments.training import distribution
from experiments.serving import export_directory
from experiments.training import model_files
from experiments.training import run_lock
from experiments.training import watchdog

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
    'or the --logical_cpus), multi_worker (the workers of TF_CONFIG; every '
    'worker runs the same command), tpu (--tpu).')
_TPU = flags.DEFINE_string('tpu', '', "TPU name or address for --strategy=tpu.")
_WORKER_JOIN_TIMEOUT = flags.DEFINE_float(
    'worker_join_timeout', 600., 'With --strategy=multi_worker: seconds to '
    'wait for every worker of TF_CONFIG to start before ending with exit '
    'status 75 and the names of the missing workers; 0 waits forever.')
_LOGICAL_CPUS = flags.DEFINE_integer(
    'logical_cpus', 0, 'Split the CPU into this many logical devices (to try '
    '--strategy=mirrored without GPUs); 0 leaves it whole.')


def _one_line(error) -> str:
  # gin appends "In call to configurable 'train' (...)" on its own line.
  return str(error).split('\n  In call to configurable')[0].strip()


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  # SIGINT/SIGTERM end the run within seconds, even while TensorFlow blocks.
  with watchdog.StopSignals() as stop:
    try:
      _main(stop)
    except KeyboardInterrupt as error:  # Includes watchdog.RunInterrupted.
      print(f'interrupted: rerun the same command to resume '
            f'{_MODEL_DIR.value} from its last checkpoint.', file=sys.stderr)
      # The run's files are written and its lock released (train's finally);
      # tearing TensorFlow down can take many seconds on a busy machine,
      # longer than a stop may take.
      watchdog.exit_now(getattr(
          error, 'exit_status', watchdog.EXIT_STATUS[watchdog.signal.SIGINT]))


def _main(stop):
  if _LOGICAL_CPUS.value:
    distribution.split_cpu(_LOGICAL_CPUS.value)
  try:
    if _STRATEGY.value == 'multi_worker':
      stop.expect_join(_WORKER_JOIN_TIMEOUT.value,
                       distribution.cluster_peers())
    # The strategy comes before any other TensorFlow op of the process.
    with watchdog.signals_end_process():  # Its wait for workers holds the GIL.
      strategy = distribution.make_strategy(_STRATEGY.value, _TPU.value)
  except ValueError as error:
    sys.exit(f'error: {error}')
  stop.joined()
  # Registers leaf_audio and the models with gin, then parses the configs.
  from experiments import configurables  # pylint: disable=g-import-not-at-top,unused-import
  from experiments.training import job as training  # pylint: disable=g-import-not-at-top
  try:
    configuration.parse(_GIN_CONFIG.value, _GIN_BINDINGS.value)
  except ValueError as error:  # Includes GinConfigError.
    sys.exit(f'error: {error}')
  logging.info('Strategy %s with %d replica(s).', _STRATEGY.value,
               strategy.num_replicas_in_sync)
  try:
    metrics = training.train(model_dir=_MODEL_DIR.value, strategy=strategy)
  except (checkpoints.RunMismatchError, checkpoints.RunFileError,
          training.RunDirectoryError, export_directory.ExportDirectoryError,
          model_files.DamagedModelFileError, run_lock.RunLockedError,
          training.divergence.RunDivergedError) as error:
    sys.exit(f'error: {_one_line(error)}')
  except ValueError as error:
    if 'train.' not in str(error) and 'load_dataset' not in str(error):
      raise
    sys.exit(f'error: {_one_line(error)}')
  except OSError as error:
    sys.exit(f'error: cannot write the run in {_MODEL_DIR.value}: '
             f'{error.strerror or error} ({error.filename or ""}); the last '
             'checkpoint is intact, rerun the same command once this is '
             'fixed.')
  if metrics:
    report = json.loads(
        (pathlib.Path(_MODEL_DIR.value) / 'test_metrics.json').read_text())
    print(f'Chosen epoch: {report["chosen_epoch"]} of {report["last_epoch"]} '
          f'({report["selection"]})')
    print(f'Test metrics (chosen model): {metrics}')
    print(f'Test metrics (last model): {report["last"]}')
    print(f'Model directory: {_MODEL_DIR.value}')


if __name__ == '__main__':
  app.run(main)
