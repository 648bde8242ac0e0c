"""The FFT method computes the same function as the direct (reference) method."""

import functools
import re

import keras
import numpy as np
import pytest
import tensorflow as tf

import leaf_audio
from leaf_audio import compression
from leaf_audio import fft_filterbank
from leaf_audio import methods
from fft_reference import numpy_pooled_energy


def weighted_loss(outputs):
  """A loss whose gradient differs at every output entry."""
  weights = tf.sin(tf.reshape(
      tf.range(tf.size(outputs), dtype=tf.float32), tf.shape(outputs)))
  return tf.reduce_sum(outputs * weights)


def outputs_and_gradients(layer, waveform, training=None):
  waveform = tf.constant(waveform)
  with tf.GradientTape() as tape:
    tape.watch(waveform)
    outputs = layer(waveform, training=training)
    loss = weighted_loss(outputs)
  names = [v.path.split('/', 1)[1] for v in layer.trainable_variables]
  names.append('input')
  grads = tape.gradient(loss, layer.trainable_variables + [waveform])
  return outputs.numpy(), dict(zip(names, [g.numpy() for g in grads]))


def fft_and_direct(make, weights=None):
  fast, direct = make(method='fft'), make(method='direct')
  fast.build((None, None))
  direct.build((None, None))
  if weights is not None:
    fast.set_weights(weights(fast.get_weights()))
  direct.set_weights(fast.get_weights())
  return fast, direct


def assert_same_function(make, waveform, weights=None):
  """Outputs and gradients agree, in training (filter outputs kept for the
  backward pass) and outside it (filtered again)."""
  fast, direct = fft_and_direct(make, weights)
  assert fast.active_method == 'fft' and direct.active_method == 'direct'
  want, want_grads = outputs_and_gradients(direct, waveform)
  for training in (True, False):
    got, got_grads = outputs_and_gradients(fast, waveform, training)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)
    assert got_grads.keys() == want_grads.keys()
    for name, want_grad in want_grads.items():
      scale = np.abs(want_grad).max()
      assert scale > 0, name
      error = np.abs(got_grads[name] - want_grad).max() / scale
      assert error < 1e-4, (name, training, error)


@keras.saving.register_keras_serializable(package='test_fft_method')
class SortedGaborConv1D(leaf_audio.GaborConv1D):

  def __init__(self, **kwargs):
    kwargs['sort_filters'] = True
    super().__init__(**kwargs)


def noise(samples, batch=2, seed=0):
  rng = np.random.default_rng(seed)
  return (0.1 * rng.standard_normal((batch, samples))).astype(np.float32)


@pytest.mark.parametrize('samples', [400, 401, 3201, 15999, 16001])
def test_default_leaf_at_lengths_that_are_not_multiples_of_the_stride(
    samples):
  assert_same_function(leaf_audio.Leaf, noise(samples))


CONFIGURATIONS = {
    '64 filters, 24 kHz, 32 ms': functools.partial(
        leaf_audio.Leaf, n_filters=64, sample_rate=24000, window_len=32.),
    'even kernel, 22.05 kHz, 25 ms': functools.partial(
        leaf_audio.Leaf, sample_rate=22050, window_len=25.),
    'pre-emphasis': functools.partial(leaf_audio.Leaf, preemp=True),
    'log compression': functools.partial(
        leaf_audio.Leaf,
        compression=functools.partial(compression.log_compression,
                                         log_offset=1e-5)),
    'fixed pooling': functools.partial(leaf_audio.Leaf, learn_pooling=False),
    'valid pooling': functools.partial(leaf_audio.Leaf,
                                       pooling_padding='valid'),
    'sorted filters, instance norm': functools.partial(
        leaf_audio.Leaf, mean_var_norm=True, conv1d_cls=SortedGaborConv1D),
    'TimeDomainFilterbanks': leaf_audio.TimeDomainFilterbanks,
}


@pytest.mark.parametrize('name', sorted(CONFIGURATIONS))
def test_non_default_configurations(name):
  assert_same_function(CONFIGURATIONS[name], noise(4001, seed=1))


def test_even_kernel_length_is_even():
  assert leaf_audio.Leaf(sample_rate=22050, window_len=25.).window_size % 2 == 0


