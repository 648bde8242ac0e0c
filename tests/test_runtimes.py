"""Every runtime gives serving_default's answer: the SavedModel in TensorFlow,
the .tflite in LiteRT and the .onnx in onnxruntime, offline and streamed
(experiments/serving/runtimes.py, converters.py, experiments.export)."""

import json
import os
import re

import keras
import numpy as np
import pytest
import tensorflow as tf

import leaf_audio
from experiments.serving import exporting as export_cli
from experiments import models
from experiments.data import synthetic
from experiments.data import wav
from experiments.serving import converters
from experiments.serving import runtimes
import experiments_helpers as helpers

# Each test exports or converts a model (seconds each).
pytestmark = pytest.mark.slow

SAMPLE_RATE = 16000
WINDOW = 16000
LABELS = ['zero', 'one', 'two', 'three']
LEVELS = (0.1, 0.3, 1., 3.)
FILES = {'tflite': 'offline.tflite', 'onnx': 'offline.onnx',
         'streaming_tflite': 'streaming.tflite',
         'streaming_onnx': 'streaming.onnx'}


def _run_dir(root, frontend):
  """A training run folder (best.keras, run.json) of a tiny untrained
  classifier; no loudness normalisation, so that the stream can equal the
  offline model."""
  keras.utils.set_random_seed(0)
  model = models.AudioClassifier(frontend, models.ConvNet((4, 8)),
                                 num_outputs=len(LABELS), normalization=None)
  model.build((None, WINDOW))
  root.mkdir(parents=True, exist_ok=True)
  model.save(root / 'best.keras')
  (root / 'run.json').write_text(json.dumps({
      'window_samples': WINDOW, 'sample_rate': SAMPLE_RATE,
      'multi_label': False, 'label_names': LABELS}))
  return root


@pytest.fixture(scope='module')
def exported(tiny_export):
  """{'saved_model': folder, flag: file} for a tiny LEAF classifier (the
  run's shared export, conftest.tiny_export: read only)."""
  assert tiny_export['label_names'] == LABELS
  return {key: tiny_export[key] for key in ('saved_model', *FILES)}


@pytest.fixture(scope='module')
def opened(exported):
  """{key of `exported`: its runtime}, each opened once."""
  return {key: runtimes.open_runtime(path) for key, path in exported.items()}


