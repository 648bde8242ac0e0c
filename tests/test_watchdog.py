"""experiments/training/watchdog.py: every wait of a training process ends.

SIGTERM/SIGINT end a run within 10 s with status 143/130 (after a checkpoint
at the step where the signal came), also while TensorFlow blocks; a
multi-worker process whose peers never come ends after --worker_join_timeout
naming them. Processes run on 127.0.0.1 only, each bounded in time."""

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time

import pytest

from conftest import REPO_ROOT
from experiments.training import watchdog
import experiments_helpers as helpers

CONFIGS = ['gin_configs/common.gin', 'gin_configs/mel.gin',
           'gin_configs/convnet.gin']
ENV = dict(os.environ, PYTHONPATH=str(REPO_ROOT), TF_CPP_MIN_LOG_LEVEL='2',
           CUDA_VISIBLE_DEVICES='-1')


def free_ports(count):
  sockets = [socket.socket() for _ in range(count)]
  for s in sockets:
    s.bind(('127.0.0.1', 0))
  ports = [s.getsockname()[1] for s in sockets]
  for s in sockets:
    s.close()
  return ports


def lonely_worker(tmp_path, tone_folder, *flags):
  """Worker 0 of a two-worker cluster whose worker 1 never starts."""
  ports = free_ports(2)
  tf_config = {'cluster': {'worker': [f'127.0.0.1:{p}' for p in ports]},
               'task': {'type': 'worker', 'index': 0}}
  process = subprocess.Popen(
      [sys.executable, '-m', 'experiments.train', '--strategy=multi_worker',
       *flags, *helpers.train_args(tmp_path / 'run', CONFIGS,
                                   helpers.tiny_bindings(tone_folder,
                                                         tmp_path / 'tfds'))],
      cwd=REPO_ROOT, env=dict(ENV, TF_CONFIG=json.dumps(tf_config)),
      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  return process, ports


def wait_listening(process, port, timeout=120):
  """Waits until the worker's server accepts connections (it then blocks in
  TensorFlow waiting for its peer)."""
  deadline = time.time() + timeout
  while time.time() < deadline and process.poll() is None:
    try:
      socket.create_connection(('127.0.0.1', port), timeout=1).close()
      return
    except OSError:
      time.sleep(0.2)
  raise AssertionError('the worker never listened')


def finish(process, timeout):
  try:
    return process.communicate(timeout=timeout)
  finally:
    if process.poll() is None:
      process.kill()
      process.wait()


@pytest.mark.slow
def test_a_worker_whose_peer_never_comes_ends_naming_it(tmp_path,
                                                        tone_folder):
  process, ports = lonely_worker(tmp_path, tone_folder,
                                 '--worker_join_timeout=5')
  wait_listening(process, ports[0])
  _, stderr = finish(process, timeout=60)
  assert process.returncode == -signal.SIGKILL, stderr[-2000:]  # 137.
  assert (f'did not form within 5 s (--worker_join_timeout); not reachable: '
          f'worker 1 (127.0.0.1:{ports[1]})') in stderr
  assert 'Traceback' not in stderr


@pytest.mark.slow
@pytest.mark.parametrize('signum, status', [(signal.SIGTERM, 143),
                                            (signal.SIGINT, 130)])
def test_a_signal_ends_a_worker_blocked_in_tensorflow_within_10_s(
    tmp_path, tone_folder, signum, status):
  process, ports = lonely_worker(tmp_path, tone_folder)  # Waits 600 s.
  wait_listening(process, ports[0])
  time.sleep(1)
  sent = time.monotonic()
  process.send_signal(signum)
  _, stderr = finish(process, timeout=30)
  assert time.monotonic() - sent < 10
  # Ended by the signal itself (a shell shows 128 + signal: 143, 130).
  assert process.returncode == -signum, stderr[-2000:]
  assert 128 + signum == status


@pytest.mark.slow
def test_sigterm_mid_epoch_checkpoints_that_step_and_the_run_resumes(
    tmp_path, tone_folder):
  model_dir = tmp_path / 'run'
  # An epoch far longer than the test waits (a fast machine makes about 150
  # of these steps a second), so that the signal comes mid-epoch.
  steps = 100_000
  command = [sys.executable, '-m', 'experiments.train', *helpers.train_args(
      model_dir, CONFIGS, helpers.tiny_bindings(tone_folder, tmp_path / 'tfds', **{
          'ConvNet.filters': '[4, 8]', 'train.num_epochs': 2,
          'train.steps_per_epoch': steps, 'train.verbose': 1}))]
  process = subprocess.Popen(command, cwd=REPO_ROOT, env=ENV,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             bufsize=0)
  # The progress bar (redrawn with \r, no newline) shows the first step
  # once training runs.
  deadline = time.time() + 300
  shown = b''
  while time.time() < deadline and f'/{steps}'.encode() not in shown:
    chunk = os.read(process.stdout.fileno(), 4096)
    if not chunk:
      break
    shown += chunk
  assert process.poll() is None, 'the run ended before it could be stopped'
  time.sleep(2)
  sent = time.monotonic()
  process.send_signal(signal.SIGTERM)
  _, stderr = finish(process, timeout=30)
  stderr = stderr.decode()
  assert time.monotonic() - sent < 10
  assert process.returncode == 143, stderr[-2000:]
  assert 'interrupted: rerun the same command to resume' in stderr
  assert 'Traceback' not in stderr
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  reader = tf.train.load_checkpoint(str(model_dir / 'checkpoints'))
  values = {key.split('/')[0]: int(reader.get_tensor(key)) for key in
            reader.get_variable_to_shape_map()
            if key in ('epoch/.ATTRIBUTES/VARIABLE_VALUE',
                       'step/.ATTRIBUTES/VARIABLE_VALUE')}
  assert values['epoch'] == 0 and 0 < values['step'] < steps  # That step.
  assert not (model_dir / '.run.lock.json').exists()  # Released.


def test_stop_signals_raise_at_once_or_at_the_step_boundary():
  with watchdog.StopSignals() as stop:
    assert watchdog.active() is stop
    with pytest.raises(watchdog.RunInterrupted) as error:
      os.kill(os.getpid(), signal.SIGTERM)
      time.sleep(5)
    assert error.value.exit_status == 143
    stop.requested = None
    steps = []
    with pytest.raises(watchdog.RunInterrupted):
      with watchdog.signals_deferred():
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)
        steps.append(watchdog.pending_stop())  # The step still ran.
    assert steps == [signal.SIGINT]
  assert watchdog.active() is None
  assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_the_watchdog_ends_a_process_that_does_not_stop():
  # A main thread that swallows the interruption, as a C++ wait would.
  code = textwrap.dedent("""
      import os, signal, time
      from experiments.training import watchdog
      with watchdog.StopSignals(grace_seconds=1) as stop:
        try:
          os.kill(os.getpid(), signal.SIGTERM)
          time.sleep(1)
        except watchdog.RunInterrupted:
          pass
        time.sleep(30)
      """)
  start = time.monotonic()
  result = subprocess.run([sys.executable, '-c', code], cwd=REPO_ROOT,
                          env=ENV, capture_output=True, text=True, timeout=60)
  assert result.returncode == -signal.SIGKILL  # 137 in a shell.
  assert 'SIGTERM received and the run did not stop within 1 s' in (
      result.stderr)
  assert time.monotonic() - start < 25


