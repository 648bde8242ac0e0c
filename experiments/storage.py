"""Paths on any TensorFlow filesystem: local folders, gs://, ram://, ...

Every file the binaries read or write goes through `tf.io.gfile` by way of
these functions, so `--model_dir` and `load_dataset.folder` may be bucket
URLs. Paths stay strings: `pathlib` folds `gs://bucket` into `gs:/bucket`, a
local folder, so it must never touch them.

What holds where (docs/distributed.md): a local rename is atomic, so
`write_atomically` leaves a file either old or new after a kill; on an object
store a rename is a copy then a delete, and each object is still written as a
whole (a reader never sees half of it).
"""

import contextlib
import io
import os
import posixpath
import tempfile

import tensorflow as tf

gfile = tf.io.gfile


def is_url(path) -> bool:
  """Whether `path` names a file system by scheme (gs://, ram://, s3://)."""
  return '://' in str(path)


def expand(path) -> str:
  """`path` as a string: `~` expanded and made absolute when local; URLs as
  given (without a trailing slash)."""
  path = os.fspath(path)
  if is_url(path):
    return path.rstrip('/') if not path.endswith('://') else path
  return os.path.abspath(os.path.expanduser(path))


def join(folder, *names) -> str:
  """folder/name/... for local paths and URLs alike."""
  folder = os.fspath(folder)
  if is_url(folder):
    return posixpath.join(folder, *names)
  return os.path.join(folder, *names)


def parent(path) -> str:
  path = os.fspath(path)
  if is_url(path):
    return posixpath.dirname(path.rstrip('/'))
  return os.path.dirname(path)


def basename(path) -> str:
  path = os.fspath(path).rstrip('/')
  return posixpath.basename(path) if is_url(path) else os.path.basename(path)


def exists(path) -> bool:
  return gfile.exists(os.fspath(path))


def is_dir(path) -> bool:
  return gfile.isdir(os.fspath(path))


def is_file(path) -> bool:
  path = os.fspath(path)
  return gfile.exists(path) and not gfile.isdir(path)


def listdir(path) -> list:
  """Sorted entry names of a folder (without trailing slashes)."""
  return sorted(name.rstrip('/') for name in gfile.listdir(os.fspath(path)))


def size(path) -> int:
  return gfile.stat(os.fspath(path)).length


def makedirs(path) -> None:
  gfile.makedirs(os.fspath(path))


def remove_tree(path) -> None:
  """Removes a folder and its content; nothing if it does not exist."""
  path = os.fspath(path)
  if gfile.exists(path):
    gfile.rmtree(path)


def rename_folder(source, destination) -> None:
  """Renames a folder (atomic on local disks and ram://; on object stores
  TensorFlow's file system copies its objects)."""
  gfile.rename(os.fspath(source), os.fspath(destination), overwrite=False)


def read_bytes(path) -> bytes:
  with gfile.GFile(os.fspath(path), 'rb') as file:
    return file.read()


def read_text(path) -> str:
  return read_bytes(path).decode('utf-8')


def _remove_if_present(path) -> None:
  # TensorFlow's ram:// file system appends to an existing file opened with
  # 'wb' (and gfile.copy appends to an existing destination, TF 2.21); a
  # file removed first is written afresh everywhere.
  if gfile.exists(path):
    gfile.remove(path)


def write_bytes(path, data: bytes) -> None:
  """Replaces the file at `path` with `data` (not atomically; see
  write_atomically)."""
  path = os.fspath(path)
  _remove_if_present(path)
  with gfile.GFile(path, 'wb') as file:
    file.write(data)


def _hidden_sibling(path, tag) -> str:
  return join(parent(path), f'.{basename(path)}.{tag}')


def write_atomically(path, data) -> None:
  """Writes `data` (str or bytes) to a hidden file beside `path`, then
  renames it over `path`."""
  if isinstance(data, str):
    data = data.encode('utf-8')
  temporary = _hidden_sibling(path, 'tmp')
  with _removed_on_failure(temporary):
    write_bytes(temporary, data)
    gfile.rename(temporary, os.fspath(path), overwrite=True)


@contextlib.contextmanager
def _removed_on_failure(temporary):
  """A write cut short (a full disk: ENOSPC) leaves no partial temporary
  file to fill the disk further; the destination keeps its old content."""
  try:
    yield
  except BaseException:
    try:
      _remove_if_present(temporary)
    except (OSError, tf.errors.OpError):
      pass
    raise


def copy_atomically(local_file, path) -> None:
  """Copies a local file to `path` (any file system) through a hidden file
  beside it and a rename."""
  temporary = _hidden_sibling(path, 'tmp')
  _remove_if_present(temporary)
  gfile.copy(os.fspath(local_file), temporary, overwrite=True)
  gfile.rename(temporary, os.fspath(path), overwrite=True)


def save_keras_model(model, path) -> None:
  """model.save(path) for any file system: Keras writes a local temporary
  .keras file, which is then copied (or renamed, when local) into place."""
  path = os.fspath(path)
  if not is_url(path):
    temporary = _hidden_sibling(path, 'tmp.keras')
    with _removed_on_failure(temporary):
      model.save(temporary)
      os.replace(temporary, path)
    return
  with tempfile.TemporaryDirectory(prefix='leaf-audio-save-') as folder:
    local = os.path.join(folder, basename(path))
    model.save(local)
    copy_atomically(local, path)


class LocalCopy:
  """A context manager: a local path holding a copy of `path` (the path
  itself when local), for readers that only open local files (Keras'
  load_model, zipfile).

    with storage.LocalCopy('gs://bucket/run/best.keras') as local:
      model = keras.saving.load_model(local)
  """

  def __init__(self, path):
    self.path = os.fspath(path)
    self._folder = None

  def __enter__(self) -> str:
    if not is_url(self.path):
      return self.path
    self._folder = tempfile.TemporaryDirectory(prefix='leaf-audio-read-')
    local = os.path.join(self._folder.name, basename(self.path))
    gfile.copy(self.path, local, overwrite=True)
    return local

  def __exit__(self, *exc_info):
    if self._folder is not None:
      self._folder.cleanup()
      self._folder = None


def bytes_io(path) -> io.BytesIO:
  """The whole file as an in-memory binary file (for zipfile, scipy)."""
  return io.BytesIO(read_bytes(path))
