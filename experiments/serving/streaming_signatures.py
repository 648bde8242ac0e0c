"""The streaming classifier: a hop in, the last window's probabilities out.

  StreamingClassifier        pure (state, samples) -> (state, probabilities)
  add_streaming_endpoints    adds 'stream_step' / 'stream_initial_state' to
                             the serving SavedModel's ExportArchive
  write_streaming_tflite     converts 'stream_step' to a .tflite (builtin ops;
                             experiments/serving/converters.py)
  run_tflite                 runs such a .tflite in LiteRT

The frontend runs over the whole stream (`leaf_audio.streaming`), so PCEN's
smoother carries across windows; each step appends its new frames to the
last `window_frames` frames and runs the classifier's encoder and head on
them. The probabilities after a step are therefore those of the offline
classifier applied to the offline frontend's frames of that window (the
frontend run over the whole recording), not to a separately computed 1 s
crop: the two differ in PCEN's smoother start and in the loudness
normalisation.

Loudness normalisation (`LoudnessNormalization`) scales each 1 s window by
its own standard deviation, which needs the whole window before its first
frame, and would rescale audio the frontend has already filtered: the
stream skips it and feeds the frontend the raw samples. Models meant for
streaming are best trained with `AudioClassifier.normalization = None` (or
on audio at a consistent level); PCEN (alpha 0.96) is itself close to
gain-invariant.

The state is a flat dict of tensors, all zeros at the start of a stream
(the TFLite model's state inputs can be initialised with zeros):
  'frontend_samples', 'frontend_position'[, 'frontend_smoother']: the
      frontend's (see `leaf_audio.streaming.StreamingFrontend`),
  'frames': [batch, window_frames, channels], the window's frames (zeros
      before the stream: the first window_frames + delay_frames hops' outputs
      are warm-up values).
"""

import pathlib

import numpy as np
import tensorflow as tf

from experiments.serving import converters
from leaf_audio import streaming


def _frames_to_logits(classifier, frames):
  """An `AudioClassifier`'s encoder, pooling and head on frames [B, T, C]."""
  return classifier.classify_features(frames, training=False)


class StreamingClassifier:
  """An `AudioClassifier` run hop by hop.

  Args:
    classifier: a built `AudioClassifier` whose frontend streams (see
      `leaf_audio.streaming.frontend_parts`).
    window_samples: the window the classifier was trained on, in samples;
      the stream classifies the last ceil(window_samples / hop) frames.
    multi_label: sigmoid probabilities if True, softmax otherwise.
  """

  def __init__(self, classifier, window_samples: int, multi_label: bool):
    self.classifier = classifier
    self.frontend = streaming.StreamingFrontend(classifier.frontend)
    self.hop_samples = self.frontend.hop_samples
    self.window_frames = -(-int(window_samples) // self.hop_samples)
    self.multi_label = bool(multi_label)

  def initial_state(self, batch_size: int = 1):
    state = {'frontend_' + key: value for key, value in
             self.frontend.initial_state(batch_size).items()
             if key != 'frontend'}
    state['frames'] = tf.zeros(
        [batch_size, self.window_frames, self.frontend.channels], tf.float32)
    return state

  def step(self, state, samples):
    """(state, samples [B, k * hop]) -> (state, probabilities [B, classes])."""
    frontend_state = {key[len('frontend_'):]: value
                      for key, value in state.items()
                      if key.startswith('frontend_')}
    frontend_state['frontend'] = tf.constant(self.frontend.fingerprint)
    frontend_state, frames = self.frontend.step(frontend_state, samples)
    window = tf.concat([state['frames'], frames],
                       axis=1)[:, -self.window_frames:]
    logits = tf.cast(_frames_to_logits(self.classifier, window), tf.float32)
    probabilities = (tf.sigmoid(logits) if self.multi_label else
                     tf.nn.softmax(logits))
    new_state = {'frontend_' + key: value for key, value in
                 frontend_state.items() if key != 'frontend'}
    new_state['frames'] = window
    return new_state, probabilities

  def step_signature(self, batch_size: int = 1, hops: int = 1):
    """`step` with fixed shapes and flat named tensors: samples and
    'state_<key>' in; 'probabilities' and 'state_<key>' out."""
    return streaming.flat_step_function(
        self.step, self.initial_state(batch_size),
        [batch_size, hops * self.hop_samples], 'probabilities')

  def initial_state_signature(self, batch_size: int = 1):
    initial = self.initial_state(batch_size)

    def initial_state():
      return {'state_' + key: tf.zeros_like(value)
              for key, value in initial.items()}

    return tf.function(initial_state, input_signature=[])


def add_streaming_endpoints(archive, windowed_model, window_samples: int,
                            multi_label: bool, hops: int = 1) -> bool:
  """Adds 'stream_step' and 'stream_initial_state' to `archive` if it can.

  stream_step(samples float32 [1, hops * hop], state_<key>...) ->
  {'probabilities': [1, classes], 'state_<key>': ...};
  stream_initial_state() -> {'state_<key>': zeros}. Returns False (and adds
  nothing) when the model's frontend cannot stream (e.g.
  TimeDomainFilterbanks, EfficientLeaf with LogTBN).
  """
  try:
    stream = StreamingClassifier(windowed_model.classifier, window_samples,
                                 multi_label)
  except (ValueError, AttributeError):
    return False
  archive.add_endpoint('stream_step', stream.step_signature(1, hops))
  archive.add_endpoint('stream_initial_state',
                       stream.initial_state_signature(1))
  return True


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
           for name, detail in inputs.items() if name.startswith('state_')}
  rows = []
  for start in range(0, len(audio) - hop_samples + 1, hop_samples):
    hop = np.asarray(audio[start:start + hop_samples], np.float32)
    outputs = runner(samples=hop[np.newaxis], **state)
    state = {name: outputs[name.replace('state_in_', 'state_out_')]
             for name in state}
    rows.append(outputs['probabilities'][0])
  return np.stack(rows)
