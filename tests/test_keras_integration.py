"""Keras 3 citizenship: configs, .keras files, SavedModel export, mixed precision,
gradients."""

import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

from leaf_audio import augment
from leaf_audio import frontend
from leaf_audio import initializers
from conftest import REPO_ROOT
from test_frontend import leaf_custom

FRONTENDS = {
    'leaf': frontend.Leaf,
    'tfbanks': frontend.TimeDomainFilterbanks,
    'sincnet': frontend.SincNet,
    'sincnet_plus': frontend.SincNetPlus,
    'mel': frontend.MelFilterbanks,
    'leaf_custom': leaf_custom,
    'leaf_everything': lambda: frontend.Leaf(
        n_filters=8, preemp=True, mean_var_norm=True,
        spec_augment=augment.SpecAugment(seed=3),
        regularizer_fn=keras.regularizers.L2(1e-4),
        pooling_padding='valid', learn_pooling=False),
}


def waveforms(batch=2, samples=4000, seed=0):
  return np.random.default_rng(seed).standard_normal(
      (batch, samples)).astype(np.float32) * 0.1


@pytest.mark.parametrize('name', sorted(FRONTENDS))
def test_config_round_trip(name):
  layer = FRONTENDS[name]()
  x = waveforms()
  outputs = layer(x)
  config = layer.get_config()
  json.dumps(keras.saving.serialize_keras_object(layer))  # JSON-safe.
  restored = type(layer).from_config(config)
  restored(x)
  restored.set_weights(layer.get_weights())
  np.testing.assert_array_equal(restored(x), outputs)
  assert restored.get_config() == config
  assert ([v.trainable for v in restored.weights] ==
          [v.trainable for v in layer.weights])


def classifier(layer):
  return keras.Sequential([
      keras.Input((None,)), layer,
      keras.layers.GlobalAveragePooling1D(),
      keras.layers.Dense(3, kernel_initializer='ones')
  ])


@pytest.mark.slow
def test_keras_files_reload_in_a_fresh_process(tmp_path):
  x = waveforms(samples=4800)
  for name, make in FRONTENDS.items():
    model = classifier(make())
    np.save(tmp_path / f'{name}.npy', model(x).numpy())
    model.save(tmp_path / f'{name}.keras')
  np.save(tmp_path / 'input.npy', x)
  script = textwrap.dedent(f"""
      import pathlib, numpy as np, keras
      import leaf_audio  # registers the layers
      root = pathlib.Path({str(tmp_path)!r})
      x = np.load(root / 'input.npy')
      for path in sorted(root.glob('*.keras')):
        model = keras.saving.load_model(path)
        expected = np.load(path.with_suffix('.npy'))
        np.testing.assert_array_equal(model(x).numpy(), expected)
        print('ok', path.stem)
      """)
  env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
  result = subprocess.run([sys.executable, '-c', script], env=env,
                          capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  assert sorted(result.stdout.split()[1::2]) == sorted(FRONTENDS)


def test_export_serves_any_length(tmp_path):
  model = classifier(frontend.Leaf(n_filters=8))
  model.export(str(tmp_path / 'saved'), verbose=False)
  served = tf.saved_model.load(str(tmp_path / 'saved'))
  for samples in (3200, 16000, 777):
    x = waveforms(batch=3, samples=samples, seed=samples)
    np.testing.assert_allclose(served.serve(x), model(x), atol=1e-5)


@pytest.fixture
def mixed_precision():
  keras.mixed_precision.set_global_policy('mixed_float16')
  yield
  keras.mixed_precision.set_global_policy('float32')


@pytest.mark.parametrize('make', [
    frontend.Leaf, frontend.SincNetPlus, frontend.MelFilterbanks,
    frontend.TimeDomainFilterbanks
])
def test_mixed_precision_frontend_computes_in_float32(mixed_precision, make):
  del mixed_precision
  layer = make()
  model = classifier(layer)
  assert layer.compute_dtype == 'float32'
  stages = [getattr(layer, name, None) for name in frontend.STAGES]
  assert all(stage.compute_dtype == 'float32' for stage in stages
             if stage is not None)
  x = tf.constant(waveforms(samples=8000))
  with tf.GradientTape() as tape:
    features = layer(x, training=True)
    loss = tf.reduce_mean(tf.square(model(x, training=True)))
  assert features.dtype == tf.float32
  assert np.isfinite(features.numpy()).all()
  grads = tape.gradient(loss, model.trainable_variables)
  assert all(np.isfinite(g.numpy()).all() for g in grads)


@pytest.mark.parametrize('name', ['leaf', 'tfbanks', 'sincnet', 'sincnet_plus',
                                  'leaf_custom', 'leaf_everything'])
def test_gradients_reach_every_trainable_variable(name):
  layer = FRONTENDS[name]()
  x = tf.constant(waveforms(samples=8000))
  layer(x)
  with tf.GradientTape() as tape:
    loss = tf.reduce_mean(tf.square(layer(x, training=True)))
  grads = tape.gradient(loss, layer.trainable_variables)
  assert layer.trainable_variables
  for variable, grad in zip(layer.trainable_variables, grads):
    assert grad is not None, variable.path
    assert np.isfinite(grad.numpy()).all(), variable.path
    assert np.any(grad.numpy() != 0), variable.path


def test_fit_projects_parameters_back_into_range():
  # Start outside the valid ranges; one optimizer step applies the
  # constraints (mu in [0, pi], sigma in GaborConstraint.sigma_range,
  # delta >= min_delta).
  outside = keras.initializers.Constant([[4., 1000.], [-1., 0.1], [1., 50.],
                                         [2., 50.]])
  layer = frontend.Leaf(n_filters=4, complex_conv_init=outside)
  model = classifier(layer)
  model.compile(optimizer=keras.optimizers.Adam(1e-3), loss='mse')
  layer.build((None, None))
  layer.compression.delta.assign(np.full(4, -1.))
  model.fit(waveforms(batch=4), np.ones((4, 3)), epochs=1, verbose=0)
  kernel = layer.filterbank.kernel.numpy()
  low, high = layer.filterbank.kernel.constraint.sigma_range
  np.testing.assert_allclose(kernel[:2, 0], [np.pi, 0.], atol=1e-3)
  np.testing.assert_allclose(kernel[:2, 1], [high, low], rtol=1e-3)
  np.testing.assert_allclose(layer.compression.delta.numpy(), 1e-6)
