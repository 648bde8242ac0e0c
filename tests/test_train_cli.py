"""The training binary as users run it: resuming after SIGKILL, distribution
strategies, and error messages. Each test starts real processes.

A process costs seconds before its first step (TensorFlow's import, the
model, tracing), so the runs that several tests compare against are made
once per module (`console_run`, `one_worker_weights`), and every run but the
console's reads the module's prepared `data_dir`."""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import REPO_ROOT
import experiments_helpers as helpers

# Each test trains or exports a model: minutes in all (make test-fast skips).
pytestmark = pytest.mark.slow

CONFIGS = ['gin_configs/common.gin', 'gin_configs/mel.gin',
           'gin_configs/convnet.gin']



def tiny(tone_folder, data_dir, **overrides):
  return helpers.tiny_bindings(tone_folder, data_dir,
                               **{'ConvNet.filters': '[4, 8]', **overrides})


def epochs_logged(model_dir):
  lines = (model_dir / 'metrics.csv').read_text().splitlines()[1:]
  return [int(line.split(',')[0]) for line in lines]


def final_weights(model_dir):
  import keras  # pylint: disable=g-import-not-at-top
  from experiments import models  # pylint: disable=g-import-not-at-top,unused-import
  model = keras.saving.load_model(model_dir / 'last.keras')
  return [w.numpy() for w in model.weights]


def fingerprints(stderr):
  return re.findall(r'Final weights fingerprint: (\w+)', stderr)


def resumable(tone_folder, data_dir, **overrides):
  """The bindings of the killed run and of its uninterrupted reference."""
  return tiny(tone_folder, data_dir, **{
      'train.num_epochs': 3, 'train.steps_per_epoch': 3, **overrides})


@pytest.fixture(scope='module')
def console_run(tmp_path_factory, tone_folder):
  """A 3-epoch run as a user starts it: its console shown (train.verbose =
  1, no --verbosity), TensorFlow printing all it would
  (TF_CPP_MIN_LOG_LEVEL=0), and a data_dir of its own, so that TFDS
  prepares the data in this process too. It is also the killed run's
  uninterrupted reference: what is shown changes nothing that is trained.

  Returns:
    (model_dir, the finished process: subprocess.CompletedProcess).
  """
  root = tmp_path_factory.mktemp('console')
  model_dir = root / 'run'
  result = helpers.run_module(
      'experiments.train', *helpers.train_args(
          model_dir, CONFIGS,
          resumable(tone_folder, root / 'tfds', **{'train.verbose': 1})),
      env={'TF_CPP_MIN_LOG_LEVEL': '0'})
  return model_dir, result


