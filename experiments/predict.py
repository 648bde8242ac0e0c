"""Classifies WAV files with an exported model: SavedModel, .tflite or .onnx.

  python -m experiments.predict --model=runs/default/export a.wav b.wav
  python -m experiments.predict --model=runs/default/leaf.tflite a.wav
  python -m experiments.predict --model=runs/default/leaf.onnx a.wav

--model (or its older name --saved_model) is an export folder of
experiments.export, or a .tflite or .onnx file it wrote with --tflite /
--onnx, run in TensorFlow, LiteRT or onnxruntime
(experiments/serving/runtimes.py): check the artifact you ship on your own
files. Files at another sample rate than the model's are resampled, and the
output says so. A file that cannot be classified (missing, damaged,
truncated, non-finite samples) gets one `path: error: ...` line on stderr;
the others are still classified, and the exit status is 1 if any file
failed.

TensorFlow's and the converters' log lines are hidden unless --verbosity
(-v) is given (experiments/console.py).
"""

import sys

from experiments import console as console_lib

if __name__ == '__main__':
  # Before TensorFlow is imported: what it prints then goes to the log.
  console_lib.Console.start(sys.argv)

# pylint: disable=g-import-not-at-top,wrong-import-position
from absl import app
from absl import flags
import numpy as np

from experiments import errors
from experiments import model_flag
from experiments.data import wav
from experiments.serving import runtimes
# pylint: enable=g-import-not-at-top,wrong-import-position

_MODEL = model_flag.MODEL
flags.declare_key_flag('model')  # Listed by --helpshort.
_TOP_K = flags.DEFINE_integer('top_k', 3, 'Classes to print per file.')
_THREADS = flags.DEFINE_integer(
    'num_threads', 1, 'CPU threads of LiteRT or onnxruntime.')

# Kept for callers of the SavedModel-only version.
load_saved_model = runtimes.load_saved_model


class FileNotClassifiedError(ValueError):
  """One input file that the model could not classify; names the file."""


def predict_files(model_path, paths, top_k=3, num_threads=1):
  """Yields (path, [(label, probability)] best first, note) for each file.

  A file that cannot be classified yields (path, FileNotClassifiedError,
  '') instead, and the other files are still classified.

  Raises:
    ValueError: the model cannot be loaded (the message names it).
  """
  runtime = runtimes.open_runtime(model_path, num_threads)
  sample_rate = int(runtime.metadata['sample_rate'])
  names = runtime.metadata['label_names']
  for path in paths:
    try:
      samples, rate = wav.read_wav(path)
    except ValueError as error:
      yield path, FileNotClassifiedError(str(error)), ''
      continue
    audio = wav.to_mono(samples)
    note = ''
    if rate != sample_rate:
      audio = wav.resample(audio, rate, sample_rate)
      note = f'resampled {rate} Hz -> {sample_rate} Hz'
    probabilities, valid = runtime.classify(
        np.asarray(audio, np.float32)[np.newaxis])
    probabilities = probabilities[0]
    if not valid[0] or not np.isfinite(probabilities).all():
      yield path, FileNotClassifiedError(
          f'{path!r} was not classified: the waveform has non-finite samples '
          'or gave non-finite scores'), note
      continue
    order = np.argsort(-probabilities)[:top_k]
    yield path, [(names[i], float(probabilities[i])) for i in order], note


def main(argv):
  paths = argv[1:]
  if not _MODEL.value:
    raise app.UsageError('Give --model=EXPORT_FOLDER (or a .tflite or .onnx '
                         'file).')
  if not paths:
    raise app.UsageError('Give one or more WAV files to classify.')
  failures = 0
  try:
    for path, top, note in predict_files(_MODEL.value, paths, _TOP_K.value,
                                         _THREADS.value):
      if isinstance(top, FileNotClassifiedError):
        failures += 1
        print(f'{path}: error: {top}', file=sys.stderr)
        continue
      ranked = ', '.join(f'{label} ({p:.3f})' for label, p in top)
      print(f'{path}: {ranked}' + (f'  [{note}]' if note else ''))
  except (ValueError, OSError) as error:
    errors.report_and_exit(error)
  if failures:
    sys.exit(f'error: {failures} of {len(paths)} files were not classified.')


if __name__ == '__main__':
  console_lib.run(main)
