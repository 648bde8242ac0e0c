"""experiments/training/run_lock.py: one process at a time in a model_dir."""

import json
import logging
import os
import socket
import subprocess
import sys
import textwrap

import gin
import pytest

from conftest import REPO_ROOT
from experiments import configurables  # pylint: disable=unused-import
from experiments.serving import exporting
from experiments import gin_files as configuration
from experiments.training import job as training
from experiments.training import run_files
from experiments.training import run_lock
import experiments_helpers as helpers

MEL = [REPO_ROOT / 'gin_configs' / n for n in ('common.gin', 'mel.gin',
                                               'convnet.gin')]


def python(code, timeout=120):
  return subprocess.run(
      [sys.executable, '-c', textwrap.dedent(code)], cwd=REPO_ROOT,
      env=dict(os.environ, PYTHONPATH=str(REPO_ROOT), TF_CPP_MIN_LOG_LEVEL='3'),
      capture_output=True, text=True, timeout=timeout)


def test_a_held_lock_names_its_holder_and_is_released(tmp_path):
  model_dir = tmp_path / 'run'
  lock = run_lock.acquire(model_dir, 'train')
  owner = json.loads((model_dir / run_lock.LOCK_FILE).read_text())
  assert owner['pid'] == os.getpid() and owner['host'] == socket.gethostname()
  with pytest.raises(run_lock.RunLockedError) as error:
    run_lock.acquire(model_dir, 'export')
  message = str(error.value)
  assert (f'in use by train on host {socket.gethostname()}, pid '
          f'{os.getpid()}, started {owner["started"]}') in message
  lock.release()
  # acquire created the folder, and nothing else was written: both go.
  assert not model_dir.exists()
  with run_lock.acquire(model_dir, 'export'):
    (model_dir / 'kept.txt').write_text('x')
  assert os.listdir(model_dir) == ['kept.txt']


def test_a_lock_from_another_host_is_not_taken_over(tmp_path):
  (tmp_path / run_lock.LOCK_FILE).write_text(json.dumps({
      'host': 'elsewhere', 'pid': 1, 'started': '2026-01-01T00:00:00Z',
      'purpose': 'train'}))
  with pytest.raises(run_lock.RunLockedError,
                     match=r'train on host elsewhere, pid 1, started '
                           r'2026-01-01T00:00:00Z.*delete .*\.run\.lock\.json'):
    run_lock.acquire(tmp_path)


@pytest.mark.slow
def test_a_stale_lock_of_a_killed_process_is_taken_over(tmp_path, caplog):
  # A process that takes the lock and dies without releasing it (SIGKILL).
  result = python(f"""
      import os, sys
      from experiments.training import run_lock
      run_lock.acquire({str(tmp_path)!r}, 'train')
      print('tensorflow' in sys.modules, flush=True)
      os._exit(0)
      """)
  assert result.returncode == 0, result.stderr[-2000:]
  # A local lock needs no TensorFlow (whose import takes seconds).
  assert result.stdout.strip() == 'False'
  stale = json.loads((tmp_path / run_lock.LOCK_FILE).read_text())
  assert stale['pid'] != os.getpid()
  with caplog.at_level(logging.WARNING):
    lock = run_lock.acquire(tmp_path)
  assert f'pid {stale["pid"]}' in caplog.text and 'no longer running' in (
      caplog.text)
  assert json.loads((tmp_path / run_lock.LOCK_FILE).read_text())[
      'token'] == lock.owner['token']
  lock.release()


def test_a_reused_pid_does_not_keep_a_lock(tmp_path):
  # The same pid (this process) but another process start: a container
  # restarted with the same hostname and pid.
  (tmp_path / run_lock.LOCK_FILE).write_text(json.dumps({
      'host': socket.gethostname(), 'pid': os.getpid(),
      'process_start': -1, 'purpose': 'train'}))
  run_lock.acquire(tmp_path).release()


def test_a_damaged_lock_file_is_named(tmp_path):
  (tmp_path / run_lock.LOCK_FILE).write_text('[]')
  with pytest.raises(run_lock.RunLockedError,
                     match=r'\.run\.lock\.json is damaged'):
    run_lock.acquire(tmp_path)


def test_an_object_store_lock_is_written_and_read_back(monkeypatch):
  # ram:// stands for gs://: no exclusive create, only write and read back.
  monkeypatch.setattr(run_lock, 'REMOTE_SETTLE_SECONDS', 0.)
  lock = run_lock.acquire('ram://runs/a', 'train')
  with pytest.raises(run_lock.RunLockedError, match='in use by train'):
    run_lock.acquire('ram://runs/a')
  lock.release()
  run_lock.acquire('ram://runs/a').release()


