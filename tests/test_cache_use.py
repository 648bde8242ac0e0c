"""Tests for experiments/data/cache_use.py: the clean-up of outdated WAV
folder caches never deletes a cache another process reads."""

import json
import os
import subprocess
import sys
import textwrap

import pytest
import tensorflow_datasets as tfds

from conftest import REPO_ROOT
from experiments.data import cache_use
from experiments.data import folder
from experiments.training import run_lock
from test_data_folder import make_label_folders

tfds.disable_progress_bar()


def num_train_examples(builder):
  return sum(1 for _ in tfds.as_numpy(builder.as_dataset('train')))


def cache_names(data_dir):
  return sorted(name for name in os.listdir(data_dir / 'wav_folder')
                if not name.startswith('.'))


def record_of_a_gone_process(path):
  """A use record naming this host and pid, but a process started at
  another time: the run lock's test finds its process gone."""
  record = run_lock.owner_record('read the dataset cache', 'gone')
  record['process_start'] = (record['process_start'] or 0) + 1
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(json.dumps(record))
  assert run_lock.holder_is_gone(record)


def test_a_cache_being_read_is_kept_until_its_reader_is_gone(tmp_path):
  root, data_dir = tmp_path / 'sounds', tmp_path / 'data'
  make_label_folders(root, 5)
  first = folder.folder_builder(root, data_dir=data_dir)
  first.download_and_prepare()
  first_count = num_train_examples(first)  # This process now reads it.

  make_label_folders(root, 7)  # Another state of the folder.
  grown = folder.folder_builder(root, data_dir=data_dir)
  grown.download_and_prepare()
  # Before: the clean-up deleted the cache `first` still reads.
  assert cache_names(data_dir) == sorted(
      [first.builder_config.name, grown.builder_config.name])
  assert num_train_examples(first) == first_count  # Still readable.
  assert num_train_examples(grown) > first_count

  # Once its reader is gone (here: its record names a process that ended),
  # the next preparation removes it, with the records.
  uses = tmp_path / 'data' / 'wav_folder' / '.in_use'
  for record in (uses / first.builder_config.name).iterdir():
    record.unlink()
  record_of_a_gone_process(uses / first.builder_config.name / 'gone.json')
  folder.folder_builder(root, data_dir=data_dir).download_and_prepare()
  assert cache_names(data_dir) == [grown.builder_config.name]
  assert not (uses / first.builder_config.name).exists()
  assert not (uses / (first.builder_config.name + '.removing')).exists()


def test_an_unread_outdated_cache_is_removed(tmp_path):
  root, data_dir = tmp_path / 'sounds', tmp_path / 'data'
  make_label_folders(root, 3)
  folder.folder_builder(root, data_dir=data_dir).download_and_prepare()
  make_label_folders(root, 4)
  grown = folder.folder_builder(root, data_dir=data_dir)
  grown.download_and_prepare()
  assert cache_names(data_dir) == [grown.builder_config.name]


def test_a_reader_waits_for_a_clean_up_under_way(tmp_path):
  builder_dir = tmp_path / 'wav_folder'
  (builder_dir / 'cache').mkdir(parents=True)
  marker = builder_dir / '.in_use' / 'cache.removing'
  marker.parent.mkdir()
  # A clean-up by a live process (this one) that does not end in time.
  marker.write_text(json.dumps(run_lock.owner_record('remove', 't')))
  with pytest.raises(cache_use.CacheRemovedError,
                     match=r'is being removed by .* within 0\.3 s'):
    cache_use.start_using(builder_dir, 'cache', wait_seconds=0.3)
  assert not list((builder_dir / '.in_use' / 'cache').iterdir())
  # A clean-up whose process is gone may have deleted part of the cache.
  record_of_a_gone_process(marker)
  with pytest.raises(cache_use.CacheRemovedError,
                     match=r'may be incomplete.*Delete .*cache'):
    cache_use.start_using(builder_dir, 'cache', wait_seconds=5)
  # No clean-up: the use is recorded, and a clean-up keeps the cache.
  marker.unlink()
  use = cache_use.start_using(builder_dir, 'cache')
  assert json.loads(open(use.path).read())['pid'] == os.getpid()
  assert not cache_use.remove_unless_used(builder_dir, 'cache')
  assert (builder_dir / 'cache').is_dir()
  use.release()
  assert cache_use.remove_unless_used(builder_dir, 'cache')
  assert not (builder_dir / 'cache').exists()
  assert not (builder_dir / '.in_use').exists()


_READER = textwrap.dedent('''
    import sys
    import tensorflow_datasets as tfds
    from experiments.data import folder
    builder = folder.folder_builder(sys.argv[1], data_dir=sys.argv[2])
    builder.download_and_prepare()
    dataset = builder.as_dataset('train')
    count = lambda: sum(1 for _ in tfds.as_numpy(dataset))
    print('examples:', count(), flush=True)
    sys.stdin.readline()  # Another process rebuilds meanwhile.
    print('examples:', count(), flush=True)
''')


@pytest.mark.slow
def test_another_process_keeps_reading_while_the_folder_is_rebuilt(tmp_path):
  root, data_dir = tmp_path / 'sounds', tmp_path / 'data'
  make_label_folders(root, 5)
  log = tmp_path / 'reader.err'
  with open(log, 'w') as stderr:
    reader = subprocess.Popen(
        [sys.executable, '-c', _READER, str(root), str(data_dir)],
        cwd=REPO_ROOT, env=dict(os.environ, PYTHONPATH=str(REPO_ROOT),
                                TF_CPP_MIN_LOG_LEVEL='2'),
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr,
        text=True)
  try:
    before = ''
    while not before.startswith('examples:'):  # TFDS prints to stdout too.
      before = reader.stdout.readline()
      assert before, log.read_text()[-3000:]  # The reader ended early.
    read_cache = cache_names(data_dir)
    make_label_folders(root, 7)
    folder.folder_builder(root, data_dir=data_dir).download_and_prepare()
    assert set(read_cache) < set(cache_names(data_dir))
    output, _ = reader.communicate('go\n', timeout=120)
  finally:
    if reader.poll() is None:
      reader.kill()
      reader.wait()
  assert reader.returncode == 0, log.read_text()[-3000:]
  after = [line for line in output.splitlines()
           if line.startswith('examples:')]
  assert after == [before.strip()]
  # The reader has exited: the next preparation removes its cache.
  folder.folder_builder(root, data_dir=data_dir).download_and_prepare()
  assert not set(read_cache) & set(cache_names(data_dir))
