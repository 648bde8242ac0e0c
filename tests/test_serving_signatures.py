"""The serving signatures as functions, on an untrained tiny model (fast):
batched outputs, windows in bounded chunks, empty batches, WAV files read
window by window, and readers of exports old and new.

(tests/test_serving.py exports a trained model and runs the binaries.)"""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

import leaf_audio
from experiments import models
from experiments.data import wav
from experiments.serving import export_directory
from experiments.serving import signatures
import experiments_helpers as helpers

SAMPLE_RATE = 16000
WINDOW = 1600  # 0.1 s windows: long clips have many of them, quickly.
LABELS = ['a', 'b', 'c']


@pytest.fixture(scope='module')
def windowed():
  keras.utils.set_random_seed(2)
  model = models.AudioClassifier(leaf_audio.MelFilterbanks(n_filters=16),
                                 None, num_outputs=3, normalization=None)
  model.build((None, WINDOW))
  return models.WindowedClassifier(model, WINDOW)


@pytest.fixture(scope='module')
def functions(windowed):
  return signatures.serving_functions(windowed, LABELS, SAMPLE_RATE, WINDOW,
                                      False)


def clips(batch, length, seed=0):
  rng = np.random.default_rng(seed + length)
  return (0.3 * rng.standard_normal((batch, length))).astype(np.float32)


def expected(windowed, x):
  return tf.nn.softmax(windowed(tf.constant(x))).numpy()


def encoded(audio, rate=SAMPLE_RATE):
  """A 16-bit PCM WAV file's bytes; audio [samples] or [samples, channels]."""
  audio = np.asarray(audio, np.float32)
  if audio.ndim == 1:
    audio = audio[:, np.newaxis]
  return tf.audio.encode_wav(tf.constant(audio), rate).numpy()


def decoded(contents):
  audio, _ = tf.audio.decode_wav(contents)
  return tf.reduce_mean(audio, axis=-1).numpy()


def test_windows_in_chunks_equal_the_windowed_classifier(windowed, functions):
  assert 40000 // WINDOW > 3 * signatures.CHUNK_WINDOWS
  for length in (WINDOW, 900, 40000, 16001):
    x = clips(2, length)
    served = functions['serving_default'](waveform=tf.constant(x))
    np.testing.assert_allclose(served['probabilities'], expected(windowed, x),
                               atol=1e-5)


def test_batch_signatures_return_only_batched_outputs(functions):
  for batch in (3, 1, 0):
    for name, call in (
        ('serving_default', lambda b: functions['serving_default'](
            waveform=tf.constant(clips(b, 2000)))),
        ('serve_wav', lambda b: functions['serve_wav'](wav=tf.constant(
            [encoded(clip) for clip in clips(b, 2000)], tf.string)))):
      outputs = call(batch)
      assert outputs, name
      for key, value in outputs.items():
        assert value.shape.rank >= 1 and value.shape[0] == batch, (
            name, key, value.shape)
  metadata = functions['metadata']()
  assert [n.decode() for n in metadata['label_names'].numpy()] == LABELS


def test_serve_wav_reads_files_window_by_window(windowed, functions):
  rng = np.random.default_rng(7)
  mono = (0.3 * rng.standard_normal(23456)).astype(np.float32)
  stereo = (0.3 * rng.standard_normal((5000, 2))).astype(np.float32)
  short = (0.3 * rng.standard_normal(700)).astype(np.float32)
  files = [encoded(mono), encoded(stereo), encoded(short)]
  served = functions['serve_wav'](wav=tf.constant(files))
  assert served['valid'].numpy().all()
  for index, contents in enumerate(files):
    np.testing.assert_allclose(
        served['probabilities'][index],
        expected(windowed, decoded(contents)[np.newaxis])[0], atol=1e-5)


