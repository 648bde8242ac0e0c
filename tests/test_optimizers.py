"""GroupScaledAdam against Keras' Adam, and the frontend learning-rate
multiplier of training runs (train.frontend_learning_rate_multiplier)."""

import gin
import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import REPO_ROOT
from experiments import configurables  # pylint: disable=unused-import
from experiments import gin_files as configuration
from experiments.training import optimizers
from experiments.training import job as training
import experiments_helpers as helpers

LEARNING_RATE = 1e-2


def two_layer_model():
  """A 'frontend' Dense and an 'encoder' Dense, seeded."""
  keras.utils.set_random_seed(3)
  frontend = keras.layers.Dense(4, activation='tanh')
  encoder = keras.layers.Dense(2)
  model = keras.Sequential([keras.Input((3,)), frontend, encoder])
  return model, frontend, encoder


def train_steps(model, optimizer, steps=5):
  """Runs `steps` Adam steps on a fixed regression batch."""
  rng = np.random.default_rng(0)
  inputs = tf.constant(rng.standard_normal((8, 3)), tf.float32)
  targets = tf.constant(rng.standard_normal((8, 2)), tf.float32)
  optimizer.build(model.trainable_variables)
  for _ in range(steps):
    with tf.GradientTape() as tape:
      loss = tf.reduce_mean((model(inputs) - targets)**2)
    gradients = tape.gradient(loss, model.trainable_variables)
    optimizer.apply_gradients(zip(gradients, model.trainable_variables))


def weights(layer):
  return [np.array(w) for w in layer.trainable_weights]


def test_multiplier_one_is_plain_adam_bit_for_bit():
  model, _, _ = two_layer_model()
  train_steps(model, keras.optimizers.Adam(LEARNING_RATE))
  expected = [np.array(w) for w in model.trainable_weights]
  model, frontend, _ = two_layer_model()
  train_steps(model, optimizers.GroupScaledAdam(
      LEARNING_RATE, frontend.trainable_variables, 1.0))
  for got, want in zip(model.trainable_weights, expected):
    np.testing.assert_array_equal(np.array(got), want)


def test_multiplier_zero_freezes_the_group_only():
  model, frontend, encoder = two_layer_model()
  frontend_before, encoder_before = weights(frontend), weights(encoder)
  train_steps(model, optimizers.GroupScaledAdam(
      LEARNING_RATE, frontend.trainable_variables, 0.0))
  for got, want in zip(weights(frontend), frontend_before):
    np.testing.assert_array_equal(got, want)
  for got, want in zip(weights(encoder), encoder_before):
    assert np.abs(got - want).max() > 1e-3


def test_first_step_of_the_group_is_multiplier_times_adams():
  # Adam's first step is lr * g / (|g| + eps'): the group's step must be
  # `multiplier` times plain Adam's (up to the float32 rounding of the
  # weights), the others' unchanged.
  steps = {}
  for multiplier in (1.0, 0.25):
    model, frontend, encoder = two_layer_model()
    before = weights(frontend) + weights(encoder)
    train_steps(model, optimizers.GroupScaledAdam(
        LEARNING_RATE, frontend.trainable_variables, multiplier), steps=1)
    after = weights(frontend) + weights(encoder)
    steps[multiplier] = [a - b for a, b in zip(after, before)]
  for index, (plain, scaled) in enumerate(zip(steps[1.0], steps[0.25])):
    factor = 0.25 if index < 2 else 1.0
    np.testing.assert_allclose(scaled, factor * plain, rtol=1e-4, atol=1e-6)
  assert np.abs(steps[1.0][0]).max() > 0.5 * LEARNING_RATE


def test_negative_multiplier_is_refused():
  with pytest.raises(ValueError, match='multiplier >= 0; got -1.0'):
    optimizers.GroupScaledAdam(LEARNING_RATE, [], -1.0)


def train_in_process(model_dir, bindings):
  gin.clear_config()
  try:
    configuration.parse([str(REPO_ROOT / 'gin_configs' / 'common.gin'),
                         str(REPO_ROOT / 'gin_configs' / 'leaf.gin'),
                         str(REPO_ROOT / 'gin_configs' / 'convnet.gin')],
                        bindings)
    training.train(model_dir=str(model_dir))
  finally:
    gin.clear_config()


def last_weights(model_dir):
  model = keras.saving.load_model(model_dir / 'last.keras')
  frontend = [np.array(w) for w in model.frontend.trainable_weights]
  others = [np.array(w) for w in model.trainable_weights
            if not any(w is f for f in model.frontend.trainable_weights)]
  return frontend, others


@pytest.mark.slow
def test_training_with_multiplier_zero_moves_only_the_encoder(tmp_path):
  folder = helpers.make_tone_folder(tmp_path / 'tones')
  data_dir = tmp_path / 'tfds'
  common = {'ConvNet.filters': '[4, 8]', 'train.learning_rate': '1e-2',
            'train.frontend_learning_rate_multiplier': '0.0'}
  run = tmp_path / 'run'
  train_in_process(run, helpers.tiny_bindings(folder, data_dir, **common))
  frontend_1, others_1 = last_weights(run)
  # One more epoch, resumed from the checkpoint (optimizer state included).
  train_in_process(run, helpers.tiny_bindings(
      folder, data_dir, **common, **{'train.num_epochs': '2'}))
  frontend_2, others_2 = last_weights(run)
  for before, after in zip(frontend_1, frontend_2):
    np.testing.assert_array_equal(after, before)
  assert max(np.abs(a - b).max() for a, b in zip(others_2, others_1)) > 1e-4


@pytest.mark.slow
def test_training_with_multiplier_one_equals_the_default(tmp_path):
  folder = helpers.make_tone_folder(tmp_path / 'tones')
  data_dir = tmp_path / 'tfds'
  tiny = {'ConvNet.filters': '[4, 8]'}
  train_in_process(tmp_path / 'default',
                   helpers.tiny_bindings(folder, data_dir, **tiny))
  train_in_process(tmp_path / 'one', helpers.tiny_bindings(
      folder, data_dir, **tiny,
      **{'train.frontend_learning_rate_multiplier': '1.0'}))
  for got, want in zip(sum(last_weights(tmp_path / 'one'), []),
                       sum(last_weights(tmp_path / 'default'), [])):
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize('value', ['-0.5', 'True', "'fast'"])
def test_bad_multipliers_get_clear_errors(tmp_path, value):
  folder = helpers.make_tone_folder(tmp_path / 'tones')
  with pytest.raises(ValueError,
                     match='frontend_learning_rate_multiplier must be a '
                     'number >= 0'):
    train_in_process(tmp_path / 'run', helpers.tiny_bindings(
        folder, tmp_path / 'tfds',
        **{'train.frontend_learning_rate_multiplier': value}))
