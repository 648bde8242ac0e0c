"""Tests for experiments/serving/export_directory.py: numbered versions, added
and never replaced, through tf.io.gfile (on a local disk and on ram://)."""

import json
import os
import secrets

import pytest
import tensorflow as tf

from experiments.serving import export_directory

gfile = tf.io.gfile


@pytest.fixture(params=['local', 'ram'])
def root(request, tmp_path):
  """A folder on the local disk, or on TF's in-memory filesystem (which no
  os or pathlib call reaches)."""
  if request.param == 'local':
    return str(tmp_path)
  return f'ram://export_tests_{secrets.token_hex(4)}'


def write(path, text):
  gfile.makedirs(os.path.dirname(path))
  if gfile.exists(path):
    gfile.remove(path)  # ram:// appends to a file opened with 'w'.
  with gfile.GFile(path, 'w') as file:
    file.write(text)


def read(path):
  with gfile.GFile(path, 'r') as file:
    return file.read()


def snapshot(folder):
  """{relative path: text or 'dir'} of everything under folder."""
  found = {}
  for parent, folders, files in gfile.walk(folder):
    for name in folders:
      found[os.path.relpath(os.path.join(parent, name), folder)] = 'dir'
    for name in files:
      path = os.path.join(parent, name)
      found[os.path.relpath(path, folder)] = read(path)
  return found


def fake_export(export_dir, payload='v1'):
  """Writes a version the way signatures.export_saved_model does."""
  with export_directory.staged_export(export_dir,
                                      {'label_names': ['a']}) as staging:
    write(f'{staging}/saved_model.pb', payload)
    write(f'{staging}/variables/variables.index', payload + '-index')
    gfile.makedirs(f'{staging}/assets')


def test_each_export_adds_the_next_version_and_keeps_two(root):
  export_dir = f'{root}/run/export'
  for payload in ('v1', 'v2', 'v3'):
    fake_export(export_dir, payload)
  assert sorted(gfile.listdir(export_dir)) == ['2', '3']
  assert read(f'{export_dir}/3/saved_model.pb') == 'v3'
  assert export_directory.saved_model_path(export_dir) == f'{export_dir}/3'
  marker = json.loads(read(f'{export_dir}/3/{export_directory.MARKER_FILE}'))
  assert marker['label_names'] == ['a']
  assert marker['manifest'] == ['saved_model.pb', 'variables/variables.index']
  assert export_directory.is_export(export_dir)
  assert export_directory.is_export(f'{export_dir}/3')


def test_user_files_in_an_old_version_keep_it_and_are_named(root, caplog):
  export_dir = f'{root}/export'
  fake_export(export_dir, 'v1')
  write(f'{export_dir}/1/assets/mine.csv', 'keep me')
  write(f'{export_dir}/1/variables/deep/mine.txt', 'me too')
  fake_export(export_dir, 'v2')
  fake_export(export_dir, 'v3')
  # Version 1 is past the two kept, but holds files the export did not write.
  assert sorted(gfile.listdir(export_dir)) == ['1', '2', '3']
  assert read(f'{export_dir}/1/assets/mine.csv') == 'keep me'
  assert read(f'{export_dir}/1/variables/deep/mine.txt') == 'me too'
  assert any('assets/mine.csv' in record.getMessage()
             for record in caplog.records)
  # The newest version is still the one read.
  assert export_directory.saved_model_path(export_dir) == f'{export_dir}/3'


def test_a_version_without_its_marker_or_files_is_not_read(root):
  export_dir = f'{root}/export'
  fake_export(export_dir, 'v1')
  fake_export(export_dir, 'v2')
  # Half-copied by an object store: the marker lists a file not there yet.
  gfile.remove(f'{export_dir}/2/variables/variables.index')
  assert export_directory.saved_model_path(export_dir) == f'{export_dir}/1'
  # A numbered folder of someone else is never read nor deleted.
  write(f'{export_dir}/7/saved_model.pb', 'foreign')
  fake_export(export_dir, 'v3')
  assert export_directory.saved_model_path(export_dir) == f'{export_dir}/8'
  assert read(f'{export_dir}/7/saved_model.pb') == 'foreign'


