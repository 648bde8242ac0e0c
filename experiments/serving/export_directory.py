"""Where an export may be written: the one policy for replacing folders.

An export never deletes what it did not write. The destination must be

  - a path that does not exist yet (it is created), or
  - an empty folder, or
  - a previous export of this package: a folder holding MARKER_FILE and
    nothing at its top level but what that export wrote (the marker lists
    it), so a file a user put into an old export is not deleted either,

and must not be a training run's model_dir or a folder that contains it.
Anything else is refused with an ExportDirectoryError naming the folder, and
left untouched.

A new export is written into a hidden staging folder next to the
destination, `.<name>-staging-<random>`, which holds MARKER_FILE (with the
writer's host and process id) from its first moment; it then replaces the
destination by two renames. Staging folders left by a killed export are
removed by the next export to the same place, but only when they carry the
marker and their writer (a process of the same host) is no longer running.
"""

import contextlib
import errno
import json
import os
import pathlib
import secrets
import shutil
import socket

MARKER_FILE = 'leaf_audio_export.json'
# Every version's marker names the module that wrote it then: never change it.
_WRITER = 'leaf_audio experiments.serving'
# What a listing of a refused folder shows before it counts the rest.
_MAX_NAMED = 5


class ExportDirectoryError(ValueError):
  """The export destination holds something that is not ours to replace."""


def _marker(path):
  """The parsed marker of folder `path`, or None when it has none."""
  try:
    content = json.loads((pathlib.Path(path) / MARKER_FILE).read_text())
  except (OSError, ValueError):
    return None
  if isinstance(content, dict) and content.get('written_by') == _WRITER:
    return content
  return None


def is_export(path) -> bool:
  """True when folder `path` holds this package's export marker."""
  return _marker(path) is not None


def _is_same_or_ancestor(folder, path):
  folder, path = pathlib.Path(folder).resolve(), pathlib.Path(path).resolve()
  return folder == path or folder in path.parents


def check_destination(export_dir, model_dir=None) -> pathlib.Path:
  """Refuses an export_dir that an export must not replace.

  Args:
    export_dir: str or os.PathLike, the wanted destination.
    model_dir: optional training run folder the export comes from; neither
      it nor a folder containing it may be the destination.

  Returns:
    export_dir as a pathlib.Path.

  Raises:
    ExportDirectoryError: naming the folder and why it is refused.
  """
  export_dir = pathlib.Path(export_dir)
  if model_dir is not None and _is_same_or_ancestor(export_dir, model_dir):
    raise ExportDirectoryError(
        f'export_dir {str(export_dir)!r} is the training run '
        f'{str(model_dir)!r} or a folder holding it; an export replaces its '
        'destination, so it must go into a folder of its own (the default '
        'is model_dir/export).')
  if not export_dir.exists() and not export_dir.is_symlink():
    return export_dir
  if not export_dir.is_dir() or export_dir.is_symlink():
    raise ExportDirectoryError(
        f'export_dir {str(export_dir)!r} exists and is not a folder (a file '
        'or a symbolic link); choose '
        'a new or empty folder.')
  entries = sorted(entry.name for entry in export_dir.iterdir())
  marker = _marker(export_dir)
  if marker is not None:
    added = sorted(set(entries) - set(marker.get('entries', [])) -
                   {MARKER_FILE})
    if not added:
      return export_dir
    raise ExportDirectoryError(
        f'export_dir {str(export_dir)!r} is a previous export, but holds '
        f'files the export did not write: {_listing(added)}. It is refused and left untouched; move those files away or choose '
        'another folder.')
  if entries:
    raise ExportDirectoryError(
        f'export_dir {str(export_dir)!r} holds files that are not a previous '
        f'export of leaf-audio (no {MARKER_FILE}): {_listing(entries)}. An '
        'export replaces its '
        'destination, so it is refused and the folder is left untouched; '
        'choose a new or empty folder (or move these files away yourself; '
        'an export written before leaf-audio marked its exports must be '
        'deleted by hand).')
  return export_dir


def _staging_prefix(export_dir):
  return f'.{export_dir.name}-staging-'


def _writer_is_running(marker):
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


