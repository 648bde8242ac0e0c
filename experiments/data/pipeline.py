"""From a dataset name to the tensors a model trains and evaluates on.

  load_dataset            'leaf_synthetic', 'folder' or a TFDS catalogue name
                          -> {'train', 'eval', 'test'} datasets of
                          {'audio': float32 [samples], 'label': ...}
  train_batches           shuffle, random crop (seeded, stateless), batch
  training_stream         endless training batches indexed by global step:
                          fresh shuffle per pass, exact restarts, sharded
                          per worker
  eval_clips              whole clips one at a time, [1, samples]
  random_crop             one example's crop, zero-padded when short

Every function works called directly with arguments; load_dataset and
train_batches are also gin configurables so a .gin file can set them.
Loudness normalisation is not applied to the data: the model normalises in
its graph (experiments.models.LoudnessNormalization), so exported models take
raw waveforms.

Which split plays which role (the log says it for every run):
  'train' trains; 'eval' picks the best epoch; 'test' is read only for the
  final report, so its numbers are not biased by that choice.
  - 'eval' is the 'validation' (or 'valid') split. A dataset without one
    gives 'eval' the last HELD_OUT_PERCENT % of 'train' (TFDS slicing,
    e.g. 'train[:90%]' / 'train[90%:]'); 'test' is never 'eval' unless you
    set eval_split='test' yourself, and then a warning says the test
    metrics are optimistic.
  - 'test' is the 'test' split. A dataset without one gives 'test' the last
    HELD_OUT_PERCENT % of 'train' as well (e.g. 'train[:80%]' /
    'train[80%:90%]' / 'train[90%:]' when both are missing).
  A role whose split holds no examples is an error.
"""

import dataclasses
import difflib
import re

from absl import logging
import gin
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from experiments.data import folder as folder_lib
from experiments.data import synthetic

SYNTHETIC_NAME = 'leaf_synthetic'
FOLDER_NAME = 'folder'
ROLES = ('train', 'eval', 'test')
# Splits read as 'eval' by default, in order of preference (nsynth: 'valid').
VALIDATION_SPLITS = ('validation', 'valid')
# Percent of 'train' held out for a missing validation or test split.
HELD_OUT_PERCENT = 10
_NAMESPACED = re.compile(r'^[\w\-]+:[A-Za-z]')


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
  """What a model needs to know about a loaded dataset.

  Attributes:
    name: str, TFDS' full name of the prepared data, e.g.
      'leaf_synthetic/1.0.0'.
    label_names: tuple of str; label i is label_names[i].
    sample_rate: int, Hz, of every waveform.
    multi_label: bool; True when labels are multi-hot float32 [num_classes],
      False when they are int32 class indices.
    num_examples: dict 'train' / 'eval' / 'test' -> int.
    split_names: dict 'train' / 'eval' / 'test' -> the TFDS split each role
      reads, e.g. {'train': 'train[:90%]', 'eval': 'train[90%:]', 'test':
      'test'}.
  """
  name: str
  label_names: tuple
  sample_rate: int
  multi_label: bool
  num_examples: dict
  split_names: dict = dataclasses.field(default_factory=dict)

  @property
  def num_classes(self):
    return len(self.label_names)


