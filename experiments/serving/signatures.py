"""The serving SavedModel: waveforms or WAV bytes in, class probabilities out.

Signatures (all run the evaluation path: 1 s windows, logits averaged per
clip; the windows go through the classifier a few at a time, so memory does
not grow with a clip's length):
  serving_default(waveform: float32 [batch, samples], any length >= 1, at
      the training sample rate) -> probabilities [batch, classes],
      top_label [batch], top_probability [batch], valid [batch]. Every
      output is batched (TF Serving's row format); a batch of 0 clips gives
      empty outputs.
  serve_wav(wav: string [batch], encoded 16-bit PCM WAV files of at most
      MAX_WAV_SECONDS) -> the same; a file at another sample rate, or a
      longer one, fails with an error that names its index in the batch; a
      damaged file is marked invalid (valid False) and the rest are served.
  metadata() -> sample_rate [], label_names [classes], window_samples [],
      max_wav_seconds [], and for a streaming model hop_samples [],
      lookahead_samples [], stream_window_frames [], stream_cadence [],
      stream_state_names [n].
  stream_step / stream_initial_state: the streaming classifier, added when
      the model streams (its contract: streaming_signatures.py,
      docs/streaming.md).
  tflite(waveform: float32 [batch, samples], any length) -> probabilities
      [batch, classes], valid [batch]; serving_default's numbers, the
      function that experiments/serving/converters.py converts to .tflite and
      .onnx: numbers only, and the frontends computed with their direct
      method, which TFLite's builtin ops and ONNX cover (TFLite's FFT needs
      power-of-two lengths and neither has loops over tensor lists). The
      windows and the mean of their logits are in the graph; every window
      has the static length window_samples.
The SavedModel needs only TensorFlow to load and run.

Non-finite input: a clip holding a NaN or inf sample is not classified, and
the rest of the batch is unaffected. Its `valid` is False, its `top_label`
the empty string, its `probabilities` and `top_probability` NaN; the model
sees silence in its place, so the NaN cannot spread to the other clips
(the FFT method computes a batch's clips in one transform). `valid` is also
False when the model's scores come out non-finite. A per-clip marker rather
than an error, so that one bad clip does not fail a whole batch request.

The SavedModel is written as a new numbered version of the export folder
(export/<version>/saved_model.pb, the layout TF Serving serves) under the
policy of experiments/serving/export_directory.py.
"""

import keras
import numpy as np
import tensorflow as tf

from experiments import models
from experiments.serving import export_directory
from experiments.serving import streaming_signatures as streaming_export
from leaf_audio import methods

_FLOAT32_MAX = float(np.finfo(np.float32).max)
# Windows per clip that go through the classifier at once: serving memory
# grows with this, not with the clip's length.
CHUNK_WINDOWS = 8
# serve_wav refuses longer files (an hour at 16 kHz is 57.6 M samples).
MAX_WAV_SECONDS = 3600


def _probabilities(logits, multi_label):
  probabilities = tf.sigmoid(logits) if multi_label else tf.nn.softmax(logits)
  return tf.cast(probabilities, tf.float32)


def _finite_clips(waveform):
  """bool [batch]: True where every sample of a clip [batch, samples] is
  finite. |x| <= float32 max is False for NaN and inf, and, unlike
  tf.math.is_finite, converts to TFLite builtin operators."""
  return tf.reduce_all(tf.abs(waveform) <= _FLOAT32_MAX, axis=-1)


def _silence_invalid(waveform, finite):
  """The waveform with non-finite clips replaced by zeros."""
  return tf.where(finite[:, tf.newaxis], waveform, tf.zeros_like(waveform))


def _valid_probabilities(logits, multi_label, finite):
  """(probabilities [batch, classes], NaN for invalid clips; valid [batch])."""
  probabilities = _probabilities(logits, multi_label)
  valid = tf.logical_and(
      finite,
      tf.reduce_all(tf.abs(probabilities) <= _FLOAT32_MAX, axis=-1))
  probabilities = tf.where(valid[:, tf.newaxis], probabilities,
                           tf.fill(tf.shape(probabilities), np.nan))
  return probabilities, valid


