"""Training binaries for leaf_audio: gin + absl + TFDS live here and only here.

  train.py export.py predict.py    entry points (`python -m experiments.<name>`)
  stream.py inspect.py
  compare_frontends.py
  training/          the job (train() and its phases), loop, run files,
                     evaluation, metrics, optimizers, distribution
  serving/           serving signatures, the versioned export folder,
                     streaming signatures, converters to .tflite/.onnx,
                     runtimes (TensorFlow, LiteRT, onnxruntime), export_run
  data/              TFDS builders (embedded synthetic sets, WAV folders),
                     the input pipeline, waveform augmentation, WAV reading
  models.py          AudioClassifier, encoders, loudness normalisation
  configurables.py   what .gin files may name (`import experiments.configurables`)
  gin_files.py       parsing .gin files and bindings with clear errors
  errors.py          the errors a user can fix, and the binaries' exit statuses
  storage.py         paths on any TensorFlow file system (gs://, ram://)
  console.py         the binaries' quiet console and their log file
  run_flags.py       --model_dir and --checkpoint (train, export, inspect)
  model_flag.py      --model (predict, stream)
"""
