"""Which processes read a prepared dataset cache, so that no clean-up ever
deletes a cache another process is reading.

TFDS reads a prepared dataset lazily: a training opens the cache's record
files again at every epoch, for hours. A process that removes an outdated
cache (experiments/data/folder.py removes the caches of older states of a
WAV folder) must therefore know whether anyone still reads it. Readers
record their use, one small file per process and cache:

  <builder dir>/.in_use/<cache name>/<host>-<pid>-<token>.json

holding the same record as the run lock (experiments/training/run_lock.py:
host, pid, process start time, command), written when the process first
reads the cache and removed when it exits (a process killed with SIGKILL
leaves it behind: the next clean-up sees that its process is gone, by the
run lock's test, and removes it).

A clean-up first creates the marker `.in_use/<cache name>.removing`
(exclusively: one clean-up per cache at a time), then lists the uses, and
deletes the cache only if every recorded user is gone. A reader records its
use first and then looks for that marker. Whichever of the two comes
second sees the other: either the clean-up finds the use and keeps the
cache, or the reader finds the marker, withdraws its use and waits until
the clean-up has decided. A use recorded by a process on another host can
not be checked from here and keeps the cache (the log names it).
"""

import atexit
import json
import os
import socket
import time
import uuid

from absl import logging
import tensorflow as tf

from experiments import errors
from experiments import storage
from experiments.training import run_lock

IN_USE_FOLDER = '.in_use'
REMOVING_SUFFIX = '.removing'
# How long a reader waits for a clean-up of the cache it wants to decide.
WAIT_SECONDS = 30.
_POLL_SECONDS = 0.1


class CacheRemovedError(errors.DataError):
  """The cache was removed (or is being removed) by another process; the
  binaries report it as one line with the data status (5)."""


def uses_folder(builder_dir, cache_name: str) -> str:
  """Where the use records of cache `cache_name` live."""
  return storage.join(os.fspath(builder_dir), IN_USE_FOLDER, cache_name)


def _marker_path(builder_dir, cache_name: str) -> str:
  return storage.join(os.fspath(builder_dir), IN_USE_FOLDER,
                      cache_name + REMOVING_SUFFIX)


def _read_record(path: str):
  """The record in `path`; {} if it is gone; None if it is damaged."""
  try:
    record = json.loads(storage.read_text(path))
  except (tf.errors.NotFoundError, FileNotFoundError):
    return {}
  except (tf.errors.OpError, OSError, ValueError):
    return None
  return record if isinstance(record, dict) else None


def _remove_file(path: str) -> None:
  try:
    tf.io.gfile.remove(path)
  except tf.errors.NotFoundError:
    pass


def _remove_folder_if_empty(path: str) -> None:
  """Only local folders: os.rmdir refuses atomically when another process
  has just written into it (object stores have no empty folders to keep)."""
  if not storage.is_url(path):
    try:
      os.rmdir(path)
    except OSError:
      pass  # Not empty (in use), or gone.


class CacheUse:
  """This process's record of reading one cache; `release()` removes it
  (it is also removed when the process exits)."""

  def __init__(self, path: str):
    self.path = path

  def release(self) -> None:
    """Removes the record; idempotent."""
    try:
      _remove_file(self.path)
    except (tf.errors.OpError, OSError) as error:
      logging.warning('Could not remove %s: %s', self.path, error)


def _record_use(builder_dir, cache_name: str) -> CacheUse:
  folder = uses_folder(builder_dir, cache_name)
  token = uuid.uuid4().hex
  record = run_lock.owner_record('read the dataset cache', token)
  path = storage.join(folder, f'{socket.gethostname()}-{os.getpid()}-'
                      f'{token}.json')
  text = json.dumps(record, indent=2, sort_keys=True)
  for attempt in range(3):
    storage.makedirs(folder)
    try:
      storage.write_atomically(path, text)
      return CacheUse(path)
    except (tf.errors.NotFoundError, FileNotFoundError):
      if attempt == 2:  # A clean-up removed the empty folder meanwhile.
        raise
  raise AssertionError('unreachable')


