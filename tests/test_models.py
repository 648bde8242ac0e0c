"""experiments/models.py: loudness normalisation, encoders, AudioClassifier
and WindowedClassifier, against numpy references and through .keras files."""

import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

import leaf_audio
from experiments import models
from conftest import REPO_ROOT

SAMPLE_RATE = 16000


def waveforms(batch=2, samples=16000, seed=0, scale=0.1):
  return (np.random.default_rng(seed).standard_normal((batch, samples)) *
          scale).astype(np.float32)


def tiny_classifier(num_outputs=4, frontend=None, **kwargs):
  """Mel filterbanks + a two-block ConvNet: the fast model of these tests."""
  return models.AudioClassifier(
      frontend or leaf_audio.MelFilterbanks(),
      models.ConvNet(filters=(8, 16)),
      num_outputs=num_outputs,
      **kwargs)


def as_json(config):
  """A config as it reads back from a .keras file (tuples become lists)."""
  return json.loads(json.dumps(config))


def perturb_weights(model, seed):
  """Scales every weight by 1 +- 10 %, as if trained a little.

  Batch norm statistics and frontend parameters leave their initial values,
  so a reload that re-initialised any weight would change the outputs; signs
  stay, so positive parameters (variances, PCEN exponents) stay valid.
  """
  rng = np.random.default_rng(seed)
  model.set_weights([
      w * (1 + 0.1 * rng.standard_normal(w.shape)).astype(w.dtype)
      for w in model.get_weights()
  ])


def loudness_reference(audio, target_db=15.0, max_gain_db=30.0):
  audio = np.asarray(audio, np.float64)
  std = audio.reshape(len(audio), -1).std(axis=1)
  gain = np.minimum(10**(max_gain_db / 20), 10**(target_db / 20) / (std + 1e-9))
  return audio * gain.reshape((-1,) + (1,) * (audio.ndim - 1))


# LoudnessNormalization.


def test_loudness_normalization_matches_numpy():
  rng = np.random.default_rng(1)
  # Quiet, moderate and loud rows: the gain differs per example.
  audio = (rng.standard_normal((3, 8000)) *
           np.array([[1e-2], [0.1], [0.9]])).astype(np.float32)
  layer = models.LoudnessNormalization(target_db=-10.0, max_gain_db=40.0)
  outputs = layer(audio).numpy()
  np.testing.assert_allclose(
      outputs, loudness_reference(audio, -10.0, 40.0), rtol=1e-5, atol=1e-7)
  # The target is reached: std 10**(-10/20) for every row.
  np.testing.assert_allclose(outputs.std(axis=1), 10**(-0.5), rtol=1e-4)


def test_loudness_normalization_default_target_and_rank_3_input():
  # std 0.5 needs a gain of 11.2, under the default cap of 31.6.
  audio = waveforms(batch=2, samples=4000, scale=0.5)[:, :, np.newaxis]
  outputs = models.LoudnessNormalization()(audio).numpy()
  assert outputs.shape == audio.shape
  np.testing.assert_allclose(outputs, loudness_reference(audio), rtol=1e-5)
  np.testing.assert_allclose(outputs.std(axis=(1, 2)), 10**(15 / 20),
                             rtol=1e-4)


def test_loudness_normalization_caps_gain_and_keeps_silence_finite():
  near_silence = waveforms(batch=1, samples=4000, scale=1e-7)
  silence = np.zeros((1, 4000), np.float32)
  audio = tf.constant(np.concatenate([near_silence, silence]))
  layer = models.LoudnessNormalization(max_gain_db=30.0)
  with tf.GradientTape() as tape:
    tape.watch(audio)
    outputs = layer(audio)
    total = tf.reduce_sum(outputs)
  gradient = tape.gradient(total, audio).numpy()
  outputs = outputs.numpy()
  # Without the cap the gain would be ~5.6e7; with it, 10**(30/20).
  np.testing.assert_allclose(outputs[0], near_silence[0] * 10**1.5, rtol=1e-6)
  np.testing.assert_array_equal(outputs[1], 0.0)
  assert np.all(np.isfinite(gradient))
  np.testing.assert_allclose(gradient, 10**1.5, rtol=1e-6)


