"""Frontends: parity with the original release, defaults, fixed bugs, input checks."""

import functools
import re

import keras
import numpy as np
import pytest
import tensorflow as tf

import leaf_audio
from leaf_audio import frontend
from leaf_audio import initializers
from conftest import REPO_ROOT
from conftest import max_abs


def leaf_custom():
  """The non-default Leaf of the reference (24 kHz, 64 filters, 32 ms)."""
  return frontend.Leaf(
      n_filters=64,
      window_len=32.,
      sample_rate=24000,
      preemp=True,
      compression=functools.partial(frontend.compression.log_compression,
                                       log_offset=1e-5),
      complex_conv_init=initializers.GaborInit(
          sample_rate=24000, min_freq=60., max_freq=7800.),
      learn_pooling=False)


# Tolerances of the issue: 1e-4 where PCEN compresses, 1e-3 where log does.
PARITY_CASES = [
    ('leaf', frontend.Leaf, 1e-4),
    ('sincnet_plus', frontend.SincNetPlus, 1e-4),
    ('mel', frontend.MelFilterbanks, 1e-3),
    ('tfbanks', frontend.TimeDomainFilterbanks, 1e-3),
    ('sincnet', frontend.SincNet, 1e-3),
    ('leaf_custom', leaf_custom, 1e-3),
]


def test_reference_input_recipe_matches_the_stored_input(reference,
                                                         reference_input):
  np.testing.assert_allclose(reference_input, reference['input'], atol=1e-6)


@pytest.mark.parametrize('key, make, tolerance', PARITY_CASES,
                         ids=[case[0] for case in PARITY_CASES])
def test_outputs_match_original_release(reference, key, make, tolerance):
  outputs = make()(reference['input'])
  assert outputs.shape == tuple(reference[key + '_shape'])
  assert max_abs(outputs, reference[key]) < tolerance


@pytest.mark.parametrize('key, make, tolerance', PARITY_CASES[:2],
                         ids=[case[0] for case in PARITY_CASES[:2]])
def test_outputs_match_original_release_in_graph_mode(reference, key, make,
                                                      tolerance):
  layer = make()
  outputs = tf.function(layer)(tf.constant(reference['input']))
  assert max_abs(outputs, reference[key]) < tolerance


def test_leaf_initial_weights_match_original(reference):
  leaf = frontend.Leaf()
  leaf.build((None, None))
  conv = leaf.filterbank
  np.testing.assert_allclose(conv.kernel.numpy(),
                             reference['leaf_init_gabor_kernel'], rtol=1e-6)
  np.testing.assert_allclose(
      conv.kernel.constraint(conv.kernel).numpy(),
      reference['leaf_init_gabor_kernel_constrained'], rtol=1e-6)
  real, imag = conv.impulse_responses()
  np.testing.assert_allclose(real, reference['leaf_init_gabor_filters_real'],
                             atol=1e-6)
  np.testing.assert_allclose(imag, reference['leaf_init_gabor_filters_imag'],
                             atol=1e-6)
  np.testing.assert_allclose(leaf.pooling.kernel.numpy(),
                             reference['leaf_init_pooling_sigma'], atol=1e-7)
  pcen = leaf.compression
  for name, variable in [('alpha', pcen.alpha), ('delta', pcen.delta),
                         ('root', pcen.root), ('smooth', pcen.ema.smooth)]:
    np.testing.assert_allclose(variable.numpy(),
                               reference['leaf_init_pcen_' + name], atol=1e-7)
  trainable = sum(int(np.prod(v.shape)) for v in leaf.trainable_weights)
  assert trainable == int(reference['leaf_num_trainable_params']) == 280


def test_leaf_custom_initial_weights_match_original(reference):
  leaf = leaf_custom()
  leaf.build((None, None))
  np.testing.assert_allclose(leaf.filterbank.kernel.numpy(),
                             reference['leaf_custom_init_gabor_kernel'],
                             rtol=1e-6)
  np.testing.assert_allclose(leaf.preemphasis.kernel.numpy(),
                             reference['leaf_custom_init_preemp_kernel'])


def relative_error(actual, expected):
  return max_abs(actual, expected) / float(np.abs(expected).max())