@gin.configurable
def load_dataset(name=SYNTHETIC_NAME, data_dir=None, folder=None,
                 audio_key='audio', label_key='label', sample_rate=16000,
                 eval_split=None, download=True, damaged_files='refuse'):
  """Prepares a dataset and returns its splits as float waveforms and labels.

  Args:
    name: str. 'leaf_synthetic' (default): the embedded synthetic set, built
      locally. 'folder': your WAV files under `folder` (see
      experiments/data/folder.py). Anything else: a TFDS catalogue name such
      as 'speech_commands' (optionally 'name/config:version').
    data_dir: str or None, where TFDS keeps prepared data (None: TFDS'
      default, ~/tensorflow_datasets).
    folder: str or None, the WAV folder when name is 'folder'.
    audio_key: str, the feature holding the waveform; 'outer/inner' names a
      nested feature. Integer audio is divided by its full scale (int16 by
      32768; int32/int64, TFDS' default, hold 16-bit PCM and are divided by
      32768 too); stereo is averaged to mono.
    label_key: str, the feature holding a ClassLabel or a
      Sequence(ClassLabel) (multi-label), e.g. 'label' or
      'instrument/family'.
    sample_rate: int, Hz. Folders are resampled to it; other datasets must
      already have it, or a ValueError names both rates.
    eval_split: str or None, the split used as 'eval' (to pick the best
      epoch); None means 'validation' (or 'valid') if the dataset has one,
      else the last 10% of 'train' (see the module docstring); never 'test'
      unless given. TFDS slicing works, e.g. 'validation[:100]'.
    download: bool, for catalogue datasets: download and prepare them when
      needed (True) or require them prepared in data_dir (False). The
      synthetic set and folders are always prepared locally.
    damaged_files: for name='folder': 'refuse' (default) stops at a damaged
      WAV file (truncated, corrupt, non-finite samples) with an error naming
      it; 'skip' leaves such files out and logs how many and which.

  Returns:
    (splits, info): splits maps 'train', 'eval' and 'test' to tf.data
    Datasets of {'audio': float32 [samples] in [-1, 1], 'label': int32 []
    or, for multi-label datasets, float32 [num_classes] multi-hot}; 'test' is
    the 'test' split, or the last 10% of 'train' when there is none. info is
    a DatasetInfo; info.split_names says which split plays which role.

  Raises:
    ValueError: for an unknown name (with close matches), a missing folder,
      a missing feature or split, an unsupported label feature, or a sample
      rate other than `sample_rate`.
  """
  builder = _prepared_builder(name, data_dir, folder, sample_rate, download,
                              damaged_files)
  features = builder.info.features
  audio_to_float = _audio_converter(name, features, audio_key, sample_rate)
  label_names, label_converter, multi_label = _label_converter(
      name, features, label_key)
  split_names = _split_names(name, builder, eval_split)

  num_examples = {role: _num_examples(builder, split)
                  for role, split in split_names.items()}
  for role in ROLES:
    if num_examples[role] == 0:
      raise ValueError(
          f'load_dataset: the {role!r} role reads split '
          f'{split_names[role]!r} of dataset {name!r}, which holds no '
          f'examples (splits: {_split_sizes(builder)}); add data or choose '
          'the evaluation split with eval_split.')

  def convert(example):
    return {'audio': audio_to_float(_lookup(example, audio_key)),
            'label': label_converter(_lookup(example, label_key))}

  splits = {
      role: builder.as_dataset(split=split, shuffle_files=False).map(
          convert, num_parallel_calls=tf.data.AUTOTUNE)
      for role, split in split_names.items()
  }
  info = DatasetInfo(
      name=builder.info.full_name,
      label_names=tuple(label_names),
      sample_rate=sample_rate,
      multi_label=multi_label,
      num_examples=num_examples,
      split_names=dict(split_names))
  return splits, info


def _prepare(make_builder):
  """make_builder() with its data prepared.

  Two processes (the workers of a multi-worker run) may prepare the same
  dataset at once; the slower one then finds the finished data in its way
  (FileExistsError) and reads that instead.
  """
  builder = make_builder()
  try:
    builder.download_and_prepare()
  except FileExistsError:
    logging.info('%s was prepared by another process meanwhile; using it.',
                 builder.name)
    builder = make_builder()
  return builder


def _prepared_builder(name, data_dir, folder, sample_rate, download,
                      damaged_files='refuse'):
  """The builder for `name`, with its data prepared in data_dir."""
  if name == SYNTHETIC_NAME:
    return _prepare(lambda: synthetic.LeafSynthetic(data_dir=data_dir))
  if name == FOLDER_NAME:
    if folder is None:
      raise ValueError("load_dataset: name='folder' reads your WAV files and "
                       'needs folder=<path to root/<label>/*.wav>; got '
                       'folder=None.')
    return _prepare(lambda: folder_lib.folder_builder(
        folder, sample_rate, data_dir, damaged_files))
  if folder is not None:
    raise ValueError(f'load_dataset: folder={folder!r} is only read when '
                     f"name='folder'; got name={name!r}.")
  _check_catalogue_name(name)
  if download:
    return _prepare(lambda: tfds.builder(name, data_dir=data_dir))
  builder = tfds.builder(name, data_dir=data_dir)
  if not builder.is_prepared():
    raise ValueError(
        f'load_dataset: dataset {name!r} is not prepared under '
        f'{builder.data_dir_root} and download=False; pass download=True '
        f'(needs network) or run `tfds build {name} --data_dir=...` first.')
  return builder


