"""The flags that several binaries share, defined once.

absl refuses a flag defined twice in one process, and tests (or a user's
script) may import more than one binary: `--model_dir` (train, export,
inspect) and `--checkpoint` (export, inspect) therefore live here. Each binary
marks `--model_dir` required.
"""

from absl import flags

MODEL_DIR = flags.DEFINE_string(
    'model_dir', None, 'Folder of the run: a local path or a URL of any '
    'TensorFlow file system (gs://bucket/run). experiments.train writes its '
    'checkpoints, logs and export there; export and inspect read it.')
CHECKPOINT = flags.DEFINE_string(
    'checkpoint', None, 'Model file inside model_dir (export, inspect); '
    'default best.keras, or for inspect last.keras when the run has no '
    'best.keras yet.')
