"""The binaries' console: our own lines on the terminal, library logs in a file.

By default a binary shows only what it says itself: Keras' progress bar, the
end summary, `warning: ...` lines of this package and `error: ...` lines.
What TensorFlow and absl print (at import, from C++ on file descriptor 2,
Python log records, TFDS' progress bars and notices) goes to a log file
instead, which training keeps as model_dir/train.log. `--verbosity=N` (absl's
flag, `-v N`) shows everything as before, on stderr.

    console = Console.start(sys.argv)   # before TensorFlow is imported
    ...                                 # absl parses flags
    console.hide_library_output()       # in main()
    console.keep_log_in('gs://bucket/run/train.log')
    with console.terminal():            # Keras' progress bar
      ...
    console.stop()                      # streams back as they were

The other binaries (export, predict, stream, inspect) say what they do with
print() and keep no log: they start the Console at the top of their module
and end with `console.run(main)`, which hides only the libraries' output
(`hide_library_logs`).

One process has at most one Console at a time (it owns the process's stdout
and stderr); `active()` returns it, or None when no binary started one
(library use, notebooks), in which case `terminal()` and `save_log()` do
nothing.
"""

import contextlib
import io
import logging
import os
import sys
import tempfile
from typing import Optional

_VERBOSITY_FLAGS = ('--verbosity', '-v')
# Records of loggers whose source file is in this package's folder are ours.
_PACKAGE_FOLDER = os.path.dirname(os.path.abspath(__file__))
_active = []  # The process's Console, once started.


# The log of a process before its model_dir is known: a temporary file named
# after the process, removed when it ends (or, after a kill, by the next run).
_LOG_PREFIX = 'leaf-audio-console-'


def _remove_logs_of_ended_processes() -> None:
  """Removes temporary console logs whose process is gone (a killed run's)."""
  folder = tempfile.gettempdir()
  for name in os.listdir(folder):
    if not (name.startswith(_LOG_PREFIX) and name.endswith('.log')):
      continue
    pid = name[len(_LOG_PREFIX):].split('-', 1)[0]
    if not pid.isdigit():
      continue
    try:
      os.kill(int(pid), 0)
      continue  # Alive (or another user's): not ours to remove.
    except ProcessLookupError:
      pass
    except OSError:
      continue
    try:
      os.remove(os.path.join(folder, name))
    except OSError:
      pass


def verbosity_requested(argv) -> bool:
  """Whether the command line sets absl's --verbosity (or -v)."""
  for argument in argv[1:]:
    name = argument.split('=', 1)[0]
    if name in _VERBOSITY_FLAGS:
      return True
  return False


def active() -> Optional['Console']:
  """The Console a binary started in this process, or None."""
  return _active[0] if _active else None


class _OurWarnings(logging.Handler):
  """Shows this package's warnings as `warning: <message>` on the terminal."""

  def __init__(self, stream):
    super().__init__(logging.WARNING)
    self._stream = stream

  def emit(self, record):
    if not os.path.abspath(record.pathname).startswith(_PACKAGE_FOLDER):
      return
    level = 'error' if record.levelno >= logging.ERROR else 'warning'
    try:
      self._stream.write(f'{level}: {record.getMessage()}\n')
      self._stream.flush()
    except (OSError, ValueError):
      pass


