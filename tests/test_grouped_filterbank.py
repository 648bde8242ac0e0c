"""GroupedGaborFilterbank: its geometry, its kernels, and LEAF as a special case."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from leaf_audio import frontend
from leaf_audio import grouped_filterbank
from leaf_audio import initializers


def mel_gabor_params(n_filters=40):
  return initializers.GaborInit(sample_rate=16000, min_freq=60.,
                                max_freq=7800.)((n_filters, 2)).numpy()


def test_default_geometry_is_cpjku_gabor_8g_opt():
  params = mel_gabor_params()
  groups = grouped_filterbank.group_geometry(
      params[:, 0], params[:, 1], num_groups=8, window_size=401, hop=160,
      conv_win_factor=6., stride_factor=16.)
  assert [g.indices for g in groups] == [
      tuple(range(5 * i, 5 * i + 5)) for i in range(8)]
  # CPJKU's lowest group has 575 taps; here no kernel exceeds the window.
  assert [g.kernel_size for g in groups] == [401, 383, 287, 231, 143, 115,
                                             83, 63]
  assert [g.stride for g in groups] == [160, 160, 80, 40, 40, 32, 20, 16]


def test_geometry_options():
  params = mel_gabor_params()
  dense = grouped_filterbank.group_geometry(params[:, 0], params[:, 1], 3,
                                            401, 160, None, None)
  assert [len(g.indices) for g in dense] == [13, 13, 14]
  assert {(g.kernel_size, g.stride) for g in dense} == {(401, 1)}
  # Filters are grouped by centre frequency, whatever their order.
  shuffled = np.random.default_rng(0).permutation(40)
  groups = grouped_filterbank.group_geometry(
      params[shuffled, 0], params[shuffled, 1], 8, 401, 160, 6., 16.)
  assert [shuffled[list(g.indices)].tolist() for g in groups] == [
      list(range(5 * i, 5 * i + 5)) for i in range(8)]
  with pytest.raises(ValueError, match='num_groups'):
    grouped_filterbank.group_geometry(params[:, 0], params[:, 1], 41, 401,
                                      160, 6., 16.)


@pytest.mark.parametrize('kernel_size, stride', [(63, 16), (231, 40),
                                                 (17, 4), (5, 16), (401, 1),
                                                 (401, 20)])
def test_strided_correlation_and_gradients_match_conv1d(kernel_size, stride):
  rng = np.random.default_rng(kernel_size + stride)
  count, start = 30, 7
  pieces = -(-kernel_size // stride)
  signal = tf.constant(rng.standard_normal(
      (2, start + stride * (count + pieces - 1) + 3)), tf.float32)
  filters = tf.constant(rng.standard_normal((kernel_size, 6)), tf.float32)
  upstream = tf.constant(rng.standard_normal((6, 2, count)), tf.float32)
  with tf.GradientTape(persistent=True) as tape:
    tape.watch([signal, filters])
    ours = grouped_filterbank.strided_correlation(signal, start, filters,
                                                  stride, count)
    reference = tf.transpose(tf.nn.conv1d(
        signal[:, start:, tf.newaxis], filters[:, tf.newaxis], stride,
        'VALID')[:, :count], (2, 0, 1))
    ours_loss = tf.reduce_sum(ours * upstream)
    reference_loss = tf.reduce_sum(reference * upstream)
  np.testing.assert_allclose(ours, reference, atol=1e-4)
  for mine, theirs in zip(tape.gradient(ours_loss, [signal, filters]),
                          tape.gradient(reference_loss, [signal, filters])):
    np.testing.assert_allclose(mine, theirs, atol=1e-4)


def test_strided_pooling_is_a_strided_window_sum():
  rng = np.random.default_rng(1)
  inputs = rng.standard_normal((3, 2, 70)).astype(np.float32)
  windows = rng.standard_normal((3, 11)).astype(np.float32)
  out = grouped_filterbank.strided_pooling(tf.constant(inputs),
                                           tf.constant(windows), 4, 15)
  expected = np.stack([
      np.einsum('cbi,ci->cb', inputs[:, :, 4 * f:4 * f + 11], windows)
      for f in range(15)
  ], axis=-1)
  np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)


def leaf_pooled_energies(waveform, **kwargs):
  leaf = frontend.Leaf(**kwargs)
  outputs = tf.constant(waveform)[:, :, tf.newaxis]
  for layer in leaf.stages:
    outputs = layer(outputs)
  return outputs.numpy()


@pytest.mark.parametrize('length, padding', [(16000, 'same'), (4321, 'same'),
                                             (401, 'same'), (50, 'same'),
                                             (3000, 'valid')])
def test_dense_geometry_computes_leaf_exactly(reference_input, length,
                                              padding):
  waveform = reference_input[:, :length]
  expected = leaf_pooled_energies(waveform, pooling_padding=padding)
  bank = grouped_filterbank.GroupedGaborFilterbank(
      40, 401, 160, conv_win_factor=None, stride_factor=None, padding=padding)
  out = bank(tf.constant(waveform)[:, :, tf.newaxis]).numpy()
  assert out.shape == expected.shape
  np.testing.assert_allclose(out, expected, rtol=1e-5,
                             atol=1e-6 * np.abs(expected).max())


def test_decimated_groups_keep_leaf_energy_of_steady_tones():
  # A steady tone has a constant envelope: sampling it every `stride`
  # samples loses nothing but the window's Riemann-sum error. Away from the
  # clip's edges each channel's energy is LEAF's within a few percent of
  # that channel's peak.
  t = np.arange(16000) / 16000
  tones = np.stack([np.sin(2 * np.pi * f * t)
                    for f in (150, 440, 1200, 3100, 6500)]).astype(np.float32)
  expected = leaf_pooled_energies(tones)[:, 5:-5]
  bank = grouped_filterbank.GroupedGaborFilterbank(40, 401, 160)
  out = bank(tf.constant(tones)[:, :, tf.newaxis]).numpy()[:, 5:-5]
  peak = expected.max(axis=(1, 2), keepdims=True)
  assert np.abs(out - expected).max() / peak.min() < 0.05


def test_channel_order_follows_the_initializer():
  params = mel_gabor_params()
  shuffled = np.random.default_rng(0).permutation(40)
  waveform = tf.random.stateless_normal([1, 3200, 1], seed=[1, 2])
  ordered = grouped_filterbank.GroupedGaborFilterbank(40, 401, 160)
  mixed = grouped_filterbank.GroupedGaborFilterbank(
      40, 401, 160,
      kernel_initializer=keras.initializers.Constant(params[shuffled]))
  np.testing.assert_allclose(mixed(waveform), ordered(waveform).numpy()[
      :, :, shuffled], rtol=1e-5, atol=1e-7)


def test_config_round_trip_and_input_check():
  bank = grouped_filterbank.GroupedGaborFilterbank(
      40, 401, 160, num_groups=4, conv_win_factor=4.75, learn_pooling=False)
  waveform = tf.random.stateless_normal([2, 2000, 1], seed=[3, 4])
  restored = keras.layers.deserialize(keras.layers.serialize(bank))
  np.testing.assert_array_equal(restored(waveform), bank(waveform))
  assert restored.groups == bank.groups
  assert [w.name for w in bank.trainable_weights] == ['kernel']
  with pytest.raises(ValueError, match=r'\[batch, samples, 1\]'):
    grouped_filterbank.GroupedGaborFilterbank(40, 401, 160)(tf.zeros([2, 99]))
  with pytest.raises(ValueError, match='num_groups=41'):
    grouped_filterbank.GroupedGaborFilterbank(40, 401, 160, num_groups=41)


def test_dense_geometry_computes_leaf_exactly_with_an_even_window():
  # 25 ms at 22.05 kHz is 552 taps: LEAF's 'same' convolution is then one
  # sample off centre, and the groups follow it.
  waveform = np.random.default_rng(2).standard_normal((2, 9000)).astype(
      np.float32) * 0.1
  expected = leaf_pooled_energies(waveform, sample_rate=22050)
  bank = grouped_filterbank.GroupedGaborFilterbank(
      40, 552, 220, conv_win_factor=None, stride_factor=None,
      kernel_initializer=initializers.GaborInit(sample_rate=22050,
                                                min_freq=60., max_freq=7800.))
  out = bank(tf.constant(waveform)[:, :, tf.newaxis]).numpy()
  np.testing.assert_allclose(out, expected, rtol=1e-5,
                             atol=1e-6 * np.abs(expected).max())
