"""The streaming classifier: a hop in, the last window's probabilities out.

  check_streamable           raises NotStreamableError naming what cannot
                             stream (a normalisation, a frontend stage)
  StreamingClassifier        pure (state, samples) -> (state, probabilities,
                             valid), the `stream_step` contract below
  add_streaming_endpoints    adds 'stream_step' / 'stream_initial_state' to
                             the serving SavedModel's ExportArchive
  write_streaming_tflite     converts 'stream_step' to a .tflite (builtin ops;
                             experiments/serving/converters.py)
  run_tflite                 runs such a .tflite in LiteRT

The `stream_step` contract (every runtime: SavedModel, TFLite, ONNX):

  stream_step(samples float32 [batch, hop_samples],
              state_in_0, ..., state_in_<n-1>)
    -> probabilities float32 [batch, classes]   NaN where not valid
       valid         bool    [batch]
       state_out_0, ..., state_out_<n-1>        feed back as state_in_<i>
  stream_initial_state() -> {'state_in_<i>': zeros}: the state before the
      first sample (every state tensor can also be initialised with zeros).

Input and output names differ (ONNX needs that), and every state tensor has
the batch as its first axis. `metadata()` tells a client what it needs:
`hop_samples`, `lookahead_samples` (a stream ends with that many zeros, in
whole hops, for its last frame to be final), `window_samples` and
`stream_window_frames` (the classifier's window), `stream_cadence` k and
`stream_state_names` (what state_in_<i> holds, for debugging).

Cadence k: the classifier runs after every k-th hop (hops k, 2k, ... counted
from 1); the steps in between return the last probabilities. Every step
runs the frontend on its hop, so a stream costs the frontend every hop and
the classifier every k hops. With `buffer_hops=True` the steps in between
only keep their hop in the state ('pending_samples', the last k - 1 hops)
and the k-th step runs the frontend once on the k hops, then the
classifier: the same frames and probabilities (to float32 rounding), but
in LiteRT the frontend then runs inside the step's conditional subgraph,
where XNNPACK does not run its convolution, and the stream costs more
(benchmarks/README.md, "streaming cost"); it is not the default.

Non-finite input: a hop holding a NaN or inf sample is fed to the frontend
with those samples set to zero, so the state never becomes NaN; `valid` is
False (and the probabilities NaN) from that hop until every frame computed
from it has left the classifier's window, then the stream goes on as if the
sample had been zero. `valid` is also False when the probabilities come out
non-finite. (The serving signatures mark a clip holding a non-finite sample
the same way.)

The frontend runs over the whole stream (`leaf_audio.streaming`), so PCEN's
smoother carries across windows; each step appends its new frames to the
last `window_frames` frames and runs the classifier's encoder and head on
them. After a clip of a whole number of hops and `lookahead_samples` of
zeros, the window holds the offline frontend's frames of the clip: the
probabilities are then those of `serving_default` on a one-window clip when
the model has no normalisation. A clip-level normalisation
(`LoudnessNormalization`) scales each window by its own level, which a
stream cannot know before the window ends: such models are not streamed
(`check_streamable`); train them with `AudioClassifier.normalization = None`.
"""

import math
import os
import pathlib

from absl import logging
import numpy as np
import tensorflow as tf

from experiments.serving import converters
from leaf_audio import streaming

_FLOAT32_MAX = float(np.finfo(np.float32).max)
# What a state tensor of the frontend holds when it is not per stream: the
# frontend's fingerprint is a constant of the graph, not state.
_CONSTANT_FRONTEND_KEYS = ('frontend',)


class NotStreamableError(ValueError):
  """A model whose preprocessing or frontend cannot run hop by hop."""


def _classifier_of(model):
  return getattr(model, 'classifier', model)


def check_streamable(model) -> None:
  """Raises NotStreamableError unless `model` can be streamed.

  Args:
    model: a `WindowedClassifier` or an `AudioClassifier` (built).

  Raises:
    NotStreamableError: naming the layer that cannot stream and the fix.
  """
  classifier = _classifier_of(model)
  owner = type(classifier).__name__
  if not hasattr(classifier, 'classify_features') or not hasattr(
      classifier, 'frontend'):
    raise NotStreamableError(
        f'{owner} is not an AudioClassifier (a frontend, then '
        'classify_features on its frames): it cannot be streamed.')
  normalization = getattr(classifier, 'normalization', None)
  if normalization is not None:
    raise NotStreamableError(
        f'{owner} normalises its input with {type(normalization).__name__} '
        f'(layer {normalization.name!r}), which scales each window by its '
        'own level: a stream cannot know it before the window ends. Train '
        'the model without it (gin: AudioClassifier.normalization = None) '
        'to stream it.')
  try:
    streaming.StreamingFrontend(classifier.frontend)
  except (ValueError, AttributeError) as error:
    raise NotStreamableError(
        f'{owner} has a frontend that cannot be streamed: {error}') from error


