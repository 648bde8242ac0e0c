"""Serving: what a run exports and how exports are written.

  signatures.py            the SavedModel's serving signatures (serving_default,
                           serve_wav, metadata, tflite)
  streaming_signatures.py  the streaming signatures and the streaming TFLite model
  export_directory.py      where an export may be written, staged and swapped in
  converters.py            the export as self-describing .tflite / .onnx files
  exporting.py             a training run -> the SavedModel and those files
  runtimes.py              one call shape for TensorFlow, LiteRT, onnxruntime
"""
