"""GroupScaledAdam against Keras' Adam, and the frontend learning-rate
multiplier of training runs (train.frontend_learning_rate_multiplier)."""

import types

import gin
import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import REPO_ROOT
from experiments import configurables  # pylint: disable=unused-import
from experiments import gin_files as configuration
from experiments.training import optimizers
from experiments.training import precise_batch_norm
from experiments.training import job as training
import experiments_helpers as helpers

import leaf_audio

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
def test_training_with_multiplier_zero_moves_only_the_encoder(
    tmp_path, tone_folder, data_dir):
  common = {'ConvNet.filters': '[4, 8]', 'train.learning_rate': '1e-2',
            'train.frontend_learning_rate_multiplier': '0.0'}
  run = tmp_path / 'run'
  train_in_process(run, helpers.tiny_bindings(tone_folder, data_dir, **common))
  frontend_1, others_1 = last_weights(run)
  # One more epoch, resumed from the checkpoint (optimizer state included).
  train_in_process(run, helpers.tiny_bindings(
      tone_folder, data_dir, **common, **{'train.num_epochs': '2'}))
  frontend_2, others_2 = last_weights(run)
  for before, after in zip(frontend_1, frontend_2):
    np.testing.assert_array_equal(after, before)
  assert max(np.abs(a - b).max() for a, b in zip(others_2, others_1)) > 1e-4


def test_training_with_multiplier_one_builds_the_default_optimizer():
  """train.frontend_learning_rate_multiplier = 1.0 (its default) and no stage
  rates train with keras' own Adam, as before the setting existed; any other
  value with GroupScaledAdam (which is Adam bit for bit at 1.0, above)."""
  model, frontend_layer, _ = two_layer_model()
  settings = types.SimpleNamespace(
      learning_rate=1e-3, frontend_learning_rate_multiplier=1.0,
      frontend_stage_learning_rates=None, mixed_precision=False)
  # pylint: disable=protected-access
  default = training._build_optimizer(settings, model, frontend_layer)
  assert type(default) is keras.optimizers.Adam
  settings.frontend_learning_rate_multiplier = 0.5
  scaled = training._build_optimizer(settings, model, frontend_layer)
  assert isinstance(scaled, optimizers.GroupScaledAdam)


@pytest.mark.parametrize('value', ['-0.5', 'True', "'fast'"])
def test_bad_multipliers_get_clear_errors(tmp_path, tone_folder, value):
  with pytest.raises(ValueError,
                     match='frontend_learning_rate_multiplier must be a '
                     'number >= 0'):
    train_in_process(tmp_path / 'run', helpers.tiny_bindings(
        tone_folder, tmp_path / 'tfds',
        **{'train.frontend_learning_rate_multiplier': value}))


# Per-stage learning rates (train.frontend_stage_learning_rates).


def leaf_model(frontend=None):
  keras.utils.set_random_seed(5)
  frontend = frontend or leaf_audio.Leaf(n_filters=8)
  model = keras.Sequential([keras.Input((1600,)), frontend,
                            keras.layers.GlobalAveragePooling1D(),
                            keras.layers.Dense(2)])
  return model, frontend


def stage_weights(frontend):
  return {name: [np.array(w) for w in getattr(frontend, name).weights]
          for name in ('preemphasis', 'filterbank', 'pooling', 'compression')
          if getattr(frontend, name) is not None}


def classification_steps(model, optimizer, steps=1):
  rng = np.random.default_rng(0)
  inputs = tf.constant(rng.uniform(-0.5, 0.5, (4, 1600)), tf.float32)
  labels = tf.constant([0, 1, 0, 1])
  optimizer.build(model.trainable_variables)
  for _ in range(steps):
    with tf.GradientTape() as tape:
      loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(
          labels, model(inputs, training=True), from_logits=True))
    gradients = tape.gradient(loss, model.trainable_variables)
    optimizer.apply_gradients(zip(gradients, model.trainable_variables))


def staged_optimizer(frontend, rates, frontend_multiplier=1.0):
  rates = optimizers.check_stage_rates(frontend, rates)
  optimizers.freeze_stages(frontend, rates)
  return optimizers.GroupScaledAdam(
      LEARNING_RATE, frontend.trainable_variables, frontend_multiplier,
      groups=optimizers.stage_groups(frontend, rates, frontend_multiplier))


