"""leaf_audio.streaming.Streamer on bad input: NaN, empty batches, long pushes,
and the order of push and flush."""

import numpy as np
import pytest

from leaf_audio import streaming
from tests.test_streaming import _stream


def _clip(samples, batch=2, seed=0):
  return (0.1 * np.random.default_rng(seed).standard_normal(
      [batch, samples])).astype(np.float32)


def _all_frames(streamer, clip, size):
  outputs = [streamer.push(clip[:, start:start + size])
             for start in range(0, clip.shape[1], size)]
  return np.concatenate(outputs + [streamer.flush()], axis=1)


@pytest.mark.parametrize('name', ['leaf', 'sincnet_plus', 'mel'])
def test_a_nan_sample_spoils_only_the_frames_whose_window_holds_it(name):
  stream = _stream(name)
  hop = stream.hop_samples
  clip = _clip(60 * hop)
  bad = 20 * hop + 37
  spoiled = clip.copy()
  spoiled[0, bad] = np.nan
  spoiled[1, bad + 5] = np.inf
  frames = _all_frames(streaming.Streamer(stream), spoiled, 3 * hop + 1)
  # Frame f reads samples f * hop - lookbehind ... f * hop + lookahead.
  for row, position in ((0, bad), (1, bad + 5)):
    first = -(-(position - stream.lookahead_samples) // hop)
    last = (position + stream.lookbehind_samples) // hop
    invalid = ~np.isfinite(frames[row]).all(axis=-1)
    assert np.flatnonzero(invalid).tolist() == list(range(first, last + 1))
  # The frames before are untouched; after the window passed, the stream
  # recovered: the stage computed the bad sample as a zero.
  zeroed = clip.copy()
  zeroed[0, bad] = 0.
  zeroed[1, bad + 5] = 0.
  expected = _all_frames(streaming.Streamer(stream), zeroed, 3 * hop + 1)
  finite = np.isfinite(frames)
  np.testing.assert_array_equal(frames[finite], expected[finite])
  assert finite[:, -10:].all()


def test_an_empty_batch_is_refused_clearly():
  streamer = streaming.Streamer(_stream('leaf'))
  with pytest.raises(ValueError, match=r'batch size >= 1.*\(0, 160\)'):
    streamer.push(np.zeros([0, 160], np.float32))
  # The streamer is still usable.
  assert streamer.push(np.zeros([1, 320], np.float32)).shape[0] == 1


def test_flush_before_push_keeps_the_stream_open():
  streamer = streaming.Streamer(_stream('leaf'))
  with pytest.raises(RuntimeError, match='flush before any push; push'):
    streamer.flush()
  # As the message says: push, then flush.
  hop = streamer.hop_samples
  clip = _clip(10 * hop, batch=1)
  frames = np.concatenate([streamer.push(clip), streamer.flush()], axis=1)
  assert frames.shape == (1, 10, 40)


def test_a_long_push_runs_in_bounded_steps_with_the_same_frames():
  stream = _stream('leaf')
  hop = stream.hop_samples
  clip = _clip((2 * streaming.PUSH_CHUNK_HOPS + 7) * hop + 11)
  steps = []
  streamer = streaming.Streamer(stream)
  step = streamer._step  # pylint: disable=protected-access

  def counted(state, samples, end):
    steps.append(int(samples.shape[1]))
    return step(state, samples, end)

  streamer._step = counted  # pylint: disable=protected-access
  frames = _all_frames(streamer, clip, clip.shape[1])
  assert max(steps) == streaming.PUSH_CHUNK_HOPS * hop
  expected = _all_frames(streaming.Streamer(stream), clip, 50 * hop)
  np.testing.assert_allclose(frames, expected, rtol=0, atol=1e-6)
