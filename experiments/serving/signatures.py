"""The serving SavedModel: waveforms or WAV bytes in, class probabilities out.

Signatures (all run the evaluation path: per-window loudness normalisation,
1 s windows, logits averaged per clip):
  serving_default(waveform: float32 [batch, samples], any length, at the
      training sample rate) -> probabilities [batch, classes],
      top_label [batch], top_probability [batch], valid [batch],
      label_names [classes]
  serve_wav(wav: string [batch], encoded 16-bit PCM WAV files) -> the same;
      a file at another sample rate fails with an error that says so.
  metadata() -> sample_rate [], label_names [classes], window_samples []
  stream_step(samples: float32 [1, hop], state_<key>...) -> probabilities
      [1, classes] of the last window, state_<key>...; stream_initial_state()
      -> the zero state: the streaming classifier, added when the frontend
      streams (`streaming_export`, docs/streaming.md).
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

The folder is written and replaced under the policy of
experiments/serving/export_directory.py: never over a folder that is not a previous
export.
"""

import pathlib

import keras
import numpy as np
import tensorflow as tf

from experiments.serving import export_directory
from experiments.serving import streaming_signatures as streaming_export
from leaf_audio import methods

_FLOAT32_MAX = float(np.finfo(np.float32).max)


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
  probabilities, valid = _valid_probabilities(logits, multi_label, finite)
  top = tf.argmax(tf.where(tf.math.is_nan(probabilities),
                           tf.zeros_like(probabilities), probabilities),
                  axis=-1)
  return {
      'probabilities': probabilities,
      'top_label': tf.where(valid, tf.gather(label_names, top), ''),
      'top_probability': tf.reduce_max(probabilities, axis=-1),
      'valid': valid,
      'label_names': label_names,
  }


def export_saved_model(windowed_model, label_names, sample_rate: int,
                       window_samples: int, multi_label: bool,
                       export_dir, model_dir=None) -> pathlib.Path:
  """Writes the serving SavedModel to export_dir (replacing an older export).

  Args:
    windowed_model: a WindowedClassifier: waveforms [batch, samples] of any
      length -> logits [batch, classes].
    label_names: class names, in the order of the logits.
    sample_rate: the training sample rate in Hz.
    window_samples: the window length the model averages over.
    multi_label: sigmoid probabilities if True, softmax otherwise.
    export_dir: destination folder: new, empty or a previous export.
    model_dir: optional folder of the training run exported; export_dir may
      not be it or hold it.

  Returns:
    The export folder.

  Raises:
    export_directory.ExportDirectoryError: export_dir holds something else
      (checked before any work, and again before replacing).
  """
  export_dir = export_directory.check_destination(export_dir, model_dir)
  names = tf.constant([str(name) for name in label_names])
  rate = tf.constant(int(sample_rate), tf.int32)

  @tf.function(input_signature=[
      tf.TensorSpec([None, None], tf.float32, name='waveform')
  ])
  def serve_waveform(waveform):
    finite = _finite_clips(waveform)
    logits = windowed_model(_silence_invalid(waveform, finite),
                            training=False)
    return _outputs(logits, names, multi_label, finite)

  def classify_wav(contents):
    audio, file_rate = tf.audio.decode_wav(contents)
    tf.debugging.assert_equal(
        file_rate, rate,
        message=(f'serve_wav expects WAV files at {sample_rate} Hz, the '
                 'training sample rate; resample the file first (its rate '
                 'follows)'))
    mono = tf.reduce_mean(audio, axis=-1)[tf.newaxis]
    # 16-bit PCM decodes to finite samples; the check keeps the contract.
    finite = _finite_clips(mono)
    logits = windowed_model(_silence_invalid(mono, finite), training=False)
    return logits[0], finite[0]

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name='wav')])
  def serve_wav(wav):
    logits, finite = tf.map_fn(
        classify_wav,
        wav,
        fn_output_signature=(
            tf.TensorSpec([len(label_names)], windowed_model.compute_dtype),
            tf.TensorSpec([], tf.bool)))
    return _outputs(logits, names, multi_label, finite)

  # Same weights, frontends computed directly: the function TFLite converts.
  direct_model = methods.with_method(windowed_model, 'direct')

  @tf.function(input_signature=[
      tf.TensorSpec([None, None], tf.float32, name='waveform')
  ])
  def tflite(waveform):
    finite = _finite_clips(waveform)
    logits = direct_model(_silence_invalid(waveform, finite), training=False)
    probabilities, valid = _valid_probabilities(logits, multi_label, finite)
    return {'probabilities': probabilities, 'valid': valid}

  @tf.function(input_signature=[])
  def metadata():
    return {
        'sample_rate': rate,
        'label_names': names,
        'window_samples': tf.constant(int(window_samples), tf.int32),
    }

  archive = keras.export.ExportArchive()
  archive.track(windowed_model)
  archive.track(direct_model)
  archive.add_endpoint('serving_default', serve_waveform)
  archive.add_endpoint('serve_wav', serve_wav)
  archive.add_endpoint('metadata', metadata)
  archive.add_endpoint('tflite', tflite)
  streaming_export.add_streaming_endpoints(archive, windowed_model,
                                           window_samples, multi_label)
  with export_directory.staged_export(export_dir, {
      'label_names': [str(name) for name in label_names],
      'sample_rate': int(sample_rate),
      'window_samples': int(window_samples),
      'multi_label': bool(multi_label),
  }) as staging:
    archive.write_out(str(staging), verbose=False)
  return export_dir
