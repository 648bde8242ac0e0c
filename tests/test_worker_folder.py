"""A non-chief worker's temporary checkpoint folder
(experiments/training/job.py `_checkpoint_folder`,
experiments/training/distribution.py `worker_folder`): what a killed worker
left is cleared, but a folder a live process uses is never deleted."""

import json
import os
import socket
import subprocess
import sys
import tempfile
import types

import pytest

from experiments import errors
from experiments.training import job
from experiments.training import run_lock


def worker_settings(model_dir):
  resolver = types.SimpleNamespace(task_type='worker', task_id=1)
  return types.SimpleNamespace(
      chief=False, model_dir=str(model_dir),
      strategy=types.SimpleNamespace(cluster_resolver=resolver))


@pytest.fixture
def own_tmp(tmp_path, monkeypatch):
  monkeypatch.setattr(tempfile, 'tempdir', str(tmp_path / 'tmp'))
  (tmp_path / 'tmp').mkdir()
  return tmp_path / 'tmp'


def test_a_folder_a_live_worker_uses_is_refused_not_deleted(tmp_path,
                                                            own_tmp):
  settings = worker_settings(tmp_path / 'run')
  other = subprocess.Popen([sys.executable, '-c',
                            'import time; time.sleep(60)'])
  try:
    # The same run's worker 1, started earlier by another cluster.
    with job._checkpoint_folder(settings) as folder:  # pylint: disable=protected-access
      pass
    folder = own_tmp / os.path.basename(folder)
    folder.mkdir()
    (folder / 'ckpt-1.index').write_bytes(b'theirs')
    (folder / '.owner.json').write_text(json.dumps({
        'host': socket.gethostname(), 'pid': other.pid,
        'process_start': run_lock._process_start(other.pid),  # pylint: disable=protected-access
        'purpose': 'worker checkpoints'}))
    with pytest.raises(errors.RunFolderError,
                       match=rf'in use by worker checkpoints on host .*pid '
                       rf'{other.pid}'):
      with job._checkpoint_folder(settings):  # pylint: disable=protected-access
        pass
    assert (folder / 'ckpt-1.index').read_bytes() == b'theirs'
  finally:
    other.kill()
    other.wait()

  # Its process gone (killed): the leftovers are cleared and reused.
  with job._checkpoint_folder(settings) as again:  # pylint: disable=protected-access
    assert sorted(os.listdir(again)) == ['.owner.json']
    assert json.loads((folder / '.owner.json').read_text())['pid'] == (
        os.getpid())
  assert not folder.exists()