def _check_catalogue_name(name):
  """Raises a ValueError with close matches when TFDS does not know name."""
  if not isinstance(name, str) or not name:
    raise ValueError('load_dataset: name must be a dataset name such as '
                     f"'{SYNTHETIC_NAME}'; got {name!r}.")
  if _NAMESPACED.match(name):
    return  # 'namespace:dataset' (community datasets): TFDS checks it.
  base_name = name.split('/')[0].split(':')[0]
  # Community datasets would need the network just to list them.
  known = tfds.list_builders(with_community_datasets=False)
  if base_name in known:
    return
  matches = difflib.get_close_matches(
      base_name, list(known) + [SYNTHETIC_NAME, FOLDER_NAME], n=5)
  raise ValueError(
      f'load_dataset: unknown dataset {name!r}. Close matches: '
      f"{', '.join(matches) if matches else 'none'}. Use "
      f"name='{SYNTHETIC_NAME}' for the embedded synthetic set, "
      f"name='{FOLDER_NAME}' with folder=<path> for your own WAV files, or "
      'a TFDS catalogue name (see tfds.list_builders()).')


def _feature(name, features, key, argument):
  """features[key]; 'a/b' reaches feature 'b' nested in feature dict 'a'."""
  feature = features
  for part in key.split('/'):
    if not isinstance(feature, tfds.features.FeaturesDict) or (
        part not in feature.keys()):
      raise ValueError(
          f'load_dataset: dataset {name!r} has no feature {key!r} (from '
          f'{argument}); its features are {_feature_keys(features)}.')
    feature = feature[part]
  return feature


def _feature_keys(features, prefix=''):
  """Sorted keys of a FeaturesDict, nested ones as 'outer/inner'."""
  keys = []
  for key in features.keys():
    if isinstance(features[key], tfds.features.FeaturesDict):
      keys.extend(_feature_keys(features[key], f'{prefix}{key}/'))
    else:
      keys.append(prefix + key)
  return sorted(keys)


def _lookup(example, key):
  """example[key] for a decoded example; 'a/b' is example['a']['b']."""
  for part in key.split('/'):
    example = example[part]
  return example


