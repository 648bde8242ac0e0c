"""Serving: what a run exports and how exports are written.

  signatures.py            the SavedModel's serving signatures (serving_default,
                           serve_wav, metadata, tflite)
  streaming_signatures.py  the stream_step contract, its signatures and the
                           streaming TFLite model
  export_directory.py      the export folder: numbered versions, staged,
                           added and read through tf.io.gfile
  converters.py            the export as self-describing .tflite / .onnx files
  exporting.py             a training run -> the SavedModel and those files
  runtimes.py              one call shape for TensorFlow, LiteRT, onnxruntime
"""