def start_using(builder_dir, cache_name: str,
                wait_seconds: float = WAIT_SECONDS) -> CacheUse:
  """Records that this process reads the cache, until it exits.

  Call it before reading any of the cache's files.

  Args:
    builder_dir: the folder holding the builder's caches
      (`<data_dir>/<builder name>`), local or a tf.io.gfile URL.
    cache_name: the cache's folder name in builder_dir (its config name).
    wait_seconds: how long to wait for a clean-up of this cache that is
      under way to decide, in seconds.

  Returns:
    The CacheUse (removed at exit; `release()` removes it earlier).

  Raises:
    CacheRemovedError: a clean-up removed the cache, or one that was under
      way did not decide within wait_seconds, or was killed midway.
  """
  marker = _marker_path(builder_dir, cache_name)
  cache_dir = storage.join(os.fspath(builder_dir), cache_name)
  deadline = time.monotonic() + wait_seconds
  while True:
    use = _record_use(builder_dir, cache_name)
    if not storage.exists(marker):
      atexit.register(use.release)
      return use
    # A clean-up may have listed the uses before this one was written.
    use.release()
    while storage.exists(marker):
      remover = _read_record(marker)
      if remover and run_lock.holder_is_gone(remover):
        raise CacheRemovedError(
            f'The dataset cache {cache_dir} may be incomplete: a clean-up of '
            f'it by {run_lock.describe(remover)} was cut short. Delete '
            f'{cache_dir} and {marker}, then rerun: the data is prepared '
            'again.')
      if time.monotonic() > deadline:
        raise CacheRemovedError(
            f'The dataset cache {cache_dir} is being removed by '
            f'{run_lock.describe(remover or {})}, which did not finish within '
            f'{wait_seconds:g} s; rerun once it has ended.')
      time.sleep(_POLL_SECONDS)
    if not storage.exists(cache_dir):
      raise CacheRemovedError(
          f'The dataset cache {cache_dir} was removed by another process '
          '(its data folder changed since this process looked at it); rerun '
          'to prepare the data again.')


def live_users(builder_dir, cache_name: str) -> list:
  """The records of processes that may still read the cache.

  Records of processes known to be gone are removed on the way; a damaged
  record counts as a live user (named by its file).
  """
  folder = uses_folder(builder_dir, cache_name)
  if not storage.exists(folder):
    return []
  users = []
  for name in storage.listdir(folder):
    if name.startswith('.'):
      continue  # A record being written: its reader checks the marker next.
    path = storage.join(folder, name)
    record = _read_record(path)
    if record == {}:  # pylint: disable=g-explicit-bool-comparison
      continue  # Released meanwhile.
    if record is None:
      users.append({'purpose': f'an unreadable use record {path}'})
    elif run_lock.holder_is_gone(record):
      _remove_file(path)
    else:
      users.append(record)
  return users


def remove_unless_used(builder_dir, cache_name: str) -> bool:
  """Deletes the cache `cache_name` unless a live process reads it.

  Returns:
    True if the cache was deleted; False if it is in use (the log names a
    user) or another clean-up of it is under way.
  """
  builder_dir = os.fspath(builder_dir)
  cache_dir = storage.join(builder_dir, cache_name)
  marker = _marker_path(builder_dir, cache_name)
  token = uuid.uuid4().hex
  text = json.dumps(run_lock.owner_record('remove the dataset cache', token),
                    indent=2, sort_keys=True)
  storage.makedirs(storage.parent(marker))
  if not run_lock.create_exclusive(marker, text, token):
    holder = _read_record(marker)
    if not (holder and run_lock.holder_is_gone(holder) and
            run_lock.remove_stale(marker, holder, token) and
            run_lock.create_exclusive(marker, text, token)):
      return False  # Another clean-up of this cache is under way.
  try:
    users = live_users(builder_dir, cache_name)
    if users:
      logging.info('Keeping the outdated dataset cache %s: it is read by %s%s.',
                   cache_dir, run_lock.describe(users[0]),
                   f' and {len(users) - 1} more' if len(users) > 1 else '')
      return False
    logging.info('Removing the outdated dataset cache %s.', cache_dir)
    storage.remove_tree(cache_dir)
    # Records written after the listing belong to readers that find the
    # marker and withdraw them.
    storage.remove_tree(uses_folder(builder_dir, cache_name))
    return True
  finally:
    _remove_file(marker)
    _remove_folder_if_empty(uses_folder(builder_dir, cache_name))
    _remove_folder_if_empty(storage.parent(marker))