def trained_gabor_weights(weights):
  """Moves the Gabor kernel to its extremes, as long training can."""
  weights = [w.copy() for w in weights]
  kernel = weights[0]  # [n_filters, 2]: centre frequency, sigma.
  constraint = leaf_audio.GaborConstraint(401)
  low, high = constraint.sigma_range
  kernel[::3, 1] = low
  kernel[1::3, 1] = high
  kernel[:4, 0] = np.pi - np.arange(4) * 1e-3   # Near Nyquist.
  kernel[4:6, 0] = 0.                           # At DC.
  weights[0] = kernel
  weights[1] = np.linspace(2. / 401, 0.5, weights[1].size).reshape(
      weights[1].shape).astype(np.float32)      # Pooling widths at both ends.
  return weights


def test_parameters_at_the_constraint_limits():
  assert_same_function(leaf_audio.Leaf, noise(4001, seed=2),
                       weights=trained_gabor_weights)


def test_a_step_compiled_with_xla_agrees_with_the_graph():
  """Keras compiles whole training steps with XLA on GPU; the loops must too."""
  rng = np.random.default_rng(3)
  real, imag = (tf.constant(rng.standard_normal((6, 401)), tf.float32)
                for _ in range(2))
  windows = tf.constant(rng.random((401, 6)), tf.float32)
  waveform = tf.constant(noise(3000))

  def outputs_and_gradients(waveform, real, imag, windows):
    with tf.GradientTape() as tape:
      tape.watch([waveform, real, imag, windows])
      outputs = fft_filterbank.pooled_energy(waveform, real, imag, windows,
                                             160, 'same')
      loss = weighted_loss(outputs)
    return [outputs] + tape.gradient(loss, [waveform, real, imag, windows])

  compiled = tf.function(outputs_and_gradients, jit_compile=True)(
      waveform, real, imag, windows)
  plain = tf.function(outputs_and_gradients)(waveform, real, imag, windows)
  for got, want in zip(compiled, plain):
    np.testing.assert_allclose(got, want, rtol=0,
                               atol=1e-5 * np.abs(want).max())


@pytest.mark.parametrize('kept_chunks', [0, 1])
def test_chunks_filtered_again_in_the_backward_pass_give_the_same_gradients(
    kept_chunks):
  """Beyond `kept_bytes` the backward pass recomputes the filter outputs."""
  rng = np.random.default_rng(5)
  real, imag = (tf.constant(rng.standard_normal((6, 401)), tf.float32)
                for _ in range(2))
  windows = tf.constant(rng.random((401, 6)), tf.float32)
  waveform = tf.constant(noise(9000))  # 3 chunks of 3680 samples per clip.
  chunk_bytes = 4 * 2 * 6 * 4096  # 12 filter outputs of N = 4096 samples.

  def outputs_and_gradients(kept_bytes):
    arguments = [waveform, real, imag, windows]
    with tf.GradientTape() as tape:
      tape.watch(arguments)
      outputs = fft_filterbank.pooled_energy(
          waveform, real, imag, windows, 160, 'same', kept_bytes=kept_bytes)
      loss = weighted_loss(outputs)
    return [outputs] + tape.gradient(loss, arguments)

  keeping_all = outputs_and_gradients(fft_filterbank.KEPT_BYTES)
  keeping_some = outputs_and_gradients(kept_chunks * chunk_bytes)
  for got, want in zip(keeping_some, keeping_all):
    np.testing.assert_allclose(got, want, rtol=0,
                               atol=1e-6 * np.abs(want).max())


@pytest.mark.parametrize('padding', ['same', 'valid'])
@pytest.mark.parametrize('shared_window', [False, True])
def test_pooled_energy_matches_numpy(padding, shared_window):
  rng = np.random.default_rng(4)
  real, imag = rng.standard_normal((2, 3, 33))
  windows = rng.random((25, 1 if shared_window else 3))
  waveform = rng.standard_normal((2, 500))
  got = fft_filterbank.pooled_energy(
      tf.constant(waveform, tf.float32), tf.constant(real, tf.float32),
      tf.constant(imag, tf.float32), tf.constant(windows, tf.float32), 10,
      padding, size=64)
  want = numpy_pooled_energy(waveform, real, imag, windows, 10, padding)
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * want.max())


@pytest.mark.parametrize('padding', ['same', 'valid'])
@pytest.mark.parametrize('kernel, window', [(33, 25), (65, 9), (9, 65)])
def test_clips_packed_end_to_end_do_not_hear_their_neighbours(
    padding, kernel, window):
  # The batch is filtered as one signal; a silent clip between two loud ones
  # must stay silent, and all must match the definition.
  rng = np.random.default_rng(5)
  real, imag = rng.standard_normal((2, 3, kernel))
  windows = rng.random((window, 3))
  waveform = 1e3 * rng.standard_normal((3, 237))
  waveform[1] = 0.
  got = fft_filterbank.pooled_energy(
      tf.constant(waveform, tf.float32), tf.constant(real, tf.float32),
      tf.constant(imag, tf.float32), tf.constant(windows, tf.float32), 10,
      padding, size=128)
  want = numpy_pooled_energy(waveform, real, imag, windows, 10, padding)
  # FFTs spread float rounding over a whole chunk, nothing more: a single
  # neighbouring sample read by a filter would give 1e-3 of the maximum.
  assert np.abs(got[1]).max() < 1e-10 * want.max()
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * want.max())


