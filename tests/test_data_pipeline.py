"""Tests for experiments/data/pipeline.py: loading, cropping, batching, gain."""

import logging

import gin
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from experiments.data import pipeline
from experiments.data import synthetic
from experiments.data import wav

tfds.disable_progress_bar()

# Clip i of the tiny datasets below: i * 1000 + arange(length) / 32768 as
# int16 PCM, so every sample says which clip and position it came from.
TINY_LENGTHS = (300, 120, 500, 80, 260, 410, 90, 330, 150)
TINY_TAGS = ([0], [1, 2], [], [2, 2], [0, 1, 2], [1], [0], [2], [0, 2])


def tiny_pcm(i):
  return (np.arange(TINY_LENGTHS[i]) + 1000 * i).astype(np.int16)


class TinyMultiLabel(tfds.core.GeneratorBasedBuilder):
  """Multi-label clips with a non-default audio key; train and test only."""

  VERSION = tfds.core.Version('1.0.0')

  def _info(self):
    return tfds.core.DatasetInfo(
        builder=self,
        features=tfds.features.FeaturesDict({
            'waveform': tfds.features.Audio(shape=(None,), dtype=np.int16,
                                            sample_rate=16000),
            'tags': tfds.features.Sequence(
                tfds.features.ClassLabel(names=['bird', 'car', 'rain'])),
            'speaker_id': tfds.features.Scalar(dtype=np.int64),
        }))

  def _split_generators(self, dl_manager):
    del dl_manager
    return {'train': self._generate_examples(range(6)),
            'test': self._generate_examples(range(6, 9))}

  def _generate_examples(self, indices):
    for i in indices:
      yield i, {'waveform': tiny_pcm(i), 'tags': TINY_TAGS[i],
                'speaker_id': i}


class TinyStereoFloat(tfds.core.GeneratorBasedBuilder):
  """Float stereo clips at 8 kHz with train, validation and test splits."""

  VERSION = tfds.core.Version('1.0.0')

  def _info(self):
    return tfds.core.DatasetInfo(
        builder=self,
        features=tfds.features.FeaturesDict({
            'audio': tfds.features.Audio(shape=(None, 2), dtype=np.float32,
                                         sample_rate=8000),
            'label': tfds.features.ClassLabel(num_classes=3),
        }))

  def _split_generators(self, dl_manager):
    del dl_manager
    return {split: self._generate_examples(offset)
            for offset, split in enumerate(('train', 'validation', 'test'))}

  def _generate_examples(self, offset):
    for i in range(3):
      left = np.full(50 + 10 * i + offset, 0.5, np.float32)
      yield i, {'audio': np.stack([left, -0.25 * left / 0.5], axis=1),
                'label': (i + offset) % 3}


class TinyNested(tfds.core.GeneratorBasedBuilder):
  """TFDS' default int64 audio (16-bit values) and a nested label."""

  VERSION = tfds.core.Version('1.0.0')

  def _info(self):
    return tfds.core.DatasetInfo(
        builder=self,
        features=tfds.features.FeaturesDict({
            'audio': tfds.features.Audio(sample_rate=16000),
            'instrument': {'family': tfds.features.ClassLabel(
                names=['brass', 'string'])},
        }))

  def _split_generators(self, dl_manager):
    del dl_manager
    return {'train': self._generate_examples(range(4)),
            'test': self._generate_examples(range(4, 6))}

  def _generate_examples(self, indices):
    for i in indices:
      yield i, {'audio': tiny_pcm(i).astype(np.int64),
                'instrument': {'family': i % 2}}


def to_list(dataset):
  return [tf.nest.map_structure(lambda t: t.numpy(), element)
          for element in dataset]


class TinyTrainOnly(tfds.core.GeneratorBasedBuilder):
  """Twenty clips in a 'train' split and nothing else."""

  VERSION = tfds.core.Version('1.0.0')

  def _info(self):
    return tfds.core.DatasetInfo(
        builder=self,
        features=tfds.features.FeaturesDict({
            'audio': tfds.features.Audio(shape=(None,), dtype=np.int16,
                                         sample_rate=16000),
            'label': tfds.features.ClassLabel(num_classes=2),
        }))

  def _split_generators(self, dl_manager):
    del dl_manager
    return {'train': self._generate_examples()}

  def _generate_examples(self):
    for i in range(20):
      yield i, {'audio': np.full(10, i, np.int16), 'label': i % 2}


