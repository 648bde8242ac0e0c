"""leaf_audio/streaming.py: streamed frames equal the offline frontend's."""

import numpy as np
import pytest
import tensorflow as tf

import leaf_audio
from leaf_audio import streaming
from tests.conftest import max_abs

TOLERANCE = 1e-5

# name -> (constructor, sample rate); 22.05 kHz gives even windows (552).
# EfficientLeaf in 2 groups: the same grouped streaming code as the paper's
# 8 (each group is a branch of every traced graph); tests/test_conformance.py
# streams gin_configs/efficient_leaf.gin's 8 groups.
FRONTENDS = {
    'mel': lambda: leaf_audio.MelFilterbanks(),
    'leaf': lambda: leaf_audio.Leaf(),
    'leaf_preemp': lambda: leaf_audio.Leaf(preemp=True),
    'efficient_leaf_pcen': lambda: leaf_audio.EfficientLeaf(
        compression='pcen', num_groups=2),
    'sincnet': lambda: leaf_audio.SincNet(),
    'sincnet_plus': lambda: leaf_audio.SincNetPlus(),
    'leaf_22k': lambda: leaf_audio.Leaf(sample_rate=22050),
    'mel_22k': lambda: leaf_audio.MelFilterbanks(sample_rate=22050),
    'efficient_leaf_log_pcen_22k': lambda: leaf_audio.EfficientLeaf(
        sample_rate=22050, compression='log_pcen', num_groups=2),
    # Frame-wise at inference: log gain, then batch norm's moving statistics.
    'efficient_leaf_logtbn_no_median': lambda: leaf_audio.EfficientLeaf(
        compression=leaf_audio.LogTBN(median=None), num_groups=2),
}

_STREAMS = {}


def _stream(name):
  """A built frontend's StreamingFrontend, shared by the tests (one trace)."""
  if name not in _STREAMS:
    frontend = FRONTENDS[name]()
    frontend(tf.zeros([1, 2000]))
    # Weights away from their initial values, so that each one matters.
    rng = np.random.default_rng(1)
    for variable in frontend.weights:
      value = variable.numpy()
      variable.assign(value * rng.uniform(0.9, 1.1, value.shape).astype(
          value.dtype))
    _STREAMS[name] = streaming.StreamingFrontend(frontend)
  return _STREAMS[name]