def test_an_export_of_an_earlier_version_is_read_and_left_in_place(root):
  export_dir = f'{root}/export'
  # The flat layout: the SavedModel and a marker at the top.
  write(f'{export_dir}/saved_model.pb', 'flat')
  write(f'{export_dir}/assets/mine.csv', 'a user file')
  write(f'{export_dir}/{export_directory.MARKER_FILE}', json.dumps({
      'written_by': 'leaf_audio experiments.serving',
      'entries': ['assets', 'saved_model.pb']}))
  assert export_directory.saved_model_path(export_dir) == export_dir
  before = snapshot(export_dir)
  fake_export(export_dir, 'v1')
  after = snapshot(export_dir)
  assert {key: value for key, value in after.items()
          if not key.startswith('1')} == before
  assert export_directory.saved_model_path(export_dir) == f'{export_dir}/1'


def test_a_folder_with_user_files_is_refused_and_left_intact(root):
  folder = f'{root}/mine'
  write(f'{folder}/thesis.tex', '\\chapter{Results}')
  write(f'{folder}/data.csv', '1,2')
  before = snapshot(root)
  with pytest.raises(export_directory.ExportDirectoryError,
                     match=r"(?s)mine'.*data.csv, thesis.tex"):
    fake_export(folder)
  # A forged marker does not make it an export.
  write(f'{folder}/{export_directory.MARKER_FILE}', '{"written_by": "me"}')
  with pytest.raises(export_directory.ExportDirectoryError):
    export_directory.check_destination(folder)
  gfile.remove(f'{folder}/{export_directory.MARKER_FILE}')
  assert snapshot(root) == before


def test_the_model_dir_and_its_parents_are_refused(root):
  model_dir = f'{root}/runs/a'
  gfile.makedirs(model_dir)
  for export_dir in (model_dir, f'{root}/runs', root):
    with pytest.raises(export_directory.ExportDirectoryError,
                       match='training run'):
      export_directory.check_destination(export_dir, model_dir)
  export_directory.check_destination(f'{model_dir}/export', model_dir)


def test_a_file_is_refused(root):
  write(f'{root}/export', 'x')
  with pytest.raises(export_directory.ExportDirectoryError,
                     match='not a folder'):
    export_directory.check_destination(f'{root}/export')


def test_a_failed_export_leaves_nothing_behind(root):
  export_dir = f'{root}/export'
  fake_export(export_dir, 'v1')
  before = snapshot(export_dir)
  with pytest.raises(RuntimeError, match='disk full'):
    with export_directory.staged_export(export_dir, {}) as staging:
      write(f'{staging}/saved_model.pb', 'half')
      raise RuntimeError('disk full')
  assert snapshot(export_dir) == before


def test_stale_staging_folders_of_dead_writers_are_removed(root):
  export_dir = f'{root}/export'
  stale = export_directory.new_staging(export_dir, {})
  write(f'{stale}/saved_model.pb', 'half')
  marker = f'{stale}/{export_directory.STAGING_MARKER}'
  write(marker, json.dumps(dict(json.loads(read(marker)), pid=2**22 + 7)))
  live = export_directory.new_staging(export_dir, {})  # This process's.
  other_host = export_directory.new_staging(export_dir, {})
  marker = f'{other_host}/{export_directory.STAGING_MARKER}'
  write(marker, json.dumps(dict(json.loads(read(marker)), host='elsewhere',
                                pid=1)))
  assert export_directory.remove_stale_staging(export_dir) == [stale]
  assert gfile.isdir(live) and gfile.isdir(other_host)
  fake_export(export_dir)  # The staging folders do not make it refused.
  assert export_directory.saved_model_path(export_dir) == f'{export_dir}/1'


def test_a_missing_saved_model_is_named(root):
  gfile.makedirs(f'{root}/empty')
  with pytest.raises(FileNotFoundError, match='empty'):
    export_directory.saved_model_path(f'{root}/empty')


def test_long_listings_are_counted(tmp_path):
  for i in range(8):
    (tmp_path / f'f{i}').write_text('x')
  with pytest.raises(export_directory.ExportDirectoryError,
                     match=r'f0, f1, f2, f3, f4 and 3 more\.'):
    export_directory.check_destination(tmp_path)


def test_versions_follow_the_umask(tmp_path):
  previous = os.umask(0o022)
  try:
    fake_export(str(tmp_path / 'export'))
  finally:
    os.umask(previous)
  version = tmp_path / 'export' / '1'
  assert version.stat().st_mode & 0o777 == 0o755
  assert ((version / export_directory.MARKER_FILE).stat().st_mode & 0o777
          == 0o644)