def _outputs(logits, label_names, multi_label, finite):
  """The batched outputs of serving_default and serve_wav: every one has
  the batch as its first axis (TF Serving's row format needs that); the
  label names are in metadata()."""
  probabilities, valid = _valid_probabilities(logits, multi_label, finite)
  top = tf.argmax(tf.where(tf.math.is_nan(probabilities),
                           tf.zeros_like(probabilities), probabilities),
                  axis=-1)
  return {
      'probabilities': probabilities,
      'top_label': tf.where(valid, tf.gather(label_names, top), ''),
      'top_probability': tf.reduce_max(probabilities, axis=-1),
      'valid': valid,
  }


def windowed_logits(classifier, window_samples: int, num_classes: int,
                    batch, samples, windows_at):
  """Mean logits [batch, classes] over a clip's windows, in bounded memory.

  The windows of `models.window_starts` go through the classifier
  CHUNK_WINDOWS per clip at a time (a tf.while_loop), so that a long clip
  never becomes one batch of all its windows: memory grows with the chunk,
  not with the clip. Equal to `WindowedClassifier` to float32 rounding.

  Args:
    classifier: the window classifier: [n, window_samples] -> logits.
    window_samples: int.
    num_classes: int, logits per window.
    batch: int32 [], clips.
    samples: int32 [], samples per clip (>= 1).
    windows_at: function of starts int32 [c] -> float32 [batch, c,
      window_samples], the windows at those starts (zero-padded past the
      end of a clip shorter than a window).
  """
  starts = models.window_starts(samples, window_samples)
  count = tf.size(starts)

  def body(index, total):
    windows = windows_at(starts[index:index + CHUNK_WINDOWS])
    logits = tf.cast(classifier(tf.reshape(windows, [-1, window_samples]),
                                training=False), tf.float32)
    logits = tf.reshape(logits, [batch, -1, num_classes])
    return index + CHUNK_WINDOWS, total + tf.reduce_sum(logits, axis=1)

  def classify():
    _, total = tf.while_loop(
        lambda index, _: index < count, body,
        (tf.constant(0), tf.zeros([batch, num_classes], tf.float32)))
    return total / tf.cast(count, tf.float32)

  # An empty batch has nothing to classify (and no windows to concatenate).
  return tf.cond(batch > 0, classify,
                 lambda: tf.zeros([batch, num_classes], tf.float32))


def _gathered_windows(waveform, window_samples):
  """windows_at for a waveform [batch, samples] (see windowed_logits)."""
  samples = tf.shape(waveform)[1]
  # Padded (a copy) only when shorter than one window.
  padded = tf.cond(
      samples < window_samples,
      lambda: tf.pad(waveform, [[0, 0], [0, window_samples - samples]]),
      lambda: waveform)

  def windows_at(starts):
    return tf.gather(padded, starts[:, tf.newaxis] +
                     tf.range(window_samples)[tf.newaxis], axis=1)

  return windows_at


def _little_endian(contents, offset, count):
  """The unsigned little-endian integer of `count` bytes of the string
  `contents` at `offset` (int64; bytes past the end read as zeros)."""
  start = _clipped_offset(contents, offset)
  piece = tf.io.decode_raw(
      tf.strings.substr(contents, start, tf.constant(count, tf.int64)),
      tf.uint8, fixed_length=count)
  weights = tf.constant([256**i for i in range(count)], tf.int64)
  return tf.reduce_sum(tf.cast(piece, tf.int64) * weights)


def _clipped_offset(contents, offset):
  """int64 offset clipped to [0, len(contents)] (substr refuses others)."""
  length = tf.cast(tf.strings.length(contents, unit='BYTE'), tf.int64)
  return tf.clip_by_value(tf.cast(offset, tf.int64), 0, length)


def _tag(contents, offset):
  return tf.strings.substr(contents, _clipped_offset(contents, offset),
                           tf.constant(4, tf.int64))


