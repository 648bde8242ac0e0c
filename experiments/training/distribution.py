"""Choosing a tf.distribute strategy from a flag value, and who writes.

Every strategy runs the same custom training loop (experiments/training/loop.py):
'default' (one device), 'mirrored' (all local GPUs, or logical CPUs),
'multi_worker' (MultiWorkerMirroredStrategy over the workers of TF_CONFIG)
and 'tpu' (TPUStrategy). Create the strategy before any other TensorFlow op
of the process: multi-worker and TPU strategies configure the runtime.
"""

import contextlib
import json
import os
import uuid

import tensorflow as tf

from experiments import errors
from experiments import storage
from experiments.training import run_lock
from experiments.training import watchdog

STRATEGIES = ('default', 'mirrored', 'multi_worker', 'tpu')
# The record in a worker's temporary folder of the process that uses it.
WORKER_FOLDER_OWNER = '.owner.json'
# The errors a collective raises when a peer is gone (its health check or a
# transfer failed) or its timeout ran out.
_PEER_LOST_ERRORS = (tf.errors.UnavailableError,
                     tf.errors.DeadlineExceededError)


class WorkerLostError(errors.LeafAudioError):
  """A worker of a multi-worker run died or became unreachable mid-run;
  every worker must be restarted (the run resumes). Exit status 9."""
  exit_status = 9


def split_cpu(num_devices: int) -> None:
  """Splits the CPU into `num_devices` logical devices (before TF uses it).

  Lets MirroredStrategy run on one machine without GPUs, for tests and for
  trying a distributed configuration locally.
  """
  cpus = tf.config.list_physical_devices('CPU')
  tf.config.set_logical_device_configuration(
      cpus[0], [tf.config.LogicalDeviceConfiguration()] * num_devices)


def _tf_config() -> dict:
  text = os.environ.get('TF_CONFIG', '')
  if not text:
    return {}
  try:
    config = json.loads(text)
  except json.JSONDecodeError as error:
    raise errors.ConfigurationError(f'TF_CONFIG is not valid JSON ({error}); got '
                     f'{text[:200]!r}.') from error
  if not isinstance(config, dict):
    raise errors.ConfigurationError(f'TF_CONFIG must be a JSON object; got {text[:200]!r}.')
  return config


def _check_multi_worker_config() -> None:
  config = _tf_config()
  cluster = config.get('cluster', {})
  task = config.get('task', {})
  if not cluster or not task:
    raise errors.ConfigurationError(
        '--strategy=multi_worker needs TF_CONFIG with a "cluster" (e.g. '
        '{"worker": ["host1:port", "host2:port"]}) and this process\'s '
        '"task" ({"type": "worker", "index": i}); see docs/distributed.md. '
        f'Got TF_CONFIG={os.environ.get("TF_CONFIG", "")!r}.')
  task_type, index = task.get('type'), task.get('index')
  if task_type not in cluster or not isinstance(index, int) or not (
      0 <= index < len(cluster[task_type])):
    raise errors.ConfigurationError(
        f'TF_CONFIG task {task!r} is not in its cluster {cluster!r}: type '
        'must be one of the cluster\'s keys and index a position in its list.')


def make_strategy(name: str, tpu: str = '') -> tf.distribute.Strategy:
  """Returns the strategy `name`: one of STRATEGIES.

  'mirrored' uses every local GPU (or every logical CPU device when there is
  no GPU); 'multi_worker' reads the cluster from TF_CONFIG (every worker
  runs the same command with its own TF_CONFIG); 'tpu' connects to `tpu` (a
  name or grpc:// address; '' for the local TPU).

  Raises:
    errors.ConfigurationError (a ValueError): unknown name, a missing or inconsistent TF_CONFIG, or no TPU
      reachable.
  """
  if name == 'default':
    return tf.distribute.get_strategy()
  if name == 'mirrored':
    devices = [d.name for d in tf.config.list_logical_devices('GPU')]
    if not devices:
      devices = [d.name for d in tf.config.list_logical_devices('CPU')]
    return tf.distribute.MirroredStrategy(devices)
  if name == 'multi_worker':
    _check_multi_worker_config()
    _without_coordination_service()
    return tf.distribute.MultiWorkerMirroredStrategy()
  if name == 'tpu':
    try:
      resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu)
      tf.config.experimental_connect_to_cluster(resolver)
      tf.tpu.experimental.initialize_tpu_system(resolver)
    except (ValueError, RuntimeError, tf.errors.OpError) as error:
      first_line = str(error).strip().splitlines()[0] if str(error) else ''
      raise errors.ConfigurationError(
          f'--strategy=tpu: no TPU reachable with --tpu={tpu!r} ({first_line}). '
          'On a Cloud TPU VM pass --tpu=local; otherwise the TPU name '
          'or its grpc://host:8470 address.') from error
    return tf.distribute.TPUStrategy(resolver)
  raise errors.ConfigurationError(f'--strategy must be one of {", ".join(STRATEGIES)}; got '
                   f'{name!r}.')


