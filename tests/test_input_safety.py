"""What every frontend promises about its input (leaf_audio/validation.py).

  * batch independence: a clip's features do not depend on the other clips of
    the batch, however loud (the FFT method packs the clips end to end);
  * input range: float samples in [-1, 1], checked by `check_waveform`;
  * non-finite samples: NaN features throughout the clip, other clips intact;
  * a Python list is refused with a message saying what was expected;
  * too few samples: the same clear error in a graph of unknown length as
    eagerly.
"""

import numpy as np
import pytest
import tensorflow as tf

import leaf_audio

SAMPLES = 8000

FRONTENDS = {
    'Leaf/fft': lambda: leaf_audio.Leaf(method='fft'),
    'Leaf/direct': lambda: leaf_audio.Leaf(method='direct'),
    'TimeDomainFilterbanks/fft':
        lambda: leaf_audio.TimeDomainFilterbanks(method='fft'),
    'TimeDomainFilterbanks/direct':
        lambda: leaf_audio.TimeDomainFilterbanks(method='direct'),
    'SincNet/direct': lambda: leaf_audio.SincNet(method='direct'),
    'SincNetPlus/direct': lambda: leaf_audio.SincNetPlus(method='direct'),
    'EfficientLeaf': leaf_audio.EfficientLeaf,
    'MelFilterbanks': leaf_audio.MelFilterbanks,
}


def quiet_clip():
  """A 0.01-amplitude 440 Hz tone with a little noise: float32 [SAMPLES]."""
  t = np.arange(SAMPLES) / 16000.
  noise = np.random.default_rng(0).standard_normal(SAMPLES)
  return (0.01 * np.sin(2 * np.pi * 440 * t) + 1e-3 * noise).astype(np.float32)


def loud_clip(amplitude):
  """Uniform noise of peak `amplitude`: float32 [SAMPLES]."""
  noise = np.random.default_rng(1).uniform(-1., 1., SAMPLES)
  return (amplitude * noise / np.abs(noise).max()).astype(np.float32)


@pytest.fixture(scope='module', params=sorted(FRONTENDS))
def frontend(request):
  layer = FRONTENDS[request.param]()
  layer(tf.zeros([1, SAMPLES]))
  return layer


def features(layer, clips, training=False):
  return layer(np.stack(clips), training=training).numpy()


def test_a_clip_does_not_depend_on_its_neighbours(frontend):
  # Before the per-clip scaling of fft_filterbank, a quiet clip beside one at
  # int16 scale moved by 0.56 (Leaf/fft) and 2.4 (TimeDomainFilterbanks/fft).
  quiet = quiet_clip()
  alone = features(frontend, [quiet])[0]
  assert np.isfinite(alone).all()
  neighbours = [loud_clip(1.), loud_clip(32768.), loud_clip(1e6),
                np.zeros(SAMPLES, np.float32)]
  for neighbour in neighbours:
    for position in (0, 1):
      clips = [neighbour]
      clips.insert(position, quiet)
      got = features(frontend, clips)[position]
      np.testing.assert_allclose(
          got, alone, rtol=0, atol=1e-4,
          err_msg=f'neighbour of peak {np.abs(neighbour).max():g}')


