"""EfficientLeaf: defaults, parity with Leaf, robustness, saving, gin."""

import doctest
import json

import gin
import keras
import numpy as np
import pytest
import tensorflow as tf

import leaf_audio
from leaf_audio import compression
from leaf_audio import efficient_leaf
from leaf_audio import grouped_filterbank
from leaf_audio import logtbn
from conftest import REPO_ROOT


def trainable_count(layer):
  return sum(int(np.prod(v.shape)) for v in layer.trainable_weights)


def test_defaults_are_gabor_8g_opt_with_log_tbn():
  layer = leaf_audio.EfficientLeaf()
  assert layer(tf.zeros([2, 16000])).shape == (2, 100, 40)
  assert isinstance(layer.compression, logtbn.LogTBN)
  assert [g.stride for g in layer.groups] == [160, 160, 80, 40, 40, 32, 20,
                                              16]
  assert trainable_count(layer) == 240
  assert '240 trainable' in type(layer).__doc__
  assert 'Gabor 8G-opt' in type(layer).__doc__


def test_dense_geometry_with_pcen_equals_leaf(reference_input):
  leaf = leaf_audio.Leaf()
  dense = leaf_audio.EfficientLeaf(compression='pcen',
                                   conv_win_factor=None, stride_factor=None)
  expected = leaf(reference_input).numpy()
  np.testing.assert_allclose(dense(reference_input), expected, atol=1e-4)


def test_default_geometry_with_pcen_stays_close_to_leaf(reference_input):
  # The decimated groups sample each filter's envelope every 16-160
  # samples: exact for steady sounds, off where the envelope moves faster
  # (the chirp, the clip's ends). See docs/frontend_comparison.md.
  expected = leaf_audio.Leaf()(reference_input).numpy()
  out = leaf_audio.EfficientLeaf(compression='pcen')(reference_input)
  deviation = np.abs(out.numpy() - expected)
  assert deviation.mean() < 0.03 and deviation.max() < 1.
  assert np.median(deviation) < 0.01


@pytest.mark.parametrize('name, layer_type', [
    ('pcen', compression.PCENCompression),
    ('log_pcen', compression.PCENCompression),
    ('logtbn', logtbn.LogTBN),
    (None, type(None)),  # no compression stage
])
def test_compression_choices(name, layer_type):
  layer = leaf_audio.EfficientLeaf(compression=name)
  assert isinstance(layer.compression, layer_type)
  assert layer(tf.zeros([1, 1600])).shape == (1, 10, 40)
  if name in ('pcen', 'log_pcen'):
    assert layer.compression.parameterization == (
        'log' if name == 'log_pcen' else 'linear')
    assert trainable_count(layer) == 280


def test_input_and_argument_checks():
  layer = leaf_audio.EfficientLeaf()
  with pytest.raises(TypeError, match='int16 samples / 32768'):
    layer(tf.zeros([1, 1600], tf.int16))
  with pytest.raises(ValueError, match='mono audio'):
    layer(tf.zeros([1, 1600, 2]))
  with pytest.raises(ValueError, match="'valid' padding and needs at least 401"):
    leaf_audio.EfficientLeaf(pooling_padding='valid')(tf.zeros([1, 400]))
  with pytest.raises(ValueError, match='compression must be one of'):
    leaf_audio.EfficientLeaf(compression='pcne')
  with pytest.raises(ValueError, match='num_groups=50 exceeds'):
    leaf_audio.EfficientLeaf(num_groups=50)
  with pytest.raises(ValueError, match='stride_factor must be a positive'):
    leaf_audio.EfficientLeaf(stride_factor=0)


def square_waves(seconds, batch=2):
  t = np.arange(int(seconds * 16000)) / 16000
  hz = np.array([110., 3000.])[:batch, None]
  return np.sign(np.sin(2 * np.pi * hz * t)).astype(np.float32)


@pytest.mark.parametrize('name', ['log_pcen', 'logtbn'])
@pytest.mark.slow
def test_finite_outputs_and_gradients_on_hard_inputs(name):
  # 16 filters (2 per group) span the same 0-8 kHz on the mel scale as 40:
  # each group's stride and pooling are exercised; the ten-minute clip costs
  # in proportion to the filters.
  layer = leaf_audio.EfficientLeaf(n_filters=16, compression=name)

  @tf.function(input_signature=[tf.TensorSpec([None, None])])
  def forward_backward(x):
    with tf.GradientTape() as tape:
      outputs = layer(x, training=True)
      loss = tf.reduce_mean(outputs**2)
    return outputs, tape.gradient(loss, layer.trainable_weights)

  for waveform in (np.zeros([2, 16000], np.float32),  # Silence.
                   square_waves(1.0),  # Full scale, 110 Hz and 3 kHz.
                   square_waves(600.0, batch=1)):  # 10 minutes.
    outputs, gradients = forward_backward(waveform)
    assert outputs.shape[1] == waveform.shape[1] // 160
    assert np.isfinite(outputs.numpy()).all()
    for gradient in gradients:
      assert np.isfinite(gradient.numpy()).all()


def test_saves_and_reloads_in_a_model(tmp_path):
  model = keras.Sequential([
      keras.Input((None,)),
      leaf_audio.EfficientLeaf(num_groups=4, compression='log_pcen'),
      keras.layers.GlobalMaxPooling1D(),
      keras.layers.Dense(3),
  ])
  x = tf.random.stateless_normal([2, 4000], seed=[5, 6]) * 0.1
  expected = model(x)
  model.save(tmp_path / 'model.keras')
  restored = keras.saving.load_model(tmp_path / 'model.keras')
  np.testing.assert_allclose(restored(x), expected, rtol=1e-5, atol=1e-6)
  frontend = restored.layers[0]
  assert (json.dumps(frontend.get_config(), sort_keys=True) ==
          json.dumps(model.layers[0].get_config(), sort_keys=True))
  assert frontend.groups == model.layers[0].groups


def test_docstring_examples_hold():
  for module in (efficient_leaf, grouped_filterbank, logtbn, compression):
    globs = dict(vars(module), tf=tf)
    failures, tried = doctest.testmod(module, globs=globs, verbose=False)
    assert tried > 0 and failures == 0, module.__name__


def test_gin_config_builds_the_papers_efficient_leaf():
  # Training on it: tests/test_training_loop.py trains every frontend file
  # composed on default.gin, and reloads its best.keras.
  from experiments import configurables  # pylint: disable=g-import-not-at-top,unused-import
  from experiments import gin_files as configuration  # pylint: disable=g-import-not-at-top
  from experiments.training import job  # pylint: disable=g-import-not-at-top,unused-import
  gin.clear_config()
  try:
    configuration.parse([str(REPO_ROOT / 'gin_configs' / name) for name in (
        'common.gin', 'efficient_leaf.gin', 'convnet.gin')], [])
    frontend = gin.query_parameter('train.frontend').scoped_configurable_fn()
  finally:
    gin.clear_config()
  # The paper's "Gabor 8G-opt" on 40 filters of 25 ms every 10 ms.
  assert isinstance(frontend, leaf_audio.EfficientLeaf)
  config = frontend.get_config()
  assert {key: config[key] for key in (
      'n_filters', 'sample_rate', 'window_len', 'window_stride', 'num_groups',
      'conv_win_factor', 'stride_factor')} == {
          'n_filters': 40, 'sample_rate': 16000, 'window_len': 25.,
          'window_stride': 10., 'num_groups': 8, 'conv_win_factor': 6.,
          'stride_factor': 16.}