def is_chief(strategy: tf.distribute.Strategy) -> bool:
  """Whether this process writes the run (always, but on non-chief workers).

  In a multi-worker cluster the chief is the 'chief' task if TF_CONFIG has
  one, else worker 0.
  """
  resolver = getattr(strategy, 'cluster_resolver', None)
  if resolver is None or not resolver.task_type:
    return True
  if resolver.task_type == 'chief':
    return True
  cluster = resolver.cluster_spec().as_dict()
  return (resolver.task_type == 'worker' and 'chief' not in cluster and
          resolver.task_id == 0)


def worker_name(strategy: tf.distribute.Strategy) -> str:
  """'worker_1' for a non-chief worker, '' for the chief or one process."""
  resolver = getattr(strategy, 'cluster_resolver', None)
  if resolver is None or not resolver.task_type:
    return ''
  return f'{resolver.task_type}_{resolver.task_id}'


def is_multi_worker(strategy: tf.distribute.Strategy) -> bool:
  """Whether this process is one of several workers of a cluster."""
  resolver = getattr(strategy, 'cluster_resolver', None)
  if resolver is None or not resolver.task_type:
    return False
  return sum(len(tasks) for tasks in
             resolver.cluster_spec().as_dict().values()) > 1


def cluster_peers() -> dict:
  """{'worker 1': 'host:port', ...}: TF_CONFIG's tasks other than this one
  (what a worker waits for while the cluster forms)."""
  config = _tf_config()
  task = config.get('task', {})
  peers = {}
  for task_type, addresses in config.get('cluster', {}).items():
    for index, address in enumerate(addresses):
      if (task_type, index) != (task.get('type'), task.get('index')):
        peers[f'{task_type} {index}'] = address
  return peers


@contextlib.contextmanager
def worker_loss_reported(strategy: tf.distribute.Strategy):
  """Inside, a collective that fails because a peer is gone (TensorFlow's
  UnavailableError or DeadlineExceededError) becomes one WorkerLostError
  naming the workers that accept no connection; a no-op for one process."""
  try:
    yield
  except _PEER_LOST_ERRORS as error:
    if not is_multi_worker(strategy):
      raise
    unreachable, reachable = watchdog.reachability(cluster_peers())
    who = ('not reachable: ' + ', '.join(unreachable) if unreachable else
           'all accept connections: ' + ', '.join(reachable))
    first_line = errors.one_line(error).split('. ', 1)[0][:200]
    raise WorkerLostError(
        f'a worker of the cluster was lost during training ({who}; '
        f'TensorFlow: {type(error).__name__}: {first_line}). Restart every '
        'worker with the same command: the run resumes from its last '
        'checkpoint.') from error


@contextlib.contextmanager
def worker_folder(folder: str):
  """Inside, `folder` (a non-chief worker's temporary checkpoint folder, one
  fixed name per worker and run) is this process's: emptied of what a
  killed earlier worker left, recorded as used by this process, and removed
  at the end.

  A folder whose record names a live process (another worker with the same
  name training into the same --model_dir on this host) is refused, never
  emptied.

  Raises:
    errors.RunFolderError: the folder is in use by a live process.
  """
  owner_path = storage.join(folder, WORKER_FOLDER_OWNER)
  if storage.exists(owner_path):
    try:
      owner = json.loads(storage.read_text(owner_path))
    except ValueError:
      owner = {}  # Cut short while written: its process was killed.
    if (isinstance(owner, dict) and owner and owner.get('pid') != os.getpid()
        and not run_lock.holder_is_gone(owner)):
      raise errors.RunFolderError(
          f'the worker folder {folder} is in use by '
          f'{run_lock.describe(owner)}: another run into the same '
          '--model_dir with the same worker on this host. Wait for it to end '
          'or use another --model_dir.')
  storage.remove_tree(folder)  # What a killed worker of this run left.
  storage.makedirs(folder)
  storage.write_atomically(owner_path, json.dumps(
      run_lock.owner_record('worker checkpoints', uuid.uuid4().hex)))
  try:
    yield folder
  finally:
    storage.remove_tree(folder)


def _without_coordination_service() -> None:
  """Has MultiWorkerMirroredStrategy run without TF's coordination service.

  With it, TensorFlow installs its own SIGTERM handler (its preemption
  notifier), which swallows SIGTERM while a worker waits for its cluster
  holding the GIL: only SIGKILL then stops it. Without it, SIGTERM keeps its
  default action during that wait (experiments/training/watchdog.py), and
  the strategy watches its peers with its own health check instead (the
  behaviour of TensorFlow before 2.10). An explicit, empty service
  configuration is what the strategy leaves in place.
  """
  from tensorflow.python.eager import context  # pylint: disable=g-import-not-at-top
  if context.context().coordination_service is None:
    context.context().configure_coordination_service(service_type='')