def _clips(seconds, seed=0):
  """Synthetic clips of `seconds`, one per level in LEVELS, and a NaN one."""
  rng = np.random.default_rng(seed)
  length = int(seconds * SAMPLE_RATE)
  clips = []
  for index, level in enumerate(LEVELS):
    clip = synthetic.synthesize_example(index % 10, rng)
    clip = np.resize(clip, length)  # repeated to the length
    clips.append(level * clip / np.abs(clip).max())
  clips.append(np.array(clips[0]))
  clips[-1][length // 3] = np.nan
  return np.array(clips, np.float32)


def _serving_default(saved_model, clips):
  """The export's serving_default, called directly."""
  if not isinstance(saved_model, runtimes.SavedModelRuntime):
    saved_model = runtimes.SavedModelRuntime(saved_model)
  outputs = saved_model.signatures['serving_default'](
      waveform=tf.constant(clips))
  return outputs['probabilities'].numpy(), outputs['valid'].numpy()


@pytest.mark.parametrize('seconds', [0.5, 1.0, 1.8])
def test_offline_runtimes_give_serving_defaults_answer(opened, seconds):
  clips = _clips(seconds)
  want, want_valid = _serving_default(opened['saved_model'], clips)
  assert want_valid.tolist() == [True] * len(LEVELS) + [False]
  assert np.isnan(want[-1]).all()
  # The probabilities depend on the clip, so the comparison has teeth.
  assert np.ptp(want[:-1], axis=0).max() > 1e-3
  for key in ('saved_model', 'tflite', 'onnx'):
    got, valid = opened[key].classify(clips)
    assert valid.tolist() == want_valid.tolist(), key
    np.testing.assert_allclose(got[:-1], want[:-1], atol=1e-3, err_msg=key)
    assert np.isnan(got[-1]).all(), key


def test_an_empty_batch_gives_empty_outputs_in_every_runtime(opened):
  # serving_default answers a batch of 0 clips with 0 rows; the tflite
  # signature, and the .tflite and .onnx converted from it, do the same.
  empty = np.zeros([0, 12000], np.float32)
  signatures = opened['saved_model'].signatures
  for name in ('serving_default', 'tflite'):
    outputs = signatures[name](waveform=tf.constant(empty))
    assert outputs['probabilities'].shape == (0, len(LABELS)), name
    assert outputs['valid'].shape == (0,), name
  for key in ('saved_model', 'tflite', 'onnx'):
    probabilities, valid = opened[key].classify(empty)
    assert probabilities.shape == (0, len(LABELS)), key
    assert valid.shape == (0,), key
  # The same runtimes still answer a batch of one clip after the empty one.
  one = _clips(0.75)[:1]
  want, _ = _serving_default(opened['saved_model'], one)
  for key in ('tflite', 'onnx'):
    got, valid = opened[key].classify(one)
    assert valid.tolist() == [True], key
    np.testing.assert_allclose(got, want, atol=1e-3, err_msg=key)


def test_the_tflite_runs_two_threads_alike(exported):
  clips = _clips(1.0)
  one, _ = runtimes.open_runtime(exported['tflite'], 1).classify(clips)
  two, _ = runtimes.open_runtime(exported['tflite'], 2).classify(clips)
  np.testing.assert_allclose(one, two, atol=1e-5)


def test_streamed_runtimes_agree_and_end_at_the_offline_answer(opened):
  clips = _clips(1.0)[:len(LEVELS)]
  offline, _ = _serving_default(opened['saved_model'], clips)
  streams = [opened[key]
             for key in ('saved_model', 'streaming_tflite', 'streaming_onnx')]
  lookahead = streams[1].metadata['lookahead_samples']
  assert lookahead == streams[2].metadata['lookahead_samples'] > 0
  for clip, want in zip(clips, offline):
    audio = np.concatenate([clip, np.zeros(lookahead, np.float32)])
    rows = [stream.stream(audio) for stream in streams]
    reference, reference_valid = rows[0]
    assert len(reference) == len(audio) // 160 and reference_valid.all()
    for probabilities, valid in rows[1:]:
      np.testing.assert_allclose(probabilities, reference, atol=1e-4)
      assert valid.all()
    # After the clip and the lookahead the window holds the whole clip.
    np.testing.assert_allclose(reference[-1], want, atol=0.02)


def test_files_describe_themselves_with_distinct_onnx_names(exported):
  import onnx  # pylint: disable=g-import-not-at-top
  for flag, kind in (('tflite', 'offline'), ('onnx', 'offline'),
                     ('streaming_tflite', 'streaming'),
                     ('streaming_onnx', 'streaming')):
    marker = converters.read_metadata(exported[flag])
    assert marker['kind'] == kind and marker['label_names'] == LABELS
    assert marker['sample_rate'] == SAMPLE_RATE
    assert marker['window_samples'] == WINDOW
    if kind == 'streaming':
      assert marker['hop_samples'] == 160
      assert marker['lookahead_samples'] % 160 == 0
  model = onnx.load(str(exported['streaming_onnx']))
  inputs = [item.name for item in model.graph.input]
  outputs = [item.name for item in model.graph.output]
  assert not set(inputs) & set(outputs)
  states = len(inputs) - 1
  assert inputs[0] == 'samples' and states > 0
  assert sorted(inputs[1:]) == sorted(f'state_in_{i}' for i in range(states))
  assert sorted(outputs) == sorted(['probabilities', 'valid'] + [
      f'state_out_{i}' for i in range(states)])
  props = {prop.key: prop.value for prop in model.metadata_props}
  assert json.loads(props['label_names']) == LABELS
  assert int(props['hop_samples']) == 160
  offline = onnx.load(str(exported['onnx']))
  assert [item.version for item in offline.opset_import
          if item.domain in ('', 'ai.onnx')] == [converters.ONNX_OPSET]


def test_a_runtime_refuses_the_other_kind_of_file(opened):
  with pytest.raises(ValueError, match='streaming model and cannot classify'):
    opened['streaming_tflite'].classify(np.zeros([1, 16000]))
  with pytest.raises(ValueError, match='offline model and cannot stream'):
    opened['onnx'].stream(np.zeros(16000))


def test_predict_and_stream_take_every_artifact(exported, opened, tmp_path):
  rng = np.random.default_rng(3)
  clips = _clips(1.3, seed=3)
  for index, row in enumerate((0, 3)):  # levels 0.1 and 3
    wav.write_wav(tmp_path / f'{index}.wav', clips[row], SAMPLE_RATE)
  wav.write_wav(tmp_path / 'tone.wav', helpers.tone(700., 1.0, rng), 44100)
  (tmp_path / 'bad.wav').write_bytes(b'not a wav file')
  paths = [str(tmp_path / name) for name in
           ('0.wav', 'bad.wav', '1.wav', 'tone.wav')]
  # The binary on each artifact: the bad file named, the others classified
  # alike, exit status 1. (Run in this process: a process per binary would
  # import TensorFlow again; test_serving runs the predict binary itself.)
  printed = {}
  for key in ('saved_model', 'tflite', 'onnx'):
    result = helpers.run_module_in_process('experiments.predict',
                                f'--model={exported[key]}', '--top_k=4',
                                *paths)
    assert result.returncode == 1, result.stderr[-2000:]
    assert f'{paths[1]}: error: ' in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        'error: 1 of 4 files were not classified.')
    lines = result.stdout.strip().splitlines()
    assert [line.split(': ')[0] for line in lines] == [
        paths[0], paths[2], paths[3]]
    assert 'resampled 44100 Hz -> 16000 Hz' in lines[2]
    printed[key] = [re.findall(r'(\w+) \((\d\.\d{3})\)', line)
                    for line in lines]
  for key in ('tflite', 'onnx'):
    for want, got in zip(printed['saved_model'], printed[key]):
      assert len(got) == len(want) == len(LABELS)
      np.testing.assert_allclose([float(p) for _, p in got],
                                 [float(p) for _, p in want], atol=2e-3)
  # The stream binary on a streaming .onnx: the top label every 250 ms is
  # the SavedModel stream's.
  long = np.concatenate(list(clips[:3])) / 3.
  wav.write_wav(tmp_path / 'long.wav', long, SAMPLE_RATE)
  audio, _ = wav.read_wav(tmp_path / 'long.wav')
  rows, _ = opened['saved_model'].stream(wav.to_mono(audio))
  result = helpers.run_module_in_process('experiments.stream',
                              f'--model={exported["streaming_onnx"]}',
                              str(tmp_path / 'long.wav'))
  assert result.returncode == 0, result.stderr[-2000:]
  lines = result.stdout.strip().splitlines()
  assert len(lines) == len(rows) // 25
  for index, line in enumerate(lines):
    row = rows[25 * index + 24]
    assert line.split()[2] == LABELS[int(np.argmax(row))]
    assert abs(float(line.split()[3]) - row.max()) < 2e-3


