"""One process at a time in a run's folder: a lock file in model_dir.

Two trainings started into the same --model_dir would interleave (the second
resuming from the first's checkpoint while it runs, both writing metrics.csv
and the .keras files), and an export beside a running training could read a
best.keras being replaced. The chief of a training (the only process that
writes model_dir in a multi-worker cluster) and `experiments.export` hold

  model_dir/.run.lock.json   {"host", "pid", "started" (UTC), "purpose",
                              "command", "token", "process_start"}

while they work, and remove it on every exit that runs Python's `finally`
(an error, Ctrl-C, SIGTERM, the worker watchdog). A process killed with
SIGKILL leaves the file behind: the next process on the same host sees that
the pid is gone (or belongs to a process started at another time) and takes
the lock over with a warning. A lock held from another host cannot be
checked from here; the error says which host and pid hold it, and deleting
the file releases it.

How the file is created:
- local paths: written to a temporary file and hard-linked to its name, an
  atomic create-if-absent on POSIX file systems (also NFS), so of two
  processes starting at once exactly one gets the lock;
- other file systems reached through tf.io.gfile (gs://, s3://...): object
  stores have no exclusive create (no O_EXCL), so the lock is written, read
  back after a pause, and kept only if it still holds this process's token.
  Two processes starting within that pause may, rarely, both proceed; the
  lock there protects against the common case, a second run started while
  the first is running.
TensorFlow is imported only for the latter: a process that locks a local
folder (a test, a tool) does not pay its import.
"""

import datetime
import json
import os
import socket
import sys
import time
import uuid

from absl import logging

from experiments import errors

LOCK_FILE = '.run.lock.json'
# How long a lock written to an object store is left before it is read back
# to see whether another process overwrote it.
REMOTE_SETTLE_SECONDS = 1.0


class RunLockedError(errors.RunFolderError):
  """model_dir is locked by another live process; the message names it."""


def _is_local(path: str) -> bool:
  return '://' not in path


def _tensorflow():
  """TensorFlow, for tf.io.gfile on other file systems (gs://...)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  return tf


def _file_errors() -> tuple:
  """What reading or removing a lock file may raise: OSError and
  ValueError, and TensorFlow's OpError once tf.io.gfile is in use."""
  tf = sys.modules.get('tensorflow')
  return (OSError, ValueError) + ((tf.errors.OpError,) if tf else ())


def _remove(path: str) -> None:
  if _is_local(path):
    os.remove(path)
  else:
    _tensorflow().io.gfile.remove(path)


def _process_start(pid: int):
  """The start time of process `pid` in clock ticks since boot (Linux), or
  None where /proc does not say; tells a reused pid from the original."""
  try:
    with open(f'/proc/{pid}/stat', 'rb') as stat:
      fields = stat.read().rsplit(b')', 1)[1].split()
    return int(fields[19])
  except (OSError, IndexError, ValueError):
    return None


