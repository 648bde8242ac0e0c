"""The streaming classifier: SavedModel signature, .tflite and offline agree."""

import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

import leaf_audio
from experiments import models
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
def exported(tmp_path_factory):
  """A tiny LEAF classifier trained a few steps on the embedded dataset."""
  keras.utils.set_random_seed(0)
  model = models.AudioClassifier(
      leaf_audio.Leaf(n_filters=8), models.ConvNet((4, 8)), num_outputs=10,
      normalization=None)
  model.build((None, WINDOW))
  clips, labels = [], []
  for index in range(20):
    clip = synthetic.synthesize_example(index % 10, np.random.default_rng(
        index))[:WINDOW]
    clips.append(np.pad(clip, [0, WINDOW - len(clip)]))
    labels.append(index % 10)
  model.compile(optimizer=keras.optimizers.Adam(1e-3),
                loss=keras.losses.SparseCategoricalCrossentropy(
                    from_logits=True))
  model.fit(np.array(clips, np.float32), np.array(labels), batch_size=10,
            epochs=2, verbose=0)
  windowed = models.WindowedClassifier(model, WINDOW)
  export_dir = tmp_path_factory.mktemp('run') / 'export'
  names = [f'class_{index}' for index in range(10)]
  serving.export_saved_model(windowed, names, SAMPLE_RATE, WINDOW, False,
                             export_dir)
  return model, export_dir

# Each test trains or exports a classifier (seconds each).
pytestmark = pytest.mark.slow


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


def test_signature_tflite_and_offline_agree(exported):
  model, export_dir = exported
  audio = _three_seconds()
  loaded = tf.saved_model.load(str(export_dir))
  step = loaded.signatures['stream_step']
  state = loaded.signatures['stream_initial_state']()
  signature_rows = []
  for start in range(0, len(audio), HOP):
    outputs = step(samples=tf.constant(audio[np.newaxis, start:start + HOP]),
                   **state)
    state = {name: outputs[name] for name in state}
    signature_rows.append(outputs['probabilities'].numpy()[0])
  signature_rows = np.array(signature_rows)

  path = streaming_export.write_streaming_tflite(
      export_dir, export_dir.parent / 'streaming.tflite')
  tflite_rows = streaming_export.run_tflite(path.read_bytes(), audio, HOP)

  offline = _offline(model, audio)
  assert len(offline) > 150  # hops whose window lies inside the 3 s clip
  hops = sorted(offline)
  expected = np.array([offline[hop] for hop in hops])
  np.testing.assert_allclose(signature_rows[hops], expected, atol=1e-4)
  np.testing.assert_allclose(tflite_rows[hops], expected, atol=1e-4)
  np.testing.assert_allclose(tflite_rows, signature_rows, atol=1e-4)
  # The classifier is not constant, so the comparison has teeth.
  assert np.ptp(expected, axis=0).max() > 1e-3


def test_stream_cli_prints_the_top_label_over_time(exported, tmp_path):
  _, export_dir = exported
  path = tmp_path / 'clip.wav'
  wav.write_wav(path, _three_seconds(), SAMPLE_RATE)
  times, probabilities, names, _ = stream_cli.stream_file(export_dir, path)
  assert len(times) == 300 and probabilities.shape == (300, 10)
  np.testing.assert_allclose(probabilities.sum(axis=1), 1., atol=1e-5)
  plot = tmp_path / 'probabilities.png'
  result = helpers.run_module('experiments.stream',
                              f'--saved_model={export_dir}', f'--plot={plot}',
                              str(path), timeout=300)
  assert result.returncode == 0, result.stderr
  lines = result.stdout.strip().splitlines()
  assert lines.pop() == f'plot written to {plot}' and plot.stat().st_size
  assert len(lines) == 12  # every 250 ms over 3 s
  top = names[int(np.argmax(probabilities[-1]))]
  assert lines[-1].split()[:3] == ['3.00', 's', top]


def test_export_cli_writes_the_streaming_tflite(exported, tmp_path):
  model, _ = exported
  model_dir = tmp_path / 'run'
  model_dir.mkdir()
  model.save(model_dir / 'best.keras')
  (model_dir / 'run.json').write_text(json.dumps({
      'window_samples': WINDOW, 'sample_rate': SAMPLE_RATE,
      'multi_label': False,
      'label_names': [f'class_{index}' for index in range(10)]}))
  path = tmp_path / 'streaming.tflite'
  result = helpers.run_module('experiments.export', f'--model_dir={model_dir}',
                              f'--streaming_tflite={path}', timeout=600)
  assert result.returncode == 0, result.stderr
  assert f'Streaming TFLite model written to {path}' in result.stdout
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


def test_metadata_is_unchanged(exported):
  """The streaming endpoints are additions: the existing ones still serve."""
  _, export_dir = exported
  loaded = tf.saved_model.load(str(export_dir))
  assert int(loaded.signatures['metadata']()['window_samples']) == WINDOW
  assert {'serving_default', 'tflite', 'stream_step',
          'stream_initial_state'} <= set(loaded.signatures)


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