@pytest.mark.slow  # About 10 s of timers.
def test_the_watchdog_ends_a_process_whose_steps_stop():
  # A slow first step and steps that keep coming hold the watchdog off; outside the steps there is
  # no limit; a step that never ends (a collective waiting for a dead or
  # stopped peer) ends the process, naming the peer that is gone.
  port = free_ports(1)[0]  # Closed: nothing listens there.
  code = textwrap.dedent(f"""
      import time
      from experiments.training import watchdog
      with watchdog.StopSignals() as stop:
        stop.expect_steps(2, {{'worker 1': '127.0.0.1:{port}'}},
                          first_step_seconds=4)
        with watchdog.signals_deferred():
          time.sleep(2.5)  # The first step may take first_step_seconds.
          for _ in range(8):
            watchdog.step_done()
            time.sleep(0.4)
        print('steps kept it alive', flush=True)
        time.sleep(3)
        print('no limit outside the steps', flush=True)
        with watchdog.signals_deferred():
          time.sleep(0.2)
          watchdog.step_done()
          time.sleep(60)
      """)
  start = time.monotonic()
  result = subprocess.run([sys.executable, '-c', code], cwd=REPO_ROOT,
                          env=ENV, capture_output=True, text=True, timeout=90)
  assert result.returncode == -signal.SIGKILL, result.stderr  # 137 in a shell.
  assert result.stdout.split('\n')[:2] == [
      'steps kept it alive', 'no limit outside the steps'], result.stdout
  assert (f'error: no training step finished within 2 s (--step_timeout): a '
          f'worker died or hangs; not reachable: worker 1 (127.0.0.1:{port})'
          in result.stderr), result.stderr
  assert time.monotonic() - start < 40


@pytest.mark.slow  # Starts processes; about 4 s.
def test_the_watchdog_reads_every_message_that_arrives_at_once():
  # Two messages in one write: the second ('the steps ended') must be seen
  # at once, or the watchdog would end a run that is merely evaluating.
  watched = subprocess.Popen(['sleep', '30'])
  signal_reader, signal_writer = os.pipe()
  port = free_ports(1)[0]
  dog = subprocess.Popen(
      [sys.executable, watchdog.__file__, str(watched.pid),
       str(signal_reader), '8'], stdin=subprocess.PIPE,
      stderr=subprocess.PIPE, pass_fds=(signal_reader,), text=True)
  os.close(signal_reader)
  try:
    steps = {'step_seconds': 1., 'first_step_seconds': 1.,
             'peers': {'worker 1': f'127.0.0.1:{port}'}}
    dog.stdin.write(json.dumps(steps) + '\n' +
                    json.dumps({'steps_ended': True}) + '\n')
    dog.stdin.flush()
    time.sleep(2.5)
    assert watched.poll() is None  # Outside the steps: no limit.
    dog.stdin.write(json.dumps(steps) + '\n')
    dog.stdin.flush()
    assert watched.wait(timeout=10) == -signal.SIGKILL
    assert 'the first training step of the epoch did not finish within 1 s' in (
        dog.communicate(timeout=10)[1])
  finally:
    for process in (watched, dog):
      if process.poll() is None:
        process.kill()
        process.wait()
    os.close(signal_writer)