def test_loudness_normalization_config_and_errors():
  layer = models.LoudnessNormalization(target_db=3.0, max_gain_db=12.0)
  restored = models.LoudnessNormalization.from_config(layer.get_config())
  assert (restored.target_db, restored.max_gain_db) == (3.0, 12.0)
  assert layer.compute_output_shape((None, 123)) == (None, 123)
  with pytest.raises(ValueError, match='target_db must be a finite number; '
                     'got nan'):
    models.LoudnessNormalization(target_db=float('nan'))
  with pytest.raises(ValueError, match="max_gain_db .* got '30'"):
    models.LoudnessNormalization(max_gain_db='30')
  with pytest.raises(ValueError, match='got shape'):
    layer(np.zeros((1, 2, 3, 4), np.float32))


# Encoders.


def test_convnet_shapes_pooling_and_layers():
  encoder = models.ConvNet(filters=(8, 16, 4))
  outputs = encoder(np.zeros((2, 100, 40, 1), np.float32))
  # Pools after blocks 0 and 1 (not 2): 100 -> 50 -> 25, 40 -> 20 -> 10.
  assert outputs.shape == (2, 25, 10, 4)
  assert encoder.compute_output_shape((2, 100, 40, 1)) == (2, 25, 10, 4)
  kernels = [layer.kernel_size for layer in encoder._stages
             if isinstance(layer, keras.layers.Conv2D)]
  assert kernels == [(3, 1), (1, 3)] * 3
  # Default depth 6 pools after blocks 0, 1, 3, 5: ceil(n / 16).
  assert models.ConvNet().compute_output_shape((None, 100, 40, 1)) == (
      None, 7, 3, 512)


def test_convnet_survives_a_frequency_axis_smaller_than_its_poolings():
  encoder = models.ConvNet(filters=(4,) * 6, dropout=0.0)
  outputs = encoder(np.ones((1, 9, 3, 1), np.float32))
  # 'same' pooling: 3 -> 2 -> 1 -> 1 -> 1 instead of an empty axis.
  assert outputs.shape == (1, 1, 1, 4)
  assert np.all(np.isfinite(outputs.numpy()))


def test_convnet_config_round_trip_and_errors():
  encoder = models.ConvNet(filters=(8, 16), activation='gelu', dropout=0.0,
                           normalization=False)
  config = encoder.get_config()
  restored = models.ConvNet.from_config(config)
  assert restored.get_config() == config
  assert not any(isinstance(layer, (keras.layers.BatchNormalization,
                                    keras.layers.Dropout))
                 for layer in restored._stages)
  with pytest.raises(ValueError, match='filters must be a non-empty'):
    models.ConvNet(filters=())
  with pytest.raises(ValueError, match='filters must be a positive integer'):
    models.ConvNet(filters=(8, 0))
  with pytest.raises(ValueError, match=r'dropout must be a number in \[0, 1\)'):
    models.ConvNet(dropout=1.0)
  with pytest.raises(ValueError, match=r'\[batch, time, frequency, 1\]'):
    encoder(np.zeros((2, 100, 40), np.float32))


def test_pann_encoder_shapes_and_filters():
  encoder = models.PANNEncoder(depth=2)
  outputs = encoder(np.zeros((2, 100, 40, 1), np.float32))
  assert outputs.shape == (2, 25, 10, 128)
  convs = [layer for layer in encoder._stages
           if isinstance(layer, keras.layers.Conv2D)]
  assert [c.filters for c in convs] == [64, 64, 128, 128]
  assert not any(c.use_bias for c in convs)
  # Input batch norm: one statistic per frequency channel.
  assert encoder._input_norm.moving_mean.shape == (40,)
  # CNN14 (depth 6) and deeper: 5 poolings, filters capped at 2048.
  assert models.PANNEncoder().compute_output_shape((None, 100, 40, 1)) == (
      None, 4, 2, 2048)
  assert models.PANNEncoder(depth=8).compute_output_shape(
      (None, 100, 40, 1)) == (None, 4, 2, 2048)
  with pytest.raises(ValueError, match='depth must be a positive integer'):
    models.PANNEncoder(depth=0)
  with pytest.raises(ValueError, match='known frequency axis'):
    models.PANNEncoder(depth=1).build((None, None, None, 1))