def _listing(names):
  """'a, b, c and 4 more' for a list of names."""
  more = len(names) - _MAX_NAMED
  return ', '.join(names[:_MAX_NAMED]) + (f' and {more} more' if more > 0
                                          else '')


def remove_stale_staging(export_dir) -> list:
  """Removes staging folders of export_dir left by killed exports.

  Only hidden folders named `.<name>-staging-*` next to export_dir that hold
  this package's marker (or are empty) and whose writer process is gone.

  Returns:
    The removed paths.
  """
  export_dir = pathlib.Path(export_dir)
  parent = export_dir.parent
  if not parent.is_dir():
    return []
  removed = []
  for candidate in sorted(parent.glob(_staging_prefix(export_dir) + '*')):
    if not candidate.is_dir() or candidate.is_symlink():
      continue
    marker = _marker(candidate)
    if marker is None:
      if not any(candidate.iterdir()):
        candidate.rmdir()  # Killed before the marker was written.
        removed.append(candidate)
      continue
    if not _writer_is_running(marker):
      shutil.rmtree(candidate)
      removed.append(candidate)
  return removed


def new_staging(export_dir, description: dict) -> pathlib.Path:
  """Creates export_dir's staging folder, marked from its first moment.

  The folder is made with os.mkdir, so its mode follows the umask (0755
  under the usual 022) rather than tempfile.mkdtemp's 0700, which a serving
  account could not read.

  Args:
    export_dir: the destination the staging folder will replace.
    description: JSON-serialisable facts stored in the marker (labels,
      sample rate, ...).
  """
  export_dir = pathlib.Path(export_dir)
  export_dir.parent.mkdir(parents=True, exist_ok=True)
  while True:
    staging = export_dir.parent / (
        _staging_prefix(export_dir) + secrets.token_hex(4))
    try:
      staging.mkdir()
      break
    except FileExistsError:
      continue
  marker = dict(description, written_by=_WRITER, host=socket.gethostname(),
                pid=os.getpid())
  (staging / MARKER_FILE).write_text(
      json.dumps(marker, indent=2, sort_keys=True))
  return staging


def finish_staging(staging) -> None:
  """Records in the marker what the export wrote (its top-level entries)."""
  staging = pathlib.Path(staging)
  marker = _marker(staging)
  marker['entries'] = sorted(entry.name for entry in staging.iterdir()
                             if entry.name != MARKER_FILE)
  temporary = staging / f'.{MARKER_FILE}.tmp'
  temporary.write_text(json.dumps(marker, indent=2, sort_keys=True))
  os.replace(temporary, staging / MARKER_FILE)


def replace_with(staging, export_dir) -> None:
  """Moves the finished staging folder to export_dir.

  export_dir is checked again (check_destination) right before it is
  replaced, and the previous export is moved aside and deleted only after
  the new one is in place, so a kill leaves either the old or the new
  export at export_dir (plus a marked folder the next export removes).
  """
  staging, export_dir = pathlib.Path(staging), pathlib.Path(export_dir)
  finish_staging(staging)
  check_destination(export_dir)
  if not export_dir.exists():
    os.replace(staging, export_dir)
    return
  if not any(export_dir.iterdir()):
    os.replace(staging, export_dir)  # rename(2) replaces an empty folder.
    return
  previous = export_dir.parent / (
      _staging_prefix(export_dir) + 'old-' + secrets.token_hex(4))
  os.replace(export_dir, previous)
  try:
    os.replace(staging, export_dir)
  except BaseException:
    os.replace(previous, export_dir)  # The previous export stays in place.
    raise
  shutil.rmtree(previous)


@contextlib.contextmanager
def staged_export(export_dir, description: dict):
  """Yields a new staging folder; moves it to export_dir when the block ends.

  Stale staging folders of export_dir are removed first. If the block or the
  replacement fails (including a refused destination), the staging folder
  is deleted and the error propagates; export_dir is untouched.

  Args:
    export_dir: the destination (see check_destination).
    description: facts stored in the marker, as for new_staging.
  """
  remove_stale_staging(export_dir)
  staging = new_staging(export_dir, description)
  try:
    yield staging
    replace_with(staging, export_dir)
  except BaseException:
    shutil.rmtree(staging, ignore_errors=True)
    raise