def test_leaf_intermediate_stages_match_original(reference):
  x = reference['input']
  leaf = frontend.Leaf()
  waveform = tf.constant(x)[:, :, tf.newaxis]
  conv = leaf.filterbank(waveform)
  squared = leaf.activation(conv)
  pooled = leaf.pooling(squared)
  pcen = leaf.compression(tf.maximum(pooled, 1e-5))
  assert relative_error(conv[:, :1024],
                        reference['leaf_stage_conv_first1024']) < 1e-5
  assert relative_error(squared[:, :1024],
                        reference['leaf_stage_sqmod_first1024']) < 1e-5
  assert relative_error(pooled, reference['leaf_stage_pooled']) < 1e-5
  assert relative_error(pcen, reference['leaf_stage_pcen']) < 1e-5
  # The direct method is exactly these stages; the default (FFT) method is
  # the same function up to float32 rounding.
  direct = frontend.Leaf(method='direct')
  direct(x)
  direct.set_weights(leaf.get_weights())
  np.testing.assert_array_equal(direct(x), pcen)
  np.testing.assert_allclose(leaf(x), pcen, atol=1e-5)


def trainable_count(layer):
  return sum(int(np.prod(v.shape)) for v in layer.trainable_weights)


def readme_parameter_counts():
  """{frontend name: trainable parameters} from the README's table."""
  counts = {}
  for line in (REPO_ROOT / 'README.md').read_text().splitlines():
    match = re.match(r'\|\s*`(\w+)`\s*\|.*\|\s*(\d+)\s*\|\s*$', line)
    if match:
      counts[match.group(1)] = int(match.group(2))
  return counts


def test_trainable_parameter_counts_are_the_documented_ones():
  documented = readme_parameter_counts()
  assert set(documented) == {'Leaf', 'TimeDomainFilterbanks', 'SincNet',
                             'SincNetPlus', 'MelFilterbanks'}
  for name, count in documented.items():
    layer = getattr(leaf_audio, name)()
    layer.build((None, None))
    assert trainable_count(layer) == count, name
    assert str(count) in type(layer).__doc__, name


def test_two_frontends_do_not_share_weights():
  # The original built its default submodules once, as default arguments, so
  # every Leaf() shared them; Leaf(n_filters=64) after Leaf() even crashed.
  first, second = frontend.Leaf(), frontend.Leaf()
  x = tf.random.normal([1, 4000], seed=1)
  first(x), second(x)
  assert first.compression is not second.compression
  assert first.activation is not second.activation
  ids = {id(v) for v in first.weights}
  assert not ids & {id(v) for v in second.weights}
  second.compression.alpha.assign(np.full(40, 0.5))
  np.testing.assert_allclose(first.compression.alpha.numpy(), 0.96)
  wide = frontend.Leaf(n_filters=64)
  assert wide(x).shape == (1, 25, 64)


def test_default_gabor_init_follows_sample_rate():
  leaf = frontend.Leaf(sample_rate=8000)
  leaf.build((None, None))
  expected = initializers.GaborInit(sample_rate=8000, min_freq=60.,
                                    max_freq=4000.)((40, 2))
  np.testing.assert_allclose(leaf.filterbank.kernel.numpy(), expected)
  # 24 kHz keeps the original's 7800 Hz top.
  leaf24 = frontend.Leaf(sample_rate=24000)
  assert leaf24.complex_conv_init.max_freq == 7800.


def test_explicit_initializer_wins():
  init = initializers.GaborInit(sample_rate=16000, min_freq=300.,
                                max_freq=3000.)
  leaf = frontend.Leaf(complex_conv_init=init)
  leaf.build((None, None))
  np.testing.assert_allclose(leaf.filterbank.kernel.numpy(), init((40, 2)))
  with pytest.raises(ValueError, match='sample_rate=24000.*16000'):
    frontend.Leaf(
        complex_conv_init=initializers.GaborInit(sample_rate=24000))


def test_sincnet_default_init_follows_sample_rate():
  sincnet = frontend.SincNet(sample_rate=8000)
  sincnet.build((None, None))
  np.testing.assert_allclose(sincnet.filterbank.kernel.numpy(),
                             initializers.SincInit(sample_rate=8000)((40, 2)))
  assert sincnet.filterbank.sample_rate == 8000


def test_time_domain_filterbanks_pool_with_valid_padding():
  tdf = frontend.TimeDomainFilterbanks()
  assert tdf(tf.zeros([1, 16000])).shape == (1, 98, 40)
  assert tdf.pooling_padding == 'valid'
  # The pooling window follows window_len (the original hard-wired 25 ms).
  wide = frontend.TimeDomainFilterbanks(window_len=32.)
  assert wide(tf.zeros([1, 16000])).shape == (1, 97, 40)
  assert wide.pooling.kernel.shape == (1, 513, 1, 1)


