"""The training binary as users run it: resuming after SIGKILL, distribution
strategies, and error messages. Each test starts real processes."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import REPO_ROOT
import experiments_helpers as helpers

# Each test trains or exports a model: minutes in all (make test-fast skips).
pytestmark = pytest.mark.slow

CONFIGS = ['gin_configs/common.gin', 'gin_configs/mel.gin',
           'gin_configs/convnet.gin']


@pytest.fixture(scope='module')
def tone_folder(tmp_path_factory):
  return helpers.make_tone_folder(tmp_path_factory.mktemp('tones'))


def tiny(tone_folder, data_dir, **overrides):
  return helpers.tiny_bindings(tone_folder, data_dir,
                               **{'ConvNet.filters': '[4, 8]', **overrides})


def epochs_logged(model_dir):
  lines = (model_dir / 'metrics.csv').read_text().splitlines()[1:]
  return [int(line.split(',')[0]) for line in lines]


def test_a_killed_run_resumes_from_its_last_epoch(tmp_path, tone_folder):
  model_dir = tmp_path / 'run'
  args = helpers.train_args(
      model_dir, CONFIGS,
      tiny(tone_folder, tmp_path / 'tfds', **{
          'train.num_epochs': 6, 'train.steps_per_epoch': 3}))
  command = [sys.executable, '-m', 'experiments.train', *args]
  env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), TF_CPP_MIN_LOG_LEVEL='2')
  process = subprocess.Popen(command, cwd=REPO_ROOT, env=env,
                             stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
  state = model_dir / 'last.keras.json'
  deadline = time.time() + 300
  while time.time() < deadline and process.poll() is None:
    if state.exists() and json.loads(state.read_text())['epoch'] >= 2:
      break
    time.sleep(0.05)
  assert process.poll() is None, 'the run ended before it could be killed'
  process.send_signal(signal.SIGKILL)
  process.wait()
  killed_after = json.loads(state.read_text())['epoch']
  assert 2 <= killed_after < 6

  resumed = subprocess.run(command, cwd=REPO_ROOT, env=env,
                           capture_output=True, text=True, timeout=600)
  assert resumed.returncode == 0, resumed.stderr[-3000:]
  epochs = epochs_logged(model_dir)
  # The first run logged epochs 0..k-1; the resumed one went on from k (an
  # epoch cut short by the kill is redone), never from 0 again.
  assert epochs.count(0) == 1
  assert epochs[-1] == 5 and sorted(set(epochs)) == list(range(6))
  assert json.loads(state.read_text())['epoch'] == 6
  for name in ('best.keras', 'last.keras', 'run.json', 'config.gin',
               'test_metrics.json'):
    assert (model_dir / name).exists(), name
  assert not list(model_dir.glob('.tmp-*')), 'a temporary file was left'


def test_mirrored_strategy_over_two_logical_cpus(tmp_path, tone_folder):
  result = helpers.run_module(
      'experiments.train', '--strategy=mirrored', '--logical_cpus=2',
      *helpers.train_args(tmp_path / 'run', CONFIGS,
                          tiny(tone_folder, tmp_path / 'tfds')))
  assert result.returncode == 0, result.stderr[-3000:]
  assert 'Strategy mirrored with 2 replica(s)' in result.stderr
  assert (tmp_path / 'run' / 'test_metrics.json').exists()


def test_multi_worker_is_refused_with_the_reason(tmp_path, tone_folder):
  # Keras 3's fit cannot run under MultiWorkerMirroredStrategy
  # (keras-team/keras#20585): say so before touching model_dir, instead of
  # failing inside fit with a PerReplica conversion error.
  tf_config = {'cluster': {'worker': ['localhost:2222', 'localhost:2223']},
               'task': {'type': 'worker', 'index': 0}}
  result = helpers.run_module(
      'experiments.train', '--strategy=multi_worker',
      *helpers.train_args(tmp_path / 'run', CONFIGS,
                          tiny(tone_folder, tmp_path / 'tfds')),
      env={'TF_CONFIG': json.dumps(tf_config)})
  assert result.returncode != 0
  assert 'keras-team/keras#20585' in result.stderr
  assert '--strategy=mirrored' in result.stderr
  assert 'Traceback' not in result.stderr
  assert not (tmp_path / 'run').exists()


def test_cli_errors_are_one_clear_line(tmp_path, tone_folder):
  missing = helpers.run_module(
      'experiments.train', '--gin_config=gin_configs/lef.gin',
      f'--model_dir={tmp_path / "a"}')
  assert missing.returncode != 0
  assert "gin config file not found: 'gin_configs/lef.gin'" in missing.stderr
  assert 'Traceback' not in missing.stderr
  model_dir = tmp_path / 'b'
  bindings = tiny(tone_folder, tmp_path / 'tfds')
  first = helpers.run_module('experiments.train',
                             *helpers.train_args(model_dir, CONFIGS, bindings))
  assert first.returncode == 0, first.stderr[-3000:]
  other = helpers.run_module(
      'experiments.train',
      *helpers.train_args(model_dir, [CONFIGS[0], 'gin_configs/leaf.gin'],
                          bindings))
  assert other.returncode != 0
  assert 'holds a different run, so it is left untouched' in other.stderr
  assert 'Traceback' not in other.stderr
