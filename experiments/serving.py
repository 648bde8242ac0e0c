"""The serving SavedModel: waveforms or WAV bytes in, class probabilities out.

Signatures (all run the evaluation path: per-window loudness normalisation,
1 s windows, logits averaged per clip):
  serving_default(waveform: float32 [batch, samples], any length, at the
      training sample rate) -> probabilities [batch, classes],
      top_label [batch], top_probability [batch], label_names [classes]
  serve_wav(wav: string [batch], encoded 16-bit PCM WAV files) -> the same;
      a file at another sample rate fails with an error that says so.
  metadata() -> sample_rate [], label_names [classes], window_samples []
  stream_step(samples: float32 [1, hop], state_<key>...) -> probabilities
      [1, classes] of the last window, state_<key>...; stream_initial_state()
      -> the zero state: the streaming classifier, added when the frontend
      streams (`streaming_export`, docs/streaming.md).
  tflite(waveform: float32 [1, sample_rate], one second) -> probabilities
      [1, classes]; the signature to convert with the TFLite converter
      (`tf.lite.TFLiteConverter.from_saved_model(dir, signature_keys=
      ['tflite'])`): fixed shapes, numbers only, and the frontends computed
      with their direct method, which TFLite's builtin ops cover (its FFT
      needs power-of-two lengths and it has no loops over tensor lists).
The SavedModel needs only TensorFlow to load and run.
"""

import pathlib
import tempfile

import keras
import tensorflow as tf

from experiments import checkpoints
from experiments import streaming_export
from leaf_audio import methods


def _probabilities(logits, multi_label):
  probabilities = tf.sigmoid(logits) if multi_label else tf.nn.softmax(logits)
  return tf.cast(probabilities, tf.float32)


def _outputs(logits, label_names, multi_label):
  probabilities = _probabilities(logits, multi_label)
  top = tf.argmax(probabilities, axis=-1)
  return {
      'probabilities': probabilities,
      'top_label': tf.gather(label_names, top),
      'top_probability': tf.reduce_max(probabilities, axis=-1),
      'label_names': label_names,
  }


def export_saved_model(windowed_model, label_names, sample_rate: int,
                       window_samples: int, multi_label: bool,
                       export_dir) -> pathlib.Path:
  """Writes the serving SavedModel to export_dir (replacing an older one).

  Args:
    windowed_model: a WindowedClassifier: waveforms [batch, samples] of any
      length -> logits [batch, classes].
    label_names: class names, in the order of the logits.
    sample_rate: the training sample rate in Hz.
    window_samples: the window length the model averages over.
    multi_label: sigmoid probabilities if True, softmax otherwise.
    export_dir: destination folder.

  Returns:
    The export folder.
  """
  export_dir = pathlib.Path(export_dir)
  names = tf.constant([str(name) for name in label_names])
  rate = tf.constant(int(sample_rate), tf.int32)

  @tf.function(input_signature=[
      tf.TensorSpec([None, None], tf.float32, name='waveform')
  ])
  def serve_waveform(waveform):
    return _outputs(windowed_model(waveform, training=False), names,
                    multi_label)

  def classify_wav(contents):
    audio, file_rate = tf.audio.decode_wav(contents)
    tf.debugging.assert_equal(
        file_rate, rate,
        message=(f'serve_wav expects WAV files at {sample_rate} Hz, the '
                 'training sample rate; resample the file first (its rate '
                 'follows)'))
    mono = tf.reduce_mean(audio, axis=-1)
    return windowed_model(mono[tf.newaxis], training=False)[0]

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name='wav')])
  def serve_wav(wav):
    logits = tf.map_fn(
        classify_wav,
        wav,
        fn_output_signature=tf.TensorSpec([len(label_names)],
                                          windowed_model.compute_dtype))
    return _outputs(logits, names, multi_label)

  # Same weights, frontends computed directly: the function TFLite converts.
  direct_model = methods.with_method(windowed_model, 'direct')

  @tf.function(input_signature=[
      tf.TensorSpec([1, int(sample_rate)], tf.float32, name='waveform')
  ])
  def tflite(waveform):
    logits = direct_model(waveform, training=False)
    return {'probabilities': _probabilities(logits, multi_label)}

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
  export_dir.parent.mkdir(parents=True, exist_ok=True)
  staging = tempfile.mkdtemp(prefix=f'.{export_dir.name}-',
                             dir=export_dir.parent)
  archive.write_out(staging, verbose=False)
  checkpoints.replace_directory(staging, export_dir)
  return export_dir
