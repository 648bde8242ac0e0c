"""Files a training run keeps in its model_dir, written so that a kill cannot
corrupt them.

Every file is first written next to its destination and then renamed over it
(an atomic step on POSIX file systems), so after a SIGKILL each file holds
either its previous or its new content. Paths may be on any TensorFlow file
system (experiments/storage.py): on object stores each file is written as a
whole object.
"""

import csv
import io
import json
import os
import shutil

import keras

from experiments import errors
from experiments import storage
from experiments.training import model_files

RUN_FILE = 'run.json'
_MIN_FREE_BYTES = 64 * 2**20


class RunDirectoryError(errors.RunFolderError):
  """model_dir cannot hold the run (not writable, no space, user files)."""


def check_model_dir_writable(model_dir) -> None:
  """Raises RunDirectoryError early, without writing anything, when a local
  model_dir (or the folder it would be created in) is not writable or nearly
  full. URLs (gs://...) are not checked: their access and space are known only
  when a write is tried."""
  if storage.is_url(model_dir):
    return
  existing = os.fspath(model_dir)
  while not os.path.exists(existing):
    if os.path.dirname(existing) == existing:
      break
    existing = os.path.dirname(existing)
  if os.path.exists(existing) and not os.path.isdir(existing):
    raise RunDirectoryError(
        f'--model_dir {model_dir}: {existing} is a file, not a folder.')
  if not os.access(existing, os.W_OK | os.X_OK):
    raise RunDirectoryError(
        f'--model_dir {model_dir}: {existing} is not writable by this user; '
        'choose another --model_dir or fix its permissions.')
  free = shutil.disk_usage(existing).free
  if free < _MIN_FREE_BYTES:
    raise RunDirectoryError(
        f'--model_dir {model_dir}: only {free / 2**20:.1f} MiB free on its '
        f'file system (at least {_MIN_FREE_BYTES // 2**20} MiB needed for '
        'checkpoints and models); free some space or choose another '
        '--model_dir.')


def check_model_dir_is_new(model_dir) -> None:
  """Raises RunDirectoryError if model_dir holds files but no run.json.

  A new run writes config.gin, metrics.csv, best.keras, checkpoints/ and
  more into model_dir; in a folder of the user's (`--model_dir=.`, a parent
  of runs) they would replace the user's files of those names. A new run
  therefore starts only in a missing or empty folder (what a kill right
  after creating it leaves counts as empty).
  """
  if not storage.is_dir(model_dir):
    return
  leftovers = {f'.{RUN_FILE}.tmp'}
  entries = [name for name in storage.listdir(model_dir)
             if name not in leftovers]
  if entries:
    shown = ', '.join(entries[:5]) + (', ...' if len(entries) > 5 else '')
    raise RunDirectoryError(
        f'--model_dir {model_dir} holds files but no {RUN_FILE} '
        f'({shown}): it is not a run of this package, and a new run would '
        'write over files of the same names. Use a new or empty folder.')


def write_text_atomically(path, text: str) -> None:
  storage.write_atomically(path, text)


def save_model_atomically(model, path) -> None:
  """model.save(path) through a temporary .keras file and a rename (a local
  temporary file and a copy when path is on another file system)."""
  storage.save_keras_model(model, path)


def read_json_state(path) -> dict:
  """The dict in a small JSON state file of the run (e.g. best.keras.json).

  Raises:
    RunFileError: the file is not a JSON object (e.g. truncated); the message
      names it.
  """
  try:
    state = json.loads(storage.read_text(path))
  except ValueError as error:
    state = error
  if not isinstance(state, dict):
    raise RunFileError(
        f'{path} is damaged (not a JSON object: {state}). Delete it and the '
        f'.keras file beside it to let training write both again at the next '
        'epoch.')
  return state


class RunMismatchError(errors.RunFolderError):
  """model_dir holds a run that this configuration must not continue."""


def _differences(previous: dict, identity: dict, defaults=frozenset(),
                 prefix='') -> list:
  """'key: old there, new now' for every key that differs (nested dicts are
  compared key by key, so a changed binding is named by itself). A binding
  in `defaults` (its value now is today's default, not set by the user) is
  followed by how to pin the run's value."""
  differences = []
  for key in sorted(set(previous) | set(identity)):
    old, new = previous.get(key), identity.get(key)
    if isinstance(old, dict) and isinstance(new, dict):
      differences += _differences(old, new, defaults, prefix=f'{prefix}{key}: ')
    elif old != new:
      if not prefix:
        differences.append(f'{key}: {old!r} there, {new!r} now')
        continue
      # Bindings are stored as their gin text: show it as is.
      difference = f'{prefix}{key}: {old} there, {new} now'
      if key in defaults and old is not None:
        difference += (
            f' (the default of {key} changed since this run was made; to '
            f"continue it, pin the old value: --gin_bindings='{key} = {old}')")
      differences.append(difference)
  return differences


def _new_parameters(previous: dict, identity: dict, defaults) -> list:
  """Bindings this version records at their default that the run's run.json
  (written by an earlier version) does not have: parameters added since."""
  old = previous.get('bindings', {})
  new = identity.get('bindings', {})
  if not isinstance(old, dict) or not isinstance(new, dict):
    return []
  return sorted(key for key in new if key not in old and key in defaults)