def _pid_alive(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    return True  # Alive, owned by another user.
  return True


def describe(owner: dict) -> str:
  """'train on host h, pid 12, started 2026-12-06T19:45:00Z (command)'."""
  command = owner.get('command', '')
  return (f'{owner.get("purpose", "a process")} on host '
          f'{owner.get("host", "?")}, pid {owner.get("pid", "?")}, started '
          f'{owner.get("started", "?")}' + (f' ({command})' if command else ''))


class RunLock:
  """The lock on one model_dir, held until `release()` (or the `with` block
  ends). Make one with `acquire`."""

  def __init__(self, path: str, owner: dict, created_dir: str = ''):
    self.path = path
    self.owner = owner
    self._created_dir = created_dir
    self._held = True

  def release(self) -> None:
    """Removes the lock file if it is still this process's; idempotent. A
    model_dir that acquire created and that stayed empty is removed too."""
    if not self._held:
      return
    self._held = False
    try:
      if _read_owner(self.path).get('token') == self.owner['token']:
        _remove(self.path)
      if self._created_dir:
        _remove_if_empty(self._created_dir)
    except _file_errors() as error:
      logging.warning('Could not release the lock %s: %s', self.path, error)

  def __enter__(self):
    return self

  def __exit__(self, *exc_info):
    self.release()


def _remove_if_empty(folder: str) -> None:
  """Removes `folder` if it holds nothing. Locally os.rmdir checks and
  removes in one step, so a file another process (the next run, taking the
  lock just released) writes meanwhile is never deleted. Other file systems
  have no such step: there a listing comes first, and a file written in the
  moment between the listing and the removal would go with the folder."""
  if _is_local(folder):
    try:
      os.rmdir(folder)
    except OSError:
      pass  # Not empty (another process writes there), or gone.
  elif not _tensorflow().io.gfile.listdir(folder):
    _tensorflow().io.gfile.rmtree(folder)


def _read_owner(path: str) -> dict:
  """The lock file's content; {} if it is gone; ValueError if damaged."""
  if _is_local(path):
    try:
      with open(path, encoding='utf-8') as file:
        text = file.read()
    except FileNotFoundError:
      return {}
  else:
    tf = _tensorflow()
    try:
      with tf.io.gfile.GFile(path, 'r') as file:
        text = file.read()
    except tf.errors.NotFoundError:
      return {}
  owner = json.loads(text)
  if not isinstance(owner, dict):
    raise ValueError(f'not a JSON object: {text[:80]!r}')
  return owner


def _is_stale(owner: dict) -> bool:
  """Whether the lock's process is known to be gone (same host only)."""
  if owner.get('host') != socket.gethostname():
    return False
  pid = owner.get('pid')
  if not isinstance(pid, int):
    return False
  if not _pid_alive(pid):
    return True
  recorded = owner.get('process_start')
  return recorded is not None and _process_start(pid) not in (None, recorded)


def _create(path: str, text: str, token: str) -> bool:
  """Creates `path` holding `text` unless it exists; True on success."""
  if _is_local(path):
    temporary = f'{path}.{token}.tmp'
    with open(temporary, 'w') as file:
      file.write(text)
    try:
      os.link(temporary, path)
      return True
    except FileExistsError:
      return False
    finally:
      os.remove(temporary)
  gfile = _tensorflow().io.gfile
  if gfile.exists(path):
    return False
  with gfile.GFile(path, 'w') as file:
    file.write(text)
  time.sleep(REMOTE_SETTLE_SECONDS)
  try:
    return _read_owner(path).get('token') == token
  except ValueError:
    return False


def _remove_if_owned_by(path: str, holder: dict, token: str) -> bool:
  """Removes the stale lock `holder` (only it): True if it was removed.

  Two processes may find the same stale lock; the first removes it and
  creates its own, which the second must not remove. Locally the file is
  first renamed aside (atomic: only one process moves any one file), then
  checked, and put back if it was not the stale one.
  """
  if not _is_local(path):
    if _read_owner(path).get('token') == holder.get('token'):
      _remove(path)
      return True
    return False
  aside = f'{path}.{token}.stale'
  try:
    os.rename(path, aside)
  except FileNotFoundError:
    return False  # Someone else removed it first.
  try:
    with open(aside) as file:
      moved = json.loads(file.read())
  except ValueError:
    moved = {}
  if isinstance(moved, dict) and moved.get('token') == holder.get('token'):
    os.remove(aside)
    return True
  try:
    os.link(aside, path)  # A fresh lock of another process: put it back.
  except FileExistsError:
    pass
  os.remove(aside)
  return False


def owner_record(purpose: str, token: str) -> dict:
  """What a lock (or any record of a process's use of something) says about
  this process: host, pid, its start time, purpose, command and `token`."""
  return {
      'host': socket.gethostname(),
      'pid': os.getpid(),
      'process_start': _process_start(os.getpid()),
      'started': datetime.datetime.now(datetime.timezone.utc).strftime(
          '%Y-%m-%dT%H:%M:%SZ'),
      'purpose': purpose,
      'command': ' '.join(sys.argv)[:300],
      'token': token,
  }


def holder_is_gone(owner: dict) -> bool:
  """Whether the process an owner_record describes is known to have ended:
  on this host, its pid is gone or now belongs to a process started at
  another time. Another host's processes are never known to be gone."""
  return _is_stale(owner)


def create_exclusive(path: str, text: str, token: str) -> bool:
  """Creates the file `path` holding `text` unless it exists (atomically on
  local disks; see the module docstring for object stores); True if this
  call created it."""
  return _create(path, text, token)


def remove_stale(path: str, holder: dict, token: str) -> bool:
  """Removes the file `path` if it still holds the record `holder` (of a
  process that is gone), never another process's fresh file; True if it
  was removed."""
  return _remove_if_owned_by(path, holder, token)


def acquire(model_dir, purpose: str = 'train') -> RunLock:
  """Takes the lock on model_dir (created if missing) for this process.

  Args:
    model_dir: the run's folder, a local path or any tf.io.gfile URL.
    purpose: what this process does there ('train', 'export'), shown to a
      process that finds the folder locked.

  Returns:
    The RunLock; call `release()` (or use it as a context manager).

  Raises:
    RunLockedError: another live process holds the lock (its host, pid,
      start time and command are named), or the lock file is damaged.
  """
  model_dir = os.fspath(model_dir)
  created_dir = ''
  if _is_local(model_dir):
    if not os.path.exists(model_dir):
      os.makedirs(model_dir, exist_ok=True)
      created_dir = model_dir
  elif not _tensorflow().io.gfile.exists(model_dir):
    _tensorflow().io.gfile.makedirs(model_dir)
    created_dir = model_dir
  path = os.path.join(model_dir, LOCK_FILE)
  token = uuid.uuid4().hex
  owner = owner_record(purpose, token)
  text = json.dumps(owner, indent=2, sort_keys=True)
  for _ in range(3):  # Tries again after a stale lock was removed.
    if _create(path, text, token):
      return RunLock(path, owner, created_dir)
    try:
      holder = _read_owner(path)
    except ValueError as error:
      raise RunLockedError(
          f'{path} is damaged ({error}); if no other process is using '
          f'{model_dir}, delete it and rerun.') from error
    if not holder:
      continue  # Released in between.
    if not _is_stale(holder):
      raise RunLockedError(
          f'{model_dir} is in use by {describe(holder)}. Wait for it to end '
          'or use another --model_dir. If that process is gone (e.g. its '
          f'machine was shut down), delete {path} and rerun.')
    if _remove_if_owned_by(path, holder, token):
      logging.warning('Took over the lock of %s: it was held by %s, which '
                      'is no longer running.', model_dir, describe(holder))
  raise RunLockedError(f'{path}: could not take the lock; another process '
                       'keeps taking it. Rerun when it has ended.')
