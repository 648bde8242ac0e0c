"""Choosing a tf.distribute strategy from a flag value."""

import tensorflow as tf

STRATEGIES = ('default', 'mirrored', 'multi_worker', 'tpu')


def split_cpu(num_devices: int) -> None:
  """Splits the CPU into `num_devices` logical devices (before TF uses it).

  Lets MirroredStrategy run on one machine without GPUs, for tests and for
  trying a distributed configuration locally.
  """
  cpus = tf.config.list_physical_devices('CPU')
  tf.config.set_logical_device_configuration(
      cpus[0], [tf.config.LogicalDeviceConfiguration()] * num_devices)


def make_strategy(name: str, tpu: str = '') -> tf.distribute.Strategy:
  """Returns the strategy `name`: one of STRATEGIES.

  'mirrored' uses every local GPU (or every logical CPU device when there is
  no GPU); 'tpu' connects to `tpu` (a name or grpc:// address; '' for the
  local TPU). 'multi_worker' is refused with an explanation: Keras 3's fit
  does not support it.
  """
  if name == 'default':
    return tf.distribute.get_strategy()
  if name == 'mirrored':
    devices = [d.name for d in tf.config.list_logical_devices('GPU')]
    if not devices:
      devices = [d.name for d in tf.config.list_logical_devices('CPU')]
    return tf.distribute.MirroredStrategy(devices)
  if name == 'multi_worker':
    # Fails inside fit() with "Attempt to convert a value (PerReplica...)";
    # keras-team/keras#20585, tensorflow/tensorflow#72388.
    raise ValueError(
        '--strategy=multi_worker: Keras 3 (TensorFlow 2.16+) cannot run '
        'Model.fit under MultiWorkerMirroredStrategy (keras-team/keras#20585). '
        'Train on one machine with --strategy=mirrored (all its GPUs).')
  if name == 'tpu':
    resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu)
    tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
    return tf.distribute.TPUStrategy(resolver)
  raise ValueError(f'--strategy must be one of {", ".join(STRATEGIES)}; got '
                   f'{name!r}.')