def parse_wav_header(contents):
  """Where a 16-bit PCM WAV file's samples are, without decoding them.

  Walks the RIFF chunks up to 'data'. Never fails: a damaged or
  unsupported file gives ok = False.

  Args:
    contents: string [], the file's bytes.

  Returns:
    dict of int64 scalars 'channels', 'sample_rate', 'data_offset' (bytes),
    'frames' (samples per channel) and bool 'ok': a RIFF/WAVE file with
    a 16-bit PCM 'fmt ' chunk and a 'data' chunk that holds at least one
    sample and fits in the file.
  """
  length = tf.cast(tf.strings.length(contents, unit='BYTE'), tf.int64)
  riff = tf.logical_and(tf.equal(_tag(contents, 0), 'RIFF'),
                        tf.equal(_tag(contents, 8), 'WAVE'))
  zero = tf.constant(0, tf.int64)
  # offset, fmt found, format, channels, rate, bits, data offset, data size
  initial = (tf.constant(12, tf.int64), False, zero, zero, zero, zero, zero,
             tf.constant(-1, tf.int64))

  def more(offset, *fields):
    return tf.logical_and(offset + 8 <= length, fields[-1] < 0)

  def chunk(offset, found, audio_format, channels, rate, bits, data_offset,
            data_size):
    tag = _tag(contents, offset)
    size = _little_endian(contents, offset + 4, 4)
    is_fmt = tf.equal(tag, 'fmt ')
    pick = lambda new, old: tf.where(is_fmt, new, old)
    audio_format = pick(_little_endian(contents, offset + 8, 2), audio_format)
    channels = pick(_little_endian(contents, offset + 10, 2), channels)
    rate = pick(_little_endian(contents, offset + 12, 4), rate)
    bits = pick(_little_endian(contents, offset + 22, 2), bits)
    is_data = tf.equal(tag, 'data')
    data_offset = tf.where(is_data, offset + 8, data_offset)
    data_size = tf.where(is_data, size, data_size)
    return (offset + 8 + size + size % 2, tf.logical_or(found, is_fmt),
            audio_format, channels, rate, bits, data_offset, data_size)

  (_, found, audio_format, channels, rate, bits, data_offset,
   data_size) = tf.while_loop(more, chunk, initial, maximum_iterations=64)
  frames = data_size // tf.maximum(2 * channels, 1)
  ok = tf.reduce_all(tf.stack([
      riff, found,
      tf.logical_or(tf.equal(audio_format, 1), tf.equal(audio_format, 0xFFFE)),
      tf.equal(bits, 16), channels >= 1, frames >= 1,
      data_offset + data_size <= length]))
  return {'ok': ok, 'channels': channels, 'sample_rate': rate,
          'data_offset': data_offset, 'frames': frames}


def _wav_windows(contents, header, window_samples):
  """windows_at for one WAV file (batch 1), decoding only those windows."""
  channels = header['channels']
  frame_bytes = 2 * channels
  window_bytes = tf.cast(window_samples * frame_bytes, tf.int32)

  def windows_at(starts):
    offsets = header['data_offset'] + tf.cast(starts, tf.int64) * frame_bytes
    available = header['frames'] * frame_bytes - (offsets -
                                                  header['data_offset'])
    # One scalar string, a vector of offsets: substr broadcasts without
    # copying the file once per window.
    pieces = tf.strings.substr(
        contents, offsets,
        tf.minimum(available, tf.cast(window_bytes, tf.int64)))
    # Zeros past the end of a clip shorter than a window, as training pads.
    pcm = tf.io.decode_raw(pieces, tf.int16, fixed_length=window_bytes)
    audio = tf.reshape(tf.cast(pcm, tf.float32) / 32768.,
                       [tf.size(starts), window_samples, -1])
    return tf.reduce_mean(audio, axis=-1)[tf.newaxis]

  return windows_at


