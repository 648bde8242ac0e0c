"""Files a training run keeps in its model_dir, written so that a kill cannot
corrupt them.

Every file is first written next to its destination and then renamed over it
(an atomic step on POSIX file systems), so after a SIGKILL each file holds
either its previous or its new content.
"""

import json
import os
import pathlib
import shutil

import keras

RUN_FILE = 'run.json'


def write_text_atomically(path, text: str) -> None:
  path = pathlib.Path(path)
  temporary = path.with_name(f'.{path.name}.tmp')
  temporary.write_text(text)
  os.replace(temporary, path)


def save_model_atomically(model, path) -> None:
  """model.save(path) through a temporary .keras file and a rename."""
  path = pathlib.Path(path)
  temporary = path.with_name(f'.tmp-{path.name}')
  model.save(temporary)
  os.replace(temporary, path)


def replace_directory(source, destination) -> None:
  """Moves directory `source` to `destination`, replacing what was there."""
  source, destination = pathlib.Path(source), pathlib.Path(destination)
  old = destination.with_name(f'.old-{destination.name}')
  if old.exists():
    shutil.rmtree(old)
  if destination.exists():
    os.replace(destination, old)
  os.replace(source, destination)
  if old.exists():
    shutil.rmtree(old)


class RunMismatchError(ValueError):
  """model_dir holds a run that this configuration must not continue."""


def check_or_write_run_identity(model_dir, identity: dict) -> None:
  """Refuses to reuse a model_dir that holds a different kind of run.

  `identity` says what a run is (frontend, encoder, dataset, classes, sample
  rate); hyper-parameters such as the number of epochs may change between
  runs in the same model_dir, so a finished run can be continued.

  Raises:
    RunMismatchError: model_dir/run.json describes another run.
  """
  path = pathlib.Path(model_dir) / RUN_FILE
  if path.exists():
    previous = json.loads(path.read_text())
    differences = [
        f'{key}: {previous.get(key)!r} there, {identity.get(key)!r} now'
        for key in sorted(set(previous) | set(identity))
        if previous.get(key) != identity.get(key)
    ]
    if differences:
      raise RunMismatchError(
          f'--model_dir {model_dir} holds a different run, so it is left '
          'untouched: ' + '; '.join(differences) +
          '. Use a new --model_dir (or delete this one) to start over.')
    return
  write_text_atomically(path, json.dumps(identity, indent=2, sort_keys=True))


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
    self.path = pathlib.Path(path)
    self.monitor = monitor
    self.state_path = self.path.with_name(self.path.name + '.json')

  def _best_so_far(self):
    if self.monitor is None or not self.state_path.exists():
      return None
    return json.loads(self.state_path.read_text()).get(self.monitor)

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
