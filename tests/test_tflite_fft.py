"""The FFT method with TFLite builtins (`real_fft_filterbank`, 'fft_builtin')
computes the FFT method's function and converts to LiteRT without Flex ops."""

import re

import keras
import numpy as np
import pytest
import tensorflow as tf

import leaf_audio
from leaf_audio import fft_filterbank
from leaf_audio import methods
from leaf_audio import real_fft_filterbank
from fft_reference import numpy_pooled_energy


def builtin_energy(waveform, real, imag, windows, stride, padding, size=None,
                   static=True):
  """real_fft_filterbank.pooled_energy in a graph whose input length is
  static (as in a converted model) or known only at run time."""
  shape = waveform.shape if static else (None, None)

  @tf.function(input_signature=[tf.TensorSpec(shape, tf.float32)])
  def energy(waveform):
    return real_fft_filterbank.pooled_energy(
        waveform, tf.constant(real, tf.float32), tf.constant(imag, tf.float32),
        tf.constant(windows, tf.float32), stride, padding, size=size)

  return energy(tf.constant(waveform, tf.float32)).numpy()


@pytest.mark.parametrize('padding', ['same', 'valid'])
@pytest.mark.parametrize('shared_window', [False, True])
@pytest.mark.parametrize('channels', [3, 4])
@pytest.mark.parametrize('static', [True, False])
def test_pooled_energy_matches_numpy(padding, shared_window, channels,
                                     static):
  # An odd channel count exercises the zero channel that completes a group
  # of four filters; both lengths exercise the last, partly empty chunk.
  rng = np.random.default_rng(4)
  real, imag = rng.standard_normal((2, channels, 33))
  windows = rng.random((25, 1 if shared_window else channels))
  waveform = rng.standard_normal((2, 500))
  got = builtin_energy(waveform, real, imag, windows, 10, padding, size=64,
                       static=static)
  want = numpy_pooled_energy(waveform, real, imag, windows, 10, padding)
  assert got.shape == want.shape
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5 * want.max())


@pytest.mark.parametrize('kernel, window, stride, samples',
                         [(401, 401, 160, 1600), (65, 9, 10, 237),
                          (9, 65, 10, 333), (400, 400, 160, 999)])
def test_equals_the_fft_method_to_float32_rounding(kernel, window, stride,
                                                   samples):
  rng = np.random.default_rng(6)
  real, imag = 0.1 * rng.standard_normal((2, 6, kernel))
  windows = rng.random((window, 6))
  waveform = rng.standard_normal((3, samples)).astype(np.float32)
  args = [tf.constant(value, tf.float32) for value in (real, imag, windows)]
  want = fft_filterbank.pooled_energy(tf.constant(waveform), *args, stride,
                                      'same').numpy()
  got = builtin_energy(waveform, real, imag, windows, stride, 'same')
  assert np.abs(got - want).max() <= 1e-5 * want.max()


def test_a_non_finite_clip_gets_nan_and_its_neighbours_nothing():
  rng = np.random.default_rng(7)
  real, imag = rng.standard_normal((2, 2, 17))
  windows = rng.random((11, 2))
  waveform = rng.standard_normal((3, 300)).astype(np.float32)
  alone = builtin_energy(waveform[[0, 2]], real, imag, windows, 5, 'same',
                         size=64)
  waveform[1, 100] = np.inf
  waveform[1, 200] = np.nan
  got = builtin_energy(waveform, real, imag, windows, 5, 'same', size=64)
  assert np.isnan(got[1]).all()
  np.testing.assert_array_equal(got[[0, 2]], alone)


def test_fft_size_keeps_half_of_each_chunk():
  assert real_fft_filterbank.fft_size(401, 160) == 2048
  for kernel, stride in [(401, 160), (769, 240), (552, 220), (3, 5000)]:
    size = real_fft_filterbank.fft_size(kernel, stride)
    assert size & (size - 1) == 0
    assert size >= 2 * (kernel - 1 + stride) > size // 2


@pytest.mark.parametrize('size', [256, 100, 512.0])
def test_a_bad_fft_size_is_refused(size):
  real = tf.zeros([2, 401])
  with pytest.raises(ValueError, match=r'size must be a power of two >= '
                     r'kernel_size - 1 \+ stride = 560; got '
                     + re.escape(repr(size))):
    real_fft_filterbank.pooled_energy(tf.zeros([1, 1000]), real, real,
                                      tf.ones([401, 2]), 160, 'same',
                                      size=size)


def test_leaf_with_fft_builtin_equals_leaf_with_fft():
  keras.utils.set_random_seed(1)
  fft = leaf_audio.Leaf(n_filters=6)
  waveform = (0.1 * np.random.default_rng(8).standard_normal((2, 3000))
              ).astype(np.float32)
  want = fft(waveform).numpy()
  builtin = methods.with_method(fft, 'fft_builtin')
  assert builtin.active_method == 'fft_builtin'
  np.testing.assert_allclose(builtin(waveform).numpy(), want, atol=1e-4,
                             rtol=0)


def test_auto_builtin_picks_fft_builtin_where_the_fft_method_applies():
  assert leaf_audio.Leaf(method='auto_builtin').active_method == 'fft_builtin'
  assert leaf_audio.SincNet(method='auto_builtin').active_method == 'direct'
  with pytest.raises(ValueError, match=r"method='fft_builtin' cannot .*"
                     r"SincConv1D.*Use method='direct' or 'auto_builtin'"):
    leaf_audio.SincNet(method='fft_builtin')
  restored = leaf_audio.Leaf.from_config(
      leaf_audio.Leaf(method='auto_builtin').get_config())
  assert restored.method == 'auto_builtin'
  assert restored.active_method == 'fft_builtin'


def converted(layer, samples, folder):
  """layer as a .tflite (TFLite builtins only) and its LiteRT runner."""
  from ai_edge_litert import interpreter as litert  # pylint: disable=g-import-not-at-top
  archive = keras.export.ExportArchive()
  archive.track(layer)
  archive.add_endpoint('frontend', tf.function(
      lambda waveform: {'frames': layer(waveform)},
      input_signature=[tf.TensorSpec([None, samples], tf.float32,
                                     name='waveform')]))
  archive.write_out(str(folder), verbose=False)
  converter = tf.lite.TFLiteConverter.from_saved_model(
      str(folder), signature_keys=['frontend'])
  converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
  interpreter = litert.Interpreter(model_content=converter.convert())
  ops = {detail['op_name'] for detail in interpreter._get_ops_details()}  # pylint: disable=protected-access
  return interpreter.get_signature_runner('frontend'), ops


@pytest.mark.slow
def test_converts_with_builtins_only_and_runs_in_litert(tmp_path):
  keras.utils.set_random_seed(2)
  leaf = leaf_audio.Leaf(n_filters=4)
  waveform = (0.1 * np.random.default_rng(9).standard_normal((2, 2000))
              ).astype(np.float32)
  want = leaf(waveform).numpy()
  runner, ops = converted(methods.with_method(leaf, 'auto_builtin'), 2000,
                          tmp_path)
  assert 'RFFT2D' in ops
  # No Flex (TF Select) or custom operations, and no direct convolution.
  assert not [op for op in ops if op.startswith('Flex') or
              op in ('CUSTOM', 'CONV_2D')], sorted(ops)
  got = runner(waveform=waveform)['frames']
  np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)
