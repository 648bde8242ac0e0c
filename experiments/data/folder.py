"""WavFolder: a TFDS builder over the user's own folder of labelled WAV files.

Two layouts are understood (label = the name of the folder holding a file):

  root/<label>/*.wav                 split by a hash of each file's path
                                     relative to root: 80% train, 10%
                                     validation, 10% test, the same on
                                     every machine and stable as files come
                                     and go
  root/train/<label>/*.wav           the user's own splits; validation and
  root/validation/<label>/*.wav      test are optional, and their labels
  root/test/<label>/*.wav            must also appear in train. A missing
                                     validation (or test) folder is carved
                                     from train by the same hash: the train
                                     files that hash to validation (test),
                                     about 10% each, are moved there

Label names are the sorted label folder names (of train, in the second
layout), so label indices agree across splits. Only direct children of a
label folder are read; other files (not .wav, hidden, in subfolders) are
skipped with one logged warning that names them. A label folder named
'train', 'validation' or 'test' at the top level is read as a split folder.

Every file is read with `wav.read_wav`, averaged to mono, resampled to the
configured rate and stored as int16 PCM (`audio_feature.pcm16_audio`, like
LeafSynthetic).

Damaged files (truncated, corrupt, not WAV, non-finite samples):
damaged_files='refuse' (the default) stops the build with an error naming
the file; damaged_files='skip' leaves them out and logs how many and which,
at the build and again whenever the prepared data is loaded (the list is
kept in the dataset's metadata). The two choices cache separately. A failed
build removes the empty cache folders it made.

Caching: the prepared data lives in
`<data_dir>/wav_folder/<config name>/1.0.0`, where the config name is

  <folder name>-<hash of the absolute root path>-<rate>hz-<fingerprint>

and the fingerprint hashes the relative path, size and modification time of
every file that is read. Different folders and rates therefore cache
separately, and adding, removing, rewriting or touching a file gives a new
name, so the next `download_and_prepare` rebuilds without any special flag
and a builder never serves data from an older state of the folder. (The
alternative, one cache per folder checked against a stored fingerprint,
would need every caller to pass a force-rebuild flag at the right time.)
After preparing (or finding) its cache, a builder deletes the caches of
the same folder and rate with another fingerprint, so a folder keeps one
copy on disk, but never one that a live process reads: `as_dataset`
records its process's use of a cache until the process exits, and the
clean-up keeps a cache with a live user (experiments/data/cache_use.py).
"""

import collections
import dataclasses
import hashlib
import os
import re

from absl import logging
import numpy as np
import tensorflow_datasets as tfds

from experiments import storage
from experiments.data import audio_feature
from experiments.data import cache_use
from experiments.data import wav

SPLIT_FOLDERS = ('train', 'validation', 'test')
DAMAGED_FILE_POLICIES = ('refuse', 'skip')
# Percent of files per split when the folder has no split folders.
HASH_SPLIT_PERCENT = (('train', 80), ('validation', 10), ('test', 10))
WAV_EXTENSION = '.wav'
# How many skipped files a warning names before it just counts the rest.
_MAX_NAMED_SKIPPED = 10
# The dataset metadata entry listing the files left out as damaged.
_DAMAGED_KEY = 'damaged_files_skipped'
_CHANNEL_WORDS = {1: 'mono', 2: 'stereo'}


@dataclasses.dataclass(frozen=True)
class FolderLayout:
  """What `scan_folder` found: the files to read and their labels.

  Attributes:
    root: str, the folder's absolute real path.
    label_names: tuple of str, sorted; label i is label_names[i].
    files: dict split name -> tuple of (path relative to root, label index),
      only for splits with at least one file.
    skipped: tuple of str, relative paths that are not read.
  """
  root: str
  label_names: tuple
  files: dict
  skipped: tuple

  @property
  def num_files(self):
    return sum(len(split_files) for split_files in self.files.values())


