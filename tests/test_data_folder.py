"""Tests for experiments/data/folder.py, the WavFolder builder."""

import logging
import os
import struct

import numpy as np
import pytest
import scipy.io.wavfile
import tensorflow_datasets as tfds

from experiments.data import folder
from experiments.data import wav

tfds.disable_progress_bar()


def write_pcm24(path, pcm, sample_rate):
  """A 24-bit PCM WAV written by hand (scipy cannot write 24-bit)."""
  pcm = np.asarray(pcm, np.int32).reshape(len(pcm), -1)
  data = pcm.astype('<i4').reshape(-1, 1).view(np.uint8)[:, :3].tobytes()
  fmt = struct.pack('<HHIIHH', 1, pcm.shape[1], sample_rate,
                    sample_rate * pcm.shape[1] * 3, pcm.shape[1] * 3, 24)
  with open(path, 'wb') as f:
    f.write(b'RIFF' + struct.pack('<I', 36 + len(data)) + b'WAVE' + b'fmt ' +
            struct.pack('<I', 16) + fmt + b'data' +
            struct.pack('<I', len(data)) + data)


def tone(hz, seconds, rate, amplitude=0.5):
  return amplitude * np.sin(2 * np.pi * hz * np.arange(int(seconds * rate)) /
                            rate)


def examples(builder, split):
  """{length in samples: (float audio, label)} for a prepared split."""
  found = {}
  for example in tfds.as_numpy(builder.as_dataset(split)):
    audio = example['audio']
    assert audio.dtype == np.int16
    assert len(audio) not in found, 'test files need distinct lengths'
    found[len(audio)] = (audio / 32768., int(example['label']))
  return found


@pytest.fixture
def split_folder(tmp_path):
  """root/{train,validation,test}/<label>/ in four formats.

  Every file has its own duration, so its length at 16 kHz identifies it.
  """
  root = tmp_path / 'my sounds'
  for path in ('train/tone', 'train/noise', 'validation/tone', 'test/noise',
               'test/tone'):
    (root / path).mkdir(parents=True)
  rng = np.random.default_rng(0)
  # Stereo 44.1 kHz int16: a 1 kHz tone on the left, silence on the right.
  stereo = np.stack([tone(1000, 0.5, 44100), np.zeros(22050)], axis=1)
  wav.write_wav(root / 'train/tone/stereo.wav', stereo, 44100)
  # 24-bit mono 48 kHz, 0.25 s.
  write_pcm24(root / 'train/tone/deep.wav',
              np.round(tone(1000, 0.25, 48000) * 2**23), 48000)
  # float32 at 16 kHz, 0.3 s.
  scipy.io.wavfile.write(root / 'train/noise/float.wav', 16000,
                         rng.uniform(-0.5, 0.5, 4800).astype(np.float32))
  wav.write_wav(root / 'train/noise/plain.wav', rng.uniform(-.5, .5, 3000),
                16000)
  wav.write_wav(root / 'validation/tone/v.wav', tone(1000, 0.1, 8000), 8000)
  wav.write_wav(root / 'test/noise/t.wav', rng.uniform(-.5, .5, 2000), 16000)
  wav.write_wav(root / 'test/tone/t.wav', tone(500, 0.2, 22050), 22050)
  (root / 'train/noise/README.txt').write_text('not audio')
  return root


