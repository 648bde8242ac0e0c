"""leaf_audio.Frontend: a frontend is its stages; the presets are Frontends."""

import re

import keras
import numpy as np
import pytest
import tensorflow as tf

import leaf_audio
from conftest import REPO_ROOT
from leaf_audio import convolution
from leaf_audio import frontend


def waveform(samples=3200, seed=0):
  return np.random.default_rng(seed).normal(0, 0.1, (2, samples)).astype(
      np.float32)


def leaf_stages():
  return dict(
      filterbank=leaf_audio.GaborConv1D(filters=16, kernel_size=401),
      activation=leaf_audio.SquaredModulus(),
      pooling=leaf_audio.GaussianLowpassPooling(kernel_size=401, strides=160),
      compression=frontend.leaf_pcen('float32'))


@pytest.mark.parametrize('method', ['direct', 'fft'])
def test_frontend_of_leafs_stages_computes_leaf(method):
  composed = leaf_audio.Frontend(**leaf_stages(), method=method)
  leaf = leaf_audio.Leaf(n_filters=8, method=method)
  x = waveform()
  np.testing.assert_allclose(composed(x), leaf(x), rtol=0, atol=1e-6)


@pytest.mark.parametrize('make', [
    leaf_audio.Leaf, leaf_audio.TimeDomainFilterbanks, leaf_audio.SincNet,
    leaf_audio.SincNetPlus, leaf_audio.EfficientLeaf])
def test_presets_are_frontends_with_public_stages(make):
  layer = make(n_filters=8)
  assert isinstance(layer, leaf_audio.Frontend)
  assert layer.filterbank is not None and layer.stages[0] is layer.filterbank
  for name in frontend.STAGES:
    with pytest.raises(AttributeError):
      setattr(layer, name, keras.layers.Identity())
  # The same layer computed stage by stage, through the public attributes.
  x = waveform()
  outputs = x[:, :, None]
  for stage in layer.stages:
    outputs = stage(outputs)
  outputs = layer.compression(tf.maximum(outputs, 1e-5))
  np.testing.assert_allclose(layer(x), outputs, rtol=0, atol=2e-5)


def test_frontend_round_trips_through_config_and_keras_file(tmp_path):
  composed = leaf_audio.Frontend(
      **leaf_stages(), normalization=keras.layers.LayerNormalization(),
      preemphasis=keras.layers.Conv1D(1, 2, padding='same', use_bias=False),
      pre_compression_floor=1e-4)
  x = waveform()
  expected = composed(x).numpy()
  restored = leaf_audio.Frontend.from_config(composed.get_config())
  restored(x)
  restored.set_weights(composed.get_weights())
  np.testing.assert_allclose(restored(x), expected, rtol=0, atol=1e-6)
  model = keras.Sequential([keras.Input((None,)), composed])
  model.save(tmp_path / 'frontend.keras')
  loaded = keras.saving.load_model(tmp_path / 'frontend.keras')
  np.testing.assert_allclose(loaded(x), expected, rtol=0, atol=1e-6)
  assert loaded.layers[0].pre_compression_floor == 1e-4


@pytest.mark.parametrize('make, channels', [
    (lambda: leaf_audio.Leaf(n_filters=8), 8),
    (lambda: leaf_audio.TimeDomainFilterbanks(n_filters=8), 8),
    (lambda: leaf_audio.EfficientLeaf(
        n_filters=8, num_groups=2,
        compression=leaf_audio.LogTBN(median='append')), 16),
    (lambda: leaf_audio.Leaf(n_filters=8,
                             compression=keras.layers.Dense(3)), 3),
])
def test_output_shape_accounts_for_every_stage(make, channels):
  layer = make()
  x = waveform(samples=3000)
  shape = layer.compute_output_shape(x.shape)
  assert shape[-1] == channels
  assert tuple(layer(x).shape) == tuple(shape)


def test_frontend_arguments_are_checked():
  with pytest.raises(ValueError, match='filterbank must be a Keras layer'):
    leaf_audio.Frontend(filterbank=None)
  with pytest.raises(TypeError, match='pooling must be a Keras layer or None'):
    leaf_audio.Frontend(filterbank=keras.layers.Identity(), pooling='max')
  with pytest.raises(ValueError, match='pre_compression_floor must be >= 0'):
    leaf_audio.Frontend(filterbank=keras.layers.Identity(),
                        pre_compression_floor=-1.)