# AudioClassifier.


@pytest.mark.parametrize('frontend,encoder,pooling', [
    (leaf_audio.Leaf, lambda: models.ConvNet(filters=(8, 16)), 'max'),
    (leaf_audio.MelFilterbanks, lambda: models.PANNEncoder(depth=2), 'mean'),
    (leaf_audio.Leaf, lambda: None, 'mean'),
])
def test_audio_classifier_output_shapes(frontend, encoder, pooling):
  model = models.AudioClassifier(frontend(), encoder(), num_outputs=7,
                                 pooling=pooling)
  outputs = model(waveforms())
  assert outputs.shape == (2, 7)
  assert outputs.dtype == tf.float32
  assert np.all(np.isfinite(outputs.numpy()))
  assert model.compute_output_shape((2, 16000)) == (2, 7)


@pytest.mark.parametrize('pooling,reduce', [('max', np.max), ('mean', np.mean)])
def test_audio_classifier_equals_its_stages_composed_in_numpy(pooling, reduce):
  x = waveforms(samples=8000)
  model = tiny_classifier(num_outputs=3, pooling=pooling)
  logits = model(x, training=False).numpy()
  normalized = models.LoudnessNormalization()(x)
  features = model.frontend(normalized).numpy()
  encoded = model.encoder(features[..., np.newaxis], training=False).numpy()
  kernel, bias = model._head.get_weights()
  expected = reduce(encoded, axis=(1, 2)) @ kernel + bias
  np.testing.assert_allclose(logits, expected, rtol=1e-5, atol=1e-5)


def test_audio_classifier_without_encoder_pools_over_time_only():
  x = waveforms(samples=8000)
  mel = leaf_audio.MelFilterbanks(n_filters=20)
  model = models.AudioClassifier(mel, None, num_outputs=2, normalization=None)
  logits = model(x).numpy()
  kernel, bias = model._head.get_weights()
  assert kernel.shape == (20, 2)  # One feature per mel channel.
  np.testing.assert_allclose(logits, mel(x).numpy().max(axis=1) @ kernel + bias,
                             rtol=1e-5, atol=1e-5)


def test_audio_classifier_dropout_only_in_training():
  x = waveforms(samples=8000)
  model = tiny_classifier(dropout=0.5)
  inference = [model(x, training=False).numpy() for _ in range(2)]
  np.testing.assert_array_equal(inference[0], inference[1])
  keras.utils.set_random_seed(0)
  assert not np.allclose(model(x, training=True), inference[0])


def test_audio_classifier_default_normalization_is_fresh_and_can_be_disabled():
  first, second = tiny_classifier(), tiny_classifier()
  assert isinstance(first.normalization, models.LoudnessNormalization)
  assert first.normalization is not second.normalization
  assert tiny_classifier(normalization=None).normalization is None
  assert first.get_config()['normalization']['class_name'] == (
      'LoudnessNormalization')