def test_split_folders_give_labels_splits_and_resampled_audio(
    split_folder, tmp_path, caplog):
  builder = folder.folder_builder(split_folder, data_dir=tmp_path / 'data')
  with caplog.at_level(logging.INFO, logger='absl'):
    builder.download_and_prepare()
  assert builder.info.features['label'].names == ['noise', 'tone']
  assert builder.info.features['audio'].sample_rate == 16000
  assert {split: info.num_examples
          for split, info in builder.info.splits.items()} == {
              'train': 4, 'validation': 1, 'test': 2}
  noise, tone_label = 0, 1
  # Lengths: ceil(n * 16000 / rate) for each file.
  train = examples(builder, 'train')
  assert sorted(train) == [3000, 4000, 4800, 8000]
  assert [train[n][1] for n in (3000, 4000, 4800, 8000)] == [
      noise, tone_label, noise, tone_label]
  assert sorted(examples(builder, 'validation')) == [1600]
  test = examples(builder, 'test')
  assert {n: label for n, (_, label) in test.items()} == {
      2000: noise, 3200: tone_label}
  # Stereo: the mean of a 0.5 sine and silence is a 0.25 sine, still 1 kHz.
  expected = tone(1000, 0.5, 16000, amplitude=0.25)
  np.testing.assert_allclose(train[8000][0][200:-200], expected[200:-200],
                             atol=2e-3)
  np.testing.assert_allclose(train[4000][0][200:-200],
                             tone(1000, 0.25, 16000)[200:-200], atol=2e-3)
  # The float file is stored without resampling, to int16 precision.
  _, stored_float = scipy.io.wavfile.read(split_folder /
                                          'train/noise/float.wav')
  np.testing.assert_allclose(train[4800][0], stored_float, atol=1 / 32768)
  # 500 Hz at 22.05 kHz stays 500 Hz.
  spectrum = np.abs(np.fft.rfft(test[3200][0]))
  assert np.fft.rfftfreq(3200, 1 / 16000)[np.argmax(spectrum)] == 500
  messages = caplog.text
  assert ('resampling 44100 Hz stereo -> 16000 Hz mono for 1 files: '
          'train/tone/stereo.wav') in messages
  assert ('resampling 48000 Hz mono -> 16000 Hz mono for 1 files: '
          'train/tone/deep.wav') in messages
  assert 'README.txt' in messages


def test_other_sample_rates(split_folder, tmp_path):
  builder = folder.folder_builder(split_folder, sample_rate=8000,
                                  data_dir=tmp_path / 'data')
  builder.download_and_prepare()
  assert builder.info.features['audio'].sample_rate == 8000
  assert sorted(examples(builder, 'train')) == [1500, 2000, 2400, 4000]


def make_label_folders(root, files_per_label, labels=('a', 'b', 'c')):
  """root/<label>/<i>.wav; file i of label k has 100 + 50 k + i samples."""
  for k, label in enumerate(labels):
    (root / label).mkdir(parents=True, exist_ok=True)
    for i in range(files_per_label):
      wav.write_wav(root / label / f'{i}.wav', np.full(100 + 50 * k + i, 0.1),
                    16000)


def test_hash_split_is_about_80_10_10_and_stable():
  paths = [f'label{i % 7}/clip{i}.wav' for i in range(4000)]
  splits = [folder.hash_split(path) for path in paths]
  fractions = {split: splits.count(split) / len(paths)
               for split in ('train', 'validation', 'test')}
  assert fractions == pytest.approx(
      {'train': 0.8, 'validation': 0.1, 'test': 0.1}, abs=0.02)
  # A file's split depends only on its own path.
  assert [folder.hash_split(path) for path in reversed(paths)] == splits[::-1]


def test_label_folders_are_split_by_hash(tmp_path):
  root = tmp_path / 'flat'
  make_label_folders(root, 10)
  builder = folder.folder_builder(root, data_dir=tmp_path / 'data')
  builder.download_and_prepare()
  assert builder.info.features['label'].names == ['a', 'b', 'c']
  expected = {}
  for label in 'abc':
    for i in range(10):
      split = folder.hash_split(f'{label}/{i}.wav')
      expected[split] = expected.get(split, 0) + 1
  assert {split: info.num_examples for split, info in
          builder.info.splits.items()} == expected
  assert sum(expected.values()) == 30
  # Each stored clip's length names its file: its label and split must match.
  for split in expected:
    for example in tfds.as_numpy(builder.as_dataset(split)):
      k, i = divmod(len(example['audio']) - 100, 50)
      assert int(example['label']) == k
      assert folder.hash_split(f"{'abc'[k]}/{i}.wav") == split