def test_a_damaged_file_is_marked_and_the_rest_of_the_batch_served(
    windowed, functions):
  good = encoded(clips(1, 4000)[0])
  truncated = good[:len(good) // 2]
  eight_bit = bytearray(good)
  eight_bit[34] = 8  # bits per sample
  no_samples = encoded(np.zeros((0, 1)))
  batch = [good, b'not a wav file', truncated, bytes(eight_bit), no_samples,
           good]
  served = functions['serve_wav'](wav=tf.constant(batch))
  assert served['valid'].numpy().tolist() == [True, False, False, False,
                                              False, True]
  assert [label.decode() for label in served['top_label'].numpy()[1:5]] == [
      ''] * 4
  assert np.isnan(served['probabilities'].numpy()[1:5]).all()
  alone = expected(windowed, decoded(good)[np.newaxis])[0]
  for index in (0, 5):
    np.testing.assert_allclose(served['probabilities'][index], alone,
                               atol=1e-5)


def test_serve_wav_names_the_file_at_another_rate_or_too_long(
    windowed, monkeypatch):
  good = encoded(clips(1, 4000)[0])
  functions = signatures.serving_functions(windowed, LABELS, SAMPLE_RATE,
                                           WINDOW, False)
  with pytest.raises(tf.errors.InvalidArgumentError,
                     match='file 1 of the batch is at 8000 Hz'):
    functions['serve_wav'](wav=tf.constant(
        [good, encoded(clips(1, 4000)[0], 8000)]))
  monkeypatch.setattr(signatures, 'MAX_WAV_SECONDS', 2)
  limited = signatures.serving_functions(windowed, LABELS, SAMPLE_RATE,
                                         WINDOW, False)
  with pytest.raises(tf.errors.InvalidArgumentError,
                     match='at most 2 s; file 2 of the batch is 3 s long'):
    limited['serve_wav'](wav=tf.constant(
        [good, good, encoded(clips(1, 3 * SAMPLE_RATE)[0])]))


def _save_module(path, with_label_names):
  """A SavedModel with the serving signatures' names: probabilities 0.2,
  0.5, 0.3 for every clip; label_names among the outputs as exports of
  earlier versions had them, or only in metadata()."""
  module = tf.Module()
  names = tf.constant(LABELS)

  @tf.function(input_signature=[tf.TensorSpec([None, None], tf.float32)])
  def serve(waveform):
    batch = tf.shape(waveform)[0]
    outputs = {'probabilities': tf.tile([[0.2, 0.5, 0.3]], [batch, 1]),
               'valid': tf.fill([batch], True)}
    if with_label_names:
      outputs['label_names'] = names
    return outputs

  @tf.function(input_signature=[])
  def metadata():
    return {'sample_rate': tf.constant(SAMPLE_RATE), 'label_names': names}

  module.serve, module.metadata = serve, metadata
  tf.saved_model.save(module, str(path), signatures={
      'serving_default': serve, 'metadata': metadata})


@pytest.mark.slow  # Starts the predict binary.
def test_predict_reads_old_flat_exports_and_new_versions(tmp_path):
  wav.write_wav(tmp_path / 'a.wav', clips(1, 3000)[0], SAMPLE_RATE)
  old = tmp_path / 'old_export'
  _save_module(old, with_label_names=True)
  (old / export_directory.MARKER_FILE).write_text(json.dumps(
      {'written_by': 'leaf_audio experiments.serving',
       'entries': ['saved_model.pb', 'variables', 'assets']}))
  new = tmp_path / 'export'
  for _ in range(2):
    with export_directory.staged_export(new, {}) as staging:
      _save_module(staging, with_label_names=False)
  assert export_directory.saved_model_path(new) == str(new / '2')
  assert export_directory.saved_model_path(old) == str(old)
  for folder in (old, new):
    result = helpers.run_module_in_process('experiments.predict',
                                           f'--saved_model={folder}',
                                           '--top_k=2', str(tmp_path / 'a.wav'))
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == f'{tmp_path / "a.wav"}: b (0.500), c (0.300)'
