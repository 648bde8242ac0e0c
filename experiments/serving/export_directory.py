"""The export folder: numbered versions TF Serving serves, added, never replaced.

  export/                    the export folder (`--export_dir`)
    1/  2/  ...              one SavedModel per export (saved_model.pb,
                             variables/, assets/, fingerprint.pb) and its
                             MARKER_FILE, written last, listing every file
                             the export wrote (a recursive manifest)
    .staging-<random>/       an export being written (hidden: TF Serving
                             and readers ignore it)

This is the layout TF Serving serves (`--model_base_path=.../export`: it
loads the highest version). Every path goes through `tf.io.gfile`, so the
folder may be local, on gs:// or on any TF filesystem.

Writing (`staged_export`): the SavedModel is written into a hidden staging
folder inside the export folder, then MARKER_FILE (with the manifest) is
written, then the folder is renamed to the next version number (on object
stores, which cannot rename a folder at once, its files are copied there,
the marker last). Nothing is ever renamed over or into a folder that
exists: a reader takes a version only once it is whole (its marker is there
and every file of its manifest exists).

Reading (`saved_model_path`): the newest whole version; an export folder
written before versions existed (a SavedModel with MARKER_FILE at its top)
and any plain SavedModel folder are read as they are.

What an export may write into: a new or empty folder, or an export folder
(holding versions, or an export of an earlier version of this package). A
training run's model_dir, a folder holding it, and any other folder with
files are refused with an ExportDirectoryError naming it, and left
untouched.

What an export deletes: after adding a version, versions older than the
newest KEPT_VERSIONS, but only those whose every file, at any depth, is in
their manifest; a version holding anything else (e.g. a user's
`assets/mine.csv`) is kept, with a warning naming the first such file.
Staging folders of killed exports (their writer, a process of this host, is
gone) are removed. Nothing else is ever deleted: an export of an earlier
version of this package stays where it is, beside the new versions.
"""

import contextlib
import errno
import json
import os
import posixpath
import secrets
import socket

from absl import logging
import tensorflow as tf

MARKER_FILE = 'leaf_audio_export.json'
# In a staging folder from its first moment: who writes it.
STAGING_MARKER = '.leaf_audio_staging.json'
STAGING_PREFIX = '.staging-'
# Versions an export keeps: the new one and the one before it (a server
# may still be loading it when the new one appears).
KEPT_VERSIONS = 2
# Every version's marker names the module that wrote it then: never change it.
_WRITER = 'leaf_audio experiments.serving'
# What a listing of a refused folder shows before it counts the rest.
_MAX_NAMED = 5
_gfile = tf.io.gfile


class ExportDirectoryError(ValueError):
  """The export destination holds something that is not ours to replace."""


def _join(*parts) -> str:
  return _gfile.join(*[str(part) for part in parts])


def _names(folder) -> list:
  """Sorted child names of `folder` (without the '/' some filesystems add)."""
  return sorted(name.rstrip('/') for name in _gfile.listdir(str(folder)))


def _read_json(path):
  try:
    with _gfile.GFile(path, 'r') as file:
      return json.loads(file.read())
  except (OSError, ValueError, tf.errors.OpError):
    return None


def _write_json(path, content) -> None:
  if _gfile.exists(path):
    _gfile.remove(path)  # Some filesystems (ram://) append on 'w'.
  with _gfile.GFile(path, 'w') as file:
    file.write(json.dumps(content, indent=2, sort_keys=True))


def _marker(folder, name=MARKER_FILE):
  """The parsed marker `name` of `folder`, or None when it has none."""
  content = _read_json(_join(folder, name))
  if isinstance(content, dict) and content.get('written_by') == _WRITER:
    return content
  return None


def _is_version_name(name: str) -> bool:
  return name.isdigit() and not name.startswith('0')


def _versions(export_dir) -> list:
  """[(number, path)] of numbered child folders, oldest first."""
  found = []
  for name in _names(export_dir):
    path = _join(export_dir, name)
    if _is_version_name(name) and _gfile.isdir(path):
      found.append((int(name), path))
  return sorted(found)


def _files_under(folder) -> list:
  """Every file under `folder`, as sorted paths relative to it ('a/b')."""
  files = []
  for root, _, names in _gfile.walk(str(folder)):
    relative = posixpath.relpath(root.replace(os.sep, '/'),
                                 str(folder).replace(os.sep, '/'))
    for name in names:
      files.append(name if relative == '.' else posixpath.join(relative,
                                                              name))
  return sorted(files)


def _is_whole(version_path) -> bool:
  """True when a version's marker is there and lists files that exist."""
  marker = _marker(version_path)
  if marker is None or 'manifest' not in marker:
    return False
  return all(_gfile.exists(_join(version_path, name))
             for name in marker['manifest'])