def scan_folder(root):
  """Finds the labelled .wav files under `root`; see the module docstring.

  Args:
    root: str or os.PathLike, the dataset folder: a local path (`~`
      expanded, symbolic links resolved) or a URL of any TensorFlow file
      system (gs://bucket/data).

  Returns:
    A FolderLayout.

  Raises:
    ValueError: when root is missing or not a directory, has no label
      folders, a label folder has no .wav files, a split folder's label is
      not in train, or the files leave the train split empty.
  """
  root_arg = os.fspath(root)
  root = (storage.expand(root_arg) if storage.is_url(root_arg) else
          os.path.realpath(os.path.expanduser(root_arg)))
  if not storage.exists(root):
    raise ValueError(f'WavFolder: the folder {root_arg!r} does not exist '
                     f'(resolved to {root!r}).')
  if not storage.is_dir(root):
    raise ValueError(f'WavFolder: {root_arg!r} is a file; expected a folder '
                     'holding one subfolder of .wav files per label.')
  skipped = []
  folders = _visible_subfolders(root, '', skipped)
  if any(name in SPLIT_FOLDERS for name in folders):
    label_names, files = _scan_split_folders(root, folders, skipped)
  else:
    label_names, files = _scan_and_hash_split(root, folders, skipped)
  return FolderLayout(root=root, label_names=label_names, files=files,
                      skipped=tuple(sorted(skipped)))


def _scan_split_folders(root, folders, skipped):
  """(label names, files) for root/<split>/<label>/*.wav."""
  split_folders = [name for name in SPLIT_FOLDERS if name in folders]
  others = sorted(set(folders) - set(split_folders))
  if others:
    raise ValueError(
        f'WavFolder: {root!r} mixes split folders {split_folders} with '
        f'other folders {others}; use either root/<label>/*.wav or '
        'root/<split>/<label>/*.wav with splits train, validation, test.')
  if 'train' not in split_folders:
    raise ValueError(
        f'WavFolder: {root!r} has split folders {split_folders} but no '
        "'train' folder; training needs root/train/<label>/*.wav.")
  by_split = {
      split: _scan_labels(root, split,
                          _visible_subfolders(root, split, skipped), skipped)
      for split in split_folders}
  label_names = tuple(sorted(by_split['train']))
  for split, labels in by_split.items():
    unknown = sorted(set(labels) - set(label_names))
    if unknown:
      raise ValueError(
          f'WavFolder: label folders {unknown} appear in {split!r} but not '
          f'in train under {root!r}; a model cannot learn labels it never '
          'trains on. Add train examples or remove those folders.')
  files = {split: tuple((path, label_names.index(label))
                        for label, paths in labels.items() for path in paths)
           for split, labels in by_split.items()}
  # Validation (and test) carved from train when their folders are missing.
  missing = [split for split in SPLIT_FOLDERS if split not in files]
  if missing:
    kept, carved = [], collections.defaultdict(list)
    for path, label in files['train']:
      split = hash_split(path)
      (carved[split] if split in missing else kept).append((path, label))
    files['train'] = tuple(kept)
    files.update({split: tuple(carved[split]) for split in missing
                  if carved[split]})
    if not kept:
      raise ValueError(
          f'WavFolder: after carving {missing} from the '
          f'{sum(map(len, carved.values()))} files '
          f'of {storage.join(root, "train")!r} by hash, none is left to '
          'train on; add train files or give validation and test folders.')
  _check_every_label_trains(root, label_names, files)
  return label_names, files


def _scan_and_hash_split(root, folders, skipped):
  """(label names, files) for root/<label>/*.wav, split by hash_split."""
  labels = _scan_labels(root, '', folders, skipped)
  label_names = tuple(sorted(labels))
  assigned = collections.defaultdict(list)
  for label, paths in labels.items():
    for path in paths:
      assigned[hash_split(path)].append((path, label_names.index(label)))
  files = {split: tuple(sorted(assigned[split]))
           for split, _ in HASH_SPLIT_PERCENT if assigned[split]}
  if 'train' not in files:
    raise ValueError(
        f'WavFolder: the hash split of the {sum(map(len, files.values()))} '
        f'.wav files under {root!r} put none in train; add more files or '
        'give the splits yourself with root/train/<label>/*.wav.')
  _check_every_label_trains(root, label_names, files)
  return label_names, files


def _check_every_label_trains(root, label_names, files):
  """Raises ValueError when a label has no file in the train split.

  A model would get an output for a class it never sees in training; this
  happens when a label's only files are hashed (or carved) into validation
  or test.
  """
  trained = {label for _, label in files.get('train', ())}
  for index, name in enumerate(label_names):
    if index in trained:
      continue
    elsewhere = sorted(f'{path} ({split})' for split, split_files in
                       files.items() for path, label in split_files
                       if label == index)
    raise ValueError(
        f'WavFolder: label {name!r} under {root!r} has no training file: '
        f'its files {", ".join(elsewhere)} all went to other splits by the '
        'hash of their paths, and a model cannot learn a label it never '
        'trains on. Add more files for it, or give the splits yourself '
        '(root/train/<label>/*.wav).')


