"""framing.overlapping_frames: tf.signal.frame's frames, built without a gather."""

import numpy as np
import pytest
import tensorflow as tf

import leaf_audio
from leaf_audio import framing


def numpy_frames(signal, length, step, pad_end):
  """The definition: frame i is samples [i step, i step + length), 0 past the end."""
  samples = signal.shape[-1]
  if pad_end:
    count = -(-samples // step)
  else:
    count = max((samples - length) // step + 1, 0)
  padded = np.concatenate(
      [signal, np.zeros(signal.shape[:-1] + (count * step + length,),
                        signal.dtype)], axis=-1)
  frames = [padded[..., i * step:i * step + length] for i in range(count)]
  if not frames:
    return np.zeros(signal.shape[:-1] + (0, length), signal.dtype)
  return np.stack(frames, axis=-2)


@pytest.mark.parametrize('length, step', [(401, 160), (400, 160), (160, 401),
                                          (5, 5), (1, 1), (7, 3)])
@pytest.mark.parametrize('samples', [0, 1, 159, 160, 401, 402, 1601])
@pytest.mark.parametrize('pad_end', [True, False])
def test_frames_match_the_definition_and_tf_signal_frame(length, step, samples,
                                                          pad_end):
  signal = np.random.default_rng(samples).standard_normal(
      (2, 3, samples)).astype(np.float32)
  got = framing.overlapping_frames(signal, length, step, pad_end).numpy()
  np.testing.assert_array_equal(got,
                                numpy_frames(signal, length, step, pad_end))
  np.testing.assert_array_equal(
      got, tf.signal.frame(signal, length, step, pad_end=pad_end).numpy())


def test_length_known_only_at_run_time_and_other_dtypes():
  frames = tf.function(
      lambda x: framing.overlapping_frames(x, 401, 160, pad_end=True),
      input_signature=[tf.TensorSpec([None, None], tf.float64)])
  signal = np.random.default_rng(0).standard_normal((3, 16001))
  got = frames(signal)
  assert got.dtype == tf.float64
  np.testing.assert_array_equal(got.numpy(),
                                numpy_frames(signal, 401, 160, True))
  ints = np.arange(10, dtype=np.int32)
  np.testing.assert_array_equal(
      framing.overlapping_frames(ints, 4, 3).numpy(),
      numpy_frames(ints, 4, 3, False))


def test_gradient_is_tf_signal_frame_gradient():
  signal = tf.random.stateless_normal([2, 1000], seed=[1, 2])
  weights = tf.random.stateless_normal([2, 7, 401], seed=[3, 4])
  gradients = []
  for frame in (lambda x: framing.overlapping_frames(x, 401, 160, True),
                lambda x: tf.signal.frame(x, 401, 160, pad_end=True)):
    with tf.GradientTape() as tape:
      tape.watch(signal)
      loss = tf.reduce_sum(frame(signal) * weights)
    gradients.append(tape.gradient(loss, signal).numpy())
  np.testing.assert_allclose(gradients[0], gradients[1], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize('kwargs, message', [
    (dict(frame_length=0, frame_step=160), 'frame_length must be an int >= 1'),
    (dict(frame_length=401, frame_step=1.5), 'frame_step must be an int >= 1'),
    (dict(frame_length=True, frame_step=160), 'frame_length must be an int'),
])
def test_bad_lengths_are_refused(kwargs, message):
  with pytest.raises(ValueError, match=message):
    framing.overlapping_frames(tf.zeros([10]), **kwargs)


def test_a_scalar_signal_is_refused():
  with pytest.raises(ValueError, match='known rank >= 1'):
    framing.overlapping_frames(tf.constant(1.), 4, 2)


def test_static_shapes_stay_static_as_with_tf_signal_frame():
  shapes = {}

  @tf.function(input_signature=[tf.TensorSpec([None, 16000])])
  def frames(signal):
    shapes['ours'] = framing.overlapping_frames(signal, 401, 160,
                                                pad_end=True).shape
    shapes['tf'] = tf.signal.frame(signal, 401, 160, pad_end=True).shape
    shapes['valid'] = framing.overlapping_frames(signal, 401, 160).shape
    return signal

  frames.get_concrete_function()
  assert shapes['ours'].as_list() == shapes['tf'].as_list() == [None, 100, 401]
  assert shapes['valid'].as_list() == [None, 98, 401]


def test_numpy_integer_lengths_are_accepted():
  got = framing.overlapping_frames(tf.range(10.), np.int64(4), np.int32(3))
  np.testing.assert_array_equal(got.numpy(),
                                numpy_frames(np.arange(10.), 4, 3, False))


@pytest.mark.parametrize('make', [
    lambda: leaf_audio.Leaf(window_len=0.01),
    lambda: leaf_audio.EfficientLeaf(window_len=0.05),
    lambda: leaf_audio.SincNetPlus(window_len=0.01),
    lambda: leaf_audio.GaussianLowpassPooling(kernel_size=1),
    lambda: leaf_audio.GroupedGaborFilterbank(n_filters=4, window_size=1,
                                              hop=1, num_groups=1),
])
def test_one_sample_windows_are_refused_instead_of_nan_features(make):
  # A one-sample Gaussian pooling window is 0 / 0: every feature was NaN.
  with pytest.raises(ValueError, match=r'at least 2'):
    make()


def test_the_shortest_window_gives_finite_features():
  # window_len=0.0625 ms at 16 kHz: 2 samples, the minimum.
  leaf = leaf_audio.Leaf(window_len=0.0625, window_stride=0.0625)
  assert leaf.window_samples == 2
  features = np.asarray(leaf(np.full((1, 64), 0.1, np.float32)))
  assert np.all(np.isfinite(features))