def test_filterbank_interfaces_give_impulse_responses():
  leaf = leaf_audio.Leaf(n_filters=4)
  tdf = leaf_audio.TimeDomainFilterbanks(n_filters=4)
  efficient = leaf_audio.EfficientLeaf(n_filters=4, num_groups=2)
  for layer in (leaf, tdf, efficient):
    layer.build((None, 1600))
  gabor_real, gabor_imag = convolution.complex_filters(leaf.filterbank)
  # TimeDomainFilterbanks' kernel interleaves real and imaginary parts.
  kernel = tdf.filterbank.kernel.numpy()[:, 0, :]
  real, imag = convolution.complex_filters(tdf.filterbank)
  np.testing.assert_array_equal(real, kernel[:, 0::2].T)
  np.testing.assert_array_equal(imag, kernel[:, 1::2].T)
  grouped_real, grouped_imag = convolution.complex_filters(efficient.filterbank)
  np.testing.assert_allclose(grouped_real, gabor_real, atol=1e-6)
  np.testing.assert_allclose(grouped_imag, gabor_imag, atol=1e-6)
  np.testing.assert_allclose(efficient.filterbank.gabor_parameters(),
                             leaf.filterbank.gabor_parameters(), atol=1e-7)
  with pytest.raises(TypeError, match='no complex impulse responses'):
    convolution.complex_filters(leaf_audio.SincNet().filterbank)


def test_pooling_interfaces_give_windows_and_stride(reference):
  leaf = leaf_audio.Leaf(n_filters=4)
  tdf = leaf_audio.TimeDomainFilterbanks(n_filters=4)
  efficient = leaf_audio.EfficientLeaf(n_filters=4, num_groups=2)
  for layer in (leaf, tdf, efficient):
    layer.build((None, 1600))
  sigma = 0.4 * 200
  n = np.arange(401) - 200
  gaussian = np.exp(-0.5 * (n / sigma) ** 2)
  np.testing.assert_allclose(leaf.pooling.windows(),
                             np.repeat(gaussian[:, None], 4, 1), atol=1e-6)
  np.testing.assert_allclose(efficient.filterbank.windows(),
                             leaf.pooling.windows(), atol=1e-7)
  assert tdf.pooling.windows().shape == (401, 1)
  np.testing.assert_allclose(
      tdf.pooling.windows()[:, 0],
      reference['tfbanks_init_lowpass_kernel'][0, :, 0, 0], atol=1e-7)
  for layer in (leaf.pooling, tdf.pooling, efficient.filterbank):
    assert (layer.kernel_size, layer.strides) == (401, 160)


def test_nothing_outside_a_class_reads_its_private_stages():
  # The check (split so that this line does not match itself).
  pattern = re.compile('_flatten' + r'_layers|\._(complex_conv|pooling|'
                       r'compression)\b')
  found = []
  for folder in ('leaf_audio', 'experiments', 'benchmarks', 'tests'):
    for path in sorted((REPO_ROOT / folder).rglob('*.py')):
      for number, line in enumerate(path.read_text().splitlines(), 1):
        if pattern.search(line):
          found.append(f'{path.relative_to(REPO_ROOT)}:{number}: {line}')
  assert not found, '\n'.join(found)


def test_any_layers_compose_and_frames_come_from_the_pooling_stage():
  plain = leaf_audio.Frontend(filterbank=keras.layers.Dense(3),
                              pre_compression_floor=None)
  x = waveform(samples=100)
  assert plain(x).shape == (2, 100, 3)
  valid = leaf_audio.Frontend(
      filterbank=leaf_audio.GaborConv1D(filters=8, kernel_size=401),
      activation=leaf_audio.SquaredModulus(),
      pooling=leaf_audio.LearnablePooling1D(401, 160, padding='valid'))
  assert valid.compute_output_shape((2, 3200)) == (2, 18, 4)
  with pytest.raises(ValueError, match="'valid' padding and needs at least 401"):
    valid(waveform(samples=400))