@pytest.mark.parametrize('training', [False, True])
def test_an_empty_batch_gives_an_empty_output(training):
  layer = leaf_audio.Leaf()
  outputs = layer(tf.zeros([0, 16000]), training=training)
  assert outputs.shape == (0, 100, 40)


@pytest.mark.parametrize('kept_bytes', [-1, 1.5, True, None])
def test_a_bad_budget_for_kept_outputs_is_refused(kept_bytes):
  real = tf.zeros([2, 33])
  with pytest.raises(ValueError, match=r'kept_bytes must be an int >= 0.*got '
                     + re.escape(repr(kept_bytes))):
    fft_filterbank.pooled_energy(tf.zeros([1, 500]), real, real,
                                 tf.ones([25, 2]), 10, 'same',
                                 kept_bytes=kept_bytes)


def test_fft_size_is_a_power_of_two_with_room_for_the_chunk():
  for kernel, window, stride in [(401, 401, 160), (769, 769, 240),
                                 (552, 552, 220), (3, 3, 5000)]:
    size = fft_filterbank.fft_size(kernel, window, stride)
    assert size & (size - 1) == 0
    assert size - kernel + 1 >= stride


def test_too_small_fft_size_is_refused():
  real = tf.zeros([2, 401])
  with pytest.raises(ValueError, match='fft_size=256 is too short'):
    fft_filterbank.pooled_energy(tf.zeros([1, 1000]), real, real,
                                 tf.ones([401, 2]), 160, 'same', size=256)


def test_auto_picks_fft_where_it_applies():
  assert leaf_audio.Leaf().active_method == 'fft'
  assert leaf_audio.TimeDomainFilterbanks().active_method == 'fft'
  assert leaf_audio.SincNet().active_method == 'direct'
  assert leaf_audio.SincNetPlus().active_method == 'direct'
  assert leaf_audio.Leaf(method='direct').active_method == 'direct'
  # A window of 401 samples at a 10-sample hop spans 41 hops.
  assert leaf_audio.Leaf(window_stride=10 / 16).active_method == 'direct'


def test_fft_is_refused_where_it_does_not_apply():
  with pytest.raises(ValueError, match="method='fft' cannot .*SincConv1D"):
    leaf_audio.SincNet(method='fft')
  with pytest.raises(ValueError, match='activation is LeakyReLU'):
    leaf_audio.Leaf(method='fft', activation=keras.layers.LeakyReLU())
  with pytest.raises(ValueError, match=r'pooling \(MaxPooling1D\) has no windows'):
    leaf_audio.Leaf(method='fft', pooling_cls=leaf_audio.MaxPooling1D,
                    pooling_init=None)
  with pytest.raises(ValueError, match='float64'):
    leaf_audio.Leaf(method='fft', dtype='float64')
  with pytest.raises(ValueError, match='method must be one of'):
    leaf_audio.Leaf(method='fast')


def test_method_survives_serialization():
  leaf = leaf_audio.Leaf(method='direct')
  restored = leaf_audio.Leaf.from_config(leaf.get_config())
  assert restored.method == 'direct' and restored.active_method == 'direct'


def test_with_method_copies_a_model_with_its_weights():
  model = keras.Sequential([keras.Input((3000,)), leaf_audio.Leaf(),
                            keras.layers.Flatten(), keras.layers.Dense(2)])
  direct = methods.with_method(model, 'direct')
  assert direct.layers[0].active_method == 'direct'
  assert model.layers[0].active_method == 'fft'
  waveform = noise(3000)
  np.testing.assert_allclose(direct(waveform), model(waveform), atol=1e-4)