def _visible_subfolders(root, relative, skipped):
  """Sorted subfolder names of root/relative; hidden entries go to skipped."""
  folders = []
  for name in storage.listdir(storage.join(root, relative)):
    path = os.path.join(relative, name)
    if name.startswith('.'):
      skipped.append(path)
    elif storage.is_dir(storage.join(root, path)):
      folders.append(name)
    else:
      skipped.append(path)
  return folders


def _scan_labels(root, relative, label_folders, skipped):
  """{label: sorted relative .wav paths} for label_folders in root/relative."""
  where = storage.join(root, relative)
  if not label_folders:
    raise ValueError(
        f'WavFolder: no label folders in {where!r}; expected one subfolder '
        'per label holding its .wav files, e.g. dog/bark1.wav.')
  labels = {}
  for label in label_folders:
    paths = []
    for name in storage.listdir(storage.join(where, label)):
      path = os.path.join(relative, label, name)
      if (name.lower().endswith(WAV_EXTENSION) and not name.startswith('.') and
          storage.is_file(storage.join(root, path))):
        paths.append(path)
      else:
        skipped.append(path)
    if not paths:
      raise ValueError(
          f'WavFolder: label folder {label!r} ({storage.join(where, label)!r}) '
          'holds no .wav files.')
    labels[label] = paths
  return labels


def hash_split(relative_path):
  """'train', 'validation' or 'test' for a file, from a hash of its path.

  The path is taken relative to the dataset root with '/' separators, so the
  assignment is the same on every machine and does not move when other files
  are added or removed.
  """
  key = relative_path.replace(os.sep, '/').encode('utf-8')
  percent = int.from_bytes(hashlib.sha256(key).digest()[:8], 'big') % 100
  for split, share in HASH_SPLIT_PERCENT:
    if percent < share:
      return split
    percent -= share
  raise AssertionError('HASH_SPLIT_PERCENT must sum to 100.')


def _size_and_mtime_ns(path):
  """(bytes, modification time in ns) of a file. Local files use os.stat,
  whose times have the file system's resolution (tf.io.gfile's local stat
  rounds them to seconds); other file systems use tf.io.gfile (ram:// reports
  0 as the time)."""
  if not storage.is_url(path):
    stat = os.stat(path)
    return stat.st_size, stat.st_mtime_ns
  stat = storage.gfile.stat(path)
  return stat.length, stat.mtime_nsec


def fingerprint(layout, damaged_files='refuse'):
  """12 hex digits hashing every read file's relative path, size and mtime
  (and the damaged-file policy when it is not the default)."""
  digest = hashlib.sha256()
  if damaged_files != 'refuse':
    digest.update(f'damaged_files={damaged_files}\n'.encode('utf-8'))
  for split in sorted(layout.files):
    for path, _ in layout.files[split]:
      size, mtime_ns = _size_and_mtime_ns(storage.join(layout.root, path))
      digest.update(f'{split}\0{path}\0{size}\0{mtime_ns}\n'
                    .encode('utf-8'))
  return digest.hexdigest()[:12]


def cache_prefix(root, sample_rate):
  """The config name without its fingerprint: one per folder and rate."""
  slug = re.sub(r'[^A-Za-z0-9_]+', '_', storage.basename(root)).strip('_')
  root_hash = hashlib.sha256(root.encode('utf-8')).hexdigest()[:8]
  return f'{slug[:40] or "root"}-{root_hash}-{sample_rate}hz-'