def test_stage_rates_freeze_and_scale_what_they_name():
  steps = {}
  for rates in (None, {'filterbank': 0, 'pooling': 0.1}):
    model, frontend = leaf_model()
    before = stage_weights(frontend)
    classification_steps(model, staged_optimizer(frontend, rates))
    after = stage_weights(frontend)
    steps[str(rates)] = {name: [a - b for a, b in zip(after[name],
                                                      before[name])]
                         for name in before}
  plain, staged = steps['None'], steps[str({'filterbank': 0,
                                            'pooling': 0.1})]
  for step in staged['filterbank']:
    np.testing.assert_array_equal(step, 0.0)
  assert max(np.abs(s).max() for s in plain['filterbank']) > 0.1 * (
      LEARNING_RATE)
  # Adam's first step is lr * sign(g) (nearly): the pooling's is 0.1 times
  # plain Adam's, the compression's unchanged.
  for got, want in zip(staged['pooling'], plain['pooling']):
    np.testing.assert_allclose(got, 0.1 * want, rtol=1e-3, atol=1e-7)
  for got, want in zip(staged['compression'], plain['compression']):
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-7)
  assert max(np.abs(s).max() for s in plain['compression']) > 0.1 * (
      LEARNING_RATE)


def test_a_frozen_stage_keeps_its_statistics_too():
  # EfficientLeaf's LogTBN compression holds a BatchNormalization: frozen, its
  # moving statistics stay, in training-mode calls and in precise BatchNorm.
  model, frontend = leaf_model(leaf_audio.EfficientLeaf(n_filters=8))
  optimizer = staged_optimizer(frontend, {'compression': 0})
  statistics = [np.array(w) for w in frontend.compression.non_trainable_weights]
  assert statistics
  classification_steps(model, optimizer, steps=3)
  batches = [(tf.random.uniform([4, 1600], -0.5, 0.5), None)]
  assert precise_batch_norm.recompute_batch_norm(model, batches) == 0
  for got, want in zip(frontend.compression.non_trainable_weights,
                       statistics):
    np.testing.assert_array_equal(np.array(got), want)
  assert not frontend.compression.trainable_weights


def test_unknown_stage_names_are_refused_with_the_valid_names():
  _, frontend = leaf_model()
  with pytest.raises(ValueError, match=r"unknown stage name\(s\) \['filters'\]"
                     r"; valid names are \['preemphasis', 'filterbank'"):
    optimizers.check_stage_rates(frontend, {'filters': 0})


@pytest.mark.parametrize('rates, message', [
    ({'pooling': -1}, r"\['pooling'\] must be a finite number >= 0; got -1"),
    ({'pooling': True}, 'must be a finite number >= 0; got True'),
    ([('pooling', 0)], 'must be a dict stage name -> multiplier'),
])
def test_bad_stage_rates_get_clear_errors(rates, message):
  _, frontend = leaf_model()
  with pytest.raises(ValueError, match=message):
    optimizers.check_stage_rates(frontend, rates)


def test_stage_rates_need_a_frontend_with_stages():
  # MelFilterbanks is a Frontend (an STFT filterbank stage, a compression).
  assert optimizers.check_stage_rates(leaf_audio.MelFilterbanks(),
                                      {'compression': 0}) == {'compression': 0}
  with pytest.raises(ValueError, match='Identity has none'):
    optimizers.check_stage_rates(keras.layers.Identity(), {'pooling': 0})


@pytest.mark.slow
def test_training_only_the_compression_keeps_every_other_stage_at_init(
    tmp_path, tone_folder, data_dir):
  run = tmp_path / 'run'
  train_in_process(run, helpers.tiny_bindings(
      tone_folder, data_dir, **{
          'ConvNet.filters': '[4, 8]', 'train.learning_rate': '1e-2',
          'train.frontend_stage_learning_rates':
              "{'preemphasis': 0, 'filterbank': 0, 'pooling': 0}"}))
  trained = keras.saving.load_model(run / 'last.keras').frontend
  initial = leaf_audio.Leaf()
  initial.build((None, 4800))
  assert trained.preemphasis is None  # Leaf's default; 0 is then a no-op.
  for name in ('filterbank', 'pooling'):
    assert getattr(trained, name).weights
    for got, want in zip(getattr(trained, name).weights,
                         getattr(initial, name).weights):
      np.testing.assert_array_equal(np.array(got), np.array(want))
  assert max(np.abs(np.array(got) - np.array(want)).max()
             for got, want in zip(trained.compression.trainable_weights,
                                  initial.compression.trainable_weights)
             ) > 1e-4