def test_a_killed_run_resumes_to_the_same_weights_and_metrics(
    tmp_path, tone_folder, data_dir, console_run):
  reference, finished = console_run
  assert finished.returncode == 0, finished.stderr[-3000:]
  model_dir = tmp_path / 'run'
  # --verbosity=0 shows absl's INFO lines (the weights fingerprint).
  command = [sys.executable, '-m', 'experiments.train', '--verbosity=0',
             *helpers.train_args(model_dir, CONFIGS,
                                 resumable(tone_folder, data_dir))]
  env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), TF_CPP_MIN_LOG_LEVEL='2')
  process = subprocess.Popen(command, cwd=REPO_ROOT, env=env,
                             stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
  state = model_dir / 'last.keras.json'
  deadline = time.time() + 300
  while time.time() < deadline and process.poll() is None:
    if state.exists() and json.loads(state.read_text())['epoch'] >= 1:
      break
    time.sleep(0.02)
  assert process.poll() is None, 'the run ended before it could be killed'
  process.send_signal(signal.SIGKILL)  # In epoch 2 (or its end).
  process.wait()
  killed_after = json.loads(state.read_text())['epoch']
  assert 1 <= killed_after < 3

  resumed = subprocess.run(command, cwd=REPO_ROOT, env=env,
                           capture_output=True, text=True, timeout=600)
  assert resumed.returncode == 0, resumed.stderr[-3000:]
  assert epochs_logged(model_dir) == [0, 1, 2]
  assert ((model_dir / 'metrics.csv').read_text() ==
          (reference / 'metrics.csv').read_text())
  for got, want in zip(final_weights(model_dir), final_weights(reference)):
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
  # The reference's absl lines are in its log (its console was quiet).
  want_prints = fingerprints((reference / 'train.log').read_text())
  assert len(want_prints) == 1
  assert fingerprints(resumed.stderr) == want_prints
  for name in ('best.keras', 'last.keras', 'run.json', 'config.gin',
               'test_metrics.json'):
    assert (model_dir / name).exists(), name
  assert not list(model_dir.glob('.tmp-*')), 'a temporary file was left'


def test_ctrl_c_stops_with_one_line_and_the_run_resumes(tmp_path,
                                                        tone_folder, data_dir):
  model_dir = tmp_path / 'run'
  command = [sys.executable, '-m', 'experiments.train', *helpers.train_args(
      model_dir, CONFIGS, tiny(tone_folder, data_dir, **{
          'train.num_epochs': 2, 'train.steps_per_epoch': 2}))]
  env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), TF_CPP_MIN_LOG_LEVEL='2')
  process = subprocess.Popen(command, cwd=REPO_ROOT, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
  state = model_dir / 'last.keras.json'
  deadline = time.time() + 300
  while time.time() < deadline and process.poll() is None:
    if state.exists():
      break
    time.sleep(0.02)
  assert process.poll() is None, 'the run ended before it could be stopped'
  process.send_signal(signal.SIGINT)  # In epoch 2 (or its end).
  _, stderr = process.communicate(timeout=120)
  assert process.returncode != 0
  assert 'interrupted: rerun the same command to resume' in stderr
  assert 'Traceback' not in stderr
  # The same command again, as its main in this process (the killed run's
  # test resumes in a process of its own).
  resumed = helpers.run_module_in_process(*command[2:])
  assert resumed.returncode == 0, resumed.stderr[-3000:]
  assert epochs_logged(model_dir) == [0, 1]


def test_mirrored_strategy_over_two_logical_cpus(tmp_path, tone_folder,
                                                data_dir):
  result = helpers.run_module(
      'experiments.train', '--strategy=mirrored', '--logical_cpus=2',
      '--verbosity=0',
      *helpers.train_args(tmp_path / 'run', CONFIGS,
                          tiny(tone_folder, data_dir)))
  assert result.returncode == 0, result.stderr[-3000:]
  assert 'Strategy mirrored with 2 replica(s)' in result.stderr
  assert (tmp_path / 'run' / 'test_metrics.json').exists()


def free_ports(count):
  sockets = [socket.socket() for _ in range(count)]
  for sock in sockets:
    sock.bind(('127.0.0.1', 0))
  ports = [sock.getsockname()[1] for sock in sockets]
  for sock in sockets:
    sock.close()
  return ports


# LEAF without an encoder: no BatchNorm (whose batch statistics are per
# replica) and no dropout, so one and two workers compute the same steps.
WORKER_CONFIGS = ['gin_configs/common.gin', 'gin_configs/leaf.gin']


def worker_bindings(tone_folder, data_dir, **overrides):
  return helpers.tiny_bindings(tone_folder, data_dir, **{
      'train.num_epochs': 2, 'train.steps_per_epoch': 3,
      'train.learning_rate': 1e-2, 'leaf_audio.Leaf.n_filters': 8,
      **overrides})


def worker_tmp(model_dir):
  """The TMPDIR of a test's workers (where non-chief checkpoints go)."""
  path = model_dir.parent / 'worker_tmp'
  path.mkdir(parents=True, exist_ok=True)
  return path


def start_workers(model_dir, bindings, count=2, flags=(), **popen_kwargs):
  """Starts `count` local workers with the same command (free ports)."""
  ports = free_ports(count)
  cluster = {'worker': [f'127.0.0.1:{port}' for port in ports]}
  processes = []
  for index in range(count):
    tf_config = {'cluster': cluster, 'task': {'type': 'worker',
                                              'index': index}}
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT),
               TF_CPP_MIN_LOG_LEVEL='2', CUDA_VISIBLE_DEVICES='-1',
               TF_CONFIG=json.dumps(tf_config),
               TMPDIR=str(worker_tmp(model_dir)))
    processes.append(subprocess.Popen(
        [sys.executable, '-m', 'experiments.train', '--strategy=multi_worker',
         '--verbosity=0', *flags,
         *helpers.train_args(model_dir, WORKER_CONFIGS, bindings)],
        cwd=REPO_ROOT, env=env, text=True, **popen_kwargs))
  return processes