@dataclasses.dataclass(eq=False)
class WavFolderConfig(tfds.core.BuilderConfig):
  """Which folder to read and at which rate; build it with `for_folder`.

  Attributes:
    root: str, absolute real path of the dataset folder.
    sample_rate: int, Hz; every file is resampled to it.
    layout: FolderLayout scanned when the config was made (None: the builder
      scans root itself).
    damaged_files: 'refuse' or 'skip'; see the module docstring.
  """
  root: str = ''
  sample_rate: int = 16000
  layout: FolderLayout | None = dataclasses.field(default=None, repr=False)
  damaged_files: str = 'refuse'

  @classmethod
  def for_folder(cls, root, sample_rate=16000, damaged_files='refuse'):
    """Scans `root` and names the config after the folder, rate and files."""
    if (isinstance(sample_rate, bool) or
        not isinstance(sample_rate, (int, np.integer)) or sample_rate <= 0):
      raise ValueError('WavFolder: sample_rate must be a positive integer '
                       f'number of Hz; got {sample_rate!r}.')
    if damaged_files not in DAMAGED_FILE_POLICIES:
      raise ValueError(
          f'WavFolder: damaged_files must be one of {DAMAGED_FILE_POLICIES}; '
          f'got {damaged_files!r}.')
    layout = scan_folder(root)
    files_fingerprint = fingerprint(layout, damaged_files)
    return cls(
        name=cache_prefix(layout.root, sample_rate) + files_fingerprint,
        description=(f'{layout.num_files} WAV files under {layout.root}, '
                     f'mono at {sample_rate} Hz; file list fingerprint '
                     f'{files_fingerprint}.'),
        root=layout.root,
        sample_rate=int(sample_rate),
        layout=layout,
        damaged_files=damaged_files)