def is_export(path) -> bool:
  """True when `path` is an export folder, one of its versions, or an export
  of an earlier version of this package (its marker at the top)."""
  path = str(path)
  if not _gfile.isdir(path):
    return False
  if _marker(path) is not None:
    return True
  return any(_marker(version) is not None for _, version in _versions(path))


def _is_ours(export_dir) -> bool:
  """An export folder: versions, an earlier export, or our staging."""
  if is_export(export_dir):
    return True
  return any(
      name.startswith(STAGING_PREFIX) and
      _marker(_join(export_dir, name), STAGING_MARKER) is not None
      for name in _names(export_dir))


def _normalized(path) -> str:
  path = str(path)
  if '://' in path:
    scheme, rest = path.split('://', 1)
    return f'{scheme}://{posixpath.normpath(rest)}'
  return os.path.realpath(os.path.expanduser(path))


def _is_same_or_ancestor(folder, path) -> bool:
  folder, path = _normalized(folder), _normalized(path)
  return path == folder or path.startswith(folder.rstrip('/') + '/')


def _listing(names) -> str:
  """'a, b, c and 4 more' for a list of names."""
  more = len(names) - _MAX_NAMED
  return ', '.join(names[:_MAX_NAMED]) + (f' and {more} more' if more > 0
                                          else '')


def check_destination(export_dir, model_dir=None) -> str:
  """Refuses an export_dir that an export must not write into.

  Args:
    export_dir: str or os.PathLike, the export folder.
    model_dir: optional training run folder the export comes from; neither
      it nor a folder containing it may be the destination.

  Returns:
    export_dir as a str.

  Raises:
    ExportDirectoryError: naming the folder and why it is refused.
  """
  export_dir = str(export_dir)
  if model_dir is not None and _is_same_or_ancestor(export_dir, model_dir):
    raise ExportDirectoryError(
        f'export_dir {export_dir!r} is the training run '
        f'{str(model_dir)!r} or a folder holding it; an export needs a '
        'folder of its own (the default is model_dir/export).')
  if not _gfile.exists(export_dir):
    return export_dir
  if not _gfile.isdir(export_dir) or os.path.islink(export_dir):
    raise ExportDirectoryError(
        f'export_dir {export_dir!r} exists and is not a folder (a file '
        'or a symbolic link); choose a new or empty folder.')
  entries = _names(export_dir)
  if entries and not _is_ours(export_dir):
    raise ExportDirectoryError(
        f'export_dir {export_dir!r} holds files that are not a previous '
        f'export of leaf-audio (no {MARKER_FILE}): {_listing(entries)}. It '
        'is refused and left untouched; choose a new or empty folder (an '
        'export written before leaf-audio marked its exports must be '
        'moved away by hand).')
  return export_dir


def _writer_is_running(marker) -> bool:
  """False only when the marker's writer is surely gone: a process of this
  host that no longer exists. (Another host's export is left alone.)"""
  if marker.get('host') != socket.gethostname():
    return True
  try:
    pid = int(marker.get('pid', 0))
    if pid <= 0:
      return False
    os.kill(pid, 0)
  except (OSError, ValueError, OverflowError) as error:
    return getattr(error, 'errno', None) == errno.EPERM
  return True


def remove_stale_staging(export_dir) -> list:
  """Removes staging folders in export_dir left by killed exports.

  Only hidden `.staging-*` folders holding STAGING_MARKER whose writer
  process is gone.

  Returns:
    The removed paths.
  """
  export_dir = str(export_dir)
  if not _gfile.isdir(export_dir):
    return []
  removed = []
  for name in _names(export_dir):
    if not name.startswith(STAGING_PREFIX):
      continue
    candidate = _join(export_dir, name)
    marker = _marker(candidate, STAGING_MARKER)
    if marker is not None and not _writer_is_running(marker):
      _gfile.rmtree(candidate)
      removed.append(candidate)
  return removed


def new_staging(export_dir, description: dict) -> str:
  """Creates a staging folder in export_dir, marked from its first moment.

  Args:
    export_dir: the export folder.
    description: JSON-serialisable facts stored in the version's marker
      (labels, sample rate, ...).
  """
  export_dir = str(export_dir)
  _gfile.makedirs(export_dir)
  while True:
    staging = _join(export_dir, STAGING_PREFIX + secrets.token_hex(4))
    if not _gfile.exists(staging):
      break
  _gfile.makedirs(staging)
  _write_json(_join(staging, STAGING_MARKER), dict(
      description, written_by=_WRITER, host=socket.gethostname(),
      pid=os.getpid()))
  return staging


