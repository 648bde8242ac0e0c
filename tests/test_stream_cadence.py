"""Streaming at cadence k > 1: the FFT filterbank step and the buffered hops.

`real_fft_filterbank.correlate` against numpy, `StreamingFrontend`'s FFT
step against its direct step and the offline frontend, and a k = 10
`StreamingClassifier` (frontend and classifier once per 10 hops) against the
k = 1 stream, NaN input included.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

import leaf_audio
from experiments import models
from experiments.serving import signatures as serving
from experiments.serving import streaming_signatures as streaming_export
from leaf_audio import real_fft_filterbank
from leaf_audio import streaming

HOP = 160
WINDOW = 3200  # 20 frames: a short window keeps the streams short
TOLERANCE = 1e-5  # tests/test_streaming.py's


def _numpy_correlation(signal, filters):
  """'valid' cross-correlation [B, L - K + 1, C] in float64."""
  kernel_size = filters.shape[0]
  outputs = signal.shape[1] - kernel_size + 1
  windows = np.stack([signal[:, n:n + kernel_size] for n in range(outputs)],
                     axis=1).astype(np.float64)
  return windows @ filters.astype(np.float64)


@pytest.mark.parametrize('size', [None, 64])
def test_correlate_equals_numpy(size):
  rng = np.random.default_rng(0)
  signal = rng.standard_normal([2, 300]).astype(np.float32)
  filters = rng.standard_normal([17, 6]).astype(np.float32)  # 6: not 4 g
  got = real_fft_filterbank.correlate(tf.constant(signal),
                                      tf.constant(filters), size).numpy()
  expected = _numpy_correlation(signal, filters)
  assert got.shape == expected.shape == (2, 284, 6)
  # size 64 cuts the 284 outputs into 6 chunks of 48.
  assert np.abs(got - expected).max() < 1e-5 * np.abs(expected).max()


def test_correlate_refuses_a_bad_size():
  with pytest.raises(ValueError, match='power of two >= .* 17 taps; got 48'):
    real_fft_filterbank.correlate(tf.zeros([1, 100]), tf.zeros([17, 4]), 48)


def _leaf(**kwargs):
  frontend = leaf_audio.Leaf(n_filters=8, **kwargs)
  frontend(tf.zeros([1, 2000]))
  rng = np.random.default_rng(1)  # weights away from their initial values
  for variable in frontend.weights:
    value = variable.numpy()
    variable.assign(value * rng.uniform(0.9, 1.1, value.shape).astype(
        value.dtype))
  return frontend


def _op_types(stream, hops):
  step = tf.function(stream.step).get_concrete_function(
      {key: tf.TensorSpec(value.shape, value.dtype)
       for key, value in stream.initial_state(1).items()},
      tf.TensorSpec([1, hops * HOP], tf.float32))
  types = {op.type for op in step.graph.get_operations()}
  for function in step.graph._functions.values():  # pylint: disable=protected-access
    types |= {node.op for node in function.definition.node_def}
  return types


def test_the_fft_method_filters_by_fft_and_auto_directly():
  frontend = _leaf()
  fft = _op_types(streaming.StreamingFrontend(frontend, filter_method='fft'),
                  10)
  assert 'RFFT2D' in fft and 'Conv2D' not in fft
  auto = _op_types(streaming.StreamingFrontend(frontend), 10)
  assert 'Conv2D' in auto and 'RFFT2D' not in auto


@pytest.mark.parametrize('preemp', [False, True])
def test_fft_steps_equal_direct_steps_and_the_offline_frontend(preemp):
  frontend = _leaf(preemp=preemp)
  clip = np.random.default_rng(2).uniform(-1, 1, [2, 40 * HOP]).astype(
      np.float32)
  expected = frontend(tf.constant(clip)).numpy()
  streamed = {}
  for method in ('fft', 'direct'):
    stream = streaming.StreamingFrontend(frontend, filter_method=method)
    step = tf.function(stream.step)
    state, frames = stream.initial_state(2), []
    for start in range(0, clip.shape[1], 10 * HOP):
      state, new = step(state, tf.constant(clip[:, start:start + 10 * HOP]))
      frames.append(new.numpy())
    state, new = stream.finish(state)
    frames = np.concatenate(frames + [new.numpy()], axis=1)
    streamed[method] = frames[:, stream.delay_frames:]
  assert streamed['fft'].shape == expected.shape
  assert np.abs(streamed['fft'] - expected).max() < TOLERANCE
  assert np.abs(streamed['fft'] - streamed['direct']).max() < TOLERANCE


def test_fft_method_refuses_a_frontend_it_cannot_filter():
  mel = leaf_audio.MelFilterbanks()
  mel.build((None, None))
  with pytest.raises(ValueError, match="filter_method='fft' needs a "
                     'filterbank.*pools itself'):
    streaming.StreamingFrontend(mel, filter_method='fft')
  with pytest.raises(ValueError, match=r"filter_method must be one of .*"
                     r"got 'fast'"):
    streaming.StreamingFrontend(_leaf(), filter_method='fast')


def _tiny():
  keras.utils.set_random_seed(1)
  model = models.AudioClassifier(
      _leaf(), models.ConvNet((4,)), num_outputs=3, normalization=None)
  model.build((None, WINDOW))
  return models.WindowedClassifier(model, WINDOW)


def _run(stream, audio):
  """(probabilities [hops, classes], valid [hops], last state) of a stream
  fed audio [samples] hop by hop through its step signature."""
  step = stream.step_signature(1)
  state = stream.initial_state_signature(1)()
  rows, valid = [], []
  for start in range(0, len(audio), HOP):
    outputs = step(tf.constant(audio[np.newaxis, start:start + HOP]),
                   *[state[f'state_in_{i}'] for i in range(len(state))])
    state = streaming_export.next_state(outputs)
    rows.append(outputs['probabilities'].numpy()[0])
    valid.append(bool(outputs['valid'].numpy()[0]))
  return np.array(rows), np.array(valid), state


def test_cadence_ten_gives_the_k1_stream_at_its_classifier_hops():
  windowed = _tiny()
  every = streaming_export.StreamingClassifier(windowed, WINDOW, False)
  buffered = streaming_export.StreamingClassifier(windowed, WINDOW, False,
                                                  cadence=10, buffer_hops=True)
  assert buffered.initial_state(1)['pending_samples'].shape == (1, 9 * HOP)
  tenth = streaming_export.StreamingClassifier(windowed, WINDOW, False,
                                               cadence=10)
  assert 'pending_samples' not in tenth.initial_state(1)
  audio = np.random.default_rng(3).uniform(-0.5, 0.5, 50 * HOP).astype(
      np.float32)
  audio[13 * HOP + 7] = np.nan  # in a hop that does not run the classifier
  clean = np.where(np.isnan(audio), 0., audio).astype(np.float32)
  # The reference: k = 1 on the clean signal (after a NaN, the stream goes
  # on as if the sample had been zero).
  rows, clean_valid, _ = _run(every, clean)
  assert clean_valid.all()
  for signal, stream in ((clean, tenth), (clean, buffered), (audio, tenth),
                         (audio, buffered)):
    if stream is tenth:
      _, valid, _ = _run(every, signal)
    sparse, sparse_valid, state = _run(stream, signal)
    # valid: from the NaN's hop on, as at k = 1, and the same recovery.
    np.testing.assert_array_equal(sparse_valid, valid)
    for hop in range(len(rows)):
      last_run = (hop + 1) // 10 * 10 - 1  # hops 10, 20, ... (from 1)
      if not valid[hop]:
        assert np.isnan(sparse[hop]).all()
      elif last_run >= 0:
        assert np.abs(sparse[hop] - rows[last_run]).max() < TOLERANCE, hop
      else:  # before the first run: the initial (zero) probabilities
        assert not sparse[hop].any()
    assert all(np.isfinite(value.numpy()).all() for value in state.values())
  assert not valid[13] and valid[:13].all() and valid[-1]
  assert np.abs(rows[29] - rows[39]).max() > 1e-4  # so the checks have teeth


@pytest.mark.slow
def test_cadence_ten_tflite_equals_the_savedmodel_step(tmp_path):
  # The default (frontend every hop); the buffered step converts as
  # benchmarks/streaming_cost.py shows.
  windowed = _tiny()
  serving.export_saved_model(windowed, ['a', 'b', 'c'], 16000, WINDOW, False,
                             tmp_path / 'export', cadence=10)
  path = streaming_export.write_streaming_tflite(tmp_path / 'export',
                                                 tmp_path / 'k10.tflite')
  audio = np.random.default_rng(4).uniform(-0.5, 0.5, 40 * HOP).astype(
      np.float32)
  tenth = streaming_export.StreamingClassifier(windowed, WINDOW, False,
                                               cadence=10)
  expected, _, _ = _run(tenth, audio)
  got = streaming_export.run_tflite(path.read_bytes(), audio, HOP)
  assert got.shape == expected.shape
  assert np.abs(got - expected).max() < 1e-5
