"""The streaming classifier: SavedModel signature, .tflite and offline agree."""

import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

import leaf_audio
from experiments import models
from experiments.serving import export_directory
from experiments.serving import signatures as serving
from experiments import stream as stream_cli
from experiments.serving import streaming_signatures as streaming_export
from experiments.data import synthetic
from experiments.data import wav
from leaf_audio import streaming
import experiments_helpers as helpers

SAMPLE_RATE = 16000
HOP = 160
WINDOW = 16000


@pytest.fixture(scope='module')
def exported(tiny_export):  # Exports (once per test run): slow tests only.
  """(model, export folder) of a tiny untrained LEAF classifier: the run's
  shared export (conftest.tiny_export, read only)."""
  model = keras.saving.load_model(tiny_export['model_dir'] / 'best.keras')
  return model, tiny_export['model_dir'] / 'export'


def _three_seconds():
  rng = np.random.default_rng(11)
  pieces = [synthetic.synthesize_example(label, rng)[:WINDOW]
            for label in (0, 5, 9)]
  audio = np.concatenate([np.pad(p, [0, WINDOW - len(p)]) for p in pieces])
  return audio.astype(np.float32)


def _offline(model, audio):
  """Per hop: the classifier on the offline frontend's frames of its window."""
  frontend = model.frontend
  delay = streaming.StreamingFrontend(frontend).delay_frames
  frames = frontend(tf.constant(audio[np.newaxis])).numpy()
  window_frames = WINDOW // HOP
  rows = {}
  for hop in range(len(audio) // HOP):
    last = hop - delay  # the newest final frame after this hop
    if last - window_frames + 1 < 0:
      continue
    window = frames[:, last - window_frames + 1:last + 1]
    logits = streaming_export._frames_to_logits(  # pylint: disable=protected-access
        model, tf.constant(window))
    rows[hop] = tf.nn.softmax(logits).numpy()[0]
  return rows


@pytest.mark.slow
def test_signature_tflite_and_offline_agree(exported, tiny_export):
  model, export_dir = exported
  audio = _three_seconds()
  loaded = tf.saved_model.load(export_directory.saved_model_path(export_dir))
  step = loaded.signatures['stream_step']
  state = loaded.signatures['stream_initial_state']()
  signature_rows = []
  for start in range(0, len(audio), HOP):
    outputs = step(samples=tf.constant(audio[np.newaxis, start:start + HOP]),
                   **state)
    state = streaming_export.next_state(outputs)
    signature_rows.append(outputs['probabilities'].numpy()[0])
  signature_rows = np.array(signature_rows)

  # Written by experiments.export --streaming_tflite (converters.py).
  tflite_rows = streaming_export.run_tflite(
      tiny_export['streaming_tflite'].read_bytes(), audio, HOP)

  offline = _offline(model, audio)
  assert len(offline) > 150  # hops whose window lies inside the 3 s clip
  hops = sorted(offline)
  expected = np.array([offline[hop] for hop in hops])
  np.testing.assert_allclose(signature_rows[hops], expected, atol=1e-4)
  np.testing.assert_allclose(tflite_rows[hops], expected, atol=1e-4)
  np.testing.assert_allclose(tflite_rows, signature_rows, atol=1e-4)
  # The classifier is not constant, so the comparison has teeth.
  assert np.ptp(expected, axis=0).max() > 1e-3


@pytest.mark.slow
def test_stream_cli_prints_the_top_label_over_time(exported, tmp_path):
  _, export_dir = exported
  path = tmp_path / 'clip.wav'
  wav.write_wav(path, _three_seconds(), SAMPLE_RATE)
  times, probabilities, names, _ = stream_cli.stream_file(export_dir, path)
  assert len(times) == 300
  assert list(names) == helpers.TINY_LABELS
  assert probabilities.shape == (300, len(names))
  np.testing.assert_allclose(probabilities.sum(axis=1), 1., atol=1e-5)
  plot = tmp_path / 'probabilities.png'
  result = helpers.run_module('experiments.stream',
                              f'--saved_model={export_dir}', f'--plot={plot}',
                              str(path), timeout=300)
  assert result.returncode == 0, result.stderr
  assert not result.stderr  # TensorFlow's lines are hidden (experiments/console.py).
  lines = result.stdout.strip().splitlines()
  assert lines.pop() == f'plot written to {plot}' and plot.stat().st_size
  assert len(lines) == 12  # every 250 ms over 3 s
  top = names[int(np.argmax(probabilities[-1]))]
  assert lines[-1].split()[:3] == ['3.00', 's', top]


@pytest.mark.slow
def test_export_cli_writes_the_streaming_tflite(exported, tiny_export):
  # The shared export is experiments.export's, run with --streaming_tflite
  # (it fails, with the binary's stderr, unless the binary exits with 0).
  model, _ = exported
  path = tiny_export['streaming_tflite']
  assert f'Streaming TFLite model written to {path}' in tiny_export['stdout']
  audio = _three_seconds()[:2 * WINDOW]
  rows = streaming_export.run_tflite(path.read_bytes(), audio, HOP)
  offline = _offline(model, audio)
  hops = sorted(offline)
  np.testing.assert_allclose(rows[hops], [offline[hop] for hop in hops],
                             atol=1e-4)


def test_export_refuses_a_streaming_tflite_without_the_signature(tmp_path):
  module = tf.Module()
  module.f = tf.function(lambda: {'x': tf.constant(1.)}, input_signature=[])
  tf.saved_model.save(module, str(tmp_path),
                      signatures={'metadata': module.f.get_concrete_function()})
  with pytest.raises(ValueError, match='no stream_step signature'):
    streaming_export.write_streaming_tflite(tmp_path, tmp_path / 'x.tflite')


@pytest.mark.slow
def test_metadata_tells_a_client_how_to_stream(exported):
  _, export_dir = exported
  loaded = tf.saved_model.load(export_directory.saved_model_path(export_dir))
  assert {'serving_default', 'tflite', 'stream_step',
          'stream_initial_state'} <= set(loaded.signatures)
  metadata = loaded.signatures['metadata']()
  leaf = leaf_audio.Leaf(n_filters=8)
  leaf.build((None, None))
  stream = streaming.StreamingFrontend(leaf)
  assert int(metadata['window_samples']) == WINDOW
  assert int(metadata['hop_samples']) == stream.hop_samples
  assert int(metadata['lookahead_samples']) == stream.lookahead_samples
  assert int(metadata['stream_window_frames']) == WINDOW // HOP
  assert int(metadata['stream_cadence']) == 1
  step = loaded.signatures['stream_step']
  inputs = set(step.structured_input_signature[1])
  outputs = set(step.structured_outputs)
  names = [name.decode() for name in metadata['stream_state_names'].numpy()]
  assert inputs == {'samples'} | {f'state_in_{i}' for i in range(len(names))}
  assert outputs == {'probabilities', 'valid'} | {
      f'state_out_{i}' for i in range(len(names))}
  assert not inputs & outputs  # ONNX needs distinct names.


def test_the_streaming_tflite_destination_is_checked_first(tmp_path):
  # Checked before the SavedModel is even read: tmp_path holds none.
  (tmp_path / 'best.keras').write_bytes(b'weights')
  (tmp_path / 'folder.tflite').mkdir()
  export = tmp_path / 'export'
  export.mkdir()
  (export / 'leaf_audio_export.json').write_text(
      '{"written_by": "leaf_audio experiments.serving"}')
  for path, match in [(tmp_path / 'best.keras', 'must name a .tflite'),
                      (tmp_path / 'folder.tflite', 'is not a file'),
                      (export / 'stream.tflite', 'inside an export')]:
    with pytest.raises(ValueError, match=match):
      streaming_export.write_streaming_tflite(tmp_path, path)
  assert (tmp_path / 'best.keras').read_bytes() == b'weights'
  assert sorted(os.listdir(export)) == ['leaf_audio_export.json']


# -- The stream_step contract on an untrained tiny model (fast) -------------


def _tiny(normalization=None, frontend=None, window=WINDOW):
  keras.utils.set_random_seed(1)
  model = models.AudioClassifier(
      frontend or leaf_audio.Leaf(n_filters=8), models.ConvNet((4,)),
      num_outputs=3, normalization=normalization)
  model.build((None, window))
  return models.WindowedClassifier(model, window)


def _run(step, initial, audio):
  """Feeds audio [samples] hop by hop through a step_signature function;
  returns (probabilities [hops, classes], valid [hops], states)."""
  state, rows, valid, states = initial, [], [], []
  for start in range(0, len(audio), HOP):
    outputs = step(tf.constant(audio[np.newaxis, start:start + HOP]),
                   *[state[f'state_in_{i}'] for i in range(len(state))])
    state = streaming_export.next_state(outputs)
    rows.append(outputs['probabilities'].numpy()[0])
    valid.append(bool(outputs['valid'].numpy()[0]))
    states.append(state)
  return np.array(rows), np.array(valid), states


def _clip(seed=0):
  rng = np.random.default_rng(seed)
  clip = synthetic.synthesize_example(seed % 10, rng)[:WINDOW]
  return np.pad(clip, [0, WINDOW - len(clip)]).astype(np.float32)


def test_streamed_probabilities_equal_serving_default_at_any_level():
  windowed = _tiny()
  stream = streaming_export.StreamingClassifier(windowed, WINDOW, False)
  step = stream.step_signature(1)
  initial = stream.initial_state_signature(1)()
  serve = serving.serving_functions(windowed, ['a', 'b', 'c'], SAMPLE_RATE,
                                    WINDOW, False, stream)['serving_default']
  clip = _clip()
  # The clip, then lookahead_samples of zeros (whole hops): the window then
  # holds the clip's frames.
  zeros = np.zeros(-(-stream.lookahead_samples // HOP) * HOP, np.float32)
  served_at = []
  for level in (0.1, 0.3, 1., 3.):
    rows, valid, _ = _run(step, initial, np.concatenate([clip * level,
                                                         zeros]))
    served = serve(waveform=tf.constant(clip[np.newaxis] * level))
    np.testing.assert_allclose(rows[-1], served['probabilities'][0],
                               atol=1e-4)
    assert valid[-1] and bool(served['valid'][0])
    served_at.append(served['probabilities'].numpy()[0])
  # PCEN is not exactly level invariant: the levels give different answers,
  # so equality at each is not an accident of a constant model.
  assert np.ptp(np.array(served_at), axis=0).max() > 1e-4


def test_a_non_finite_sample_marks_the_window_invalid_until_it_has_passed():
  windowed = _tiny()
  stream = streaming_export.StreamingClassifier(windowed, WINDOW, False)
  step = stream.step_signature(1)
  initial = stream.initial_state_signature(1)()
  audio = np.concatenate([_clip(1), _clip(2)])
  clean = audio.copy()
  clean[5000] = 0.
  broken = audio.copy()
  broken[5000] = np.nan
  clean_rows, clean_valid, _ = _run(step, initial, clean)
  rows, valid, states = _run(step, initial, broken)
  hop = 5000 // HOP
  assert clean_valid.all()
  assert valid[:hop].all() and not valid[hop:hop + WINDOW // HOP].any()
  assert np.isnan(rows[hop]).all()
  # It recovers: valid again, and then exactly the stream with a zero there.
  recovered = hop + stream.invalid_hops
  assert valid[recovered:].all() and recovered < len(valid)
  np.testing.assert_allclose(rows[recovered:], clean_rows[recovered:],
                             atol=1e-6)
  for state in states:
    for value in state.values():
      assert np.isfinite(value.numpy()).all()


def test_cadence_runs_the_classifier_every_k_hops():
  windowed = _tiny()
  every = streaming_export.StreamingClassifier(windowed, WINDOW, False)
  fourth = streaming_export.StreamingClassifier(windowed, WINDOW, False,
                                                cadence=4)
  audio = _clip(3)[:40 * HOP]
  rows, _, _ = _run(every.step_signature(1),
                    every.initial_state_signature(1)(), audio)
  sparse, valid, _ = _run(fourth.step_signature(1),
                          fourth.initial_state_signature(1)(), audio)
  assert valid.all()
  for hop in range(4, 40):
    last_run = (hop + 1) // 4 * 4 - 1  # hops 4, 8, ... (from 1) run it
    np.testing.assert_allclose(sparse[hop], rows[last_run], atol=1e-6)
  assert np.abs(rows[5] - rows[6]).max() > 0  # so the check has teeth


def test_every_state_tensor_is_batched_and_names_are_distinct():
  stream = streaming_export.StreamingClassifier(_tiny(), WINDOW, False)
  for batch in (1, 3):
    state = stream.initial_state(batch)
    assert all(value.shape[0] == batch for value in state.values()), {
        key: value.shape for key, value in state.items()}
  function = stream.step_signature(2)
  concrete = function.get_concrete_function()
  inputs = [spec.name for spec in concrete.structured_input_signature[0]]
  outputs = set(concrete.structured_outputs)
  assert inputs[0] == 'samples' and len(set(inputs)) == len(inputs)
  assert not set(inputs) & outputs
  state = stream.initial_state(2)
  new_state, probabilities, valid = stream.step(
      state, tf.zeros([2, HOP]))
  assert probabilities.shape == (2, 3) and valid.shape == (2,)
  assert {key: value.shape for key, value in new_state.items()} == {
      key: value.shape for key, value in state.items()}


def test_a_normalised_model_is_refused_by_name_and_exported_without_a_stream(
    caplog):
  normalised = _tiny(normalization=models.LoudnessNormalization(name='level'))
  with pytest.raises(streaming_export.NotStreamableError,
                     match=r"LoudnessNormalization \(layer 'level'\).*"
                     r'AudioClassifier.normalization = None'):
    streaming_export.check_streamable(normalised)
  archive = keras.export.ExportArchive()
  archive.track(normalised)
  caplog.clear()
  assert streaming_export.add_streaming_endpoints(
      archive, normalised, WINDOW, False) is None
  warnings = [record for record in caplog.records
              if 'no streaming signatures' in record.getMessage()]
  assert len(warnings) == 1 and 'LoudnessNormalization' in warnings[
      0].getMessage()
  with pytest.raises(streaming_export.NotStreamableError,
                     match='TimeDomainFilterbanks'):
    streaming_export.check_streamable(_tiny(
        frontend=leaf_audio.TimeDomainFilterbanks(n_filters=4)))


@pytest.mark.slow
def test_export_cli_refuses_a_streaming_tflite_of_a_normalised_model(
    tmp_path):
  model = _tiny(normalization=models.LoudnessNormalization()).classifier
  model_dir = tmp_path / 'run'
  model_dir.mkdir()
  model.save(model_dir / 'best.keras')
  (model_dir / 'run.json').write_text(json.dumps({
      'window_samples': WINDOW, 'sample_rate': SAMPLE_RATE,
      'multi_label': False, 'label_names': ['a', 'b', 'c']}))
  path = tmp_path / 'streaming.tflite'
  result = helpers.run_module_in_process(
      'experiments.export', f'--model_dir={model_dir}',
      f'--streaming_tflite={path}')
  assert result.returncode != 0 and 'Traceback' not in result.stderr
  last = result.stderr.strip().splitlines()[-1]
  assert last.startswith('error: ') and 'LoudnessNormalization' in last
  assert 'AudioClassifier.normalization = None' in last
  assert not path.exists()
  # Every destination and the model are checked before anything is written:
  # no SavedModel either (training's own export leaves the streaming
  # signatures out with one warning line; tested above).
  assert not (model_dir / 'export').exists()
