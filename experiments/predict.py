"""Classifies WAV files with an exported SavedModel.

  python -m experiments.predict --saved_model=runs/default/export a.wav b.wav

Needs only TensorFlow (and scipy to read and resample the files). Files at
another sample rate than the model's are resampled, and the output says so.
A file that cannot be classified (missing, damaged, truncated, non-finite
samples) gets one `path: error: ...` line on stderr; the others are still
classified, and the exit status is 1 if any file failed.
"""

import sys

from absl import app
from absl import flags
import numpy as np
import tensorflow as tf

from experiments import errors
from experiments.data import wav
from experiments.serving import export_directory

_SAVED_MODEL = flags.DEFINE_string(
    'saved_model', None, 'Folder of an exported SavedModel.', required=True)
_TOP_K = flags.DEFINE_integer('top_k', 3, 'Classes to print per file.')


class FileNotClassifiedError(ValueError):
  """One input file that the model could not classify; names the file."""


def load_saved_model(saved_model_dir):
  """tf.saved_model.load with an error that names the folder.

  Raises:
    ValueError: the folder is missing, or is not a complete SavedModel
      with the 'serving_default' and 'metadata' signatures.
  """
  try:
    # An export folder's newest version; a plain SavedModel folder as is.
    saved_model_dir = export_directory.saved_model_path(saved_model_dir)
    model = tf.saved_model.load(saved_model_dir)
  except (OSError, ValueError, tf.errors.OpError) as error:
    first_line = (str(error).strip().splitlines() or [''])[0]
    raise ValueError(
        f'could not load the SavedModel in {saved_model_dir!r}: it is missing '
        'or damaged (re-export it with python -m experiments.export); '
        f'{type(error).__name__}: {first_line}') from error
  missing = {'serving_default', 'metadata'} - set(model.signatures)
  if missing:
    raise ValueError(
        f'{saved_model_dir!r} is a SavedModel without the signatures '
        f'{sorted(missing)}; expected an export of experiments.export.')
  return model


def predict_files(saved_model_dir, paths, top_k=3):
  """Yields (path, [(label, probability)] best first, note) for each file.

  A file that cannot be classified yields (path, FileNotClassifiedError,
  '') instead, and the other files are still classified.
  """
  model = load_saved_model(saved_model_dir)
  metadata = model.signatures['metadata']()
  sample_rate = int(metadata['sample_rate'])
  # In metadata() in every version (serving_default no longer repeats them).
  names = [name.decode() for name in metadata['label_names'].numpy()]
  serve = model.signatures['serving_default']
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
    outputs = serve(waveform=tf.constant(audio[np.newaxis], tf.float32))
    # Exports before the `valid` output marked nothing: check here too.
    valid = bool(outputs['valid'].numpy()[0]) if 'valid' in outputs else True
    probabilities = outputs['probabilities'].numpy()[0]
    if not valid or not np.isfinite(probabilities).all():
      yield path, FileNotClassifiedError(
          f'{path!r} was not classified: the waveform has non-finite samples '
          'or gave non-finite scores'), note
      continue
    order = np.argsort(-probabilities)[:top_k]
    yield path, [(names[i], float(probabilities[i])) for i in order], note


def main(argv):
  paths = argv[1:]
  if not paths:
    raise app.UsageError('Give one or more WAV files to classify.')
  failures = 0
  try:
    for path, top, note in predict_files(_SAVED_MODEL.value, paths,
                                         _TOP_K.value):
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
  app.run(main)
