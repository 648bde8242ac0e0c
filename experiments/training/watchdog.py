"""Every wait of a training process is bounded and can be stopped.

Python runs signal handlers in the main thread between bytecodes only, and
while TensorFlow's multi-worker strategy waits for its cluster to form it
blocks in C++ holding the GIL, so no Python code of the process runs at all:
neither a signal handler nor a watchdog thread. `StopSignals` therefore
works in three parts:

- While the strategy is made (`signals_end_process()`), SIGINT and SIGTERM
  have their default action: the kernel ends the process at once (there is
  nothing to save yet).
- Afterwards, Python handlers: outside the training steps they raise
  `RunInterrupted` at once; inside them (`signals_deferred()`) they only
  record the signal, and the loop writes a checkpoint at the next step
  boundary and then raises it (`pending_stop()`), so a resumed run loses
  nothing. The binary exits with 130 (SIGINT) or 143 (SIGTERM).
- A watchdog *process* (plain Python, no TensorFlow) that needs nothing from
  the training process: the C-level signal handler writes each signal to it
  through `signal.set_wakeup_fd`, and the training process tells it when the
  cluster has formed and (multi-worker runs) when training steps finish. If
  the training process is still alive GRACE_SECONDS after a signal, its
  cluster has not formed within the join timeout, or no training step
  finished within the step timeout (a peer that died or hangs mid-run leaves
  the others blocked in a collective), the watchdog prints why (naming the
  workers it cannot reach) and ends it with SIGKILL. It ends by itself when
  the training process does.

Exit statuses (docs/recovery.md), as a shell shows them:
  130  SIGINT (Ctrl-C)      143  SIGTERM (kill, Kubernetes, Slurm)
  137  ended by the watchdog (SIGKILL): no stop within GRACE_SECONDS of a
       signal, the other workers did not join within the join timeout, or
       no training step finished within the step timeout
"""

import contextlib
import json
import logging
import os
import select
import signal
import socket
import subprocess
import sys
import time

GRACE_SECONDS = 8.0
EXIT_STATUS = {signal.SIGINT: 130, signal.SIGTERM: 143}
WATCHDOG_EXIT_STATUS = 128 + signal.SIGKILL
_SIGNALS = (signal.SIGINT, signal.SIGTERM)
# Seconds between two progress messages to the watchdog (steps are faster).
_PROGRESS_INTERVAL = 1.0


class RunInterrupted(KeyboardInterrupt):
  """SIGINT or SIGTERM stopped the run; `exit_status` is 130 or 143."""

  def __init__(self, signum):
    self.signum = signum
    self.exit_status = EXIT_STATUS[signum]
    super().__init__(f'stopped by {signal.Signals(signum).name}')