def clip_ids(dataset, scale=32768.):
  return [int(round(example['audio'][0] * scale)) for example in
          to_list(dataset)]


def test_multi_label_features_become_multi_hot(tmp_path, caplog):
  with caplog.at_level(logging.INFO, logger='absl'):
    splits, info = pipeline.load_dataset(
        'tiny_multi_label', data_dir=tmp_path, audio_key='waveform',
        label_key='tags')
  assert info.label_names == ('bird', 'car', 'rain')
  assert info.multi_label and info.sample_rate == 16000
  assert info.name == 'tiny_multi_label/1.0.0'
  # No validation split: 'eval' is held out from train; 'test' stays unseen.
  assert info.split_names == {'train': 'train[:90%]', 'eval': 'train[90%:]',
                              'test': 'test'}
  assert "'eval' (picks the best epoch) reads 'train[90%:]'" in caplog.text
  assert "no validation split" in caplog.text
  assert info.num_examples == {'train': 5, 'eval': 1, 'test': 3}
  found = {}
  for role in pipeline.ROLES:
    found[role] = {}
    for example in to_list(splits[role]):
      assert example['audio'].dtype == np.float32
      assert example['label'].dtype == np.float32
      i = int(round(example['audio'][0] * 32768)) // 1000
      found[role][i] = example
  assert sorted([*found['train'], *found['eval']]) == list(range(6))
  assert sorted(found['test']) == list(range(6, 9))
  for i, example in {**found['train'], **found['eval'],
                     **found['test']}.items():
    np.testing.assert_array_equal(example['audio'], tiny_pcm(i) / 32768.)
    expected = np.zeros(3, np.float32)
    expected[TINY_TAGS[i]] = 1.  # A repeated tag is still 1, none gives 0s.
    np.testing.assert_array_equal(example['label'], expected)


def test_a_dataset_without_validation_and_test_holds_both_out_of_train(
    tmp_path, caplog):
  with caplog.at_level(logging.WARNING):
    splits, info = pipeline.load_dataset('tiny_train_only', data_dir=tmp_path)
  assert info.split_names == {'train': 'train[:80%]',
                              'eval': 'train[80%:90%]', 'test': 'train[90%:]'}
  assert info.num_examples == {'train': 16, 'eval': 2, 'test': 2}
  ids = {role: clip_ids(splits[role]) for role in pipeline.ROLES}
  assert sorted(ids['train'] + ids['eval'] + ids['test']) == list(range(20))
  assert "no 'test' split" in caplog.text
  assert 'optimistic' not in caplog.text


def test_test_is_eval_only_when_asked_and_then_with_a_warning(tmp_path,
                                                              caplog):
  with caplog.at_level(logging.WARNING):
    _, info = pipeline.load_dataset('tiny_multi_label', data_dir=tmp_path,
                                    audio_key='waveform', label_key='tags',
                                    eval_split='test')
  assert info.split_names == {'train': 'train', 'eval': 'test',
                              'test': 'test'}
  assert 'test metrics are optimistic' in caplog.text