def test_audio_classifier_argument_errors():
  mel = leaf_audio.MelFilterbanks
  for bad in (0, -3, 2.5, True):
    with pytest.raises(ValueError, match='num_outputs must be a positive '
                       f'integer; got {bad!r}'):
      models.AudioClassifier(mel(), None, num_outputs=bad)
  with pytest.raises(ValueError, match="pooling must be one of .* got 'avg'"):
    models.AudioClassifier(mel(), None, 2, pooling='avg')
  with pytest.raises(ValueError, match='dropout must be a number'):
    models.AudioClassifier(mel(), None, 2, dropout=1.5)
  with pytest.raises(TypeError, match='frontend must be a Keras layer; got '
                     'None'):
    models.AudioClassifier(None, None, 2)
  with pytest.raises(TypeError, match="encoder must be a Keras layer or None; "
                     "got 'convnet'"):
    models.AudioClassifier(mel(), 'convnet', 2)
  with pytest.raises(ValueError, match=r'\[batch, samples\]'):
    models.AudioClassifier(mel(), None, 2).build((2, 16000, 1))


def test_audio_classifier_builds_without_data_and_trains_under_compile():
  model = tiny_classifier()
  model.build((None, 16000))  # What experiments/training/job.py does.
  assert model.built and model.count_params() > 0
  assert all(layer.built for layer in nested_layers(model))


def nested_layers(layer):
  """`layer` and the layers in it, through the public `layers` and stages."""
  children = list(getattr(layer, 'layers', []))
  children += [getattr(layer, name, None) for name in leaf_audio.frontend.STAGES]
  found = [layer]
  for child in children:
    if isinstance(child, keras.layers.Layer) and child is not layer:
      found += nested_layers(child)
  return found


def test_audio_classifier_keras_file_round_trip(tmp_path):
  x = waveforms(samples=8000)
  model = models.AudioClassifier(
      leaf_audio.Leaf(n_filters=16), models.ConvNet(filters=(8, 16)),
      num_outputs=3, normalization=models.LoudnessNormalization(-20.0, 20.0),
      pooling='mean', dropout=0.2)
  model(x)
  perturb_weights(model, seed=1)
  expected = model(x, training=False).numpy()
  assert np.all(np.isfinite(expected))
  path = tmp_path / 'classifier.keras'
  model.save(path)
  restored = keras.saving.load_model(path)
  assert isinstance(restored, models.AudioClassifier)
  np.testing.assert_array_equal(restored(x, training=False).numpy(), expected)
  assert as_json(restored.get_config()) == as_json(model.get_config())
  assert restored.normalization.target_db == -20.0
  assert isinstance(restored.frontend, leaf_audio.Leaf)
  assert isinstance(restored.encoder, models.ConvNet)


@pytest.mark.slow
def test_efficientnet_encoder_shapes_and_round_trip(tmp_path):
  encoder = models.EfficientNetB0Encoder()
  layer_types = {type(layer) for layer in encoder._network.layers}
  # The ImageNet pixel preprocessing of keras.applications is cut off.
  assert keras.layers.Rescaling not in layer_types
  assert keras.layers.Normalization not in layer_types
  model = models.AudioClassifier(leaf_audio.MelFilterbanks(), encoder,
                                 num_outputs=5)
  x = waveforms()
  logits = model(x, training=False).numpy()
  assert logits.shape == (2, 5)
  # 100 frames x 40 mel channels -> floor(n / 32) each.
  images = model.frontend(x)[..., tf.newaxis]
  assert images.shape == (2, 100, 40, 1)
  assert encoder(images).shape == (2, 3, 1, 1280)
  assert encoder.compute_output_shape((2, 100, 40, 1)) == (2, 3, 1, 1280)
  assert encoder.compute_output_shape((2, 63, 32, 1)) == (2, 1, 1, 1280)
  with pytest.raises(ValueError, match='at least 32 steps along frequency'):
    encoder(np.zeros((1, 100, 20, 1), np.float32))
  path = tmp_path / 'efficientnet.keras'
  model.save(path)
  restored = keras.saving.load_model(path)
  np.testing.assert_array_equal(restored(x, training=False).numpy(), logits)


class RecordingFrontend(keras.layers.Layer):
  """Mel filterbanks that record the dtype and values of what they receive."""

  def __init__(self, **kwargs):
    super().__init__(dtype='float32', autocast=False, **kwargs)
    self._mel = leaf_audio.MelFilterbanks()
    self.received = None

  def call(self, inputs):
    self.received = inputs
    return self._mel(inputs)