def test_export_refuses_a_users_file_before_writing_anything(tmp_path):
  model_dir = tmp_path / 'run'
  model_dir.mkdir()
  user = tmp_path / 'mine.onnx'
  user.write_bytes(b'my own model')
  for flag in ('onnx', 'streaming_onnx'):
    with pytest.raises(converters.ArtifactDestinationError,
                       match=f'--{flag}: .*mine.onnx.*not written by'):
      export_cli.export_run(model_dir, **{flag: user})
  with pytest.raises(converters.ArtifactDestinationError,
                     match='must name a .tflite'):
    export_cli.export_run(model_dir, tflite=tmp_path / 'x.onnx')
  with pytest.raises(converters.ArtifactDestinationError,
                     match='name the same file'):
    export_cli.export_run(model_dir, onnx=tmp_path / 'a.onnx',
                          streaming_onnx=tmp_path / 'a.onnx')
  assert user.read_bytes() == b'my own model'
  assert sorted(os.listdir(tmp_path)) == ['mine.onnx', 'run']
  assert not os.listdir(model_dir)  # no export folder either
  # The binary's main (tests/test_serving.py runs its one-line error in a
  # process of its own).
  result = helpers.run_module_in_process(
      'experiments.export', f'--model_dir={model_dir}',
      f'--tflite={tmp_path / "a.tflite"}', f'--onnx={user}')
  assert result.returncode == 1
  assert result.stderr.strip().splitlines()[-1].startswith(
      f'error: --onnx: {str(user)!r} exists and was not written by')
  assert sorted(os.listdir(tmp_path)) == ['mine.onnx', 'run']