def test_changing_the_folder_rebuilds(tmp_path):
  root = tmp_path / 'growing'
  make_label_folders(root, 5)
  data_dir = tmp_path / 'data'
  first = folder.folder_builder(root, data_dir=data_dir)
  first.download_and_prepare()
  total = sum(info.num_examples for info in first.info.splits.values())
  assert total == 15

  unchanged = folder.folder_builder(root, data_dir=data_dir)
  assert unchanged.builder_config.name == first.builder_config.name
  assert unchanged.is_prepared()

  make_label_folders(root, 7)  # Adds 2 files per label; rewrites the rest.
  grown = folder.folder_builder(root, data_dir=data_dir)
  assert grown.builder_config.name != first.builder_config.name
  assert not grown.is_prepared()
  grown.download_and_prepare()
  assert sum(info.num_examples for info in grown.info.splits.values()) == 21
  # The outdated cache of the same folder was removed.
  assert sorted(os.listdir(data_dir / 'wav_folder')) == [
      grown.builder_config.name]

  # Touching a file (same size, new mtime) also changes the fingerprint.
  path = root / 'a' / '0.wav'
  stat = os.stat(path)
  os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
  assert (folder.folder_builder(root, data_dir=data_dir).builder_config.name
          != grown.builder_config.name)


def test_config_names_separate_folders_and_rates(tmp_path):
  make_label_folders(tmp_path / 'one' / 'sounds', 2)
  make_label_folders(tmp_path / 'two' / 'sounds', 2)
  names = {folder.folder_builder(tmp_path / place / 'sounds', rate,
                                 data_dir=tmp_path / 'data').builder_config.name
           for place in ('one', 'two') for rate in (16000, 8000)}
  assert len(names) == 4
  assert all(name.startswith('sounds-') for name in names)


def test_missing_root(tmp_path):
  with pytest.raises(ValueError, match='does not exist'):
    folder.folder_builder(tmp_path / 'nowhere')


def test_root_is_a_file(tmp_path):
  (tmp_path / 'file.wav').write_bytes(b'')
  with pytest.raises(ValueError, match='is a file'):
    folder.folder_builder(tmp_path / 'file.wav')


def test_empty_folder_has_no_label_folders(tmp_path):
  (tmp_path / 'empty').mkdir()
  with pytest.raises(ValueError, match='no label folders'):
    folder.folder_builder(tmp_path / 'empty')


def test_label_folder_without_wav_files_is_named(tmp_path):
  make_label_folders(tmp_path / 'root', 3, labels=('cat',))
  (tmp_path / 'root' / 'dog').mkdir()
  (tmp_path / 'root' / 'dog' / 'bark.mp3').write_bytes(b'ID3')
  with pytest.raises(ValueError, match="'dog'.*no .wav files"):
    folder.folder_builder(tmp_path / 'root')


def test_corrupt_file_is_named(tmp_path):
  make_label_folders(tmp_path / 'root', 20)
  (tmp_path / 'root' / 'b' / '3.wav').write_bytes(b'RIFF....WAVEjunk')
  builder = folder.folder_builder(tmp_path / 'root', data_dir=tmp_path / 'd')
  with pytest.raises(ValueError, match=r'b/3\.wav'):
    builder.download_and_prepare()


def test_label_only_in_test_is_named(tmp_path):
  root = tmp_path / 'root'
  make_label_folders(root / 'train', 2, labels=('cat', 'dog'))
  make_label_folders(root / 'test', 2, labels=('cat', 'bird'))
  with pytest.raises(ValueError, match=r"\['bird'\].*'test'"):
    folder.folder_builder(root)


def test_split_and_label_folders_cannot_mix(tmp_path):
  root = tmp_path / 'root'
  make_label_folders(root / 'train', 2, labels=('cat',))
  make_label_folders(root, 2, labels=('dog',))
  with pytest.raises(ValueError, match=r"mixes split folders.*\['dog'\]"):
    folder.folder_builder(root)


def test_sample_rate_must_be_a_positive_int(tmp_path):
  make_label_folders(tmp_path / 'root', 2)
  with pytest.raises(ValueError, match='sample_rate'):
    folder.folder_builder(tmp_path / 'root', sample_rate=16000.0)


def test_hidden_folders_are_not_labels(tmp_path, caplog):
  make_label_folders(tmp_path / 'root', 10, labels=('a', 'b'))
  (tmp_path / 'root' / '.ipynb_checkpoints').mkdir()
  (tmp_path / 'root' / 'a' / '.DS_Store').write_bytes(b'')
  builder = folder.folder_builder(tmp_path / 'root', data_dir=tmp_path / 'd')
  assert builder.info.features['label'].names == ['a', 'b']
  with caplog.at_level(logging.WARNING):
    builder.download_and_prepare()
  assert '.ipynb_checkpoints' in caplog.text and '.DS_Store' in caplog.text


