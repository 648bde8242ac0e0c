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

The console shows Keras' progress bar and a short summary; TensorFlow's and
absl's log lines go to model_dir/train.log unless --verbosity (-v) is given.
Errors are one `error: ...` line with the exit status of their kind
(experiments/errors.py).
"""

import json
import os
import sys

from experiments import console as console_lib

if __name__ == '__main__':
  # Before TensorFlow is imported: what it prints then goes to the log.
  console_lib.Console.start(sys.argv)

# pylint: disable=g-import-not-at-top,wrong-import-position
from absl import app
from absl import flags
from absl import logging

from experiments import errors
from experiments import gin_files
from experiments import run_flags
from experiments import storage
from experiments.training import distribution
from experiments.training import watchdog
# pylint: enable=g-import-not-at-top,wrong-import-position

_GIN_CONFIG = flags.DEFINE_multi_string(
    'gin_config', [], 'A .gin file; repeat to compose (later files win).')
_GIN_BINDINGS = flags.DEFINE_multi_string(
    'gin_bindings', [], "A gin binding such as 'train.num_epochs = 5'; "
    'applied after the files.')
_MODEL_DIR = run_flags.MODEL_DIR
flags.mark_flag_as_required('model_dir')
flags.declare_key_flag('model_dir')  # Listed by --helpshort.
_STRATEGY = flags.DEFINE_enum(
    'strategy', 'default', list(distribution.STRATEGIES),
    'tf.distribute strategy: default (one device), mirrored (all local GPUs, '
    'or the --logical_cpus), multi_worker (the workers of TF_CONFIG; every '
    'worker runs the same command), tpu (--tpu).')
_TPU = flags.DEFINE_string('tpu', '', "TPU name or address for --strategy=tpu.")
_WORKER_JOIN_TIMEOUT = flags.DEFINE_float(
    'worker_join_timeout', 600., 'With --strategy=multi_worker: seconds to '
    'wait for every worker of TF_CONFIG to start before ending with exit '
    'status 137 and the names of the missing workers; 0 waits forever.')
_STEP_TIMEOUT = flags.DEFINE_float(
    'step_timeout', 300., 'With --strategy=multi_worker: seconds within '
    'which each training step must finish (the first of an epoch: within '
    'the larger of this and --worker_join_timeout); otherwise a worker died '
    'or hangs, and the run ends with exit status 137 naming the unreachable '
    'workers; 0: no limit.')
_LOGICAL_CPUS = flags.DEFINE_integer(
    'logical_cpus', 0, 'Split the CPU into this many logical devices (to try '
    '--strategy=mirrored without GPUs); 0 leaves it whole.')


def run(model_dir: str, stop: watchdog.StopSignals) -> dict:
  """Parses the gin files and bindings of the flags and trains.

  Returns:
    The chosen model's test metrics ({} on non-chief workers).
  """
  if _LOGICAL_CPUS.value:
    distribution.split_cpu(_LOGICAL_CPUS.value)
  if _STRATEGY.value == 'multi_worker':
    stop.expect_join(_WORKER_JOIN_TIMEOUT.value, distribution.cluster_peers())
    stop.expect_steps(_STEP_TIMEOUT.value, distribution.cluster_peers(),
                      first_step_seconds=_WORKER_JOIN_TIMEOUT.value)
  # The strategy comes before any other TensorFlow op of the process.
  with watchdog.signals_end_process():  # Its wait for workers holds the GIL.
    strategy = distribution.make_strategy(_STRATEGY.value, _TPU.value)
  stop.joined()
  # Registers leaf_audio and the models with gin, then parses the configs.
  from experiments import configurables  # pylint: disable=g-import-not-at-top,unused-import
  from experiments.training import job  # pylint: disable=g-import-not-at-top
  gin_files.parse(_GIN_CONFIG.value, _GIN_BINDINGS.value)
  logging.info('Strategy %s with %d replica(s).', _STRATEGY.value,
               strategy.num_replicas_in_sync)
  with distribution.worker_loss_reported(strategy):
    return job.train(model_dir=model_dir, strategy=strategy)


def _python() -> str:
  """How to call this Python: `.venv/bin/python` when it lives under the
  current folder (make's virtualenv), else `python`."""
  relative = os.path.relpath(sys.executable)
  return 'python' if relative.startswith('..') else relative


def summary(model_dir: str, metrics: dict) -> str:
  """The end of a run in a few lines: the chosen epoch, test scores of the
  chosen and the last model, where the export is and what to try next."""
  report = json.loads(storage.read_text(
      storage.join(model_dir, 'test_metrics.json')))
  key = 'accuracy' if 'accuracy' in metrics else 'map'
  name = 'accuracy' if key == 'accuracy' else 'mAP'
  lines = [
      f'Chosen epoch: {report["chosen_epoch"]} of {report["last_epoch"]} '
      f'({report["selection"]}).',
      f'Test {name}: {metrics[key]:.1%} chosen model, '
      f'{report["last"][key]:.1%} last epoch (test_metrics.json).',
  ]
  export = storage.join(model_dir, 'export')
  if storage.exists(export):
    lines += [f'Export: {export}',
              f'Next: {_python()} -m experiments.predict '
              f'--model={export} FILE.wav']
  lines.append(f'Run folder: {model_dir} (log: train.log; TensorBoard: '
               f'tensorboard --logdir={storage.join(model_dir, "tensorboard")})')
  return '\n'.join(lines)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  console = console_lib.active()
  model_dir = storage.expand(_MODEL_DIR.value)
  try:
    if console is not None:
      console.hide_library_output()
    try:
      # SIGINT/SIGTERM end the run within seconds, even while TF blocks.
      with watchdog.StopSignals() as stop:
        metrics = run(model_dir, stop)
    finally:
      if console is not None:
        console.stop()
  except KeyboardInterrupt as error:  # Includes watchdog.RunInterrupted.
    print(f'interrupted: rerun the same command to resume {model_dir} from '
          'its last checkpoint.', file=sys.stderr)
    # The run's files are written and its lock released (train's finally);
    # tearing TensorFlow down can take many seconds on a busy machine,
    # longer than a stop may take.
    watchdog.exit_now(getattr(error, 'exit_status', errors.INTERRUPTED))
  except Exception as error:  # pylint: disable=broad-except
    if errors.is_reported(error):
      errors.report_and_exit(error)
    if isinstance(error, OSError):
      errors.report_and_exit(errors.StorageError(
          f'cannot read or write the run in {model_dir}: '
          f'{errors.one_line(error)}; the last checkpoint is intact, rerun '
          'the same command once this is fixed.'))
    raise
  if metrics:
    print(summary(model_dir, metrics), flush=True)


if __name__ == '__main__':
  try:
    app.run(main)
  finally:  # Also when flags do not parse.
    console_lib.stop_active()