def test_pre_compression_floor_is_an_argument():
  # Without the squared modulus the pooled Gabor outputs take both signs.
  x = tf.random.normal([1, 8000], seed=2)
  floored = frontend.Leaf(activation=None, compression=None)(x).numpy()
  assert floored.min() == pytest.approx(1e-5)
  raw = frontend.Leaf(activation=None, compression=None,
                      pre_compression_floor=None)(x).numpy()
  assert raw.min() < 0
  np.testing.assert_allclose(floored, np.maximum(raw, 1e-5), rtol=1e-6)
  silence = frontend.SincNet(compression=None)(tf.zeros([1, 800]))
  np.testing.assert_allclose(silence, 1e-5)


def test_compression_none_means_no_compression_as_in_the_original():
  x = tf.random.normal([1, 8000], seed=3)
  # The direct method runs the very stages compared with below; the FFT
  # method's agreement with them (to float32 rounding, not to 1e-6 on every
  # input) is tested in test_fft_method.py.
  leaf = frontend.Leaf(compression=None, method='direct')
  energies = leaf(x).numpy()
  assert energies.min() >= 1e-5
  pooled = leaf.pooling(leaf.activation(leaf.filterbank(x[..., None])))
  np.testing.assert_allclose(energies, np.maximum(pooled, 1e-5), rtol=1e-6)


@pytest.mark.parametrize('make', [
    frontend.Leaf, frontend.TimeDomainFilterbanks, frontend.SincNet,
    frontend.SincNetPlus, frontend.MelFilterbanks
])
def test_finite_on_silence_and_full_scale_square_waves(make):
  t = np.arange(16000) / 16000
  square = np.sign(np.sin(2 * np.pi * 1000 * t))
  low_square = np.sign(np.sin(2 * np.pi * 50 * t))
  x = np.stack([np.zeros(16000), square, low_square, -square]).astype(
      np.float32)
  outputs = make()(x).numpy()
  assert np.isfinite(outputs).all()


@pytest.mark.parametrize('make, frames', [
    (frontend.Leaf, 1), (frontend.SincNet, 1), (frontend.SincNetPlus, 1),
    (frontend.MelFilterbanks, 1)
])
def test_input_shorter_than_a_window_gives_a_frame(make, frames):
  outputs = make()(tf.random.normal([2, 100], seed=4))
  assert outputs.shape == (2, frames, 40)
  assert np.isfinite(outputs.numpy()).all()


def test_valid_padding_on_a_too_short_input_is_a_clear_error():
  with pytest.raises(ValueError,
                     match=r"TimeDomainFilterbanks.*'valid'.*401 samples"):
    frontend.TimeDomainFilterbanks()(tf.zeros([1, 100]))
  # The same check holds when the length is only known at run time.
  layer = frontend.TimeDomainFilterbanks()
  run = tf.function(layer, input_signature=[tf.TensorSpec([None, None])])
  with pytest.raises(tf.errors.InvalidArgumentError, match='401 samples'):
    run(tf.zeros([1, 100]))


@pytest.mark.parametrize('make', [frontend.Leaf, frontend.MelFilterbanks])
@pytest.mark.parametrize('bad_input, error, match', [
    (np.zeros((2, 3, 16000), np.float32), ValueError, r'got shape \(2, 3, '),
    (np.zeros((2, 16000, 2), np.float32), ValueError, 'mono.*2 channels'),
    (np.zeros((16000,), np.float32), ValueError, r'rank 1'),
    (np.zeros((2, 16000), np.int16), TypeError, 'int16.*32768'),
])
def test_bad_inputs_get_clear_errors(make, bad_input, error, match):
  with pytest.raises(error, match=match) as info:
    make()(bad_input)
  assert make.__name__ in str(info.value)


@pytest.mark.parametrize('kwargs, match', [
    (dict(n_filters=0), 'n_filters must be a positive integer; got 0'),
    (dict(n_filters=2.5), 'n_filters'),
    (dict(window_len=0.), 'window_len'),
    (dict(window_len=2000.), r'window_len.*at most 1000 ms.*2000'),
    (dict(window_stride=-1.), 'window_stride'),
    (dict(window_stride=1500.), 'window_stride'),
    (dict(sample_rate=0), 'sample_rate'),
    (dict(sample_rate=100, window_stride=5.), 'less than one sample'),
])
@pytest.mark.parametrize('make', [
    frontend.Leaf, frontend.SincNet, frontend.TimeDomainFilterbanks,
    frontend.SincNetPlus, frontend.MelFilterbanks
])
def test_bad_constructor_arguments_get_clear_errors(make, kwargs, match):
  with pytest.raises(ValueError, match=match) as info:
    make(**kwargs)
  assert make.__name__ in str(info.value)