@pytest.mark.parametrize('bad', ['one NaN', 'one inf', 'all NaN', 'all -inf'])
def test_a_non_finite_clip_gives_nan_features_and_spares_the_others(
    frontend, bad):
  quiet = quiet_clip()
  alone = features(frontend, [quiet])[0]
  clip = np.zeros(SAMPLES, np.float32)
  value = {'one NaN': np.nan, 'one inf': np.inf, 'all NaN': np.nan,
           'all -inf': -np.inf}[bad]
  if bad.startswith('one'):
    clip = loud_clip(0.5)
    clip[SAMPLES // 3] = value
  else:
    clip[:] = value
  got = features(frontend, [quiet, clip, quiet])
  assert np.isnan(got[1]).all()
  np.testing.assert_allclose(got[0], alone, rtol=0, atol=1e-4)
  np.testing.assert_allclose(got[2], alone, rtol=0, atol=1e-4)


def test_non_finite_clips_in_training_leave_the_others_finite(frontend):
  # In training LogTBN's batch norm mixes the clips; its statistics skip the
  # NaN clip, so the other clips (and the moving statistics) stay finite.
  clip = np.full(SAMPLES, np.nan, np.float32)
  got = features(frontend, [quiet_clip(), clip, loud_clip(0.3)],
                 training=True)
  assert np.isnan(got[1]).all()
  assert np.isfinite(got[[0, 2]]).all()
  assert all(np.isfinite(v.numpy()).all() for v in frontend.weights)


def test_a_python_list_is_refused_with_what_was_expected():
  message = (r'expects a float tensor or numpy array of shape \[batch, '
             r'samples\] or \[batch, samples, 1\]')
  for name, make in FRONTENDS.items():
    layer = make()
    with pytest.raises(TypeError, match=message):
      layer([[0.] * 500])  # not built yet
    layer(np.zeros([1, 500], np.float32))
    with pytest.raises(TypeError, match=message + '.*got a Python list'):
      layer([[0.] * 500])
    assert layer(np.zeros([1, 500])).shape[0] == 1, name  # arrays still go


def needed_samples(layer):
  if getattr(layer, 'pooling_padding', 'same') == 'valid':
    # In a graph the message has no quotes around valid.
    return (layer.window_size,
            rf"{type(layer).__name__} pools with '?valid'? padding and needs "
            rf'at least {layer.window_size} samples')
  return 1, f'{type(layer).__name__} expects at least one sample'


def test_too_short_input_in_a_graph_of_unknown_length_is_refused(frontend):
  needed, message = needed_samples(frontend)
  run = tf.function(frontend, input_signature=[
      tf.TensorSpec([None, None], tf.float32)])
  assert run(tf.zeros([2, needed])).shape[:2] == (2, 1)
  for samples in sorted({0, needed - 1}):
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=f'{message}; got {samples} samples'):
      run(tf.zeros([2, samples]))
    # Eagerly (a known length): the same message.
    with pytest.raises(ValueError, match=message):
      frontend(tf.zeros([2, samples]))


def test_check_waveform_accepts_float_audio_in_range():
  clips = np.stack([quiet_clip(), loud_clip(1.)]).astype(np.float64)
  got = leaf_audio.check_waveform(clips)
  assert got.dtype == np.float32 and got.shape == clips.shape
  np.testing.assert_array_equal(got, clips.astype(np.float32))
  assert leaf_audio.check_waveform([[0.5, -1.]]).tolist() == [[0.5, -1.]]
  assert leaf_audio.check_waveform(tf.zeros([2, 10, 1])).shape == (2, 10, 1)
  louder = leaf_audio.check_waveform(1.04 * clips, max_abs=1.05)
  assert louder.shape == (2, SAMPLES)


def test_check_waveform_names_the_clip_out_of_range():
  clips = np.stack([quiet_clip(), loud_clip(32767.), loud_clip(2.)])
  with pytest.raises(ValueError, match=r'\[-1, 1\].*clip 1 reaches \|x\| = '
                     r'32767 \(2 of 3 clips beyond\).*int16 samples / 32768'):
    leaf_audio.check_waveform(clips)
  with pytest.raises(ValueError, match=r'\[-1.5, 1.5\].*clip 1'):
    leaf_audio.check_waveform(clips, max_abs=1.5)


def test_check_waveform_refuses_non_finite_integer_and_misshapen_audio():
  clips = np.zeros([4, 100], np.float32)
  clips[2, 7] = np.nan
  clips[3, 0] = -np.inf
  with pytest.raises(ValueError, match=r'clip\(s\) \[2, 3\] hold NaN or inf'):
    leaf_audio.check_waveform(clips)
  with pytest.raises(TypeError, match='got dtype int16.*/ 32768'):
    leaf_audio.check_waveform(np.zeros([1, 100], np.int16))
  with pytest.raises(ValueError, match=r'got shape \(100,\) \(rank 1\)'):
    leaf_audio.check_waveform(np.zeros([100], np.float32))
  with pytest.raises(ValueError, match='with 2 channels'):
    leaf_audio.check_waveform(np.zeros([1, 100, 2], np.float32))
  with pytest.raises(ValueError, match='max_abs must be a positive number'):
    leaf_audio.check_waveform(clips, max_abs=0.)
