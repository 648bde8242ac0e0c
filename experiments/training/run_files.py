"""Files a training run keeps in its model_dir, written so that a kill cannot
corrupt them.

Every file is first written next to its destination and then renamed over it
(an atomic step on POSIX file systems), so after a SIGKILL each file holds
either its previous or its new content. Paths may be on any TensorFlow file
system (experiments/storage.py): on object stores each file is written as a
whole object.
"""

import contextlib
import csv
import io
import json
import os
import shutil

import keras

from experiments import errors
from experiments import storage
from experiments.training import model_files
from experiments.training import run_lock

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
  usage = shutil.disk_usage(existing)
  if usage.total == 0:
    raise RunDirectoryError(
        f'--model_dir {model_dir}: {existing} is on a file system that '
        'stores no files (size 0, e.g. /proc or /sys); choose a folder on a '
        'disk.')
  free = usage.free
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
  leftovers = {f'.{RUN_FILE}.tmp', run_lock.LOCK_FILE}
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
    RunMismatchError: model_dir/run.json describes another run, or is not
      JSON; the message names every differing key or binding.
    RunFileError: run.json is JSON but not an object (`[]`, `null`).
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
  if not isinstance(previous, dict):
    raise RunFileError(
        f'{path} is damaged: it holds {json.dumps(previous)[:80]}, not the '
        'JSON object a run writes, so the run cannot be identified. Put back '
        'a good copy (the run.json of the same configuration) or use a new '
        '--model_dir.')
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


# Recovery: what a rerun does when the run's checkpoints are missing or
# damaged (docs/recovery.md has the table).

CHECKPOINT_STATE_FILE = 'checkpoint'
KERAS_FILES = ('best.keras', 'last.keras')
_EPOCH_SUFFIX = 'epoch/.ATTRIBUTES/VARIABLE_VALUE'


class RunCheckpointError(RunFileError):
  """The run has finished epochs but no checkpoint that can resume it."""


def _recovery_choices(model_dir) -> str:
  return (
      'Either continue from a whole-model file of the run (the optimizer '
      'state starts afresh, so the result is not bit-identical to an '
      "uninterrupted run): rerun with --gin_bindings=\"train.resume_from = "
      "'last.keras'\" (or 'best.keras'), which sets the damaged checkpoints "
      'aside; or start over with a new --model_dir. '
      f'Nothing in {model_dir} has been changed.')


def check_metrics_file(path) -> list:
  """read_metrics_rows, with a damaged file named.

  Returns:
    The rows, each with an 'epoch' that is an integer >= 0.

  Raises:
    RunFileError: the file has no 'epoch' column or a row whose epoch is not
      an integer >= 0 (garbage, a truncated copy).
  """
  if not storage.exists(path):
    return []
  problem = None
  try:
    reader = csv.DictReader(io.StringIO(storage.read_text(path), newline=''))
    rows = list(reader)
    columns = reader.fieldnames or []
  except (csv.Error, UnicodeDecodeError) as error:
    rows, columns, problem = [], ['epoch'], str(error)
  if problem is None and 'epoch' not in columns:
    problem = f'its first line has no epoch column: {columns[:4]}'
  for number, row in enumerate(rows if problem is None else [], start=2):
    epoch = row.get('epoch')
    if epoch is None or not epoch.isdigit():
      problem = f'line {number} has epoch {epoch!r}, not an integer >= 0'
      break
  if problem is not None:
    raise RunFileError(
        f'{path} is damaged ({problem}), so the rows of the epochs already '
        'done cannot be kept. Put back a good copy, or delete it to go on '
        'without those rows (the checkpoints and .keras files are not '
        'affected); nothing was trained or written.')
  return rows


def finished_epochs(model_dir) -> int:
  """How many epochs the files of model_dir say were finished.

  The largest of: rows of metrics.csv (epoch + 1), the 'epoch' of
  best/last.keras.json; a test_metrics.json means the run finished, counted
  as at least 2 (more than a kill before the first checkpoint can leave).
  """
  done = [int(row['epoch']) + 1 for row in
          check_metrics_file(storage.join(model_dir, 'metrics.csv'))]
  for name in KERAS_FILES:
    state_path = storage.join(model_dir, f'{name}.json')
    if storage.exists(state_path):
      epoch = read_json_state(state_path).get('epoch')
      if isinstance(epoch, int):
        done.append(epoch)
  if storage.exists(storage.join(model_dir, 'test_metrics.json')):
    done.append(2)
  return max(done, default=0)