def check_run_identity(model_dir, identity: dict,
                       defaults=frozenset()) -> bool:
  """Refuses to reuse a model_dir that holds a different run; writes nothing.

  `identity` says what a run is: frontend, encoder, dataset, classes, sample
  rate, and under 'bindings' every gin parameter that shapes the model and
  the data (see job.RESUMABLE_BINDINGS for those that may change, such
  as the number of epochs, so a finished run can be continued).

  Args:
    model_dir: the run folder (any TensorFlow file system).
    identity: this run's identity.
    defaults: the keys of identity['bindings'] whose value is today's
      default (the user did not set them). A binding that differs only there
      is named with the default that changed and how to pin the run's value;
      a binding that an earlier version did not record (a parameter added
      since) is accepted when it is at its default.

  Returns:
    True when model_dir holds this run already, False when it holds none.

  Raises:
    RunMismatchError: model_dir/run.json describes another run; the message
      names every differing key or binding.
  """
  path = storage.join(model_dir, RUN_FILE)
  if not storage.exists(path):
    return False
  try:
    previous = json.loads(storage.read_text(path))
  except (json.JSONDecodeError, UnicodeDecodeError) as error:
    raise RunMismatchError(
        f'{path} is not valid JSON ({error}); the run cannot be identified. '
        'Use a new --model_dir.') from error
  added = _new_parameters(previous, identity, defaults)
  if added:
    previous = dict(previous, bindings=dict(
        previous['bindings'], **{key: identity['bindings'][key]
                                 for key in added}))
  differences = _differences(previous, identity, frozenset(defaults))
  if differences:
    raise RunMismatchError(
        f'--model_dir {model_dir} holds a different run, so it is left '
        'untouched: ' + '; '.join(differences) +
        '. Use a new --model_dir (or delete this one) to start over.')
  return True


def check_or_write_run_identity(model_dir, identity: dict,
                                defaults=frozenset()) -> None:
  """check_run_identity, then writes run.json when there was none."""
  if not check_run_identity(model_dir, identity, defaults):
    write_text_atomically(
        storage.join(model_dir, RUN_FILE),
        json.dumps(identity, indent=2, sort_keys=True))


class RunFileError(errors.DamagedFileError):
  """A file of the run in model_dir is damaged; the message names it."""


def check_keras_file(path) -> None:
  """Raises RunFileError if `path` exists but is not a complete .keras file
  (e.g. truncated by a full disk or a copy cut short)."""
  if not storage.exists(path):
    return
  try:
    model_files.check_keras_archive(path)
  except model_files.DamagedModelFileError as error:
    raise RunFileError(
        f'{error} Delete it and its {storage.basename(path)}.json to let training write '
        'it again at the next epoch (best.keras then only considers the '
        'epochs still to come).') from error


def read_metrics_rows(path) -> list:
  """The rows of a metrics.csv as dicts (values as strings); [] if none."""
  if not storage.exists(path):
    return []
  return list(csv.DictReader(io.StringIO(storage.read_text(path),
                                         newline='')))


def write_metrics_row(path, epoch: int, logs: dict) -> None:
  """Writes metrics.csv with the rows of epochs before `epoch` and this one.

  Rows of `epoch` and later (written by a run killed before its checkpoint
  recorded that epoch) are dropped, so every epoch appears exactly once
  whatever moment a kill came at. The file is rewritten atomically.
  """
  rows = [row for row in read_metrics_rows(path) if int(row['epoch']) < epoch]
  rows.append({'epoch': str(epoch), **{k: repr(float(v)) if not isinstance(
      v, str) else v for k, v in logs.items()}})
  keys = sorted({key for row in rows for key in row} - {'epoch'})
  text = io.StringIO()
  writer = csv.DictWriter(text, fieldnames=['epoch'] + keys,
                          lineterminator='\n')
  writer.writeheader()
  writer.writerows(rows)
  write_text_atomically(path, text.getvalue())


class KerasFileCheckpoint(keras.callbacks.Callback):
  """Saves the whole model as a .keras file after each epoch, atomically.

  With `monitor`, saves only when logs[monitor] improves on the best value so
  far; that value is kept in `<path>.json`, so a resumed run keeps comparing
  against the best epoch of the killed one.

  Args:
    path: destination .keras file.
    monitor: optional log key to maximise, e.g. 'val_accuracy'.
  """

  def __init__(self, path, monitor=None):
    super().__init__()
    self.path = storage.expand(path)
    self.monitor = monitor
    self.state_path = self.path + '.json'

  def _best_so_far(self):
    if self.monitor is None or not storage.exists(self.state_path):
      return None
    return read_json_state(self.state_path).get(self.monitor)

  def on_epoch_end(self, epoch, logs=None):
    logs = logs or {}
    state = {'epoch': epoch + 1}
    if self.monitor is not None:
      if self.monitor not in logs:
        raise KeyError(
            f'KerasFileCheckpoint monitors {self.monitor!r}, which this '
            f'epoch did not log; logged: {sorted(logs)}.')
      value = float(logs[self.monitor])
      best = self._best_so_far()
      if best is not None and value <= best:
        return
      state[self.monitor] = value
    save_model_atomically(self.model, self.path)
    write_text_atomically(self.state_path, json.dumps(state))
