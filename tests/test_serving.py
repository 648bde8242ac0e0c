"""The exported SavedModel: same probabilities as the evaluation path, loads
with TensorFlow alone, serves WAV bytes, and drives the predict CLI."""

import json
import os
import pathlib
import shutil
import subprocess
import sys
import textwrap

import gin
import keras
import numpy as np
import pytest
import tensorflow as tf

from experiments import configurables  # pylint: disable=unused-import
from experiments import configuration
from experiments import models
from experiments import training
from experiments.data import wav
import experiments_helpers as helpers
from conftest import REPO_ROOT

# Each test trains or exports a model: minutes in all (make test-fast skips).
pytestmark = pytest.mark.slow

LENGTHS = (16000, 4800, 23456, 900)


@pytest.fixture(scope='module')
def trained_run(tmp_path_factory):
  """A tiny LEAF run, exported: its model_dir."""
  folder = helpers.make_tone_folder(tmp_path_factory.mktemp('tones'))
  model_dir = tmp_path_factory.mktemp('run')
  bindings = helpers.tiny_bindings(
      folder, tmp_path_factory.mktemp('tfds'), **{
          'train.export': 'True',
          'train.window_seconds': '0.5',
          'leaf_audio.Leaf.n_filters': '8',
      })
  gin.clear_config()
  try:
    configuration.parse([
        str(REPO_ROOT / 'gin_configs' / name)
        for name in ('common.gin', 'leaf.gin')
    ], bindings)
    training.train(model_dir=str(model_dir))
  finally:
    gin.clear_config()
  return model_dir


def waveforms(length, batch=2, seed=0):
  rng = np.random.default_rng(seed + length)
  return (0.3 * rng.standard_normal((batch, length))).astype(np.float32)


def evaluation_probabilities(model_dir, x):
  run = json.loads((model_dir / 'run.json').read_text())
  classifier = keras.saving.load_model(model_dir / 'best.keras')
  windowed = models.WindowedClassifier(classifier, run['window_samples'])
  return tf.nn.softmax(windowed(x)).numpy()


def test_saved_model_matches_evaluation_in_a_tensorflow_only_process(
    trained_run, tmp_path):
  for length in LENGTHS:
    np.save(tmp_path / f'x{length}.npy', waveforms(length))
  script = textwrap.dedent(f"""
      import sys, pathlib, numpy as np, tensorflow as tf
      root = pathlib.Path({str(tmp_path)!r})
      model = tf.saved_model.load({str(trained_run / 'export')!r})
      serve = model.signatures['serving_default']
      for path in sorted(root.glob('x*.npy')):
        out = serve(waveform=tf.constant(np.load(path)))
        np.save(root / ('p' + path.name[1:]), out['probabilities'].numpy())
      names = [n.decode() for n in out['label_names'].numpy()]
      assert not [m for m in sys.modules if m.startswith(('leaf_audio', 'experiments'))], 'imported the project'
      print(','.join(names))
      """)
  # Run outside the repository, without PYTHONPATH: only TensorFlow.
  completed = subprocess.run(
      [sys.executable, '-c', script],
      env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2', PYTHONPATH=''),
      cwd=tmp_path, capture_output=True, text=True, timeout=300)
  assert completed.returncode == 0, completed.stderr[-3000:]
  assert completed.stdout.strip().splitlines()[-1] == 'high,low'
  for length in LENGTHS:
    served = np.load(tmp_path / f'p{length}.npy')
    expected = evaluation_probabilities(trained_run, waveforms(length))
    np.testing.assert_allclose(served, expected, atol=1e-5)
    np.testing.assert_allclose(served.sum(axis=1), 1., atol=1e-5)


def test_saved_model_cli_runs_the_serving_signature(trained_run, tmp_path):
  cli = shutil.which('saved_model_cli',
                     path=str(pathlib.Path(sys.executable).parent))
  assert cli, 'saved_model_cli ships with TensorFlow'
  np.save(tmp_path / 'x.npy', waveforms(16000, batch=1))
  completed = subprocess.run([
      cli, 'run', '--dir', str(trained_run / 'export'), '--tag_set', 'serve',
      '--signature_def', 'serving_default', '--inputs',
      f'waveform={tmp_path / "x.npy"}'
  ], capture_output=True, text=True, timeout=300)
  assert completed.returncode == 0, completed.stderr[-3000:]
  assert 'probabilities' in completed.stdout
  assert 'top_label' in completed.stdout