@pytest.mark.slow
def test_of_two_processes_starting_at_once_one_gets_the_lock(tmp_path):
  # Each process says it is ready, then both start when both are.
  code = f"""
      import os, sys, time
      from experiments.training import run_lock
      ready = {str(tmp_path / 'ready')!r}
      open(os.path.join(ready, sys.argv[1]), 'w').close()
      while len(os.listdir(ready)) < 2:
        time.sleep(0.001)
      try:
        with run_lock.acquire({str(tmp_path / 'run')!r}):
          print('got it', flush=True)
          time.sleep(3)
      except run_lock.RunLockedError as error:
        print('refused', flush=True)
      """
  (tmp_path / 'ready').mkdir()
  processes = [subprocess.Popen(
      [sys.executable, '-c', textwrap.dedent(code), str(index)],
      cwd=REPO_ROOT, env=dict(os.environ, PYTHONPATH=str(REPO_ROOT),
                              TF_CPP_MIN_LOG_LEVEL='3'),
      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for index in range(2)]
  outputs = sorted(p.communicate(timeout=120)[0].strip() for p in processes)
  assert outputs == ['got it', 'refused']


def test_training_and_export_refuse_a_locked_model_dir(tmp_path, tone_folder,
                                                       data_dir):
  bindings = helpers.tiny_bindings(tone_folder, data_dir,
                                   **{'ConvNet.filters': '[4, 8]'})

  def train(model_dir):
    gin.clear_config()
    try:
      configuration.parse([str(c) for c in MEL], bindings)
      return training.train(model_dir=str(model_dir))
    finally:
      gin.clear_config()

  train(tmp_path / 'run')
  assert not (tmp_path / 'run' / run_lock.LOCK_FILE).exists()  # Released.
  with run_lock.acquire(tmp_path / 'run', 'train'):
    before = sorted(os.listdir(tmp_path / 'run'))
    with pytest.raises(run_lock.RunLockedError, match='in use by train'):
      train(tmp_path / 'run')
    with pytest.raises(run_lock.RunLockedError, match='in use by train'):
      exporting.export_run(tmp_path / 'run')
    assert sorted(os.listdir(tmp_path / 'run')) == before
  # A run that fails releases its lock too.
  (tmp_path / 'run' / 'run.json').write_text('[]')
  with pytest.raises(run_files.RunFileError):
    train(tmp_path / 'run')
  assert not (tmp_path / 'run' / run_lock.LOCK_FILE).exists()


def test_a_stale_lock_found_twice_is_removed_once(tmp_path):
  # Two processes found the same stale lock; the first took it over: the
  # second must not remove the first's fresh lock.
  path = str(tmp_path / run_lock.LOCK_FILE)
  stale = {'host': socket.gethostname(), 'pid': 2**22 + 7, 'token': 'old'}
  (tmp_path / run_lock.LOCK_FILE).write_text(json.dumps(stale))
  assert run_lock._remove_if_owned_by(path, stale, 'first')  # pylint: disable=protected-access
  fresh = run_lock.acquire(tmp_path)
  assert not run_lock._remove_if_owned_by(path, stale, 'second')  # pylint: disable=protected-access
  assert json.loads((tmp_path / run_lock.LOCK_FILE).read_text())[
      'token'] == fresh.owner['token']
  assert os.listdir(tmp_path) == [run_lock.LOCK_FILE]
  fresh.release()


def test_releasing_never_removes_what_the_next_run_wrote(tmp_path,
                                                         monkeypatch):
  # acquire created the folder; release removes it only while empty. The
  # next process, taking the lock just released, writes its first file in
  # the moment after a listing of the folder.
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  folder = tmp_path / 'new_run'
  lock = run_lock.acquire(folder)
  real_listdir = tf.io.gfile.listdir
  listed = []

  def listdir_then_the_next_run_writes(path):
    names = real_listdir(path)
    (folder / 'metrics.csv').write_text('epoch\n')
    listed.append(path)
    return names

  monkeypatch.setattr(tf.io.gfile, 'listdir', listdir_then_the_next_run_writes)
  lock.release()
  if listed:  # Today's release lists, then removes the whole tree.
    assert (folder / 'metrics.csv').read_text() == 'epoch\n'
  else:  # An empty folder is removed in one step (os.rmdir).
    assert not folder.exists()
  monkeypatch.undo()

  # A folder that holds the next run's file at release is kept.
  lock = run_lock.acquire(folder)
  (folder / 'mine.txt').write_text('x')
  lock.release()
  assert sorted(os.listdir(folder)) == ['mine.txt']
