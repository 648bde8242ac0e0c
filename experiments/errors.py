"""What can go wrong in a run, as exception types, and how the binaries say it.

Every error a user can fix is raised as one of the types below (or a subclass
defined where the error arises, e.g. `run_files.RunMismatchError`). The
binaries (`experiments.train`, `export`, `predict`, `stream`, `inspect`) print
it as one `error: ...` line on stderr and exit with the type's status, which
scripts may rely on:

  status  type                 meaning
  1       (anything else)      a bug or an unexpected failure: a traceback
  2       ConfigurationError   a gin file, binding, flag or argument is wrong
  3       RunFolderError       --model_dir cannot hold this run (another run,
                               user files, not writable, nearly full)
  4       DamagedFileError     a file of a run or a model is damaged
  5       DataError            the dataset cannot be found or read
  6       ExportError          the export destination may not be replaced
  7       StorageError         reading or writing failed (disk full, access
                               denied, bucket unreachable); the last
                               checkpoint is intact
  8       DivergedError        the training loss became non-finite or
                               exploded; nothing was exported
  9       WorkerLostError      a worker of a multi-worker run died or
                               became unreachable mid-run (defined in
                               experiments/training/distribution.py);
                               restarting every worker resumes
  130     SIGINT (Ctrl-C)      interrupted (a checkpoint first); rerunning
                               the command resumes
  143     SIGTERM              the same, from kill, Kubernetes or Slurm
  137     (SIGKILL)            the watchdog ended a process that did not stop
                               within seconds of a signal, or whose workers
                               did not join (docs/recovery.md)

The types derive from ValueError (StorageError from OSError), so code that
caught ValueError before keeps working.
"""

import sys
from typing import Optional

SUCCESS = 0
UNEXPECTED = 1
INTERRUPTED = 130

# gin appends "\n  In call to configurable 'Name' (<function ...>)" to the
# message of an error raised inside a configurable.
_GIN_NOTE = '\n  In call to configurable'


class LeafAudioError(ValueError):
  """Base of the errors a user can fix; `exit_status` is the binaries'."""
  exit_status = UNEXPECTED


class ConfigurationError(LeafAudioError):
  """A gin file, binding, flag or argument that cannot be used."""
  exit_status = 2


class RunFolderError(LeafAudioError):
  """--model_dir cannot hold this run; nothing in it was changed."""
  exit_status = 3


class DamagedFileError(LeafAudioError):
  """A file of a run or a model exists but cannot be read; named."""
  exit_status = 4


class DataError(LeafAudioError):
  """The dataset (a TFDS name, a WAV folder) cannot be found or read."""
  exit_status = 5


class ExportError(LeafAudioError):
  """The export destination holds something that is not ours to replace."""
  exit_status = 6


class DivergedError(LeafAudioError):
  """Training diverged (a non-finite or exploding loss); nothing exported."""
  exit_status = 8


class StorageError(OSError):
  """Reading or writing a file failed below the program (disk, network)."""
  exit_status = 7


def _foreign_types() -> tuple:
  """(type, status) of errors defined in modules this one must not import
  eagerly (they import TensorFlow)."""
  try:
    from experiments.serving import export_directory  # pylint: disable=g-import-not-at-top
  except ImportError:
    return ()
  return ((export_directory.ExportDirectoryError, ExportError.exit_status),)


def exit_status(error: BaseException) -> int:
  """The status a binary exits with for `error` (see the module docstring)."""
  if isinstance(error, KeyboardInterrupt):
    return INTERRUPTED
  status = getattr(type(error), 'exit_status', None)
  if isinstance(status, int) and isinstance(error, (LeafAudioError,
                                                    StorageError)):
    return status
  for foreign, foreign_status in _foreign_types():
    if isinstance(error, foreign):
      return foreign_status
  return UNEXPECTED


def is_reported(error: BaseException) -> bool:
  """Whether `error` is one a binary reports as one line (not a bug)."""
  return exit_status(error) not in (UNEXPECTED, INTERRUPTED)


def configurable_of(error: BaseException) -> Optional[str]:
  """The gin configurable an error was raised in ('Leaf'), or None."""
  text = str(error)
  if _GIN_NOTE not in text:
    return None
  note = text.split(_GIN_NOTE, 1)[1]
  parts = note.split("'")
  return parts[1] if len(parts) > 2 else None


def one_line(error: BaseException) -> str:
  """The error's message without gin's note, on one line."""
  text = str(error).split(_GIN_NOTE, 1)[0].strip()
  if isinstance(error, OSError) and not isinstance(error, StorageError):
    where = f' ({error.filename})' if error.filename else ''
    text = f'{error.strerror or text}{where}'
  return ' '.join(text.split())


def from_configurable(error: BaseException, what: str) -> ConfigurationError:
  """A ConfigurationError for a ValueError or TypeError that a gin
  configurable (a frontend, an encoder, the model) raised while `what` was
  built: its own message, and the configurable it came from."""
  where = configurable_of(error)
  origin = f' ({where})' if where else ''
  return ConfigurationError(f'{what}{origin}: {one_line(error)}')


def report_and_exit(error: BaseException, stream=None) -> None:
  """Prints `error: <message>` and exits with the error's status.

  Raises:
    SystemExit: always.
  """
  stream = stream or sys.stderr
  print(f'error: {one_line(error)}', file=stream, flush=True)
  raise SystemExit(exit_status(error))
