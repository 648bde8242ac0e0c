"""LogTBN and the temporal median against numpy."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from leaf_audio import logtbn


def energies(seed=0, shape=(3, 21, 5)):
  return (np.random.default_rng(seed).random(shape)**4).astype(np.float32)


@pytest.mark.parametrize('frames', [20, 21])
def test_temporal_median_is_the_lower_median(frames):
  x = energies(frames, (3, frames, 5))
  expected = np.sort(x, axis=1)[:, (frames - 1) // 2][:, np.newaxis]
  np.testing.assert_array_equal(logtbn.temporal_median(tf.constant(x)),
                                expected)


def test_running_median_repeats_the_edges():
  x = energies(1)
  padded = np.concatenate([x[:, :1], x[:, :1], x, x[:, -1:], x[:, -1:]],
                          axis=1)
  expected = np.stack([np.median(padded[:, i:i + 5], axis=1)
                       for i in range(x.shape[1])], axis=1)
  np.testing.assert_allclose(logtbn.temporal_median(tf.constant(x), 5),
                             expected)


def test_log_tbn_matches_formula_in_training():
  x = energies(2)
  layer = logtbn.LogTBN(log10_gain=2.)
  out = layer(tf.constant(x), training=True).numpy()
  y = np.log1p(100. * x.astype(np.float64))
  y -= np.sort(y, axis=1)[:, (y.shape[1] - 1) // 2][:, np.newaxis]
  mean, var = y.mean(axis=(0, 1)), y.var(axis=(0, 1))
  np.testing.assert_allclose(out, (y - mean) / np.sqrt(var + 1e-5),
                             rtol=1e-4, atol=1e-4)


def test_inference_uses_the_moving_statistics():
  x = tf.constant(energies(3))
  layer = logtbn.LogTBN(momentum=0.)  # Moving statistics = last batch's.
  training = layer(x, training=True)
  np.testing.assert_allclose(layer(x, training=False), training, rtol=1e-3,
                             atol=1e-3)


def test_a_nan_clip_is_left_out_of_the_batch_statistics():
  x = energies(5)  # [3, frames, channels]
  bad = np.concatenate([x[:1], np.full_like(x[:1], np.nan), x[1:]])
  layer = logtbn.LogTBN(momentum=0.)
  want = layer(tf.constant(x), training=True).numpy()
  want_moving = layer.batch_norm.moving_mean.numpy()
  got = layer(tf.constant(bad), training=True).numpy()
  assert np.isnan(got[1]).all()
  np.testing.assert_allclose(got[[0, 2, 3]], want, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(layer.batch_norm.moving_mean.numpy(),
                             want_moving, rtol=1e-5, atol=1e-6)


def test_append_doubles_the_channels():
  x = tf.constant(energies(4))
  layer = logtbn.LogTBN(median='append', affine=False)
  out = layer(x, training=True).numpy()
  assert out.shape == (3, 21, 10)
  assert layer.compute_output_shape((None, None, 5)) == (None, None, 10)
  plain = logtbn.LogTBN(median=None, affine=False)(x, training=True)
  np.testing.assert_allclose(out[..., :5], plain, rtol=1e-5, atol=1e-5)


def test_parameters_count_and_gradients_are_finite_on_silence():
  layer = logtbn.LogTBN()
  silence = tf.zeros([2, 100, 40])
  with tf.GradientTape() as tape:
    out = layer(silence, training=True)
    loss = tf.reduce_sum(out**2)
  assert sum(int(np.prod(v.shape)) for v in layer.trainable_weights) == 120
  assert np.isfinite(out.numpy()).all()
  for grad in tape.gradient(loss, layer.trainable_weights):
    assert np.isfinite(grad.numpy()).all()


def test_config_round_trip_and_argument_checks():
  layer = logtbn.LogTBN(log10_gain=3., per_channel_gain=False,
                        median='append', median_window=7, momentum=0.5)
  x = tf.constant(energies(5))
  layer(x, training=True)
  restored = keras.layers.deserialize(keras.layers.serialize(layer))
  restored(x)
  restored.set_weights(layer.get_weights())
  np.testing.assert_array_equal(restored(x), layer(x))
  assert restored.get_config() == layer.get_config()
  with pytest.raises(ValueError, match='median_window must be odd'):
    logtbn.LogTBN(median_window=4)
  with pytest.raises(ValueError, match="median must be 'subtract'"):
    logtbn.LogTBN(median='mean')
  with pytest.raises(ValueError, match='log10_gain'):
    logtbn.LogTBN(log10_gain=50.)