def serving_functions(windowed_model, label_names, sample_rate: int,
                      window_samples: int, multi_label: bool,
                      stream=None) -> dict:
  """The serving signatures as tf.functions, {name: function}.

  serving_default, serve_wav, metadata and tflite (see the module
  docstring); `stream`, an optional `StreamingClassifier`, adds its facts to
  metadata().
  """
  names = tf.constant([str(name) for name in label_names])
  rate = tf.constant(int(sample_rate), tf.int32)
  classifier = windowed_model.classifier
  num_classes = len(label_names)
  window_samples = int(window_samples)
  max_frames = int(MAX_WAV_SECONDS * sample_rate)

  # autograph=False here and below: the signatures' loops and branches are
  # tf.while_loop / tf.cond already, and converting them (with every
  # function they call) would cost seconds per export.
  @tf.function(input_signature=[
      tf.TensorSpec([None, None], tf.float32, name='waveform')
  ], autograph=False)
  def serve_waveform(waveform):
    finite = _finite_clips(waveform)
    shape = tf.shape(waveform)
    tf.debugging.assert_positive(
        shape[1], message='serving_default needs at least one sample per clip')
    silenced = _silence_invalid(waveform, finite)
    logits = windowed_logits(classifier, window_samples, num_classes,
                             shape[0], shape[1],
                             _gathered_windows(silenced, window_samples))
    return _outputs(logits, names, multi_label, finite)

  def classify_wav(index_and_contents):
    index, contents = index_and_contents
    header = parse_wav_header(contents)
    ok = header['ok']
    file_rate = tf.cast(header['sample_rate'], tf.int32)
    tf.debugging.Assert(
        tf.logical_or(tf.logical_not(ok), tf.equal(file_rate, rate)), [
            tf.strings.format(
                'serve_wav expects WAV files at {} Hz, the training sample '
                'rate; file {} of the batch is at {} Hz: resample it first.',
                (rate, index, file_rate))])
    tf.debugging.Assert(
        tf.logical_or(tf.logical_not(ok), header['frames'] <= max_frames), [
            tf.strings.format(
                'serve_wav takes WAV files of at most {} s; file {} of the '
                'batch is {} s long: cut it into pieces.',
                (MAX_WAV_SECONDS, index,
                 header['frames'] // tf.cast(rate, tf.int64)))])
    # A damaged file is not classified: its clip is marked invalid (as a
    # clip holding NaN is), and the other files of the batch are served.
    header = dict(header, frames=tf.where(ok, header['frames'], 0),
                  channels=tf.where(ok, header['channels'], 1))
    logits = windowed_logits(
        classifier, window_samples, num_classes, tf.constant(1),
        tf.cast(tf.maximum(header['frames'], 1), tf.int32),
        _wav_windows(contents, header, window_samples))
    return logits[0], ok

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name='wav')],
               autograph=False)
  def serve_wav(wav):
    logits, ok = tf.map_fn(
        classify_wav, (tf.range(tf.size(wav)), wav),
        fn_output_signature=(tf.TensorSpec([num_classes], tf.float32),
                             tf.TensorSpec([], tf.bool)))
    return _outputs(logits, names, multi_label, ok)

  # The same model and weights, its frontends computed with TFLite builtins
  # only (the FFT method's builtin variant where it applies): the function
  # TFLite converts.
  tflite = _converter_input(windowed_model, 'auto_builtin', multi_label)

  # The same with the direct method, the function the ONNX converter takes:
  # onnxruntime runs it several times faster than the builtin FFT method's
  # DFTs (benchmarks/README.md).
  onnx = _converter_input(windowed_model, 'direct', multi_label)

  @tf.function(input_signature=[], autograph=False)
  def metadata():
    facts = {
        'sample_rate': rate,
        'label_names': names,
        'window_samples': tf.constant(window_samples, tf.int32),
        'max_wav_seconds': tf.constant(MAX_WAV_SECONDS, tf.int32),
    }
    if stream is not None:
      facts.update(stream.metadata())
    return facts

  return {'serving_default': serve_waveform, 'serve_wav': serve_wav,
          'metadata': metadata, 'tflite': tflite, 'onnx': onnx}


def export_saved_model(windowed_model, label_names, sample_rate: int,
                       window_samples: int, multi_label: bool,
                       export_dir, model_dir=None, cadence: int = 1) -> str:
  """Writes the serving SavedModel as a new version of export_dir.

  Args:
    windowed_model: a WindowedClassifier: waveforms [batch, samples] of any
      length -> logits [batch, classes].
    label_names: class names, in the order of the logits.
    sample_rate: the training sample rate in Hz.
    window_samples: the window length the model averages over.
    multi_label: sigmoid probabilities if True, softmax otherwise.
    export_dir: the export folder (new, empty or a previous export): the
      SavedModel goes into its next numbered version folder.
    model_dir: optional folder of the training run exported; export_dir may
      not be it or hold it.
    cadence: the streaming classifier runs every `cadence` hops.

  Returns:
    The new version's folder (export_dir/<version>).

  Raises:
    export_directory.ExportDirectoryError: export_dir holds something else
      (checked before any work, and again before the version is added).
  """
  export_dir = export_directory.check_destination(export_dir, model_dir)
  archive = keras.export.ExportArchive()
  _list_variables(archive, windowed_model)
  description = {
      'label_names': [str(name) for name in label_names],
      'sample_rate': int(sample_rate),
      'window_samples': int(window_samples),
      'multi_label': bool(multi_label),
  }
  stream = streaming_export.add_streaming_endpoints(
      archive, windowed_model, window_samples, multi_label, cadence)
  if stream is None:
    try:
      streaming_export.check_streamable(windowed_model)
    except streaming_export.NotStreamableError as error:
      description['streaming_refused'] = str(error)
  functions = serving_functions(windowed_model, label_names, sample_rate,
                                window_samples, multi_label, stream)
  for name, function in functions.items():
    archive.add_endpoint(name, function)
  with export_directory.staged_export(export_dir, description) as staging:
    archive.write_out(staging, verbose=False)
  return export_directory.latest_version(export_dir)


def _list_variables(archive, model):
  """Lists `model`'s variables in the archive as archive.track(model) does
  (the loaded SavedModel's `variables`, `trainable_variables`,
  `non_trainable_variables`), without track()'s search of the model for
  lookup tables, which traces every Keras model inside it once more (its
  default save signature: seconds per export). The models exported here
  hold no tables."""
  archive.variables.extend(model.variables)
  archive.trainable_variables.extend(model.trainable_variables)
  archive.non_trainable_variables.extend(model.non_trainable_variables)


def _converter_input(model, method, multi_label):
  """The signature a converter takes: waveform [batch, samples] (float32, any
  length) -> probabilities [batch, classes], valid [batch], with `model`'s
  frontends computed by `method` (`methods.METHODS`), as the converted file
  will compute them, on the serving model's own weights."""

  @tf.function(input_signature=[
      tf.TensorSpec([None, None], tf.float32, name='waveform')
  ], autograph=False)
  def classify(waveform):
    batch = tf.shape(waveform)[0]
    # A batch of 0 clips gives 0 rows, as serving_default does. The
    # frontends' reshapes cannot infer an axis of a tensor with 0 elements
    # (in TF, LiteRT and onnxruntime alike), so an empty batch is classified
    # as one silent clip whose row is then dropped; no control flow, so the
    # graph still converts to builtin operators. For a non-empty batch the
    # padding has 0 rows.
    padding = tf.zeros([tf.maximum(1 - batch, 0), tf.shape(waveform)[1]],
                       waveform.dtype)
    waveform = tf.concat([waveform, padding], axis=0)
    finite = _finite_clips(waveform)
    # Entered at each trace (the export traces each function twice).
    with methods.computed_with(model, method):
      logits = model(_silence_invalid(waveform, finite), training=False)
    probabilities, valid = _valid_probabilities(logits, multi_label, finite)
    return {'probabilities': probabilities[:batch], 'valid': valid[:batch]}

  return classify