def _finite(values):
  """|x| <= float32 max: False for NaN and inf, and converts to TFLite
  builtins (unlike tf.math.is_finite)."""
  return tf.abs(values) <= _FLOAT32_MAX


def _frames_to_logits(classifier, frames):
  """An `AudioClassifier`'s encoder, pooling and head on frames [B, T, C]."""
  return classifier.classify_features(frames, training=False)


class StreamingClassifier:
  """An `AudioClassifier` run hop by hop (see the module docstring).

  Args:
    classifier: a built `AudioClassifier` (or a `WindowedClassifier` of
      one) that streams (`check_streamable`).
    window_samples: the window the classifier was trained on, in samples;
      the stream classifies the last ceil(window_samples / hop) frames.
    multi_label: sigmoid probabilities if True, softmax otherwise.
    cadence: positive int k, default 1: the classifier runs after every k-th
      hop; the steps in between return the last probabilities.
    buffer_hops: bool, default False: with k > 1, run the frontend once
      every k hops on the buffered hops instead of on every hop (see the
      module docstring).

  Raises:
    NotStreamableError: the model cannot be streamed.
  """

  def __init__(self, classifier, window_samples: int, multi_label: bool,
               cadence: int = 1, buffer_hops: bool = False):
    check_streamable(classifier)
    if (isinstance(cadence, bool) or not isinstance(cadence, int) or
        cadence < 1):
      raise ValueError(f'StreamingClassifier: cadence must be a positive '
                       f'int (hops between classifier runs); got '
                       f'{cadence!r}.')
    self.classifier = _classifier_of(classifier)
    self.frontend = streaming.StreamingFrontend(self.classifier.frontend)
    # Samples kept between frontend runs: the last k - 1 hops.
    self.buffer_hops = bool(buffer_hops)
    self.pending_samples = ((cadence - 1) * self.frontend.hop_samples
                            if self.buffer_hops else 0)
    self.hop_samples = self.frontend.hop_samples
    self.lookahead_samples = self.frontend.lookahead_samples
    self.window_samples = int(window_samples)
    self.window_frames = -(-self.window_samples // self.hop_samples)
    self.multi_label = bool(multi_label)
    self.cadence = cadence
    self.num_classes = int(self.classifier.compute_output_shape(
        (None, self.window_samples))[-1])
    one = self.frontend.initial_state(1)
    two = self.frontend.initial_state(2)
    # Frontend state entries without a batch axis (e.g. its position) are
    # carried per stream ([batch, ...]); all streams of a batch step
    # together, so the first one's is used.
    self._unbatched = sorted(
        key for key in one if key not in _CONSTANT_FRONTEND_KEYS and (
            one[key].shape.rank == 0 or one[key].shape[0] != 1 or
            two[key].shape[0] != 2))
    # Hops during which a non-finite sample's frames may still be in the
    # window: its frames become final within the frontend's reach (samples
    # it keeps plus its lookahead), then stay window_frames hops.
    reach = (getattr(self.frontend, 'history_samples', 0) +
             getattr(self.frontend, 'energy_history', 0) +
             2 * self.lookahead_samples)
    # (With k > 1 the frames of a hop are computed up to k - 1 hops later,
    # but the window at the hops that run the classifier is the same as at
    # k = 1, and so is the count.)
    self.invalid_hops = self.window_frames + math.ceil(
        reach / self.hop_samples) + 2
    self.state_names = sorted(self.initial_state(1))

  # -- state ---------------------------------------------------------------

  def initial_state(self, batch_size: int = 1):
    """{name: zeros}, every tensor [batch_size, ...]."""
    state = {}
    for key, value in self.frontend.initial_state(batch_size).items():
      if key in _CONSTANT_FRONTEND_KEYS:
        continue
      if key in self._unbatched:
        value = tf.tile(tf.reshape(value, [1, -1]), [batch_size, 1])
      state['frontend_' + key] = value
    state['frames'] = tf.zeros(
        [batch_size, self.window_frames, self.frontend.channels], tf.float32)
    state['probabilities'] = tf.zeros([batch_size, self.num_classes],
                                      tf.float32)
    state['hops_since_run'] = tf.zeros([batch_size], tf.int32)
    state['invalid_hops'] = tf.zeros([batch_size], tf.int32)
    if self.pending_samples:
      state['pending_samples'] = tf.zeros([batch_size, self.pending_samples],
                                          tf.float32)
    return state

  def _frontend_state(self, state):
    frontend_state = {}
    template = self.frontend.initial_state(1)
    for key, value in template.items():
      if key in _CONSTANT_FRONTEND_KEYS:
        frontend_state[key] = value
        continue
      carried = state['frontend_' + key]
      if key in self._unbatched:
        carried = tf.reshape(carried[0], tf.shape(value))
      elif carried.dtype.is_floating:
        # A damaged state (NaN from elsewhere) restarts from zeros.
        carried = tf.where(_finite(carried), carried, tf.zeros_like(carried))
      frontend_state[key] = carried
    return frontend_state

  # -- the step ------------------------------------------------------------

  def step(self, state, samples):
    """(state, samples [B, hop]) -> (state, probabilities [B, classes],
    valid [B])."""
    samples = tf.convert_to_tensor(samples, tf.float32)
    batch = tf.shape(samples)[0]
    finite_samples = _finite(samples)
    hop_is_finite = tf.reduce_all(finite_samples, axis=-1)
    samples = tf.where(finite_samples, samples, tf.zeros_like(samples))
    hops_since_run = (state['hops_since_run'] + 1) % self.cadence
    frontend_state = self._frontend_state(state)

    def run_frontend(new_samples):
      """The frontend on new_samples [B, j * hop]: its state, the window."""
      new_frontend_state, frames = self.frontend.step(frontend_state,
                                                      new_samples)
      return new_frontend_state, tf.concat(
          [state['frames'], frames], axis=1)[:, -self.window_frames:]

    def classify(window):
      logits = tf.cast(_frames_to_logits(self.classifier, window), tf.float32)
      return (tf.sigmoid(logits) if self.multi_label else
              tf.nn.softmax(logits))

    def run(new_samples):
      new_frontend_state, window = run_frontend(new_samples)
      return new_frontend_state, window, classify(window)

    pending = {}
    if self.cadence == 1:
      frontend_state, window, probabilities = run(samples)
    elif not self.buffer_hops:
      frontend_state, window = run_frontend(samples)
      probabilities = tf.cond(
          tf.reduce_any(tf.equal(hops_since_run, 0)),
          lambda: classify(window), lambda: state['probabilities'])
    else:
      kept = state['pending_samples']
      # A damaged state (NaN from elsewhere) restarts from zeros.
      kept = tf.where(_finite(kept), kept, tf.zeros_like(kept))
      buffered = tf.concat([kept, samples], axis=1)  # the last k hops
      frontend_state, window, probabilities = tf.cond(
          tf.reduce_any(tf.equal(hops_since_run, 0)),
          lambda: run(buffered),
          lambda: (frontend_state, state['frames'],
                   state['probabilities']))
      pending = {'pending_samples': buffered[:, self.hop_samples:]}
    invalid_hops = tf.where(
        hop_is_finite, tf.maximum(state['invalid_hops'] - 1, 0),
        tf.fill([batch], tf.constant(self.invalid_hops, tf.int32)))
    valid = tf.logical_and(
        tf.equal(invalid_hops, 0),
        tf.reduce_all(_finite(probabilities), axis=-1))
    new_state = {}
    for key, value in frontend_state.items():
      if key in _CONSTANT_FRONTEND_KEYS:
        continue
      if key in self._unbatched:
        value = tf.tile(tf.reshape(value, [1, -1]), [batch, 1])
      new_state['frontend_' + key] = value
    new_state.update({
        'frames': window,
        'probabilities': tf.where(_finite(probabilities), probabilities,
                                  tf.zeros_like(probabilities)),
        'hops_since_run': hops_since_run,
        'invalid_hops': invalid_hops,
    })
    new_state.update(pending)
    shown = tf.where(valid[:, tf.newaxis], probabilities,
                     tf.fill(tf.shape(probabilities), np.nan))
    return new_state, shown, valid

  # -- signatures ----------------------------------------------------------

  def step_signature(self, batch_size: int = 1):
    """`step` as a tf.function of the contract's flat, fixed-shape tensors:
    samples and state_in_<i> in; probabilities, valid, state_out_<i> out."""
    initial = self.initial_state(batch_size)
    names = self.state_names
    specs = [tf.TensorSpec([batch_size, self.hop_samples], tf.float32,
                           name='samples')]
    specs += [tf.TensorSpec(initial[name].shape, initial[name].dtype,
                            name=f'state_in_{index}')
              for index, name in enumerate(names)]

    def stream_step(samples, *state):
      # The frontend's filters enter the exported graph as constants.
      with self.frontend.constant_filters():
        new_state, probabilities, valid = self.step(dict(zip(names, state)),
                                                    samples)
      outputs = {'probabilities': probabilities, 'valid': valid}
      outputs.update({f'state_out_{index}': new_state[name]
                      for index, name in enumerate(names)})
      return outputs

    # Without autograph: the step has no Python control flow on tensors, and
    # autograph's conversion took most of the export's time.
    return tf.function(stream_step, input_signature=specs, autograph=False)

  def initial_state_signature(self, batch_size: int = 1):
    """() -> {'state_in_<i>': zeros}: feed it to the first step."""
    initial = self.initial_state(batch_size)
    names = self.state_names

    def stream_initial_state():
      return {f'state_in_{index}': tf.zeros_like(initial[name])
              for index, name in enumerate(names)}

    return tf.function(stream_initial_state, input_signature=[],
                       autograph=False)

  def metadata(self):
    """The streaming facts `metadata()` adds, as constants."""
    return {
        'hop_samples': tf.constant(self.hop_samples, tf.int32),
        'lookahead_samples': tf.constant(self.lookahead_samples, tf.int32),
        'stream_window_frames': tf.constant(self.window_frames, tf.int32),
        'stream_cadence': tf.constant(self.cadence, tf.int32),
        'stream_state_names': tf.constant(self.state_names),
    }


def next_state(outputs):
  """The state_in_<i> inputs of the next step from a step's outputs."""
  return {'state_in_' + name[len('state_out_'):]: value
          for name, value in outputs.items()
          if name.startswith('state_out_')}


def add_streaming_endpoints(archive, windowed_model, window_samples: int,
                            multi_label: bool, cadence: int = 1):
  """Adds 'stream_step' and 'stream_initial_state' to `archive` if it can.

  Returns:
    The `StreamingClassifier`, or None when the model cannot stream: then
    one warning line says why and nothing is added.
  """
  try:
    stream = StreamingClassifier(windowed_model, window_samples, multi_label,
                                 cadence)
  except NotStreamableError as error:
    logging.warning('The export has no streaming signatures: %s', error)
    return None
  archive.add_endpoint('stream_step', stream.step_signature(1))
  archive.add_endpoint('stream_initial_state',
                       stream.initial_state_signature(1))
  return stream


def write_streaming_tflite(saved_model_dir, path,
                           lookahead_samples: int = 0) -> pathlib.Path:
  """Converts the SavedModel's 'stream_step' to a .tflite at `path`.

  `converters.write_streaming_tflite`: `path` must end in .tflite and be new
  or an earlier .tflite of this package (replaced atomically); a folder, a
  user's file, or a path inside an export is refused with a ValueError
  before anything is converted. lookahead_samples is recorded in the file's
  metadata (experiments.export passes the frontend's).
  """
  return converters.write_streaming_tflite(saved_model_dir, path,
                                           lookahead_samples)


def run_tflite(model_content, audio, hop_samples):
  """Runs a streaming .tflite hop by hop over audio [samples] (batch 1), in
  LiteRT.

  Returns probabilities [hops, classes], one row per hop (the warm-up rows
  included). The state starts at zeros and is fed back after every hop:
  `state_out_<i>` to `state_in_<i>` (files of experiments.export), or
  `state_<key>` to itself (older files).
  """
  from ai_edge_litert import interpreter as litert  # pylint: disable=g-import-not-at-top
  interpreter = litert.Interpreter(model_content=model_content, num_threads=1)
  runner = interpreter.get_signature_runner('stream_step')
  inputs = runner.get_input_details()
  state = {name: np.zeros(detail['shape'], detail['dtype'])
           for name, detail in inputs.items() if name.startswith('state_in_')}
  rows = []
  for start in range(0, len(audio) - hop_samples + 1, hop_samples):
    hop = np.asarray(audio[start:start + hop_samples], np.float32)
    outputs = runner(samples=hop[np.newaxis], **state)
    state = next_state(outputs)
    rows.append(outputs['probabilities'][0])
  return np.stack(rows)
