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
import scipy.io.wavfile
import tensorflow as tf

from experiments import configurables  # pylint: disable=unused-import
from experiments import gin_files as configuration
from experiments.serving import export_directory
from experiments.serving import exporting
from experiments import models
from experiments.training import job as training
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
  version = export_directory.saved_model_path(trained_run / 'export')
  script = textwrap.dedent(f"""
      import sys, pathlib, numpy as np, tensorflow as tf
      root = pathlib.Path({str(tmp_path)!r})
      model = tf.saved_model.load({version!r})
      serve = model.signatures['serving_default']
      for path in sorted(root.glob('x*.npy')):
        out = serve(waveform=tf.constant(np.load(path)))
        np.save(root / ('p' + path.name[1:]), out['probabilities'].numpy())
      names = [n.decode() for n in model.signatures['metadata']()['label_names'].numpy()]
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
      cli, 'run', '--dir',
      export_directory.saved_model_path(trained_run / 'export'),
      '--tag_set', 'serve',
      '--signature_def', 'serving_default', '--inputs',
      f'waveform={tmp_path / "x.npy"}'
  ], capture_output=True, text=True, timeout=300)
  assert completed.returncode == 0, completed.stderr[-3000:]
  assert 'probabilities' in completed.stdout
  assert 'top_label' in completed.stdout


def load_export(export_dir):
  return tf.saved_model.load(export_directory.saved_model_path(export_dir))


def test_wav_signature_serves_real_wav_files(trained_run, tmp_path):
  model = load_export(trained_run / 'export')
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
  # The binary's main in this process (test_compatibility runs each binary
  # as `python -m`; a process per call would import TensorFlow again).
  result = helpers.run_module_in_process(
      'experiments.predict', f'--saved_model={trained_run / "export"}',
      '--top_k=2', str(tmp_path / 'a.wav'), str(tmp_path / 'b.wav'))
  assert result.returncode == 0, result.stderr[-3000:]
  lines = result.stdout.strip().splitlines()
  assert lines[0].startswith(f'{tmp_path / "a.wav"}: ')
  assert all(('low (' in line and 'high (' in line) for line in lines)
  assert 'resampled 44100 Hz -> 16000 Hz' in lines[1]
  (tmp_path / 'bad.wav').write_bytes(b'not a wav file')
  bad = helpers.run_module_in_process(
      'experiments.predict', f'--saved_model={trained_run / "export"}',
      str(tmp_path / 'bad.wav'))
  assert bad.returncode != 0 and 'bad.wav' in bad.stderr


def test_predict_names_each_damaged_file_and_classifies_the_rest(
    trained_run, tmp_path):
  rng = np.random.default_rng(5)
  wav.write_wav(tmp_path / 'good.wav', helpers.tone(300., 1.0, rng), 16000)
  whole = (tmp_path / 'good.wav').read_bytes()
  (tmp_path / 'cut.wav').write_bytes(whole[:len(whole) // 2])
  clip = helpers.tone(300., 1.0, rng)
  clip[100] = np.nan
  scipy.io.wavfile.write(tmp_path / 'nan.wav', 16000, clip)
  # The binary itself: its exit status and stderr as a shell sees them.
  result = helpers.run_module(
      'experiments.predict', f'--saved_model={trained_run / "export"}',
      *(str(tmp_path / name) for name in ('cut.wav', 'good.wav', 'nan.wav')))
  assert result.returncode == 1
  assert result.stdout.startswith(f'{tmp_path / "good.wav"}: ')
  # Only its own lines: TensorFlow's are hidden (experiments/console.py).
  errors = result.stderr.strip().splitlines()
  assert len(errors) == 3, result.stderr
  assert errors[0].startswith(f'{tmp_path / "cut.wav"}: error: ')
  assert 'truncated' in errors[0]
  assert errors[1].startswith(f'{tmp_path / "nan.wav"}: error: ')
  assert 'not finite' in errors[1]
  assert errors[2] == 'error: 2 of 3 files were not classified.'


def test_predict_names_a_damaged_saved_model(trained_run, tmp_path):
  shutil.copytree(trained_run / 'export', tmp_path / 'export')
  pb = tmp_path / 'export' / '1' / 'saved_model.pb'
  pb.write_bytes(pb.read_bytes()[:1000])
  wav.write_wav(tmp_path / 'a.wav', np.zeros(1600), 16000)
  result = helpers.run_module_in_process(
      'experiments.predict', f'--saved_model={tmp_path / "export"}',
      str(tmp_path / 'a.wav'))
  assert result.returncode != 0
  assert result.stderr.strip().splitlines()[-1].startswith(
      f"error: could not load the SavedModel in '{tmp_path / 'export' / '1'}'")
  assert 'Traceback' not in result.stderr


def test_non_finite_clips_are_marked_invalid_and_leave_the_batch_alone(
    trained_run):
  model = load_export(trained_run / 'export')
  serve = model.signatures['serving_default']
  x = waveforms(12000, batch=4)
  x[1, 500] = np.nan
  x[2, 7] = -np.inf
  out = serve(waveform=tf.constant(x))
  np.testing.assert_array_equal(out['valid'], [True, False, False, True])
  assert [label.decode() for label in out['top_label'].numpy()[1:3]] == [
      '', '']
  assert np.isnan(out['probabilities'].numpy()[1:3]).all()
  assert np.isnan(out['top_probability'].numpy()[1:3]).all()
  # The good clips get what they get alone: the bad ones cannot leak into
  # them (through the FFT method's shared transform, for instance).
  alone = serve(waveform=tf.constant(x[[0, 3]]))
  np.testing.assert_allclose(out['probabilities'].numpy()[[0, 3]],
                             alone['probabilities'], atol=1e-6)
  assert [label.decode() for label in out['top_label'].numpy()[[0, 3]]] == [
      label.decode() for label in alone['top_label'].numpy()]
  assert alone['valid'].numpy().all()
  wav_out = model.signatures['serve_wav'](wav=tf.constant([
      tf.audio.encode_wav(tf.constant(x[0, :, np.newaxis]), 16000).numpy()]))
  assert wav_out['valid'].numpy().tolist() == [True]


def snapshot(root):
  """{relative path: bytes or 'dir'} of everything under root."""
  return {str(path.relative_to(root)):
          ('dir' if path.is_dir() else path.read_bytes())
          for path in sorted(pathlib.Path(root).rglob('*'))}


def test_export_refuses_user_folders_and_the_run_and_leaves_them_intact(
    trained_run, tmp_path):
  mine = tmp_path / 'mine'
  mine.mkdir()
  (mine / 'thesis.tex').write_text('\\chapter{Results}')
  (mine / 'data.npy').write_bytes(bytes(range(256)) * 4)
  runs = tmp_path / 'runs'
  shutil.copytree(trained_run, runs / 'run1')
  (runs / 'notes.txt').write_text('runs of March')
  before = snapshot(tmp_path)
  # The binary once (its one-line error), then export_run for the others:
  # the same check, without a process that imports TensorFlow each time.
  result = helpers.run_module('experiments.export',
                              f'--model_dir={runs / "run1"}',
                              f'--export_dir={mine}')
  assert result.returncode != 0
  # One line: TensorFlow's are hidden (experiments/console.py).
  [last] = result.stderr.strip().splitlines()
  assert last.startswith('error: export_dir ') and str(mine) in last
  assert 'not a previous export' in last
  for export_dir in (runs, runs / 'run1'):
    with pytest.raises(export_directory.ExportDirectoryError) as error:
      exporting.export_run(runs / 'run1', export_dir=export_dir)
    assert str(error.value).startswith('export_dir ')
    assert str(export_dir) in str(error.value)
    assert 'training run' in str(error.value)
  # A model_dir that is not a training run.
  missing = helpers.run_module_in_process(
      'experiments.export', f'--model_dir={tmp_path / "nothing"}')
  assert missing.returncode != 0 and 'training run' in missing.stderr
  assert 'Traceback' not in missing.stderr
  assert snapshot(tmp_path) == before


def test_export_refuses_tflite_for_a_stage_without_builtins(tmp_path):
  """SincNetPlus's sinc filterbank computes in float64, which TFLite's
  builtins lack: --tflite and --streaming_tflite are refused at once, by
  name, before the SavedModel is exported (the converter's own error came
  after it, as an MLIR dump)."""
  import leaf_audio  # pylint: disable=g-import-not-at-top
  run = tmp_path / 'run'
  run.mkdir()
  model = models.AudioClassifier(leaf_audio.SincNetPlus(n_filters=4),
                                 models.ConvNet((4,)), num_outputs=2,
                                 normalization=None)
  model.build((None, 1600))
  model.save(run / 'best.keras')
  (run / 'run.json').write_text(json.dumps({
      'window_samples': 1600, 'sample_rate': 16000, 'multi_label': False,
      'label_names': ['a', 'b']}))
  before = snapshot(tmp_path)
  for flag in ('tflite', 'streaming_tflite'):
    with pytest.raises(ValueError) as error:
      exporting.export_run(run, **{flag: tmp_path / f'{flag}.tflite'})
    assert str(error.value).startswith(
        f"--{flag}: SincNetPlus's filterbank (SincConv1D) has no TFLite "
        'builtin form'), error.value
    assert snapshot(tmp_path) == before


def test_export_adds_a_version_cleans_stale_staging_and_is_readable(
    trained_run, tmp_path):
  run = tmp_path / 'run'
  shutil.copytree(trained_run, run)
  export = run / 'export'
  assert export_directory.is_export(export)
  assert sorted(os.listdir(export)) == ['1']
  # A user's files inside the export's subfolders are never deleted.
  (export / '1' / 'assets' / 'mine.csv').write_text('keep me')
  # A staging folder of an export killed mid-way (its process is gone).
  stale = export_directory.new_staging(str(export), {})
  marker = pathlib.Path(stale) / export_directory.STAGING_MARKER
  marker.write_text(json.dumps(dict(json.loads(marker.read_text()),
                                    pid=2**22 + 7)))
  # Once in this process, then the binary (its warning on stderr).
  result = helpers.run_module_in_process('experiments.export',
                                         f'--model_dir={run}')
  assert result.returncode == 0, result.stderr[-3000:]
  result = helpers.run_module('experiments.export', f'--model_dir={run}')
  assert result.returncode == 0, result.stderr[-3000:]
  # Versions 2 and 3 are kept; 1 too, since it holds a file of the user's.
  assert sorted(os.listdir(export)) == ['1', '2', '3']
  assert (export / '1' / 'assets' / 'mine.csv').read_text() == 'keep me'
  # The binary says only what it did, and warns (this model does not stream;
  # the kept version): TensorFlow's and absl's log lines are hidden
  # (experiments/console.py).
  warnings = result.stderr.strip().splitlines()
  assert len(warnings) == 2, result.stderr
  assert all(line.startswith('warning: ') for line in warnings), warnings
  assert 'no streaming signatures' in warnings[0]
  assert 'assets/mine.csv' in warnings[1]
  assert result.stdout == f'SavedModel written to {export / "3"}\n'
  assert export_directory.saved_model_path(export) == str(export / '3')
  x = waveforms(8000)
  np.testing.assert_allclose(
      load_export(export).signatures['serving_default'](
          waveform=x)['probabilities'],
      evaluation_probabilities(trained_run, x), atol=1e-5)
  umask = os.umask(0)
  os.umask(umask)
  for path in [export / '3', *(export / '3').rglob('*')]:
    expected = (0o777 if path.is_dir() else 0o666) & ~umask
    assert path.stat().st_mode & 0o777 == expected, path


def test_every_batch_signature_returns_batched_outputs(trained_run):
  model = load_export(trained_run / 'export')
  window = int(model.signatures['metadata']()['window_samples'])
  batched = []
  for name, signature in model.signatures.items():
    specs = signature.structured_input_signature[1]
    if not specs or any(spec.shape.rank == 0 or spec.shape[0] is not None
                        for spec in specs.values()):
      continue  # No batch axis: metadata, streams.
    batched.append(name)
    # The tflite and onnx signatures (the converters' inputs) are checked on
    # whole windows; clips shorter than a window are left to
    # tests/test_runtimes.
    samples = window if name in ('tflite', 'onnx') else 1600
    for batch in (2, 0):
      inputs = {}
      for key, spec in specs.items():
        if spec.dtype == tf.string:
          inputs[key] = tf.constant([tf.audio.encode_wav(
              tf.zeros([samples, 1]), 16000).numpy()] * batch, tf.string)
        else:
          inputs[key] = tf.zeros([batch, samples], spec.dtype)
      for key, value in signature(**inputs).items():
        assert value.shape[0] == batch, (name, key, value.shape)
  assert sorted(batched) == ['onnx', 'serve_wav', 'serving_default', 'tflite']


def test_a_damaged_checkpoint_is_named(trained_run, tmp_path):
  run = tmp_path / 'run'
  shutil.copytree(trained_run, run)
  best = run / 'best.keras'
  best.write_bytes(best.read_bytes()[:best.stat().st_size // 2])
  result = helpers.run_module_in_process(
      'experiments.export', f'--model_dir={run}',
      f'--export_dir={tmp_path / "out"}')
  assert result.returncode != 0 and 'Traceback' not in result.stderr
  last = result.stderr.strip().splitlines()[-1]
  assert last.startswith(f'error: {best} is damaged')
  assert not (tmp_path / 'out').exists()


def test_tflite_signature_converts_and_matches_the_keras_model(trained_run):
  converter = tf.lite.TFLiteConverter.from_saved_model(
      export_directory.saved_model_path(trained_run / 'export'),
      signature_keys=['tflite'])
  interpreter = tf.lite.Interpreter(model_content=converter.convert())
  runner = interpreter.get_signature_runner('tflite')
  x = waveforms(16000, batch=1)
  got = runner(waveform=x)
  want = evaluation_probabilities(trained_run, x)
  assert got['probabilities'].shape == want.shape
  np.testing.assert_allclose(got['probabilities'], want, atol=1e-4)
  assert got['valid'].tolist() == [True]
  x[0, 321] = np.nan
  bad = runner(waveform=x)
  assert bad['valid'].tolist() == [False]
  assert np.isnan(bad['probabilities']).all()
  # Only TFLite's builtin operators: no TensorFlow (Flex) ops are needed.
  ops = {op['op_name'] for op in interpreter._get_ops_details()}  # pylint: disable=protected-access
  assert not any(name.startswith('Flex') for name in ops), ops


def test_training_does_not_replace_a_user_folder_at_model_dir_export(
    tmp_path):
  folder = helpers.make_tone_folder(tmp_path / 'tones', clips_per_class=4)
  model_dir = tmp_path / 'run'
  (model_dir / 'export').mkdir(parents=True)
  (model_dir / 'export' / 'notes.txt').write_text('mine')
  gin.clear_config()
  try:
    configuration.parse(
        [str(REPO_ROOT / 'gin_configs' / name)
         for name in ('common.gin', 'mel.gin')],
        helpers.tiny_bindings(folder, tmp_path / 'tfds',
                              **{'train.export': 'True'}))
    with pytest.raises(export_directory.ExportDirectoryError,
                       match=r"(?s)run/export'.*notes.txt"):
      training.train(model_dir=str(model_dir))
  finally:
    gin.clear_config()
  assert sorted(os.listdir(model_dir / 'export')) == ['notes.txt']
  assert (model_dir / 'export' / 'notes.txt').read_text() == 'mine'
  # Refused before training: nothing else was written into model_dir.
  assert sorted(os.listdir(model_dir)) == ['export']
