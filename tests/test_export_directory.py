"""Tests for experiments/serving/export_directory.py: what an export may replace."""

import json
import os
import pathlib

import pytest

from experiments.serving import export_directory


def snapshot(root):
  """{relative path: bytes or 'dir'} of everything under root."""
  root = pathlib.Path(root)
  return {str(path.relative_to(root)):
          ('dir' if path.is_dir() else path.read_bytes())
          for path in sorted(root.rglob('*'))}


def user_folder(root):
  root.mkdir(parents=True)
  (root / 'thesis.tex').write_text('\\chapter{Results}\n')
  (root / 'data.csv').write_bytes(bytes(range(256)))
  return root


def fake_export(export_dir, payload='v1'):
  """Writes export_dir the way serving.export_saved_model does."""
  with export_directory.staged_export(export_dir,
                                      {'label_names': ['a']}) as staging:
    (staging / 'saved_model.pb').write_text(payload)


def test_new_and_empty_folders_are_accepted(tmp_path):
  fake_export(tmp_path / 'new' / 'export')
  assert (tmp_path / 'new/export/saved_model.pb').read_text() == 'v1'
  (tmp_path / 'empty').mkdir()
  fake_export(tmp_path / 'empty')
  assert sorted(os.listdir(tmp_path / 'empty')) == [
      export_directory.MARKER_FILE, 'saved_model.pb']
  assert export_directory.is_export(tmp_path / 'empty')
  marker = json.loads((tmp_path / 'empty' /
                       export_directory.MARKER_FILE).read_text())
  assert marker['label_names'] == ['a']


def test_a_previous_export_is_replaced_and_nothing_is_left_beside_it(
    tmp_path):
  fake_export(tmp_path / 'export', 'v1')
  fake_export(tmp_path / 'export', 'v2')
  assert (tmp_path / 'export/saved_model.pb').read_text() == 'v2'
  assert sorted(os.listdir(tmp_path)) == ['export']


def test_a_folder_with_user_files_is_refused_and_left_intact(tmp_path):
  folder = user_folder(tmp_path / 'mine')
  before = snapshot(tmp_path)
  with pytest.raises(export_directory.ExportDirectoryError,
                     match=r"(?s)'.*mine'.*data.csv, thesis.tex"):
    export_directory.check_destination(folder)
  # Even a finished staging folder cannot be moved over it.
  staging = export_directory.new_staging(folder, {})
  with pytest.raises(export_directory.ExportDirectoryError, match='mine'):
    export_directory.replace_with(staging, folder)
  os.remove(staging / export_directory.MARKER_FILE)
  staging.rmdir()
  assert snapshot(tmp_path) == before


def test_the_model_dir_and_its_parents_are_refused(tmp_path):
  model_dir = tmp_path / 'runs' / 'a'
  model_dir.mkdir(parents=True)
  for export_dir in (model_dir, tmp_path / 'runs', tmp_path):
    with pytest.raises(export_directory.ExportDirectoryError,
                       match='training run'):
      export_directory.check_destination(export_dir, model_dir)
  export_directory.check_destination(model_dir / 'export', model_dir)


def test_a_file_is_refused(tmp_path):
  (tmp_path / 'export').write_text('x')
  with pytest.raises(export_directory.ExportDirectoryError,
                     match='not a folder'):
    export_directory.check_destination(tmp_path / 'export')


def test_a_forged_or_foreign_marker_does_not_count(tmp_path):
  folder = user_folder(tmp_path / 'mine')
  (folder / export_directory.MARKER_FILE).write_text('{"written_by": "me"}')
  with pytest.raises(export_directory.ExportDirectoryError):
    export_directory.check_destination(folder)