def test_wav_signature_serves_real_wav_files(trained_run, tmp_path):
  model = tf.saved_model.load(str(trained_run / 'export'))
  rng = np.random.default_rng(3)
  clips = [helpers.tone(300., 0.7, rng), helpers.tone(3000., 1.3, rng)]
  contents = []
  for i, clip in enumerate(clips):
    path = tmp_path / f'{i}.wav'
    wav.write_wav(path, clip, 16000)
    contents.append(path.read_bytes())
  out = model.signatures['serve_wav'](wav=tf.constant(contents))
  for i, clip in enumerate(clips):
    stored, _ = wav.read_wav(tmp_path / f'{i}.wav')
    direct = model.signatures['serving_default'](
        waveform=tf.constant(stored[:, 0][np.newaxis]))
    np.testing.assert_allclose(out['probabilities'][i],
                               direct['probabilities'][0], atol=1e-5)
  wav.write_wav(tmp_path / 'fast.wav', clips[0], 44100)
  with pytest.raises(tf.errors.InvalidArgumentError,
                     match='expects WAV files at 16000 Hz'):
    model.signatures['serve_wav'](
        wav=tf.constant([(tmp_path / 'fast.wav').read_bytes()]))


def test_predict_prints_top_classes_and_resamples(trained_run, tmp_path):
  rng = np.random.default_rng(4)
  wav.write_wav(tmp_path / 'a.wav', helpers.tone(300., 1.0, rng), 16000)
  wav.write_wav(tmp_path / 'b.wav', helpers.tone(3000., 1.0, rng), 44100)
  result = helpers.run_module(
      'experiments.predict', f'--saved_model={trained_run / "export"}',
      '--top_k=2', str(tmp_path / 'a.wav'), str(tmp_path / 'b.wav'))
  assert result.returncode == 0, result.stderr[-3000:]
  lines = result.stdout.strip().splitlines()
  assert lines[0].startswith(f'{tmp_path / "a.wav"}: ')
  assert all(('low (' in line and 'high (' in line) for line in lines)
  assert 'resampled 44100 Hz -> 16000 Hz' in lines[1]
  (tmp_path / 'bad.wav').write_bytes(b'not a wav file')
  bad = helpers.run_module('experiments.predict',
                           f'--saved_model={trained_run / "export"}',
                           str(tmp_path / 'bad.wav'))
  assert bad.returncode != 0 and 'bad.wav' in bad.stderr


def test_export_binary_rewrites_the_saved_model(trained_run, tmp_path):
  result = helpers.run_module('experiments.export',
                              f'--model_dir={trained_run}',
                              f'--export_dir={tmp_path / "again"}')
  assert result.returncode == 0, result.stderr[-3000:]
  again = tf.saved_model.load(str(tmp_path / 'again'))
  x = waveforms(8000)
  np.testing.assert_allclose(
      again.signatures['serving_default'](waveform=x)['probabilities'],
      evaluation_probabilities(trained_run, x), atol=1e-5)
  missing = helpers.run_module('experiments.export',
                               f'--model_dir={tmp_path / "nothing"}')
  assert missing.returncode != 0 and 'training run' in missing.stderr


def test_tflite_signature_converts_and_matches_the_keras_model(trained_run):
  converter = tf.lite.TFLiteConverter.from_saved_model(
      str(trained_run / 'export'), signature_keys=['tflite'])
  interpreter = tf.lite.Interpreter(model_content=converter.convert())
  runner = interpreter.get_signature_runner('tflite')
  x = waveforms(16000, batch=1)
  got = runner(waveform=x)['probabilities']
  want = evaluation_probabilities(trained_run, x)
  assert got.shape == want.shape
  np.testing.assert_allclose(got, want, atol=1e-4)
  # Only TFLite's builtin operators: no TensorFlow (Flex) ops are needed.
  ops = {op['op_name'] for op in interpreter._get_ops_details()}  # pylint: disable=protected-access
  assert not any(name.startswith('Flex') for name in ops), ops