def _unknown_files(version_path):
  """Files under a version that its manifest does not list (sorted)."""
  marker = _marker(version_path) or {}
  listed = set(marker.get('manifest', ())) | {MARKER_FILE}
  return [name for name in _files_under(version_path) if name not in listed]


def finish_staging(staging, export_dir) -> str:
  """Marks a written staging folder whole and renames it to a new version.

  Returns:
    The version's path.
  """
  staging, export_dir = str(staging), str(export_dir)
  check_destination(export_dir)
  marker = _marker(staging, STAGING_MARKER)
  manifest = [name for name in _files_under(staging)
              if name != STAGING_MARKER]
  marker.update(manifest=manifest, layout='versions')
  _write_json(_join(staging, MARKER_FILE), marker)
  _gfile.remove(_join(staging, STAGING_MARKER))
  while True:
    versions = _versions(export_dir)
    number = versions[-1][0] + 1 if versions else 1
    version = _join(export_dir, str(number))
    if not _is_local(export_dir):
      _copy_version(staging, version, manifest)
      return version
    try:
      _gfile.rename(staging, version, overwrite=False)
      return version
    except (tf.errors.AlreadyExistsError, tf.errors.FailedPreconditionError):
      continue  # Another export took the number.


def _is_local(path) -> bool:
  return '://' not in str(path) or str(path).startswith('file://')


def _copy_version(staging, version, manifest) -> None:
  """Object stores rename folders object by object (some not at all): the
  version is copied file by file, its marker last, then the staging folder
  is deleted. Readers take it once the marker is there."""
  _gfile.makedirs(version)
  for parent, folders, _ in _gfile.walk(staging):
    for name in folders:
      relative = posixpath.relpath(_join(parent, name), staging)
      _gfile.makedirs(_join(version, relative))
  for name in manifest + [MARKER_FILE]:
    _gfile.makedirs(posixpath.dirname(_join(version, name)))
    _gfile.copy(_join(staging, name), _join(version, name), overwrite=False)
  _gfile.rmtree(staging)


def remove_old_versions(export_dir, keep: int = KEPT_VERSIONS) -> list:
  """Deletes whole versions older than the newest `keep` whose every file
  is in their manifest; warns about (and keeps) any other.

  Returns:
    The removed paths.
  """
  ours = [(number, path) for number, path in _versions(export_dir)
          if _marker(path) is not None]
  removed = []
  for _, path in ours[:-keep] if keep else ours:
    unknown = _unknown_files(path)
    if unknown:
      logging.warning(
          'Kept the old export version %s: it holds %s, which the export '
          'did not write; move it away and delete the version by hand.',
          path, unknown[0])
      continue
    _gfile.rmtree(path)
    removed.append(path)
  return removed


@contextlib.contextmanager
def staged_export(export_dir, description: dict):
  """Yields a new staging folder (str); makes it the next version when the
  block ends, then removes versions beyond KEPT_VERSIONS.

  Stale staging folders are removed first. If the block or the renaming
  fails (including a refused destination), the staging folder is deleted
  and the error propagates; the existing versions are untouched.

  Args:
    export_dir: the export folder (see check_destination).
    description: facts stored in the version's marker.
  """
  export_dir = check_destination(export_dir)
  remove_stale_staging(export_dir)
  staging = new_staging(export_dir, description)
  try:
    yield staging
    finish_staging(staging, export_dir)
  except BaseException:
    if _gfile.exists(staging):
      _gfile.rmtree(staging)
    raise
  remove_old_versions(export_dir)


def latest_version(export_dir):
  """The newest whole version folder of export_dir, or None."""
  for _, path in reversed(_versions(export_dir)):
    if _is_whole(path):
      return path
  return None


def saved_model_path(path) -> str:
  """The SavedModel folder to load for `path`.

  Args:
    path: an export folder (its newest whole version is read), a version
      folder, an export of an earlier version of this package, or any
      SavedModel folder.

  Raises:
    FileNotFoundError: naming `path` when it holds no SavedModel.
  """
  path = str(path)
  if _gfile.isdir(path):
    version = latest_version(path)
    if version is not None:
      return version
    if _gfile.exists(_join(path, 'saved_model.pb')):
      return path
  raise FileNotFoundError(
      f'{path!r} holds no SavedModel: expected an export folder of '
      'experiments.export (numbered versions holding saved_model.pb) or a '
      'SavedModel folder.')


def streaming_refusal(saved_model_dir):
  """Why an export has no streaming signatures (from its marker), or None."""
  marker = _marker(str(saved_model_dir)) or {}
  return marker.get('streaming_refused')