def find_checkpoint(checkpoint_dir, model_dir) -> 'str | None':
  """The checkpoint a rerun resumes from, checked readable; None for none.

  None only when the run cannot have written a checkpoint yet: its files show
  at most the first epoch (a kill after epoch 1's metrics row and .keras
  files but before its checkpoint leaves exactly that). Otherwise a missing
  or unreadable checkpoint would silently restart the run from epoch 1 over
  its metrics.csv and .keras files, so it is refused.

  Args:
    checkpoint_dir: the run's checkpoints/ folder.
    model_dir: the run's folder (its metrics.csv and .keras.json files).

  Returns:
    The checkpoint prefix (e.g. '.../checkpoints/ckpt-3') or None.

  Raises:
    RunCheckpointError: a checkpoint is missing, unreadable, or older than
      the epochs the run's files show; the message names the file and the
      ways to go on.
    RunFileError: metrics.csv or a .keras.json state file is damaged.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  checkpoint_dir = os.fspath(checkpoint_dir)
  done = finished_epochs(model_dir)
  state_path = storage.join(checkpoint_dir, CHECKPOINT_STATE_FILE)
  if not storage.exists(state_path):
    if done <= 1:
      return None
    missing = ('is missing' if storage.is_dir(checkpoint_dir) else
               'is missing (the folder is gone)')
    raise RunCheckpointError(
        f'{state_path} {missing}, but the run in {model_dir} has finished '
        f'{done} epochs (metrics.csv, .keras files): rerunning would '
        f'silently start again from epoch 1 over them. '
        f'{_recovery_choices(model_dir)}')
  state = tf.train.get_checkpoint_state(str(checkpoint_dir))
  if state is None or not state.model_checkpoint_path:
    raise RunCheckpointError(
        f'{state_path} is damaged (not a checkpoint state that names a '
        'checkpoint), so the run cannot resume; rerunning would silently '
        f'start again from epoch 1. {_recovery_choices(model_dir)}')
  prefix = state.model_checkpoint_path
  if not os.path.isabs(prefix) and not storage.is_url(prefix):
    prefix = storage.join(checkpoint_dir, prefix)
  index = f'{prefix}.index'
  if not storage.exists(index):
    raise RunCheckpointError(
        f'{index} is missing (named by {state_path}), so the run cannot '
        f'resume. {_recovery_choices(model_dir)}')
  try:
    # The reader of this very prefix (tf.train.load_checkpoint takes a prefix
    # that a file system such as ram:// reports as a folder for a folder).
    reader = tf.compat.v1.train.NewCheckpointReader(prefix)
  except (tf.errors.OpError, ValueError) as error:
    raise RunCheckpointError(
        f'{index} is damaged ({_first_line(error)}), so the run cannot '
        f'resume. {_recovery_choices(model_dir)}') from error
  epoch = None
  try:
    for key in reader.get_variable_to_shape_map():
      value = reader.get_tensor(key)
      if key.endswith(_EPOCH_SUFFIX):
        epoch = int(value)
  except Exception as error:  # pylint: disable=broad-except
    # A truncated .data file surfaces as IndexError or an OpError.
    data_files = ', '.join(sorted(
        tf.io.gfile.glob(f'{prefix}.data-*'))) or f'{prefix}.data-*'
    raise RunCheckpointError(
        f'{data_files} is damaged ({type(error).__name__}: '
        f'{_first_line(error)}), so the run cannot resume. '
        f'{_recovery_choices(model_dir)}') from error
  if epoch is not None and done > epoch + 1:
    raise RunCheckpointError(
        f'{prefix} holds epoch {epoch}, but the run in {model_dir} has '
        f'finished {done} epochs: resuming would silently redo and '
        f'overwrite them. {_recovery_choices(model_dir)}')
  return prefix


def _first_line(error) -> str:
  text = str(error).strip()
  return text.splitlines()[0] if text else type(error).__name__


def check_keras_file_matches(path, model) -> None:
  """Raises RunFileError unless `path` is missing or holds `model`'s kind.

  A .keras file of another run (copied in by hand) loads fine but holds other
  layers; it is refused here, naming the file, instead of failing deep in
  Keras when the run evaluates or exports it.
  """
  if not storage.exists(path):
    return
  check_keras_file(path)
  try:
    other = model_files.load_keras_file(path, compile=False)
  except model_files.DamagedModelFileError as error:
    raise RunFileError(
        f'{error}. It is not a model of this run: move it away (training '
        'writes it again at the next epoch).') from error
  want = [tuple(weight.shape) for weight in model.weights]
  got = [tuple(weight.shape) for weight in other.weights]
  if type(other).__name__ != type(model).__name__ or want != got:
    raise RunFileError(
        f'{path} holds another model ({type(other).__name__} with '
        f'{len(got)} weights, this run builds {type(model).__name__} with '
        f'{len(want)}): it is not a file of this run. Move it away '
        '(training writes it again at the next epoch).')


def resume_from_keras_file(model_dir, name: str, model, checkpoint_dir,
                           set_aside: bool = True) -> int:
  """Loads the weights of model_dir/name into `model`; returns its epoch.

  The recovery offered when the checkpoints are missing or damaged (see
  find_checkpoint): the model's weights come from best.keras or last.keras
  (precise BatchNorm statistics included) and the epoch from its .json
  state; the optimizer starts afresh. With `set_aside` (the chief), a
  damaged checkpoints/ folder is renamed to checkpoints.damaged-<n> so that
  nothing is overwritten.

  Raises:
    ValueError: name is not best.keras or last.keras.
    RunFileError: the file or its .json state is missing, damaged or of
      another model.
  """
  if name not in KERAS_FILES:
    raise ValueError(f'train.resume_from must be one of {KERAS_FILES} or '
                     f'None; got {name!r}.')
  path = storage.join(model_dir, name)
  state_path = storage.join(model_dir, f'{name}.json')
  for needed in (path, state_path):
    if not storage.exists(needed):
      raise RunFileError(
          f'{needed} not found, so train.resume_from = {name!r} cannot '
          'resume from it; try the other .keras file or start over with a '
          'new --model_dir.')
  epoch = read_json_state(state_path).get('epoch')
  if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 1:
    raise RunFileError(f'{state_path} is damaged: its epoch is {epoch!r}, '
                       'not an integer >= 1.')
  check_keras_file_matches(path, model)
  source = model_files.load_keras_file(path, compile=False)
  for target, weight in zip(model.weights, source.weights):
    target.assign(weight.value)
  checkpoint_dir = os.fspath(checkpoint_dir)
  if set_aside and storage.exists(checkpoint_dir):
    number = 1
    while storage.exists(f'{checkpoint_dir}.damaged-{number}'):
      number += 1
    # Set aside, never deleted (a folder rename; on object stores a copy).
    storage.rename_folder(checkpoint_dir, f'{checkpoint_dir}.damaged-{number}')
  return epoch


def write_missing_keras_files(model_dir, model, epoch: int,
                              monitor: str) -> list:
  """Writes best.keras / last.keras (and .json) from `model` where missing.

  After a finished run's damaged best.keras (or last.keras) was deleted as
  its error message advises, no epoch is left to write it again: the model
  restored from the last checkpoint, which is the last epoch's, takes its
  place. Returns the names written.
  """
  logs = {}
  for row in check_metrics_file(storage.join(model_dir, 'metrics.csv')):
    if int(row['epoch']) == epoch - 1:
      logs = row
  written = []
  for name in KERAS_FILES:
    path = storage.join(model_dir, name)
    if storage.exists(path):
      continue
    state = {'epoch': epoch}
    if name == 'best.keras':
      value = logs.get(monitor)
      if value in (None, ''):
        continue  # No validation value to compare later epochs against.
      state[monitor] = float(value)
    save_model_atomically(model, path)
    write_text_atomically(storage.join(model_dir, f'{name}.json'),
                          json.dumps(state))
    written.append(name)
  return written


def restore_checkpoint(checkpoint, prefix) -> None:
  """checkpoint.restore(prefix), every saved object matched, errors named.

  Raises:
    RunCheckpointError: the checkpoint cannot be read or does not hold this
      run's variables; the message names it.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  try:
    checkpoint.restore(prefix).assert_existing_objects_matched()
  except (tf.errors.OpError, AssertionError, ValueError, IndexError) as error:
    raise RunCheckpointError(
        f'{prefix} (.index, .data-*) cannot be restored into this run '
        f'({type(error).__name__}: {_first_line(error)}). '
        f'{_recovery_choices(storage.parent(storage.parent(prefix)))}'
    ) from error


RUN_FILE_KEYS = ('label_names', 'sample_rate', 'window_samples', 'multi_label')


def read_run_file(model_dir) -> dict:
  """model_dir/run.json as a dict holding what an export needs.

  Raises:
    FileNotFoundError: there is no run.json (not a training run).
    RunFileError: run.json is not a JSON object or lacks RUN_FILE_KEYS.
  """
  path = storage.join(model_dir, RUN_FILE)
  if not storage.exists(path):
    raise FileNotFoundError(
        f'{path} not found: --model_dir must be the folder of a training '
        'run (python -m experiments.train --model_dir=...).')
  try:
    run = json.loads(storage.read_text(path))
  except (ValueError, UnicodeDecodeError) as error:
    run = error
  missing = (sorted(set(RUN_FILE_KEYS) - set(run))
             if isinstance(run, dict) else None)
  if not isinstance(run, dict) or missing:
    what = (f'it lacks {", ".join(missing)}' if isinstance(run, dict) else
            f'not a JSON object: {str(run)[:80]}')
    raise RunFileError(
        f'{path} is damaged ({what}). Put back a good copy: rerunning the '
        'training command with the same configuration and a new '
        '--model_dir writes the same run.json.')
  return run