class Console:
  """The process's terminal streams, and the log file of everything else.

  Attributes:
    out, err: text streams to the terminal's stdout and stderr.
    quiet: whether library output is hidden (no --verbosity asked).
    log_path: the local file that collects the log of this process.
  """

  def __init__(self, quiet: bool):
    self.quiet = quiet
    _remove_logs_of_ended_processes()
    self._log = tempfile.NamedTemporaryFile(
        mode='w+', prefix=f'{_LOG_PREFIX}{os.getpid()}-', suffix='.log',
        delete=False, encoding='utf-8', buffering=1)
    self.log_path = self._log.name
    self._destination = None
    self._previous = ''
    self._handlers = []
    self._redirected = []  # (log handler, its stream before hiding)
    self._saved_fd = None
    self._own_err = False
    self.out, self.err = sys.stdout, sys.stderr
    self._stderr_before = sys.stderr
    if quiet:
      # C++ code (TensorFlow, absl) writes to file descriptor 2 directly:
      # point it at the log, and keep the terminal for Python's own writes.
      sys.stderr.flush()
      self._saved_fd = os.dup(2)
      os.dup2(self._log.fileno(), 2)
      if sys.stderr is sys.__stderr__:
        self.err = io.TextIOWrapper(os.fdopen(self._saved_fd, 'wb', 0),
                                    encoding='utf-8', errors='replace',
                                    line_buffering=True, write_through=True)
        self._own_err = True
        sys.stderr = self.err
      # Else Python's stderr is not file descriptor 2 (a caller captures
      # it, as contextlib.redirect_stderr does): our lines stay there.

  @property
  def terminal_fd(self) -> Optional[int]:
    """A file descriptor of the terminal's stderr while quiet (file
    descriptor 2 is then the log), else None."""
    return self._saved_fd if self.quiet else None

  @classmethod
  def start(cls, argv) -> 'Console':
    """The process's Console: quiet unless argv asks for --verbosity.

    Call it before TensorFlow is imported: what TensorFlow prints at import
    then goes to the log.
    """
    if not _active:
      _active.append(cls(quiet=not verbosity_requested(argv)))
    return _active[0]

  def hide_library_output(self) -> None:
    """From now on (flags are parsed), Python's stdout and stderr and absl's
    log records go to the log; our warnings still reach the terminal. With
    --verbosity, log records are also copied into the log."""
    if not self.quiet:
      from absl import logging as absl_logging  # pylint: disable=g-import-not-at-top
      copy = logging.StreamHandler(self._log)
      copy.setFormatter(absl_logging.get_absl_handler().formatter)
      logging.getLogger().addHandler(copy)
      self._handlers.append(copy)
      return
    self.hide_library_logs()
    sys.stdout.flush()
    sys.stdout = self._log
    sys.stderr = self._log

  def hide_library_logs(self) -> None:
    """From now on (flags are parsed), log records (absl's, TensorFlow's,
    the converters') go to the log, and this package's warnings reach the
    terminal as `warning: ...` lines; Python's stdout and stderr stay on the
    terminal. Nothing with --verbosity."""
    if not self.quiet or self._redirected:
      return
    from absl import logging as absl_logging  # pylint: disable=g-import-not-at-top
    absl_handler = absl_logging.get_absl_handler().python_handler
    self._redirected.append((absl_handler, absl_handler.stream))
    absl_handler.stream = self._log
    # Libraries' own handlers (TensorFlow's 'tensorflow' logger) hold the
    # stderr of the moment they were made.
    terminal = (self.err, self.out, sys.__stderr__, sys.__stdout__)
    for logger in logging.Logger.manager.loggerDict.values():
      for library_handler in getattr(logger, 'handlers', ()):
        if (isinstance(library_handler, logging.StreamHandler) and
            library_handler.stream in terminal):
          self._redirected.append((library_handler, library_handler.stream))
          library_handler.setStream(self._log)
    ours = _OurWarnings(self.err)
    logging.getLogger().addHandler(ours)
    self._handlers.append(ours)

  @contextlib.contextmanager
  def on_terminal(self):
    """Python's stdout on the terminal inside (for Keras' progress bar)."""
    previous = sys.stdout
    sys.stdout = self.out
    try:
      yield
    finally:
      self.out.flush()
      sys.stdout = previous

  def keep_log_in(self, path) -> None:
    """Keeps the log as `path` (any TensorFlow file system) from now on,
    after what that file already holds (a resumed run's earlier logs)."""
    from experiments import storage  # pylint: disable=g-import-not-at-top
    path = os.fspath(path)
    if path != self._destination:
      self._destination = path
      self._previous = (storage.read_text(path) if storage.exists(path)
                        else '')
    self.save_log()

  def save_log(self) -> None:
    """Copies the log to its destination (keep_log_in), if there is one."""
    if self._destination is None:
      return
    from experiments import storage  # pylint: disable=g-import-not-at-top
    self._log.flush()
    with open(self.log_path, encoding='utf-8', errors='replace') as file:
      text = file.read()
    storage.write_atomically(self._destination, self._previous + text)

  def stop(self) -> None:
    """Saves the log, gives the process's streams back to the terminal (an
    unexpected error's traceback is then seen) and ends this Console."""
    try:
      self.save_log()
    finally:
      for handler in self._handlers:
        logging.getLogger().removeHandler(handler)
      self._handlers = []
      for handler, stream in reversed(self._redirected):
        if isinstance(handler, logging.StreamHandler):
          handler.setStream(stream)
        else:  # absl's python handler
          handler.stream = stream
      self._redirected = []
      if self.quiet:
        self.err.flush()
        os.dup2(self._saved_fd, 2)
        if self._own_err:
          self.err.close()  # Closes the duplicate of the terminal's stderr.
        else:
          os.close(self._saved_fd)
      sys.stdout, sys.stderr = self.out, self._stderr_before
      self._log.close()
      os.remove(self.log_path)
      if self in _active:
        _active.remove(self)


@contextlib.contextmanager
def terminal():
  """Python's stdout on the terminal inside, when a binary started a quiet
  Console; nothing otherwise (library use, tests)."""
  console = active()
  if console is None:
    yield
    return
  with console.on_terminal():
    yield


def terminal_stderr():
  """The terminal's stderr (a file descriptor) for a child process: under a
  quiet Console fd 2 is its log, so a child's messages would not be seen."""
  console = active()
  if console is None or not console.quiet:
    return None
  return console.terminal_fd


def run(main) -> None:
  """absl's `app.run(main)` for a binary that reports with print() and keeps
  no log: once flags are parsed, the libraries' output is hidden (the
  process's Console, started at the top of the binary's module before
  TensorFlow is imported: `hide_library_logs`); the Console stops when the
  binary ends, also on an error, whose traceback then reaches the terminal.
  """
  from absl import app  # pylint: disable=g-import-not-at-top

  def quiet_main(argv):
    console = active()
    if console is not None:
      console.hide_library_logs()
    return main(argv)

  try:
    app.run(quiet_main)
  finally:  # Also when flags do not parse.
    stop_active()


def stop_active() -> None:
  """Stops the process's Console, if one was started and not stopped."""
  console = active()
  if console is not None:
    console.stop()


def save_log() -> None:
  """Copies the active Console's log to its destination, if any."""
  console = active()
  if console is not None:
    console.save_log()


def keep_log_in(path) -> None:
  """The active Console keeps its log as `path`; nothing without one."""
  console = active()
  if console is not None:
    console.keep_log_in(path)
