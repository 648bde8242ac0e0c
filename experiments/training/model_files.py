"""Loading a run's .keras model file with errors that say what is wrong.

Keras reports a truncated or otherwise damaged .keras file as "File not
found" (or with a zipfile error), for a file that exists; `load_keras_file`
names the file and says it is damaged instead.
"""

import os
import zipfile

import keras

from experiments import errors
from experiments import storage


class DamagedModelFileError(errors.DamagedFileError):
  """A .keras file that exists but cannot be read."""


def check_keras_archive(path) -> None:
  """Raises DamagedModelFileError unless `path` is a complete .keras archive.

  Complete: a zip file whose members pass their CRC and that holds Keras'
  config.json; what a truncated file (a full disk, an interrupted copy) is not.
  """
  path = os.fspath(path)
  data = storage.bytes_io(path)
  damaged = (f'{path} is damaged ({len(data.getvalue())} bytes): it is not '
             'a complete .keras file, e.g. truncated by a full disk or an '
             'interrupted copy')
  try:
    with zipfile.ZipFile(data) as archive:
      bad_member = archive.testzip()
      names = set(archive.namelist())
  except (zipfile.BadZipFile, OSError, EOFError) as error:
    raise DamagedModelFileError(f'{damaged}; {error}.') from error
  if bad_member is not None:
    raise DamagedModelFileError(f'{damaged}; {bad_member} fails its CRC.')
  if 'config.json' not in names:
    raise DamagedModelFileError(f'{damaged}; it holds no config.json.')


def load_keras_file(path, **load_options):
  """keras.saving.load_model(path), with clear errors.

  Args:
    path: str or os.PathLike, a .keras file written by model.save, on any
      TensorFlow file system (gs://...).
    **load_options: passed to keras.saving.load_model (e.g. compile=False).

  Returns:
    The Keras model.

  Raises:
    FileNotFoundError: nothing at path.
    DamagedModelFileError: path is not a complete .keras zip archive (e.g.
      truncated by a full disk or a copy cut short), or Keras cannot build
      the model it describes; the message names the file.
  """
  path = os.fspath(path)
  if not storage.is_file(path):
    raise FileNotFoundError(f'{path} not found (no such file).')
  try:
    check_keras_archive(path)
  except DamagedModelFileError as error:
    raise DamagedModelFileError(
        f'{error} Use another checkpoint (last.keras), or retrain.') from error
  try:
    with storage.LocalCopy(path) as local:
      return keras.saving.load_model(local, **load_options)
  except Exception as error:  # pylint: disable=broad-except
    raise DamagedModelFileError(
        f'{path} could not be loaded as a Keras model: '
        f'{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ""}'
    ) from error