def run_workers(model_dir, bindings, count=2, timeout=420):
  """Runs `count` local workers to the end; [(returncode, stdout, stderr)]."""
  processes = start_workers(model_dir, bindings, count,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
  results = []
  try:
    for process in processes:
      stdout, stderr = process.communicate(timeout=timeout)
      results.append((process.returncode, stdout, stderr))
  finally:
    for process in processes:
      if process.poll() is None:
        process.kill()
        process.wait()
  return results


@pytest.fixture(scope='module')
def one_worker_weights(tmp_path_factory, tone_folder, data_dir):
  """The final weights of one worker trained with worker_bindings: what two
  workers must reach (the same global batch and seed), uninterrupted or
  not. Trained in this process: what is compared is the weights, not the
  binary."""
  model_dir = tmp_path_factory.mktemp('one_worker') / 'run'
  helpers.train_in_process(model_dir, WORKER_CONFIGS,
                           worker_bindings(tone_folder, data_dir))
  assert epochs_logged(model_dir) == [0, 1]
  return final_weights(model_dir)


@pytest.mark.slow
def test_two_local_workers_train_one_model_through_a_lost_worker(
    tmp_path, tone_folder, data_dir, one_worker_weights):
  """Two workers train; worker 1 is killed in epoch 2, which ends the chief
  with one line; both are rerun (now exporting) and end with one worker's
  weights, each once in the run folder, and an export that serves."""
  bindings = worker_bindings(tone_folder, data_dir)  # 2 epochs.
  model_dir = tmp_path / 'run'
  log = tmp_path / 'workers.err'
  with open(log, 'w') as stderr:
    processes = start_workers(model_dir, bindings, stdout=subprocess.DEVNULL,
                              stderr=stderr)
  try:
    state = model_dir / 'last.keras.json'
    deadline = time.time() + 300
    while time.time() < deadline and processes[1].poll() is None:
      if state.exists() and json.loads(state.read_text())['epoch'] >= 1:
        break
      time.sleep(0.02)
    # Worker 1 ends only after the chief's last checkpoint, which follows
    # epoch 2's steps (collectives) and last.keras.json of epoch 2.
    assert processes[1].poll() is None, 'worker 1 ended before the kill'
    processes[1].send_signal(signal.SIGKILL)  # In epoch 2.
    processes[1].wait()
    # The chief's collective fails: one line naming the lost worker.
    processes[0].wait(timeout=120)
    chief_errors = log.read_text()
    assert processes[0].returncode == 9, chief_errors[-3000:]
    assert re.search(r'error: a worker of the cluster was lost during '
                     r'training \(not reachable: worker 1 \(127\.0\.0\.1:',
                     chief_errors), chief_errors[-3000:]
  finally:
    for process in processes:
      if process.poll() is None:
        process.kill()
        process.wait()
  assert json.loads(state.read_text())['epoch'] < 2

  # The rerun may change train.export (a resumable binding).
  results = run_workers(model_dir, worker_bindings(
      tone_folder, data_dir, **{'train.export': True}))
  for returncode, _, stderr in results:
    assert returncode == 0, stderr[-3000:]
  # Both workers end with the same weights.
  prints = [fingerprints(stderr) for _, _, stderr in results]
  assert len(prints[0]) == 1 and prints[0] == prints[1]
  # The chief wrote the run once; the other worker left nothing behind.
  assert epochs_logged(model_dir) == [0, 1]
  for name in ('best.keras', 'last.keras', 'run.json', 'config.gin',
               'test_metrics.json', 'export'):
    assert (model_dir / name).exists(), name
  assert not list(model_dir.glob('.tmp-*'))
  assert not list(worker_tmp(model_dir).glob('leaf-audio-*'))
  # The export serves.
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  served = tf.saved_model.load(str(model_dir / 'export' / '1')).signatures[
      'serving_default'](waveform=tf.zeros([1, 8000]))
  np.testing.assert_allclose(served['probabilities'].numpy().sum(), 1.,
                             atol=1e-5)
  # One worker, same global batch and seed: the same weights.
  for got, want in zip(final_weights(model_dir), one_worker_weights):
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_tpu_without_a_tpu_is_one_clear_line(tmp_path, tone_folder):
  result = helpers.run_module(
      'experiments.train', '--strategy=tpu', '--tpu=local',
      *helpers.train_args(tmp_path / 'run', CONFIGS,
                          tiny(tone_folder, tmp_path / 'tfds')),
      timeout=300)
  assert result.returncode != 0
  assert '--strategy=tpu: no TPU reachable' in result.stderr
  assert 'Traceback' not in result.stderr
  assert not (tmp_path / 'run').exists()


# What TensorFlow, absl and TFDS print: glog/absl lines ('I1206 19:43:20.88
# 1399 train.py:74] ...', 'W0000 00:00:17...'), Python logging's 'INFO:tensor
# flow:...', TensorFlow's notices at import, progress bars of TFDS.
LIBRARY_LINE = re.compile(
    r'^([IWEF]\d{4} \d\d:\d\d:\d\d|(INFO|WARNING|ERROR):(tensorflow|absl)|'
    r'WARNING: All log messages|.*(cpu_feature_guard|oneDNN|rebuild '
    r'TensorFlow|Downloading and preparing|Generating splits))', re.M)


def test_the_console_is_quiet_and_errors_are_one_line(tmp_path, tone_folder,
                                                      console_run):
  missing = helpers.run_module(
      'experiments.train', '--gin_config=gin_configs/lef.gin',
      f'--model_dir={tmp_path / "a"}')
  assert missing.returncode == 2  # errors.ConfigurationError
  assert missing.stderr.strip() == (
      "error: gin config file not found: 'gin_configs/lef.gin'. Did you mean "
      'gin_configs/leaf.gin, gin_configs/mel.gin, gin_configs/default.gin?')
  model_dir, first = console_run
  assert first.returncode == 0, first.stderr[-3000:]
  assert not LIBRARY_LINE.search(first.stdout + first.stderr), (
      first.stdout + first.stderr)
  assert first.stderr == ''
  chosen = json.loads((model_dir / 'test_metrics.json').read_text())[
      'chosen_epoch']
  assert re.search(rf'Chosen epoch: {chosen} of 3 \(best.keras: the epoch '
                   r'with the highest val_accuracy', first.stdout), first.stdout
  assert re.search(r'Test accuracy: \d+\.\d% chosen model, \d+\.\d% last '
                   'epoch', first.stdout), first.stdout
  assert 'Epoch 1/3' in first.stdout and 'loss: ' in first.stdout
  # What the console did not show is in the run's log.
  log = (model_dir / 'train.log').read_text()
  assert LIBRARY_LINE.search(log) and 'Final weights fingerprint' in log
  # The console run's data_dir, prepared.
  bindings = resumable(tone_folder, model_dir.parent / 'tfds',
                       **{'train.verbose': 1})
  other = helpers.run_module(
      'experiments.train',
      *helpers.train_args(model_dir, [CONFIGS[0], 'gin_configs/leaf.gin'],
                          bindings))
  assert other.returncode == 3  # errors.RunFolderError
  lines = other.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith('error: --model_dir '), lines
  assert 'holds a different run, so it is left untouched' in lines[0]
  assert (model_dir / 'train.log').read_text() == log  # Left untouched.
  # gin wraps a frontend's own error; the cause is the one line.
  bad = helpers.run_module(
      'experiments.train', *helpers.train_args(
          tmp_path / 'c', [CONFIGS[0], 'gin_configs/leaf.gin'],
          bindings + ['leaf_audio.Leaf.n_filters = 0']))
  assert bad.returncode == 2
  assert bad.stderr == ('error: building the model (Leaf): Leaf: n_filters '
                        'must be a positive integer; got 0.\n')
  assert not (tmp_path / 'c').exists()