class WavFolder(tfds.core.GeneratorBasedBuilder):
  """Labelled WAV files from a folder; see the module docstring.

  Make one with `folder_builder(root, sample_rate)`, or pass
  `config=WavFolderConfig.for_folder(root, sample_rate)`.
  """

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'First release.'}
  # TFDS 4.9 derives this from importlib_resources, a package it does not
  # install on Python >= 3.9 (tensorflow/datasets#11212); naming the file
  # directly avoids that path.
  code_path = tfds.core.Path(__file__)

  def __init__(self, *, config=None, **kwargs):
    if not isinstance(config, WavFolderConfig):
      raise ValueError('WavFolder: config must be a WavFolderConfig, e.g. '
                       'WavFolderConfig.for_folder(root, sample_rate); got '
                       f'{config!r}. folder_builder(root) does this for you.')
    self._layout = config.layout or scan_folder(config.root)
    self._source_formats = collections.defaultdict(list)
    self._silent = []
    self._damaged = []
    self._cache_use = None
    super().__init__(config=config, **kwargs)
    if self.is_prepared():
      self._log_damaged(self.info.metadata.get(_DAMAGED_KEY, []) if
                        self.info.metadata else [])

  def _info(self):
    return self.dataset_info_from_configs(
        description=__doc__,
        features=tfds.features.FeaturesDict({
            'audio': audio_feature.pcm16_audio(
                self.builder_config.sample_rate),
            'label': tfds.features.ClassLabel(
                names=self._layout.label_names),
        }),
        supervised_keys=('audio', 'label'),
        metadata=tfds.core.MetadataDict(),
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # Nothing to download.
    return {split: self._generate_examples(files)
            for split, files in self._layout.files.items()}

  def _generate_examples(self, files):
    target_rate = self.builder_config.sample_rate
    for relative_path, label in files:
      try:
        samples, source_rate = wav.read_wav(
            storage.join(self._layout.root, relative_path))
      except ValueError as error:
        if self.builder_config.damaged_files == 'refuse':
          refusal = (wav.DamagedWavError if isinstance(
              error, wav.DamagedWavError) else ValueError)
          raise refusal(
              f'WavFolder: {error} To leave damaged files out (counted and '
              "named in the log), set load_dataset.damaged_files = 'skip'."
          ) from error
        self._damaged.append(f'{relative_path}: {error}')
        continue
      self._source_formats[(source_rate, samples.shape[1])].append(
          relative_path)
      audio = wav.to_int16(
          wav.resample(wav.to_mono(samples), source_rate, target_rate))
      if not audio.any():
        self._silent.append(relative_path)
      yield relative_path, {'audio': audio, 'label': label}

  def _download_and_prepare(self, *args, **kwargs):
    if self._layout.skipped:
      named = ', '.join(self._layout.skipped[:_MAX_NAMED_SKIPPED])
      more = len(self._layout.skipped) - _MAX_NAMED_SKIPPED
      logging.warning(
          'WavFolder: skipping %d entries under %s that are not .wav files in '
          'a label folder: %s%s', len(self._layout.skipped), self._layout.root,
          named, f' and {more} more' if more > 0 else '')
    self._source_formats.clear()
    self._silent.clear()
    self._damaged.clear()
    result = super()._download_and_prepare(*args, **kwargs)
    self.info.metadata[_DAMAGED_KEY] = sorted(self._damaged)
    self._log_conversions()
    self._log_silent()
    self._log_damaged(self._damaged)
    return result

  def download_and_prepare(self, *args, **kwargs):
    """Prepares the data (unless prepared), then removes this folder's
    outdated caches that no process reads; a failed build leaves no empty
    cache folders."""
    try:
      result = super().download_and_prepare(*args, **kwargs)
    except BaseException:
      self._remove_empty_cache_folders()
      raise
    self._remove_stale_caches()
    return result

  def as_dataset(self, *args, **kwargs):
    """tfds' as_dataset; first records that this process reads the cache
    (until it exits), so that no other process's clean-up deletes it."""
    if self._cache_use is None:
      self._cache_use = cache_use.start_using(self.data_dir_root / self.name,
                                              self.builder_config.name)
    return super().as_dataset(*args, **kwargs)

  def _remove_empty_cache_folders(self):
    config_dir = self.data_dir_root / self.name / self.builder_config.name
    for folder_path in (config_dir, config_dir.parent):
      try:
        if folder_path.exists() and not any(folder_path.iterdir()):
          folder_path.rmdir()
      except OSError:
        return  # Another process is using it.

  def _log_damaged(self, damaged):
    if damaged:
      named = '; '.join(damaged[:_MAX_NAMED_SKIPPED])
      more = len(damaged) - _MAX_NAMED_SKIPPED
      logging.warning(
          'WavFolder: %d damaged files under %s are left out '
          "(damaged_files='skip'): %s%s", len(damaged), self._layout.root,
          named, f' and {more} more' if more > 0 else '')

  def _log_conversions(self):
    """One line per distinct source format that needed converting, naming
    its files (the first _MAX_NAMED_SKIPPED)."""
    target_rate = self.builder_config.sample_rate
    for (rate, channels), paths in sorted(self._source_formats.items()):
      if rate == target_rate and channels == 1:
        continue
      verb = 'resampling' if rate != target_rate else 'downmixing'
      logging.info('WavFolder: %s %d Hz %s -> %d Hz mono for %d files: %s',
                   verb, rate,
                   _CHANNEL_WORDS.get(channels, f'{channels} channels'),
                   target_rate, len(paths), _named(sorted(paths)))

  def _log_silent(self):
    """Files that are digital silence at 16-bit resolution are kept (with
    their folder's label) but named: usually a recording gone wrong."""
    if self._silent:
      logging.warning(
          'WavFolder: %d files under %s are silent (every sample rounds to '
          '0): %s. They train as examples of their label; remove them if '
          'that is not what they are.', len(self._silent), self._layout.root,
          _named(sorted(self._silent)))

  def _remove_stale_caches(self):
    """Deletes this folder's caches at this rate with another fingerprint,
    except those a live process reads (experiments/data/cache_use.py)."""
    builder_dir = self.data_dir_root / self.name
    prefix = cache_prefix(self._layout.root, self.builder_config.sample_rate)
    for config_dir in builder_dir.iterdir():
      if (config_dir.name.startswith(prefix) and
          config_dir.name != self.builder_config.name):
        cache_use.remove_unless_used(builder_dir, config_dir.name)


def _named(paths):
  more = len(paths) - _MAX_NAMED_SKIPPED
  return ', '.join(paths[:_MAX_NAMED_SKIPPED]) + (
      f' and {more} more' if more > 0 else '')


def folder_builder(root, sample_rate=16000, data_dir=None,
                   damaged_files='refuse'):
  """A WavFolder builder for `root` at `sample_rate` Hz, not yet prepared.

  Call `download_and_prepare()` on it (it reads no network) and then
  `as_dataset(split)`; see the module docstring for layouts and caching.

  Args:
    root: str or os.PathLike, the dataset folder.
    sample_rate: int, Hz, the rate every file is resampled to.
    data_dir: where TFDS keeps prepared data; None for TFDS' default
      (~/tensorflow_datasets).
    damaged_files: 'refuse' (default): a damaged file stops the build with
      an error naming it; 'skip': such files are left out, counted and named
      in the log.

  Returns:
    A WavFolder (a tfds.core.GeneratorBasedBuilder).
  """
  return WavFolder(
      config=WavFolderConfig.for_folder(root, sample_rate, damaged_files),
      data_dir=data_dir)
