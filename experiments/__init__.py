"""Training binaries for leaf_audio: gin + absl + TFDS live here and only here.

  train.py export.py predict.py    entry points (`python -m experiments.<name>`)
  stream.py inspect.py
  compare_frontends.py
  training/          the job (train() and its phases), loop, run files,
                     evaluation, metrics, optimizers, distribution
  serving/           serving signatures, export folder, streaming export
  data/              TFDS builders (embedded synthetic sets, WAV folders),
                     the input pipeline, WAV reading
  models.py          AudioClassifier, encoders, loudness normalisation
  configurables.py   what .gin files may name (`import experiments.configurables`)
  gin_files.py       parsing .gin files and bindings with clear errors
  errors.py          the errors a user can fix, and the binaries' exit statuses
  storage.py         paths on any TensorFlow file system (gs://, ram://)
  console.py         the binaries' quiet console and their log file
"""
