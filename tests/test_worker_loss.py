"""A multi-worker run whose peer dies or hangs in the middle of an epoch
ends within --step_timeout (experiments/training/watchdog.py), naming the
worker, instead of waiting in a collective forever. The kill -9 case and
the resumed run: tests/test_train_cli.py."""

import re
import signal
import subprocess
import time

import pytest

from test_train_cli import start_workers
from test_train_cli import worker_bindings

pytestmark = pytest.mark.slow

# The chief waits about this long after the stop; every step of the tiny
# model before the stop must finish within it.
STEP_TIMEOUT = 10


def test_a_hung_worker_ends_the_chief_within_the_step_timeout(tmp_path,
                                                              tone_folder):
  model_dir = tmp_path / 'run'
  bindings = worker_bindings(tone_folder, tmp_path / 'tfds', **{
      'train.num_epochs': 1, 'train.steps_per_epoch': 1000,
      'train.checkpoint_steps': 5})
  log = tmp_path / 'workers.err'
  with open(log, 'w') as stderr:
    processes = start_workers(model_dir, bindings,
                              flags=[f'--step_timeout={STEP_TIMEOUT}'],
                              stdout=subprocess.DEVNULL, stderr=stderr)
  try:
    deadline = time.time() + 300
    while time.time() < deadline and processes[0].poll() is None:
      if list((model_dir / 'checkpoints').glob('ckpt-*.index')):
        break  # Steps of the epoch are running.
      time.sleep(0.05)
    assert processes[0].poll() is None, log.read_text()[-3000:]
    # Stopped, not dead: it still accepts connections, and TensorFlow's
    # collectives wait for it.
    processes[1].send_signal(signal.SIGSTOP)
    stopped = time.monotonic()
    processes[0].wait(timeout=STEP_TIMEOUT + 60)
    waited = time.monotonic() - stopped
  finally:
    for process in processes:
      if process.poll() is None:
        process.kill()
        process.wait()
  errors = log.read_text()
  assert processes[0].returncode == -signal.SIGKILL, errors[-3000:]  # 137.
  assert waited < STEP_TIMEOUT + 15, waited
  assert re.search(
      rf'error: no training step finished within {STEP_TIMEOUT} s '
      r'\(--step_timeout\): a worker died or hangs; all accept connections: '
      r'worker 1 \(127\.0\.0\.1:\d+\) \(one of them may be stopped', errors
  ), errors[-3000:]