def _audio_converter(name, features, audio_key, sample_rate):
  """A function: stored audio tensor -> float32 [samples] in [-1, 1]."""
  feature = _feature(name, features, audio_key, 'audio_key')
  feature_rate = getattr(feature, 'sample_rate', None)
  if feature_rate and feature_rate != sample_rate:
    raise ValueError(
        f'load_dataset: dataset {name!r} stores audio at {feature_rate} Hz but '
        f'sample_rate is {sample_rate} Hz; set sample_rate={feature_rate} (and '
        'the model to match) or resample the data first.')
  dtype = np.dtype(feature.np_dtype)
  if dtype.kind not in 'iuf':
    raise ValueError(
        f'load_dataset: feature {audio_key!r} of dataset {name!r} holds '
        f'{dtype} values; expected integer PCM or float waveforms.')
  shape = tuple(feature.shape)
  if len(shape) not in (1, 2):
    raise ValueError(
        f'load_dataset: feature {audio_key!r} of dataset {name!r} has shape '
        f'{shape}; expected [samples] or [samples, channels].')

  def to_float(audio):
    if dtype.kind == 'f':
      audio = tf.cast(audio, tf.float32)
    elif dtype.kind == 'u':  # Unsigned PCM (8-bit WAV) has its zero mid-range.
      zero = float(np.iinfo(dtype).max // 2 + 1)
      audio = (tf.cast(audio, tf.float32) - zero) / zero
    else:
      audio = tf.cast(audio, tf.float32) / _full_scale(dtype)
    if len(shape) == 2:
      audio = tf.reduce_mean(audio, axis=-1)  # Downmix to mono.
    return audio

  return to_float


def _full_scale(dtype):
  """The value of a full-scale sample for signed integer audio of dtype.

  int8 and int16 use their own range. Wider types hold 16-bit PCM: TFDS'
  Audio feature defaults to int64 and stores the samples of the (nearly
  always 16-bit) source files unscaled, as speech_commands, crema_d,
  voxceleb and voxforge do, so dividing them by 2^63 would give silence.
  """
  return float(2**(min(dtype.itemsize, 2) * 8 - 1))


def _label_converter(name, features, label_key):
  """(label names, stored label -> model label, multi_label)."""
  feature = _feature(name, features, label_key, 'label_key')
  if isinstance(feature, tfds.features.ClassLabel):
    return feature.names, lambda label: tf.cast(label, tf.int32), False
  if (isinstance(feature, tfds.features.Sequence) and
      isinstance(feature.feature, tfds.features.ClassLabel)):
    num_classes = feature.feature.num_classes

    def multi_hot(labels):
      counts = tf.reduce_sum(tf.one_hot(labels, num_classes), axis=0)
      return tf.minimum(counts, 1.)  # A label listed twice is still 1.

    return feature.feature.names, multi_hot, True
  raise ValueError(
      f'load_dataset: feature {label_key!r} of dataset {name!r} is '
      f'{type(feature).__name__}; expected a ClassLabel (one class per clip) '
      'or a Sequence(ClassLabel) (multi-label).')


def _split_sizes(builder):
  return {split: info.num_examples
          for split, info in builder.info.splits.items()}


def _num_examples(builder, split):
  try:
    return builder.info.splits[split].num_examples
  except ValueError:  # TFDS: "Instruction ... corresponds to no data!"
    return 0


def _held_out_slices(builder, parts):
  """Slices of 'train' for training and `parts` held-out roles.

  Each held-out slice is HELD_OUT_PERCENT % of 'train', as TFDS percent
  slices (e.g. 'train[:80%]', 'train[80%:90%]', 'train[90%:]'); for a
  'train' split so small that a percent slice would be empty, at least one
  example each, as index slices.
  """
  ends = [100 - HELD_OUT_PERCENT * (parts - k) for k in range(parts + 1)]
  bounds = [0] + ends + [100]
  names = ['train[' + (f'{a}%' if a else '') + ':' +
           (f'{b}%' if b < 100 else '') + ']'
           for a, b in zip(bounds[:-1], bounds[1:])][:parts + 1]
  if all(_num_examples(builder, name) for name in names):
    return names
  total = _num_examples(builder, 'train')
  held = max(1, total * HELD_OUT_PERCENT // 100)
  start = total - held * parts
  return [f'train[:{start}]'] + [
      f'train[{start + k * held}:{start + (k + 1) * held}]'
      for k in range(parts)]


def _split_names(name, builder, eval_split):
  """{'train': split, 'eval': split, 'test': split} in TFDS split syntax.

  See the module docstring for the rules; logs which split plays which role.
  """
  available = list(builder.info.splits.keys())
  if 'train' not in available:
    raise ValueError(f"load_dataset: dataset {name!r} has no 'train' split; "
                     f'its splits are {available}.')
  validation = next((s for s in VALIDATION_SPLITS if s in available), None)
  carve_eval = eval_split is None and validation is None
  carve_test = 'test' not in available
  slices = _held_out_slices(builder, carve_eval + carve_test)
  names = {
      'train': 'train' if len(slices) == 1 else slices[0],
      'eval': eval_split or validation or slices[1],
      'test': 'test' if not carve_test else slices[-1],
  }
  for role, split in names.items():
    # 'train[:90%]' and 'train+validation' name their base splits first.
    base_split = re.split(r'[\[+]', split)[0]
    if base_split not in available:
      raise ValueError(
          f'load_dataset: dataset {name!r} has no split {base_split!r} for '
          f"'{role}'; its splits are {available}. Choose the evaluation "
          'split with eval_split.')
  logging.info(
      "load_dataset: %s: 'train' reads %r, 'eval' (picks the best epoch) "
      "reads %r, 'test' (final report only) reads %r.", name, names['train'],
      names['eval'], names['test'])
  if carve_eval:
    logging.warning(
        "load_dataset: dataset %r has no validation split (it has %s); "
        "'eval' is %d%% of 'train' (%r), not 'test'.", name,
        available, HELD_OUT_PERCENT, names['eval'])
  if carve_test:
    logging.warning(
        "load_dataset: dataset %r has no 'test' split (it has %s); 'test' is "
        "%d%% of 'train' (%r), held out from training.", name,
        available, HELD_OUT_PERCENT, names['test'])
  if eval_split is not None and (
      eval_split == names['test'] or
      re.split(r'[\[+]', eval_split)[0] == names['test']):
    logging.warning(
        "load_dataset: 'eval' (%r) and 'test' (%r) read the same split: the "
        'best epoch is chosen on test data, so the test metrics are '
        'optimistic.', names['eval'], names['test'])
  if eval_split is not None and names['train'] == 'train' and re.split(
      r'[\[+]', eval_split)[0] == 'train':
    logging.warning(
        "load_dataset: eval_split %r is part of 'train', which trains on all "
        'of it: the eval metrics are measured on training data.', eval_split)
  return names


@gin.configurable
def train_batches(dataset, batch_size, crop_samples=16000, shuffle_buffer=1000,
                  seed=None):
  """Shuffled batches of random fixed-length crops, for training.

  Clips shorter than crop_samples are zero-padded at the end first (the
  original release's `align`). Crop offsets come from stateless random ops
  whose seeds are drawn from `seed`, so the same seed gives the same batches
  on every run, while every epoch (new iteration) draws new crops and a new
  order.

  Args:
    dataset: tf.data.Dataset of {'audio': float32 [samples], 'label': ...}
      (a split from load_dataset).
    batch_size: int, examples per batch; the last batch may be smaller.
    crop_samples: int, samples per crop (16000: 1 s at 16 kHz).
    shuffle_buffer: int, examples in the shuffle buffer; 0 keeps the order.
    seed: int or None; None draws fresh randomness each run.

  Returns:
    tf.data.Dataset of (audio float32 [batch, crop_samples], label
    [batch] int32 or [batch, num_classes] float32).
  """
  _check_example_dataset('train_batches', dataset)
  batch_size = _check_positive_int('train_batches', 'batch_size', batch_size)
  crop_samples = _check_positive_int('train_batches', 'crop_samples',
                                     crop_samples)
  if shuffle_buffer:
    dataset = dataset.shuffle(
        _check_positive_int('train_batches', 'shuffle_buffer', shuffle_buffer),
        seed=seed, reshuffle_each_iteration=True)
  # Pairs of int64: one stateless seed [2] per example.
  crop_seeds = tf.data.Dataset.random(
      seed=seed, rerandomize_each_iteration=True).batch(2)
  dataset = tf.data.Dataset.zip((dataset, crop_seeds)).map(
      lambda example, crop_seed: (random_crop(example['audio'], crop_samples,
                                              crop_seed), example['label']),
      num_parallel_calls=tf.data.AUTOTUNE)
  return dataset.batch(batch_size, drop_remainder=False).prefetch(
      tf.data.AUTOTUNE)


def training_stream(dataset, batch_size, crop_samples=16000,
                    shuffle_buffer=1000, seed=0, first_batch=0,
                    num_examples=None, input_context=None,
                    augmentation=None):
  """The endless, deterministic stream of training batches, from any batch.

  The examples are read in passes, each in a fresh order (a shuffle
  seeded with `seed`, reshuffled each pass), and the example at position i
  of the whole stream is cropped with the stateless seed (seed, i). The
  passes are concatenated and cut into batches of `batch_size` (batches may
  straddle two passes, so every batch is full). Batch g of the
  stream is therefore a pure function of (seed, g): a run that restarts at
  global batch g (`first_batch`) sees exactly the batches an uninterrupted
  run saw from g on, and an epoch of any number of steps is just the next
  `steps` batches.

  With `input_context` (from `strategy.distribute_datasets_from_function`),
  input pipeline k of n keeps the examples k, k + n, ... of the stream and
  batches them by the per-replica batch size, so the replicas of one global
  step together hold exactly the examples of global batch g.

  Args:
    dataset: tf.data.Dataset of {'audio': float32 [samples], 'label': ...}
      (a split from load_dataset), read in the same order every time.
    batch_size: int, the global batch (examples per step, all replicas).
    crop_samples: int, samples per crop.
    shuffle_buffer: int, examples in the shuffle buffer; 0 keeps the order.
    seed: int, seeds the order and the crops.
    first_batch: int >= 0, the global batch the stream starts at.
    num_examples: int, examples per pass (checked to be > 0); None counts
      them (one read).
    input_context: tf.distribute.InputContext or None.
    augmentation: None, or a function (crop float32 [crop_samples], seed
      int64 [2]) -> crop of the same shape, e.g. an
      experiments.data.augmentation.WaveformAugmentation; it gets the crop's
      stateless seed (seed, i), so augmented batches are as exactly
      reproducible as the crops. Labels are never changed.

  Returns:
    tf.data.Dataset, endless, of (audio float32 [per-replica batch,
    crop_samples], label [per-replica batch] int32 or [per-replica batch,
    num_classes] float32).
  """
  _check_example_dataset('training_stream', dataset)
  batch_size = _check_positive_int('training_stream', 'batch_size',
                                   batch_size)
  crop_samples = _check_positive_int('training_stream', 'crop_samples',
                                     crop_samples)
  if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
    raise ValueError(f'training_stream: seed must be an integer; got '
                     f'{seed!r}.')
  if (isinstance(first_batch, bool) or
      not isinstance(first_batch, (int, np.integer)) or first_batch < 0):
    raise ValueError('training_stream: first_batch must be an integer >= 0; '
                     f'got {first_batch!r}.')
  if num_examples is None:
    num_examples = count_examples(dataset)
  if num_examples <= 0:
    raise ValueError('training_stream: the training split holds no '
                     'examples.')
  first_example = int(first_batch) * batch_size
  examples = dataset
  if shuffle_buffer:
    # A fixed seed with reshuffle_each_iteration: pass p of repeat() gets
    # the p-th order of one deterministic sequence of orders.
    examples = examples.shuffle(
        _check_positive_int('training_stream', 'shuffle_buffer',
                            shuffle_buffer),
        seed=int(seed), reshuffle_each_iteration=True)
  # Skipping before the crops are computed only reads the skipped examples.
  examples = examples.repeat().skip(first_example)
  positions = tf.data.Dataset.range(first_example, np.iinfo(np.int64).max)
  stream = tf.data.Dataset.zip((examples, positions)).map(
      lambda example, position: (example, tf.stack(
          [tf.constant(int(seed), tf.int64), position])))
  per_replica_batch = batch_size
  if input_context is not None:
    per_replica_batch = input_context.get_per_replica_batch_size(batch_size)
    if input_context.num_input_pipelines > 1:
      stream = stream.shard(input_context.num_input_pipelines,
                            input_context.input_pipeline_id)

  def crop(example, crop_seed):
    audio = random_crop(example['audio'], crop_samples, crop_seed)
    if augmentation is not None:
      audio = tf.ensure_shape(augmentation(audio, crop_seed), [crop_samples])
    return audio, example['label']

  stream = stream.map(crop, num_parallel_calls=tf.data.AUTOTUNE)
  return stream.batch(per_replica_batch, drop_remainder=True).prefetch(
      tf.data.AUTOTUNE)


def count_examples(dataset) -> int:
  """The number of elements of a finite dataset (its cardinality if known)."""
  cardinality = int(dataset.cardinality())
  if cardinality >= 0:
    return cardinality
  return int(dataset.reduce(np.int64(0), lambda count, _: count + 1))


def random_crop(audio, crop_samples, seed):
  """A random window of crop_samples from one clip, zero-padded if short.

  Args:
    audio: float [samples].
    crop_samples: int, the window length in samples.
    seed: int tensor [2], a stateless random seed; the offset is a pure
      function of it.

  Returns:
    float [crop_samples]: audio[offset:offset + crop_samples] with offset
    uniform in [0, samples - crop_samples], or audio followed by zeros when
    samples <= crop_samples.
  """
  audio = tf.convert_to_tensor(audio)
  padding = tf.maximum(crop_samples - tf.shape(audio)[0], 0)
  audio = tf.pad(audio, [[0, padding]])
  offset = tf.random.stateless_uniform(
      [], seed=tf.cast(seed, tf.int64), minval=0,
      maxval=tf.shape(audio)[0] - crop_samples + 1, dtype=tf.int32)
  crop = audio[offset:offset + crop_samples]
  crop.set_shape([crop_samples])
  return crop


def eval_clips(dataset):
  """Whole clips one at a time, for evaluation.

  The model splits each clip into 1 s windows and pools their predictions
  itself, so clips keep their full, varying length.

  Args:
    dataset: tf.data.Dataset of {'audio': float32 [samples], 'label': ...}.

  Returns:
    tf.data.Dataset of (audio float32 [1, samples], label [1] int32 or
    [1, num_classes] float32).
  """
  _check_example_dataset('eval_clips', dataset)
  return dataset.map(
      lambda example: (example['audio'][tf.newaxis],
                       example['label'][tf.newaxis]),
      num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def _check_example_dataset(owner, dataset):
  spec = getattr(dataset, 'element_spec', None)
  if not isinstance(spec, dict) or not {'audio', 'label'} <= set(spec):
    raise ValueError(
        f"{owner}: dataset must yield dicts with 'audio' and 'label' (a split "
        f'from load_dataset); got elements {spec!r}.')


def _check_positive_int(owner, name, value):
  if (isinstance(value, bool) or not isinstance(value, (int, np.integer)) or
      value <= 0):
    raise ValueError(f'{owner}: {name} must be a positive integer; got '
                     f'{value!r}.')
  return int(value)