def test_stale_staging_folders_of_dead_writers_are_removed(tmp_path):
  export_dir = tmp_path / 'export'
  stale = export_directory.new_staging(export_dir, {})
  (stale / 'variables').mkdir()
  marker = stale / export_directory.MARKER_FILE
  content = json.loads(marker.read_text())
  marker.write_text(json.dumps(dict(content, pid=2**22 + 12345)))
  live = export_directory.new_staging(export_dir, {})  # This process's.
  empty = tmp_path / '.export-staging-0000'
  empty.mkdir()
  unmarked = user_folder(tmp_path / '.export-staging-mine')
  other_name = export_directory.new_staging(tmp_path / 'other', {})
  json_text = (other_name / export_directory.MARKER_FILE).read_text()
  (other_name / export_directory.MARKER_FILE).write_text(
      json_text.replace(str(os.getpid()), str(2**22 + 12345)))
  removed = export_directory.remove_stale_staging(export_dir)
  assert sorted(removed) == sorted([stale, empty])
  assert live.is_dir() and unmarked.is_dir() and other_name.is_dir()
  assert sorted(os.listdir(unmarked)) == ['data.csv', 'thesis.tex']


def test_staging_folders_follow_the_umask(tmp_path):
  previous = os.umask(0o022)
  try:
    fake_export(tmp_path / 'export')
  finally:
    os.umask(previous)
  assert (tmp_path / 'export').stat().st_mode & 0o777 == 0o755
  assert ((tmp_path / 'export' / export_directory.MARKER_FILE).stat().st_mode
          & 0o777 == 0o644)


def test_a_user_file_added_to_an_old_export_is_not_deleted(tmp_path):
  fake_export(tmp_path / 'export', 'v1')
  marker = json.loads((tmp_path / 'export' /
                       export_directory.MARKER_FILE).read_text())
  assert marker['entries'] == ['saved_model.pb']
  (tmp_path / 'export' / 'my_notes.txt').write_text('keep me')
  before = snapshot(tmp_path)
  with pytest.raises(export_directory.ExportDirectoryError,
                     match=r"previous export, but holds .*my_notes.txt"):
    fake_export(tmp_path / 'export', 'v2')
  assert snapshot(tmp_path) == before  # The staging folder is gone too.


def test_a_failed_export_leaves_nothing_behind(tmp_path):
  fake_export(tmp_path / 'export', 'v1')
  before = snapshot(tmp_path)
  with pytest.raises(RuntimeError, match='disk full'):
    with export_directory.staged_export(tmp_path / 'export', {}) as staging:
      (staging / 'saved_model.pb').write_text('half')
      raise RuntimeError('disk full')
  assert snapshot(tmp_path) == before


def test_staging_folders_of_other_hosts_are_left_alone(tmp_path):
  staging = export_directory.new_staging(tmp_path / 'export', {})
  marker = staging / export_directory.MARKER_FILE
  marker.write_text(json.dumps(dict(json.loads(marker.read_text()),
                                    host='another-machine', pid=1)))
  assert export_directory.remove_stale_staging(tmp_path / 'export') == []
  assert staging.is_dir()


def test_long_listings_are_counted(tmp_path):
  folder = tmp_path / 'many'
  folder.mkdir()
  for i in range(8):
    (folder / f'f{i}').write_text('x')
  with pytest.raises(export_directory.ExportDirectoryError,
                     match=r'f0, f1, f2, f3, f4 and 3 more\.'):
    export_directory.check_destination(folder)


def test_a_failed_swap_puts_the_previous_export_back(tmp_path, monkeypatch):
  export_dir = tmp_path / 'export'
  fake_export(export_dir, 'v1')
  before = snapshot(export_dir)
  replace = os.replace

  def fail_on_the_second_rename(source, destination):
    # The new export's move into place fails; the way back does not.
    if pathlib.Path(destination) == export_dir and (
        '-old-' not in pathlib.Path(source).name):
      raise OSError(28, 'No space left on device')
    return replace(source, destination)

  monkeypatch.setattr(os, 'replace', fail_on_the_second_rename)
  with pytest.raises(OSError, match='No space left'):
    fake_export(export_dir, 'v2')
  monkeypatch.undo()
  assert snapshot(export_dir) == before
  assert sorted(os.listdir(tmp_path)) == ['export']  # no staging left over