class StopSignals:
  """SIGINT/SIGTERM handling and the watchdog process of a training process.

  Use as a context manager in the main thread:

    with watchdog.StopSignals() as stop:
      stop.expect_join(600, {'worker 1': 'host:port'})  # multi-worker only
      with watchdog.signals_end_process():
        strategy = ...                                  # may block in C++
      stop.joined()
      train(...)

  Args:
    grace_seconds: how long after a signal the process may take to stop by
      itself before the watchdog ends it.
  """

  def __init__(self, grace_seconds: float = GRACE_SECONDS):
    self.grace_seconds = grace_seconds
    self.requested = None  # The first signal received, if any.
    self.deferring = False
    self._previous = {}
    self._previous_wakeup_fd = -1
    self._watchdog = None
    self._signal_writer = None
    self._steps = None  # {'step_seconds', 'peers'} once expect_steps ran.
    self._last_progress = 0.

  def _handle(self, signum, frame):
    del frame
    if self.requested is None:
      self.requested = signum
    if not self.deferring:
      raise RunInterrupted(signum)

  def __enter__(self):
    signal_reader, self._signal_writer = os.pipe()
    os.set_blocking(self._signal_writer, False)
    # The terminal, also under a quiet console (fd 2 is then its log).
    from experiments import console  # pylint: disable=g-import-not-at-top
    terminal = console.terminal_stderr()
    self._watchdog = subprocess.Popen(
        [sys.executable, os.path.abspath(__file__), str(os.getpid()),
         str(signal_reader), str(self.grace_seconds)],
        stdin=subprocess.PIPE, stderr=terminal, pass_fds=(signal_reader,),
        text=True)
    os.close(signal_reader)
    self._previous_wakeup_fd = signal.set_wakeup_fd(
        self._signal_writer, warn_on_full_buffer=False)
    for signum in _SIGNALS:
      self._previous[signum] = signal.signal(signum, self._handle)
    return self

  def __exit__(self, *exc_info):
    for signum, handler in self._previous.items():
      signal.signal(signum, handler)
    signal.set_wakeup_fd(self._previous_wakeup_fd)
    os.close(self._signal_writer)
    self._watchdog.stdin.close()  # The watchdog ends on end of file.
    try:
      self._watchdog.wait(timeout=5)
    except subprocess.TimeoutExpired:
      self._watchdog.kill()
      self._watchdog.wait()

  def _tell(self, message: dict) -> None:
    self._watchdog.stdin.write(json.dumps(message) + '\n')
    self._watchdog.stdin.flush()

  def expect_join(self, timeout_seconds: float, peers: dict) -> None:
    """Has the process ended unless `joined()` comes within timeout_seconds.

    Args:
      timeout_seconds: seconds; 0 or None waits forever.
      peers: {'worker 1': 'host:port', ...}, the other members of the
        cluster; the message names those that do not accept connections.
    """
    if timeout_seconds:
      self._tell({'join_seconds': float(timeout_seconds), 'peers': peers})

  def joined(self) -> None:
    self._tell({'joined': True})

  def expect_steps(self, timeout_seconds: float, peers: dict,
                   first_step_seconds: float = 0.) -> None:
    """Has the process ended when, inside `signals_deferred()` (the training
    steps of an epoch), no step finishes within timeout_seconds.

    Args:
      timeout_seconds: seconds between two steps; 0 or None: no limit.
      peers: {'worker 1': 'host:port', ...}, named in the message.
      first_step_seconds: seconds from entering the steps to the end of the
        first (it traces the step function, sets up the collectives and
        fills the shuffle buffer); at least timeout_seconds.
    """
    if timeout_seconds:
      self._steps = {'step_seconds': float(timeout_seconds),
                     'first_step_seconds': max(float(first_step_seconds),
                                               float(timeout_seconds)),
                     'peers': peers}

  def _steps_started(self) -> None:
    if self._steps:
      self._last_progress = float('-inf')  # The first step is always told.
      self._tell(self._steps)

  def _steps_ended(self) -> None:
    if self._steps:
      self._tell({'steps_ended': True})

  def step_done(self) -> None:
    """Tells the watchdog a step finished (at most once a second)."""
    now = time.monotonic()
    if self._steps and now - self._last_progress >= _PROGRESS_INTERVAL:
      self._last_progress = now
      self._tell({'progress': True})


@contextlib.contextmanager
def signals_end_process():
  """Inside, SIGINT and SIGTERM end the process at once (default action),
  for C++ waits that hold the GIL, such as forming a multi-worker cluster."""
  previous = {signum: signal.signal(signum, signal.SIG_DFL)
              for signum in _SIGNALS}
  try:
    yield
  finally:
    for signum, handler in previous.items():
      signal.signal(signum, handler)


def exit_now(status: int) -> None:
  """Flushes output and logs, then ends the process with `status` at once,
  without Python's and TensorFlow's slow teardown (the watchdog process ends
  with it)."""
  logging.shutdown()
  for stream in (sys.stdout, sys.stderr):
    try:
      stream.flush()
    except (OSError, ValueError):
      pass
  os._exit(status)  # pylint: disable=protected-access


def reachability(peers: dict) -> tuple:
  """(unreachable, reachable): 'worker 1 (host:port)' for each peer, split
  by whether it accepts a TCP connection within 2 s."""
  unreachable, reachable = [], []
  for name, address in peers.items():
    host, _, port = address.rpartition(':')
    try:
      with socket.create_connection((host.strip('[]'), int(port)), timeout=2):
        reachable.append(f'{name} ({address})')
    except (OSError, ValueError):
      unreachable.append(f'{name} ({address})')
  return unreachable, reachable


def step_timeout_message(seconds: float, peers: dict,
                         first_step: bool = False) -> str:
  """Why the watchdog ends a run whose steps stopped: names the peers that
  accept no connection (or says that all do)."""
  unreachable, reachable = reachability(peers)
  if unreachable:
    who = 'not reachable: ' + ', '.join(unreachable)
  else:
    who = ('all accept connections: ' + ', '.join(reachable) +
           ' (one of them may be stopped or stuck)')
  what = ('the first training step of the epoch did not finish within '
          f'{seconds:g} s (the larger of --step_timeout and '
          '--worker_join_timeout)' if first_step else
          f'no training step finished within {seconds:g} s (--step_timeout)')
  return (f'{what}: a worker died or hangs; {who}. Restart every worker '
          'with the same command: the run resumes from its last checkpoint.')