def test_classifier_under_mixed_precision_keeps_audio_and_logits_float32():
  audio = np.float32(1 + 2.0**-20) * waveforms(samples=12000)
  frontend = RecordingFrontend()
  previous = keras.mixed_precision.global_policy()
  keras.mixed_precision.set_global_policy('mixed_float16')
  try:
    model = tiny_classifier(frontend=frontend, normalization=None)
    windowed = models.WindowedClassifier(model, 8000)
    logits = windowed(audio)
    model(audio)
    model.compile(optimizer='adam', loss='mse')
  finally:
    keras.mixed_precision.set_global_policy(previous)
  # The waveform reaches the frontend unrounded; float16 would round it.
  assert frontend.received.dtype == tf.float32
  np.testing.assert_array_equal(frontend.received.numpy(), audio)
  assert model.encoder.compute_dtype == 'float16'
  assert logits.dtype == tf.float32
  assert windowed.compute_dtype == 'float32'
  assert np.all(np.isfinite(logits.numpy()))
  # The model's policy stays mixed, so compile adds loss scaling.
  assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)


# WindowedClassifier.


def framed_reference(classifier, audio, window):
  """Mean logits over the windows, cut with numpy: consecutive windows, the
  last one ending at the clip's end; a short clip zero-padded to one window."""
  batch, samples = audio.shape
  if samples < window:
    audio = np.pad(audio, ((0, 0), (0, window - samples)))
    samples = window
  starts = [min(i * window, samples - window)
            for i in range(-(-samples // window))]
  logits = [classifier(audio[:, start:start + window], training=False).numpy()
            for start in starts]
  return np.mean(logits, axis=0)


@pytest.fixture(scope='module')
def trained_tiny_classifier():
  model = tiny_classifier(num_outputs=3)
  model.build((None, 16000))
  perturb_weights(model, seed=2)
  return model


def test_windowed_classifier_averages_logits_over_its_windows(
    trained_tiny_classifier):
  windowed = models.WindowedClassifier(trained_tiny_classifier, 16000)
  serve = tf.function(
      lambda audio: windowed(audio, training=False),
      input_signature=[tf.TensorSpec([None, None], tf.float32)])
  # 1 window, 3 windows (the last overlapping), 1 zero-padded window.
  for seed, samples in enumerate((16000, 40000, 5000)):
    audio = waveforms(batch=2, samples=samples, seed=seed)
    expected = framed_reference(trained_tiny_classifier, audio, 16000)
    np.testing.assert_allclose(windowed(audio).numpy(), expected, rtol=1e-5,
                               atol=1e-5)
    np.testing.assert_allclose(serve(audio).numpy(), expected, rtol=1e-5,
                               atol=1e-5)
  # One concrete function served all three lengths.
  assert serve.experimental_get_tracing_count() == 1
  assert windowed.compute_output_shape((None, None)) == (None, 3)


def test_windowed_classifier_is_not_the_classifier_on_the_whole_clip(
    trained_tiny_classifier):
  # Guards the reference above: on 3 windows, averaging differs from one pass.
  audio = waveforms(batch=1, samples=40000, seed=5)
  windowed = models.WindowedClassifier(trained_tiny_classifier, 16000)
  whole = trained_tiny_classifier(audio, training=False).numpy()
  assert not np.allclose(windowed(audio).numpy(), whole, atol=1e-4)


def test_windowed_classifier_errors():
  with pytest.raises(ValueError, match='window_samples must be a positive'):
    models.WindowedClassifier(tiny_classifier(), 0)
  with pytest.raises(TypeError, match='classifier must be a Keras layer'):
    models.WindowedClassifier(None)
  windowed = models.WindowedClassifier(tiny_classifier(), 8000)
  with pytest.raises(ValueError, match='at least one sample'):
    windowed(np.zeros((2, 0), np.float32))
  with pytest.raises(ValueError, match=r'\[batch, samples\]'):
    windowed(np.zeros((2, 100, 1), np.float32))
  serve = tf.function(
      lambda audio: windowed(audio),
      input_signature=[tf.TensorSpec([None, None], tf.float32)])
  with pytest.raises(tf.errors.InvalidArgumentError, match='at least one'):
    serve(tf.zeros([2, 0]))


def test_windowed_classifier_of_a_built_classifier_is_built_for_export():
  classifier = tiny_classifier()
  assert not models.WindowedClassifier(classifier).built
  classifier.build((None, 16000))
  windowed = models.WindowedClassifier(classifier)
  assert windowed.built
  # What experiments/serving/signatures.py does first; it rejects unbuilt models.
  keras.export.ExportArchive().track(windowed)


@pytest.mark.slow
def test_keras_files_reload_in_a_fresh_process(trained_tiny_classifier,
                                               tmp_path):
  audio = waveforms(batch=2, samples=40000, seed=7)
  windowed = models.WindowedClassifier(trained_tiny_classifier, 16000)
  np.save(tmp_path / 'audio.npy', audio)
  np.save(tmp_path / 'windowed.npy', windowed(audio).numpy())
  np.save(tmp_path / 'classifier.npy',
          trained_tiny_classifier(audio[:, :16000], training=False).numpy())
  windowed.save(tmp_path / 'windowed.keras')
  trained_tiny_classifier.save(tmp_path / 'classifier.keras')
  # What experiments/export.py does: load the classifier, then wrap it.
  script = textwrap.dedent(f"""
      import pathlib, numpy as np, keras
      from experiments import models  # registers the classes
      root = pathlib.Path({str(tmp_path)!r})
      audio = np.load(root / 'audio.npy')
      windowed = keras.saving.load_model(root / 'windowed.keras')
      assert isinstance(windowed, models.WindowedClassifier), type(windowed)
      np.testing.assert_array_equal(windowed(audio).numpy(),
                                    np.load(root / 'windowed.npy'))
      classifier = keras.saving.load_model(root / 'classifier.keras')
      np.testing.assert_array_equal(
          classifier(audio[:, :16000], training=False).numpy(),
          np.load(root / 'classifier.npy'))
      np.testing.assert_array_equal(
          models.WindowedClassifier(classifier, 16000)(audio).numpy(),
          np.load(root / 'windowed.npy'))
      print('reloaded')
  """)
  env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), TF_CPP_MIN_LOG_LEVEL='2')
  result = subprocess.run([sys.executable, '-c', script], capture_output=True,
                          text=True, env=env, timeout=120, check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  assert 'reloaded' in result.stdout


# Training.


def tones(frequencies_hz, examples_per_class, samples, seed):
  """Sine tones with random phase and amplitude; labels index frequencies."""
  rng = np.random.default_rng(seed)
  t = np.arange(samples) / SAMPLE_RATE
  audio, labels = [], []
  for label, frequency in enumerate(frequencies_hz):
    for _ in range(examples_per_class):
      amplitude = rng.uniform(0.01, 1.0)
      phase = rng.uniform(0, 2 * np.pi)
      audio.append(amplitude * np.sin(2 * np.pi * frequency * t + phase))
      labels.append(label)
  return np.array(audio, np.float32), np.array(labels)


@pytest.mark.slow
def test_fit_learns_to_tell_a_low_tone_from_a_high_tone():
  keras.utils.set_random_seed(0)
  audio, labels = tones((300.0, 3000.0), examples_per_class=32, samples=4000,
                        seed=0)
  model = tiny_classifier(num_outputs=2)
  model.compile(
      optimizer=keras.optimizers.Adam(1e-2),
      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
      metrics=['accuracy'])
  history = model.fit(audio, labels, batch_size=16, epochs=4, shuffle=True,
                      verbose=0)
  assert history.history['accuracy'][-1] > 0.9
  assert history.history['loss'][-1] < history.history['loss'][0]