def _chunk_sizes(chunking, length, hop):
  if chunking == 'one_sample':
    return [1] * length
  if chunking == 'hop':
    return [hop] * (length // hop + 1)
  if chunking == 'seven_hops':
    return [7 * hop] * (length // (7 * hop) + 1)
  rng = np.random.default_rng(7)
  sizes = []
  while sum(sizes) < length:
    sizes.append(int(rng.integers(0, 3 * hop)))
  return sizes


def _streamed(stream, clip, sizes):
  streamer = streaming.Streamer(stream)
  outputs, start = [], 0
  for size in sizes:
    frames = streamer.push(clip[:, start:start + size])
    assert frames.shape[0] == clip.shape[0] and frames.ndim == 3
    outputs.append(frames)
    start += size
  assert start >= clip.shape[1]
  outputs.append(streamer.flush())
  return np.concatenate(outputs, axis=1)


def _padded_to_hop(clip, hop):
  return np.pad(clip, [[0, 0], [0, -clip.shape[1] % hop]])


@pytest.mark.parametrize('name', sorted(FRONTENDS))
@pytest.mark.parametrize('whole_hops', [True, False])
def test_streamed_frames_equal_the_offline_frontend(name, whole_hops):
  stream = _stream(name)
  hop = stream.hop_samples
  rng = np.random.default_rng(0)
  length = 12 * hop + (0 if whole_hops else 37)
  clip = rng.uniform(-1, 1, [2, length]).astype(np.float32)
  expected = stream.frontend(tf.constant(_padded_to_hop(clip, hop))).numpy()
  assert expected.shape[1] == -(-length // hop)
  if whole_hops or name.startswith('mel'):
    # The padded clip is the clip itself (mel: zeros past the end anyway).
    np.testing.assert_allclose(
        stream.frontend(tf.constant(clip)).numpy(), expected, atol=TOLERANCE)
  for chunking in ('hop', 'seven_hops', 'random'):
    got = _streamed(stream, clip, _chunk_sizes(chunking, length, hop))
    assert got.shape == expected.shape, chunking
    assert max_abs(got, expected) < TOLERANCE, chunking
  # A stream of known length gives frontend(clip) for any length.
  known = streaming.StreamingFrontend(stream.frontend, total_samples=length)
  got = _streamed(known, clip, _chunk_sizes('random', length, hop))
  assert max_abs(got, stream.frontend(tf.constant(clip)).numpy()) < TOLERANCE


@pytest.mark.parametrize('name', ['mel', 'leaf', 'leaf_preemp',
                                  'efficient_leaf_pcen', 'leaf_22k'])
def test_one_sample_at_a_time(name):
  stream = _stream(name)
  length = 3 * stream.hop_samples + 5
  clip = np.random.default_rng(3).uniform(-1, 1, [2, length]).astype(
      np.float32)
  expected = stream.frontend(
      tf.constant(_padded_to_hop(clip, stream.hop_samples))).numpy()
  got = _streamed(stream, clip, [1] * length)
  assert got.shape == expected.shape
  assert max_abs(got, expected) < TOLERANCE


def test_empty_and_short_streams():
  stream = _stream('leaf')
  streamer = streaming.Streamer(stream)
  assert streamer.push(np.zeros([2, 0], np.float32)).shape == (2, 0, 40)
  assert streamer.flush().shape == (2, 0, 40)
  clip = np.random.default_rng(4).uniform(-1, 1, [1, 50]).astype(np.float32)
  got = _streamed(stream, tf.constant(clip), [50])  # tensors work too
  expected = stream.frontend(tf.constant(_padded_to_hop(clip, 160))).numpy()
  assert got.shape == (1, 1, 40)
  assert max_abs(got, expected) < TOLERANCE


@pytest.mark.parametrize('name', ['leaf', 'mel', 'efficient_leaf_pcen',
                                  'leaf_preemp'])
def test_frames_come_out_as_soon_as_final(name):
  """After k hops, the frames f with f * hop + lookahead < k * hop are out."""
  stream = _stream(name)
  hop, lookahead = stream.hop_samples, stream.lookahead_samples
  streamer = streaming.Streamer(stream)
  clip = np.random.default_rng(5).uniform(-1, 1, [1, 10 * hop]).astype(
      np.float32)
  frames = streamer.push(clip)
  assert frames.shape[1] == (10 * hop - 1 - lookahead) // hop + 1


@pytest.mark.parametrize('name', ['leaf', 'mel', 'efficient_leaf_pcen',
                                  'leaf_preemp'])
def test_lookahead_is_exact_for_the_offline_frontend(name):
  """Frame f depends on sample f * hop + lookahead but on none after it."""
  stream = _stream(name)
  hop, lookahead = stream.hop_samples, stream.lookahead_samples
  clip = np.random.default_rng(6).uniform(-1, 1, [1, 12 * hop]).astype(
      np.float32)
  frame = 4
  offline = stream.frontend(tf.constant(clip)).numpy()[0, :frame + 1]
  after = clip.copy()
  after[0, frame * hop + lookahead + 1:] = 0.
  assert max_abs(stream.frontend(tf.constant(after)).numpy()[0, :frame + 1],
                 offline) < TOLERANCE
  # And it does depend on the window's last samples (a large change: the
  # windows' last taps are small; TF's odd periodic Hann window ends in 0).
  last = clip.copy()
  last[0, frame * hop + lookahead - 1:frame * hop + lookahead + 1] += 100.
  assert max_abs(stream.frontend(tf.constant(last)).numpy()[0, frame],
                 offline[frame]) > 1e-4


def test_pure_step_is_traceable_and_equals_the_streamer():
  stream = _stream('leaf')
  hop = stream.hop_samples
  clip = np.random.default_rng(8).uniform(-1, 1, [2, 9 * hop]).astype(
      np.float32)
  step = tf.function(stream.step)
  state = stream.initial_state(2)
  outputs = []
  for index in range(3):
    state, frames = step(state, clip[:, index * 3 * hop:(index + 1) * 3 * hop])
    outputs.append(frames.numpy())
  state, frames = tf.function(stream.finish)(state)
  outputs.append(frames.numpy())
  got = np.concatenate(outputs, axis=1)
  delay = stream.delay_frames
  np.testing.assert_array_equal(got[:, :delay], 0.)
  expected = stream.frontend(tf.constant(clip)).numpy()
  assert max_abs(got[:, delay:], expected) < TOLERANCE
  assert int(state['position']) == (9 + delay) * hop


@pytest.mark.parametrize('name', ['leaf', 'efficient_leaf_pcen', 'mel'])
def test_step_converts_to_tflite_and_matches_offline(name):
  stream = _stream(name)
  hop = stream.hop_samples
  interpreter = tf.lite.Interpreter(model_content=stream.to_tflite(),
                                    num_threads=1)
  runner = interpreter.get_signature_runner('step')
  hops = 20
  clip = np.random.default_rng(9).uniform(-1, 1, [1, hops * hop]).astype(
      np.float32)
  state = {'state_' + key: value.numpy()
           for key, value in stream.initial_state(1).items()}
  frames = []
  for index in range(hops):
    outputs = runner(samples=clip[:, index * hop:(index + 1) * hop], **state)
    state = {key: outputs[key] for key in state}
    frames.append(outputs['frames'])
  got = np.concatenate(frames, axis=1)[:, stream.delay_frames:]
  expected = stream.frontend(tf.constant(clip)).numpy()[:, :got.shape[1]]
  assert got.shape[1] == hops - stream.delay_frames
  assert max_abs(got, expected) < 1e-4


# -- bad input --------------------------------------------------------------


def test_refuses_what_cannot_stream():
  refused = {
      'valid': leaf_audio.TimeDomainFilterbanks(),
      'mean_var_norm': leaf_audio.Leaf(mean_var_norm=True),
      'median': leaf_audio.EfficientLeaf(),
  }
  for reason, frontend in refused.items():
    frontend(tf.zeros([1, 1000]))
    with pytest.raises(ValueError, match=reason):
      streaming.StreamingFrontend(frontend)
  with pytest.raises(ValueError, match='build the frontend first'):
    streaming.Streamer(leaf_audio.Leaf())


def test_bad_samples_are_refused_clearly():
  streamer = streaming.Streamer(_stream('leaf'))
  with pytest.raises(TypeError, match='float audio.*int16'):
    streamer.push(np.zeros([1, 10], np.int16))
  with pytest.raises(ValueError, match=r'shape \[batch, n\].*\(10,\)'):
    streamer.push(np.zeros([10], np.float32))
  with pytest.raises(ValueError, match=r'shape \[batch, n\].*\(1, 10, 1\)'):
    streamer.push(np.zeros([1, 10, 1], np.float32))
  streamer.push(np.zeros([2, 10], np.float32))
  with pytest.raises(ValueError, match='batch size 2'):
    streamer.push(np.zeros([3, 10], np.float32))
  streamer.flush()
  with pytest.raises(RuntimeError, match='push after flush'):
    streamer.push(np.zeros([2, 10], np.float32))
  with pytest.raises(RuntimeError, match='flush called twice'):
    streamer.flush()
  known = streaming.Streamer(_stream('leaf').frontend, total_samples=200)
  with pytest.raises(ValueError, match='total_samples=200, but 300'):
    known.push(np.zeros([1, 300], np.float32))
  known.push(np.zeros([1, 100], np.float32))
  with pytest.raises(ValueError, match='total_samples=200, but 100'):
    known.flush()
  with pytest.raises(ValueError, match='total_samples must be'):
    streaming.Streamer(_stream('leaf').frontend, total_samples=-1)


def test_bad_steps_are_refused_clearly():
  stream = _stream('leaf')
  state = stream.initial_state(1)
  with pytest.raises(ValueError, match='whole hops of 160'):
    stream.step(state, tf.zeros([1, 100]))
  with pytest.raises(TypeError, match='float audio'):
    stream.step(state, tf.zeros([1, 160], tf.int32))
  with pytest.raises(ValueError, match=r'\[batch, samples\]'):
    stream.step(state, tf.zeros([160]))
  mel_state = _stream('mel').initial_state(1)
  with pytest.raises(ValueError, match='another frontend or sample rate'):
    stream.step(mel_state, tf.zeros([1, 160]))
  other_rate = _stream('leaf_22k').initial_state(1)
  with pytest.raises(ValueError, match='another frontend or sample rate'):
    stream.step(other_rate, tf.zeros([1, 160]))
  # Same shapes, other frontend: told apart by the state's fingerprint.
  sincnet_state = _stream('sincnet').initial_state(1)
  sincnet_state['smoother'] = tf.zeros([1, 40])
  with pytest.raises(ValueError, match='another frontend'):
    stream.step(sincnet_state, tf.zeros([1, 160]))
  with pytest.raises(ValueError, match='keys'):
    stream.step({'samples': state['samples']}, tf.zeros([1, 160]))