def join_timeout_message(seconds: float, peers: dict) -> str:
  """Names the peers that accept no connection (or all, if all do)."""
  unreachable, reachable = reachability(peers)
  if unreachable:
    missing = 'not reachable: ' + ', '.join(unreachable)
  else:
    missing = ('all accept connections but did not join: ' +
               ', '.join(reachable) + ' (still starting, or another cluster?)')
  return (f'the multi-worker cluster did not form within {seconds:g} s '
          f'(--worker_join_timeout); {missing}. Start every worker with the '
          'same command and its own TF_CONFIG (docs/distributed.md).')


def active():
  """The StopSignals whose handler is installed for SIGTERM, or None."""
  handler = signal.getsignal(signal.SIGTERM)
  owner = getattr(handler, '__self__', None)
  return owner if isinstance(owner, StopSignals) else None


@contextlib.contextmanager
def signals_deferred():
  """Inside, SIGINT/SIGTERM are only recorded (see pending_stop), so that a
  training step is never cut in half; a no-op without StopSignals."""
  stop = active()
  if stop is None:
    yield
    return
  stop.deferring = True
  stop._steps_started()  # pylint: disable=protected-access
  try:
    yield
  finally:
    stop.deferring = False
    stop._steps_ended()  # pylint: disable=protected-access
  if stop.requested is not None:
    raise RunInterrupted(stop.requested)


def step_done() -> None:
  """Called after each training step: tells the watchdog the run moves
  (see StopSignals.expect_steps); a no-op without StopSignals."""
  stop = active()
  if stop is not None:
    stop.step_done()


def pending_stop():
  """The signal received while deferred (SIGINT/SIGTERM), or None."""
  stop = active()
  return None if stop is None else stop.requested


def _watch(parent: int, signal_fd: int, grace_seconds: float) -> None:
  """The watchdog process: see the module docstring."""
  # Read unbuffered and split here: a buffered readline could take several
  # messages from the pipe and leave all but one unseen by select.
  control = sys.stdin.fileno()
  pending = b''
  stop_deadline = join_deadline = step_deadline = None
  signum = None
  join = steps = {}
  progressed = False  # Whether a step finished since the steps began.
  while True:
    deadlines = [d for d in (stop_deadline, join_deadline, step_deadline)
                 if d is not None]
    wait = max(0., min(deadlines) - time.monotonic()) if deadlines else None
    readable, _, _ = select.select([control, signal_fd], [], [], wait)
    messages = []
    if control in readable:
      chunk = os.read(control, 65536)
      if not chunk:
        return  # The training process ended.
      *lines, pending = (pending + chunk).split(b'\n')
      messages = [json.loads(line) for line in lines if line.strip()]
    for message in messages:
      if message.get('joined'):
        join_deadline = None
      elif 'join_seconds' in message:
        join = message
        join_deadline = time.monotonic() + message['join_seconds']
      elif 'step_seconds' in message:
        steps, progressed = message, False
        step_deadline = time.monotonic() + message['first_step_seconds']
      elif message.get('progress') and step_deadline is not None:
        progressed = True
        step_deadline = time.monotonic() + steps['step_seconds']
      elif message.get('steps_ended'):
        step_deadline = None
    if signal_fd in readable:
      for byte in os.read(signal_fd, 64):
        if byte in EXIT_STATUS and stop_deadline is None:
          signum = byte
          stop_deadline = time.monotonic() + grace_seconds
    now = time.monotonic()
    if stop_deadline is not None and now >= stop_deadline:
      _end(parent, f'{signal.Signals(signum).name} received and the run did '
           f'not stop within {grace_seconds:g} s (TensorFlow was blocked, '
           'e.g. waiting for other workers); the watchdog ended it. Rerun '
           'the same command to resume from the last checkpoint.')
    if join_deadline is not None and now >= join_deadline:
      _end(parent, join_timeout_message(join['join_seconds'], join['peers']))
    if step_deadline is not None and now >= step_deadline:
      _end(parent, step_timeout_message(
          steps['step_seconds'] if progressed else
          steps['first_step_seconds'], steps['peers'],
          first_step=not progressed))


def _end(parent: int, message: str) -> None:
  sys.stderr.write(f'error: {message}\n')
  sys.stderr.flush()
  try:
    os.kill(parent, signal.SIGKILL)
  except ProcessLookupError:
    pass
  sys.exit(0)


if __name__ == '__main__':
  # Signals of the terminal's process group are meant for the training
  # process; the watchdog ends when it does.
  signal.signal(signal.SIGINT, signal.SIG_IGN)
  signal.signal(signal.SIGTERM, signal.SIG_IGN)
  _watch(int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]))