def test_computed_with_traces_another_method_on_the_same_weights():
  model = keras.Sequential([keras.Input((3000,)), leaf_audio.Leaf(),
                            keras.layers.Flatten(), keras.layers.Dense(2)])
  waveform = noise(3000)
  direct_copy = methods.with_method(model, 'direct')

  @tf.function(input_signature=[tf.TensorSpec([None, 3000], tf.float32)])
  def direct(waveform):
    with methods.computed_with(model, 'direct'):
      return model(waveform)

  traced = direct.get_concrete_function()
  assert model.layers[0].active_method == 'fft'  # Restored after the trace.
  ops = {op.type for op in traced.graph.get_operations()}
  assert not {op for op in ops if 'FFT' in op} and 'Conv2D' in ops, ops
  np.testing.assert_allclose(direct(waveform), direct_copy(waveform),
                             atol=1e-5)
  # The model's own variables, not copies: a change shows in the function.
  assert {id(v) for v in traced.variables} <= {
      id(v.value) for v in model.variables}
  model.layers[-1].bias.assign([1., -1.])
  np.testing.assert_allclose(direct(waveform) - direct_copy(waveform),
                             np.tile([[1., -1.]], [len(waveform), 1]),
                             atol=1e-5)
  # A method that cannot compute the stages raises and changes nothing.
  sincnet = leaf_audio.SincNet()
  with pytest.raises(ValueError, match="method='fft' cannot compute"):
    with methods.computed_with(sincnet, 'fft'):
      pass
  assert sincnet.active_method == 'direct'
  with pytest.raises(RuntimeError, match='inside'):
    with methods.computed_with(model, 'direct'):
      assert model.layers[0].active_method == 'direct'
      raise RuntimeError('inside')
  assert model.layers[0].active_method == 'fft'


def test_clip_scales_are_powers_of_two_at_each_clips_peak():
  waveform = np.zeros([6, 50], np.float32)
  waveform[0, 3] = -3.
  waveform[1] = np.linspace(-1e-3, 5e-4, 50)
  waveform[2, 9] = 1e30
  waveform[3, 1] = 1e-40  # subnormal: TF's CPU kernels take it as 0
  waveform[4, :2] = [np.nan, 0.25]
  scales, finite = fft_filterbank.clip_scales(tf.constant(waveform))
  scales = scales.numpy()
  np.testing.assert_array_equal(finite, [True] * 4 + [False, True])
  np.testing.assert_array_equal(scales[[0, 3, 4, 5]],
                                [2., 1., 0.25, 1.])
  peaks = np.abs(waveform[:3]).max(axis=1)
  assert ((peaks / scales[:3] >= 1) & (peaks / scales[:3] < 2)).all()
  np.testing.assert_array_equal(np.log2(scales), np.round(np.log2(scales)))


def test_a_loud_neighbour_leaves_a_quiet_clip_as_if_alone():
  # Shared chunks spread float rounding relative to their largest values;
  # scaled per clip, the quiet clip is computed at its own scale. Without
  # the scaling its energies moved by 1852 times their maximum here.
  rng = np.random.default_rng(6)
  real, imag = rng.standard_normal((2, 3, 33)).astype(np.float32)
  windows = rng.random((25, 3)).astype(np.float32)
  quiet = 1e-3 * rng.standard_normal(237)
  loud = 1e6 * rng.standard_normal(237)

  def energies(*clips):
    return fft_filterbank.pooled_energy(
        tf.constant(np.stack(clips), tf.float32), real, imag, windows, 10,
        'same', size=128).numpy()

  alone = energies(quiet)[0]
  want = numpy_pooled_energy(quiet[np.newaxis], real, imag, windows, 10,
                             'same')[0]
  np.testing.assert_allclose(alone, want, rtol=1e-4, atol=1e-4 * want.max())
  for batch, row in ((energies(quiet, loud), 0), (energies(loud, quiet), 1),
                     (energies(loud, quiet, loud), 1)):
    np.testing.assert_allclose(batch[row], alone, rtol=0,
                               atol=1e-5 * alone.max())
  # A single clip is scaled exactly: 2**20 x gives 2**40 the energies.
  np.testing.assert_array_equal(energies(2.**20 * quiet)[0],
                                2.**40 * energies(quiet)[0])


def test_a_non_finite_clip_gets_nan_and_its_neighbours_nothing():
  rng = np.random.default_rng(7)
  real, imag = rng.standard_normal((2, 3, 33)).astype(np.float32)
  windows = rng.random((25, 3)).astype(np.float32)
  waveform = rng.standard_normal((3, 237)).astype(np.float32)
  alone = [fft_filterbank.pooled_energy(waveform[i:i + 1], real, imag,
                                        windows, 10, 'same', size=128)[0]
           for i in (0, 2)]
  waveform[1, 100] = np.inf
  got = fft_filterbank.pooled_energy(waveform, real, imag, windows, 10,
                                     'same', size=128).numpy()
  assert np.isnan(got[1]).all()
  for row, want in zip((0, 2), alone):
    np.testing.assert_allclose(got[row], want, rtol=1e-6,
                               atol=1e-6 * want.numpy().max())