def test_frequencies_above_nyquist_are_errors():
  with pytest.raises(ValueError, match='max_freq=9000.*Nyquist'):
    frontend.MelFilterbanks(max_freq=9000.)
  with pytest.raises(ValueError, match='Nyquist'):
    frontend.Leaf(complex_conv_init=initializers.GaborInit(max_freq=9000.))
  with pytest.raises(ValueError, match='n_fft=256.*401 samples'):
    frontend.MelFilterbanks(n_fft=256)
  # The default top frequency follows Nyquist; None means Nyquist.
  assert frontend.MelFilterbanks(sample_rate=8000).max_freq == 4000.
  assert frontend.MelFilterbanks(max_freq=None).max_freq == 8000.


def test_pooling_init_without_a_kernel_is_an_error():
  with pytest.raises(ValueError, match='MaxPooling1D has no kernel'):
    frontend.SincNet(pooling_init=keras.initializers.Constant(0.4))


def test_custom_frontend_from_parts():
  leaf = frontend.Leaf(
      conv1d_cls=keras.layers.Conv1D,
      complex_conv_init='glorot_uniform',
      pooling_cls=frontend.pooling.MaxPooling1D,
      compression=frontend.compression.LogCompression(),
      n_filters=16)
  assert leaf(tf.random.normal([2, 3200], seed=5)).shape == (2, 20, 16)


TEN_MINUTES = 16000 * 600


@pytest.fixture(scope='module')
def ten_minute_square_wave():
  t = np.arange(TEN_MINUTES, dtype=np.float64) / 16000
  return np.sign(np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None]


@pytest.mark.parametrize('make', [
    frontend.Leaf, frontend.SincNetPlus, frontend.MelFilterbanks,
    frontend.TimeDomainFilterbanks, frontend.SincNet
])
@pytest.mark.slow
def test_ten_minute_input_gives_finite_outputs(ten_minute_square_wave, make):
  """60000 frames through each stage's arithmetic (PCEN's smoothing over
  every frame, the FFT method's blocks, the direct convolutions). 8 filters:
  what could overflow or lose precision runs along time, filter by filter,
  so 40 would repeat the same sums at five times the cost."""
  outputs = make(n_filters=8)(ten_minute_square_wave).numpy()
  assert outputs.shape[1] >= 59998 and outputs.shape[2] == 8
  assert np.isfinite(outputs).all()


@pytest.mark.slow
def test_ten_minute_input_trains_through_leaf_in_bounded_memory(
    ten_minute_square_wave):
  """Forward and backward; the FFT method keeps no full-rate intermediate."""
  import resource  # pylint: disable=g-import-not-at-top
  leaf = frontend.Leaf()
  waveform = tf.constant(ten_minute_square_wave)
  before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
  with tf.GradientTape() as tape:
    tape.watch(waveform)
    loss = tf.reduce_mean(leaf(waveform))
  grads = tape.gradient(loss, leaf.trainable_variables + [waveform])
  grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss -
               before) / 1024
  assert np.isfinite(loss.numpy())
  for grad in grads:
    assert np.isfinite(grad.numpy()).all()
    assert np.abs(grad.numpy()).max() > 0
  # One full-rate [samples, 80] float32 intermediate alone would be 3 GiB.
  assert grown_mib < 1500, grown_mib


@pytest.mark.parametrize('make', [
    frontend.Leaf, frontend.SincNetPlus, frontend.TimeDomainFilterbanks,
    frontend.MelFilterbanks, leaf_audio.EfficientLeaf
])
def test_compression_fn_is_a_deprecated_alias_of_compression(make):
  log = leaf_audio.LogCompression(log_offset=1e-3)
  with pytest.warns(DeprecationWarning, match='compression_fn is deprecated; '
                    'use compression='):
    old = make(n_filters=8, compression_fn=log)
  assert old.compression is log
  assert make(n_filters=8, compression=None).compression is None
  with pytest.raises(ValueError, match='compression_fn is the deprecated name '
                     'of compression; pass one of them, not both'):
    make(n_filters=8, compression=log, compression_fn=log)
  # The config names it `compression` and round-trips.
  config = old.get_config()
  assert 'compression_fn' not in config
  assert config['compression']['config']['log_offset'] == 1e-3
  restored = type(old).from_config(config)
  assert restored.compression.log_offset == 1e-3