def test_a_file_of_another_origin_is_named_not_run(tmp_path):
  for name in ('model.tflite', 'model.onnx'):
    (tmp_path / name).write_bytes(b'not a model')
    with pytest.raises(ValueError, match=name):
      runtimes.open_runtime(tmp_path / name)
  with pytest.raises(ValueError, match='could not load the SavedModel'):
    runtimes.open_runtime(tmp_path / 'missing')


def test_an_earlier_file_is_replaced(exported, tmp_path):
  copy = tmp_path / 'copy.tflite'
  copy.write_bytes(exported['tflite'].read_bytes())
  assert converters.check_destination(copy, 'tflite', 'tflite') == copy


@pytest.mark.parametrize('name', ['EfficientLeaf', 'MelFilterbanks'])
def test_other_frontends_convert_to_both_formats(name, tmp_path, monkeypatch):
  # EfficientLeaf in 2 groups: each group is a branch of the graph that
  # every signature traces (8 groups: 64 s for this test, 2 groups: 31 s).
  frontend = (leaf_audio.EfficientLeaf(n_filters=8, num_groups=2,
                                       compression='pcen')
              if name == 'EfficientLeaf' else
              leaf_audio.MelFilterbanks(n_filters=8))
  model_dir = _run_dir(tmp_path / 'run', frontend)
  # Both files are converted from one load of the SavedModel (a load
  # restores every function of the export: seconds each), and the export
  # traces no Keras model's default save signature (archive.track() would
  # trace one per model while it looks for lookup tables).
  loads, default_signatures = [], []
  load = converters._load  # pylint: disable=protected-access
  monkeypatch.setattr(converters, '_load',
                      lambda *args: loads.append(load(*args)) or loads[-1])
  monkeypatch.setattr(keras.Model, '_default_save_signature', property(
      lambda model: default_signatures.append(model.name)))
  written = export_cli.export_run(model_dir, tflite=tmp_path / 'm.tflite',
                                  onnx=tmp_path / 'm.onnx')
  assert len(loads) == 1, loads
  assert not default_signatures, default_signatures
  monkeypatch.undo()
  # serving_default from the SavedModel the converter loaded (a second load
  # of EfficientLeaf's export takes seconds).
  (folder, loaded), = loads
  assert str(folder) == str(written['saved_model'])
  monkeypatch.setattr(runtimes, 'load_saved_model', lambda path: loaded)
  opened = {key: runtimes.open_runtime(written[key])
            for key in ('saved_model', 'tflite', 'onnx')}
  for seconds in (0.5, 1.8):
    clips = _clips(seconds)
    want, want_valid = _serving_default(opened['saved_model'], clips)
    for key in ('tflite', 'onnx'):
      got, valid = opened[key].classify(clips)
      assert valid.tolist() == want_valid.tolist()
      np.testing.assert_allclose(got[:-1], want[:-1], atol=1e-3)