def test_float_stereo_is_downmixed_and_validation_is_eval(tmp_path):
  splits, info = pipeline.load_dataset('tiny_stereo_float', data_dir=tmp_path,
                                       sample_rate=8000)
  assert not info.multi_label
  assert info.label_names == ('0', '1', '2')
  assert info.num_examples == {'train': 3, 'eval': 3, 'test': 3}
  assert info.split_names == {'train': 'train', 'eval': 'validation',
                              'test': 'test'}
  lengths = {role: sorted(len(example['audio'])
                          for example in to_list(splits[role]))
             for role in pipeline.ROLES}
  assert lengths == {'train': [50, 60, 70], 'eval': [51, 61, 71],
                     'test': [52, 62, 72]}
  for example in to_list(splits['eval']):
    np.testing.assert_allclose(example['audio'], 0.125)  # (0.5 - 0.25) / 2
    assert example['label'].dtype == np.int32 and example['label'].shape == ()
    assert example['label'] == ((len(example['audio']) - 51) // 10 + 1) % 3


def test_eval_split_can_be_chosen_and_sliced(tmp_path):
  _, info = pipeline.load_dataset('tiny_stereo_float', data_dir=tmp_path,
                                  sample_rate=8000, eval_split='train[:2]')
  assert info.num_examples['eval'] == 2
  with pytest.raises(ValueError, match=r"'eval' role reads split "
                     r"'train\[:0\]'.*no examples"):
    pipeline.load_dataset('tiny_stereo_float', data_dir=tmp_path,
                          sample_rate=8000, eval_split='train[:0]')
  with pytest.raises(ValueError, match=r"no split 'dev'.*'validation'"):
    pipeline.load_dataset('tiny_stereo_float', data_dir=tmp_path,
                          sample_rate=8000, eval_split='dev')


def test_int64_audio_is_16_bit_pcm_and_labels_can_be_nested(tmp_path):
  splits, info = pipeline.load_dataset('tiny_nested', data_dir=tmp_path,
                                       label_key='instrument/family')
  assert info.label_names == ('brass', 'string')
  # Four train clips: a 10% slice would be empty, so one clip is held out.
  assert info.split_names == {'train': 'train[:3]', 'eval': 'train[3:4]',
                              'test': 'test'}
  examples = to_list(splits['train']) + to_list(splits['eval'])
  assert len(examples) == 4
  for example in examples:
    i = int(round(example['audio'][0] * 32768)) // 1000
    np.testing.assert_array_equal(example['audio'], tiny_pcm(i) / 32768.)
    assert example['label'] == i % 2
  with pytest.raises(ValueError, match=(
      r"no feature 'instrument/pitch'.*\['audio', 'instrument/family'\]")):
    pipeline.load_dataset('tiny_nested', data_dir=tmp_path,
                          label_key='instrument/pitch')


def test_missing_audio_key_lists_the_features(tmp_path):
  with pytest.raises(ValueError, match=(
      r"no feature 'audio'.*\['speaker_id', 'tags', 'waveform'\]")):
    pipeline.load_dataset('tiny_multi_label', data_dir=tmp_path,
                          label_key='tags')


def test_missing_label_key_lists_the_features(tmp_path):
  with pytest.raises(ValueError, match=r"no feature 'label'.*'tags'"):
    pipeline.load_dataset('tiny_multi_label', data_dir=tmp_path,
                          audio_key='waveform')


def test_label_must_be_a_class_label(tmp_path):
  with pytest.raises(ValueError, match=r"'speaker_id'.*expected a ClassLabel"):
    pipeline.load_dataset('tiny_multi_label', data_dir=tmp_path,
                          audio_key='waveform', label_key='speaker_id')


def test_sample_rate_mismatch_names_both_rates(tmp_path):
  with pytest.raises(ValueError, match=r'8000 Hz.*16000 Hz'):
    pipeline.load_dataset('tiny_stereo_float', data_dir=tmp_path)


def test_download_false_requires_prepared_data(tmp_path):
  with pytest.raises(ValueError, match='not prepared'):
    pipeline.load_dataset('tiny_stereo_float', data_dir=tmp_path,
                          sample_rate=8000, download=False)
  pipeline.load_dataset('tiny_stereo_float', data_dir=tmp_path,
                        sample_rate=8000)
  _, info = pipeline.load_dataset('tiny_stereo_float', data_dir=tmp_path,
                                  sample_rate=8000, download=False)
  assert info.num_examples['train'] == 3


@pytest.mark.parametrize('typo, suggestion', [
    ('speech_comands', 'speech_commands'),
    ('leaf_synthetc', 'leaf_synthetic'),
])
def test_unknown_dataset_lists_close_matches(typo, suggestion):
  with pytest.raises(ValueError) as error:
    pipeline.load_dataset(typo)
  message = str(error.value)
  assert f'unknown dataset {typo!r}' in message
  assert suggestion in message.split('Close matches:')[1].split('.')[0]
  assert "name='folder'" in message and "name='leaf_synthetic'" in message


def test_folder_name_needs_a_folder():
  with pytest.raises(ValueError, match='folder=None'):
    pipeline.load_dataset('folder')


def test_folder_dataset(tmp_path):
  for k, label in enumerate(('hum', 'hiss')):
    (tmp_path / 'sounds' / label).mkdir(parents=True)
    for i in range(10):
      wav.write_wav(tmp_path / 'sounds' / label / f'{i}.wav',
                    np.full(200 + 20 * k + i, 0.25 * (k + 1)), 32000)
  splits, info = pipeline.load_dataset(
      'folder', folder=tmp_path / 'sounds', data_dir=tmp_path / 'data')
  assert info.label_names == ('hiss', 'hum')
  assert info.name.startswith('wav_folder/sounds-')
  assert sum(info.num_examples[role] for role in ('train', 'eval')) <= 20
  for example in to_list(splits['train']):
    # 32 kHz -> 16 kHz halves the length; label 0 is 'hiss' (k = 1).
    hiss = int(example['label']) == 0
    assert len(example['audio']) in [(200 + 20 * hiss + i + 1) // 2
                                     for i in range(10)]
    assert np.median(example['audio']) == pytest.approx(
        0.5 if hiss else 0.25, abs=1e-3)


def test_leaf_synthetic(tmp_path, monkeypatch):
  monkeypatch.setattr(synthetic, 'SPLIT_SIZES',
                      {'train': 20, 'validation': 10, 'test': 10})
  splits, info = pipeline.load_dataset(data_dir=tmp_path)
  assert info.label_names == synthetic.CLASS_NAMES
  assert info.sample_rate == 16000 and not info.multi_label
  assert info.num_examples == {'train': 20, 'eval': 10, 'test': 10}
  stored = {}
  for example in to_list(splits['eval']):
    assert np.max(np.abs(example['audio'])) <= 0.9 + 1e-4
    stored[example['audio'].tobytes()] = example['label']
  for i in range(10):
    pcm = wav.to_int16(synthetic.synthesize_example(
        i, synthetic.example_rng('validation', i)))
    assert stored[(pcm / np.float32(32768)).astype(np.float32).tobytes()] == i
  with pytest.raises(ValueError, match=r'16000 Hz.*8000 Hz'):
    pipeline.load_dataset(data_dir=tmp_path, sample_rate=8000)


def clip_dataset(lengths):
  """{'audio': 1000 i + arange(length), 'label': i} for each length."""
  def generate():
    for i, length in enumerate(lengths):
      yield {'audio': np.arange(length, dtype=np.float32) + 1000 * i,
             'label': np.int32(i)}
  return tf.data.Dataset.from_generator(generate, output_signature={
      'audio': tf.TensorSpec([None], tf.float32),
      'label': tf.TensorSpec([], tf.int32)})


CLIP_LENGTHS = (40, 25, 7, 100, 64, 3, 90)


def check_crop(crop, label, crop_samples):
  """The crop is a window of clip `label`, or the clip plus zeros."""
  length = CLIP_LENGTHS[label]
  clip = np.arange(length) + 1000. * label
  if length <= crop_samples:
    np.testing.assert_array_equal(crop[:length], clip)
    np.testing.assert_array_equal(crop[length:], 0.)
    return 0
  offset = int(crop[0] - 1000 * label)
  assert 0 <= offset <= length - crop_samples
  np.testing.assert_array_equal(crop, clip[offset:offset + crop_samples])
  return offset


def test_train_batches_crop_pad_and_batch():
  batches = to_list(pipeline.train_batches(clip_dataset(CLIP_LENGTHS),
                                           batch_size=3, crop_samples=30,
                                           seed=0))
  assert [audio.shape for audio, _ in batches] == [(3, 30), (3, 30), (1, 30)]
  labels = np.concatenate([label for _, label in batches])
  assert sorted(labels) == list(range(7)) and labels.dtype == np.int32
  for audio, label in batches:
    assert audio.dtype == np.float32
    for crop, i in zip(audio, label):
      check_crop(crop, i, 30)


def test_train_batches_are_reproducible_and_vary_per_epoch():
  def epochs(seed):
    dataset = pipeline.train_batches(clip_dataset(CLIP_LENGTHS * 4),
                                     batch_size=4, crop_samples=20,
                                     shuffle_buffer=100, seed=seed)
    return [np.concatenate([audio for audio, _ in to_list(dataset)])
            for _ in range(2)]
  first_run, second_run = epochs(seed=3), epochs(seed=3)
  other_seed = epochs(seed=4)
  for a, b in zip(first_run, second_run):
    np.testing.assert_array_equal(a, b)
  assert not np.array_equal(first_run[0], first_run[1])
  assert not np.array_equal(first_run[0], other_seed[0])


def test_crop_offsets_cover_the_clip():
  dataset = clip_dataset((1000,) * 200)
  crops = np.concatenate([audio for audio, _ in to_list(
      pipeline.train_batches(dataset, batch_size=50, crop_samples=100,
                             shuffle_buffer=0, seed=1))])
  offsets = crops[:, 0] - 1000 * np.arange(200)
  assert offsets.min() >= 0 and offsets.max() <= 900
  # Uniform over [0, 900]: both ends of the range are reached.
  assert offsets.min() < 100 and offsets.max() > 800


def test_shuffle_buffer_zero_keeps_order():
  batches = to_list(pipeline.train_batches(clip_dataset(CLIP_LENGTHS), 7,
                                           crop_samples=10, shuffle_buffer=0))
  np.testing.assert_array_equal(batches[0][1], np.arange(7))


def test_random_crop_is_a_function_of_its_seed():
  audio = tf.range(50, dtype=tf.float32)
  same = [pipeline.random_crop(audio, 10, [5, 6]).numpy() for _ in range(2)]
  np.testing.assert_array_equal(same[0], same[1])
  offsets = {int(pipeline.random_crop(audio, 10, [s, 0])[0]) for s in
             range(30)}
  assert len(offsets) > 5 and max(offsets) <= 40
  short = pipeline.random_crop(tf.ones(4), 6, [1, 2]).numpy()
  np.testing.assert_array_equal(short, [1, 1, 1, 1, 0, 0])


@pytest.mark.parametrize('argument, value', [('batch_size', 0),
                                             ('crop_samples', -1),
                                             ('batch_size', 2.5)])
def test_train_batches_rejects_bad_sizes(argument, value):
  kwargs = {'batch_size': 2, argument: value}
  with pytest.raises(ValueError, match=argument):
    pipeline.train_batches(clip_dataset(CLIP_LENGTHS), **kwargs)


def test_pipeline_functions_need_example_dicts():
  pairs = tf.data.Dataset.from_tensor_slices((tf.zeros([2, 5]), [0, 1]))
  with pytest.raises(ValueError, match="'audio' and 'label'"):
    pipeline.train_batches(pairs, 2)
  with pytest.raises(ValueError, match="'audio' and 'label'"):
    pipeline.eval_clips(pairs)


def test_train_batches_takes_gin_bindings():
  # A scope of its own keeps these bindings away from other tests.
  gin.parse_config(['test_data_pipeline/train_batches.crop_samples = 12',
                    'test_data_pipeline/train_batches.shuffle_buffer = 0'])
  with gin.config_scope('test_data_pipeline'):
    audio, label = next(iter(pipeline.train_batches(
        clip_dataset(CLIP_LENGTHS), batch_size=2)))
  assert audio.shape == (2, 12)
  np.testing.assert_array_equal(label, [0, 1])
  # Outside the scope the defaults hold.
  assert next(iter(pipeline.train_batches(clip_dataset(CLIP_LENGTHS),
                                          2)))[0].shape == (2, 16000)


def test_eval_clips_are_whole_with_a_batch_axis():
  clips = to_list(pipeline.eval_clips(clip_dataset(CLIP_LENGTHS)))
  assert len(clips) == len(CLIP_LENGTHS)
  for i, (audio, label) in enumerate(clips):
    assert audio.shape == (1, CLIP_LENGTHS[i]) and label.shape == (1,)
    np.testing.assert_array_equal(audio[0],
                                  np.arange(CLIP_LENGTHS[i]) + 1000 * i)
    assert label[0] == i


def test_folder_damaged_files_policy_is_a_load_dataset_argument(tmp_path):
  for label in ('hum', 'hiss'):
    (tmp_path / 'sounds' / label).mkdir(parents=True)
    for i in range(10):
      wav.write_wav(tmp_path / 'sounds' / label / f'{i}.wav',
                    np.full(200 + i, 0.25), 16000)
  (tmp_path / 'sounds' / 'hum' / '4.wav').write_bytes(b'RIFF')
  with pytest.raises(ValueError, match=r"hum/4\.wav"):
    pipeline.load_dataset('folder', folder=tmp_path / 'sounds',
                          data_dir=tmp_path / 'data')
  _, info = pipeline.load_dataset('folder', folder=tmp_path / 'sounds',
                                  data_dir=tmp_path / 'data',
                                  damaged_files='skip')
  assert sum(info.num_examples[role] for role in pipeline.ROLES) == 19