def test_a_hash_split_without_train_files_is_an_error(tmp_path):
  name = next(f'{i}.wav' for i in range(100)
              if folder.hash_split(f'a/{i}.wav') != 'train')
  (tmp_path / 'root' / 'a').mkdir(parents=True)
  wav.write_wav(tmp_path / 'root' / 'a' / name, np.zeros(10), 16000)
  with pytest.raises(ValueError, match='none in train'):
    folder.folder_builder(tmp_path / 'root')


def test_a_missing_validation_folder_is_carved_from_train_by_hash(tmp_path):
  root = tmp_path / 'root'
  make_label_folders(root / 'train', 20)
  make_label_folders(root / 'test', 2)
  builder = folder.folder_builder(root, data_dir=tmp_path / 'data')
  builder.download_and_prepare()
  moved = {f'train/{label}/{i}.wav' for label in 'abc' for i in range(20)
           if folder.hash_split(f'train/{label}/{i}.wav') == 'validation'}
  assert 0 < len(moved) < 12  # About 10% of 60.
  assert {split: info.num_examples for split, info in
          builder.info.splits.items()} == {
              'train': 60 - len(moved), 'validation': len(moved), 'test': 6}
  # Each stored clip's length names its file; validation holds the moved ones.
  found = set()
  for example in tfds.as_numpy(builder.as_dataset('validation')):
    k, i = divmod(len(example['audio']) - 100, 50)
    found.add(f"train/{'abc'[k]}/{i}.wav")
  assert found == moved


def test_missing_validation_and_test_folders_are_both_carved(tmp_path):
  root = tmp_path / 'root'
  make_label_folders(root / 'train', 20)
  layout = folder.scan_folder(root)
  expected = {}
  for label in 'abc':
    for i in range(20):
      split = folder.hash_split(f'train/{label}/{i}.wav')
      expected[split] = expected.get(split, 0) + 1
  assert {split: len(files) for split, files in layout.files.items()} == (
      expected)
  assert set(expected) == {'train', 'validation', 'test'}


def damage(root):
  """Truncates a/2.wav and corrupts b/3.wav; returns their relative paths."""
  whole = (root / 'a' / '2.wav').read_bytes()
  (root / 'a' / '2.wav').write_bytes(whole[:len(whole) - 40])
  (root / 'b' / '3.wav').write_bytes(b'RIFF....WAVEjunk')
  return ['a/2.wav', 'b/3.wav']


def test_damaged_files_are_refused_by_default_and_leave_no_cache(tmp_path):
  make_label_folders(tmp_path / 'root', 10)
  damage(tmp_path / 'root')
  builder = folder.folder_builder(tmp_path / 'root', data_dir=tmp_path / 'd')
  with pytest.raises(ValueError, match=(
      r"(a/2\.wav' is truncated|b/3\.wav' as a WAV).*damaged_files = 'skip'")):
    builder.download_and_prepare()
  # No empty cache folder is left behind by the failed build.
  assert not (tmp_path / 'd' / 'wav_folder').exists()


def test_damaged_files_can_be_skipped_with_a_count(tmp_path, caplog):
  make_label_folders(tmp_path / 'root', 10)
  damaged = damage(tmp_path / 'root')
  builder = folder.folder_builder(tmp_path / 'root', data_dir=tmp_path / 'd',
                                  damaged_files='skip')
  assert builder.builder_config.name != folder.folder_builder(
      tmp_path / 'root').builder_config.name
  with caplog.at_level(logging.WARNING):
    builder.download_and_prepare()
  assert sum(info.num_examples for info in builder.info.splits.values()) == 28
  stored = set()
  for split in builder.info.splits:
    for example in tfds.as_numpy(builder.as_dataset(split)):
      k, i = divmod(len(example['audio']) - 100, 50)
      stored.add(f"{'abc'[k]}/{i}.wav")
  assert stored.isdisjoint(damaged) and len(stored) == 28
  assert '2 damaged files' in caplog.text
  assert all(path in caplog.text for path in damaged)
  # Loading the prepared data later says it again.
  caplog.clear()
  with caplog.at_level(logging.WARNING):
    again = folder.folder_builder(tmp_path / 'root', data_dir=tmp_path / 'd',
                                  damaged_files='skip')
  assert again.is_prepared() and '2 damaged files' in caplog.text


def test_damaged_files_policy_is_checked(tmp_path):
  make_label_folders(tmp_path / 'root', 2)
  with pytest.raises(ValueError, match=r"damaged_files.*'ignore'"):
    folder.folder_builder(tmp_path / 'root', damaged_files='ignore')


def test_a_label_whose_only_file_is_hashed_out_of_train_is_refused(tmp_path):
  root = tmp_path / 'root'
  make_label_folders(root, 10)
  name = next(f'x{i}.wav' for i in range(100)
              if folder.hash_split(f'lonely/x{i}.wav') == 'test')
  (root / 'lonely').mkdir()
  wav.write_wav(root / 'lonely' / name, np.zeros(100), 16000)
  with pytest.raises(ValueError, match=(
      rf"label 'lonely' .* has no training file: its files lonely/{name} "
      r'\(test\)')):
    folder.folder_builder(root)


def test_a_label_whose_only_file_is_carved_into_validation_is_refused(
    tmp_path):
  root = tmp_path / 'root'
  make_label_folders(root / 'train', 10)
  name = next(f'x{i}.wav' for i in range(100)
              if folder.hash_split(f'train/lonely/x{i}.wav') == 'validation')
  (root / 'train' / 'lonely').mkdir()
  wav.write_wav(root / 'train' / 'lonely' / name, np.zeros(100), 16000)
  make_label_folders(root / 'test', 1)
  with pytest.raises(ValueError, match=(
      rf"label 'lonely' .* has no training file: its files "
      rf'train/lonely/{name} \(validation\)')):
    folder.scan_folder(root)


def write_wav_header_rate(path, sample_rate, samples=100):
  """A 16-bit mono PCM WAV whose header says `sample_rate`, written by hand."""
  data = np.zeros(samples, '<i2').tobytes()
  fmt = struct.pack('<HHIIHH', 1, 1, sample_rate, (sample_rate * 2) % 2**32,
                    2, 16)
  with open(path, 'wb') as f:
    f.write(b'RIFF' + struct.pack('<I', 36 + len(data)) + b'WAVE' + b'fmt ' +
            struct.pack('<I', 16) + fmt + b'data' +
            struct.pack('<I', len(data)) + data)


@pytest.mark.parametrize('rate', [0, 2**31 - 1])
def test_a_header_with_an_absurd_sample_rate_follows_damaged_files(
    tmp_path, rate, caplog):
  root = tmp_path / 'root'
  make_label_folders(root, 10)
  write_wav_header_rate(root / 'a' / '4.wav', rate)
  builder = folder.folder_builder(root, data_dir=tmp_path / 'd')
  with pytest.raises(wav.DamagedWavError, match=(
      rf"a/4\.wav' is damaged: its header gives a sample rate of {rate} Hz"
      r".*damaged_files = 'skip'")):
    builder.download_and_prepare()
  skipping = folder.folder_builder(root, data_dir=tmp_path / 'd',
                                   damaged_files='skip')
  with caplog.at_level(logging.WARNING):
    skipping.download_and_prepare()
  assert sum(info.num_examples for info in skipping.info.splits.values()) == 29
  assert '1 damaged files' in caplog.text and 'a/4.wav' in caplog.text


def test_silent_files_are_kept_with_their_label_and_named(tmp_path, caplog):
  root = tmp_path / 'root'
  make_label_folders(root, 10)
  wav.write_wav(root / 'a' / '3.wav', np.zeros(103), 16000)
  wav.write_wav(root / 'b' / '5.wav', np.full(155, 1e-6), 16000)  # Rounds to 0.
  builder = folder.folder_builder(root, data_dir=tmp_path / 'd')
  with caplog.at_level(logging.WARNING):
    builder.download_and_prepare()
  assert sum(info.num_examples for info in builder.info.splits.values()) == 30
  assert '2 files under' in caplog.text and 'are silent' in caplog.text
  assert 'a/3.wav, b/5.wav' in caplog.text
