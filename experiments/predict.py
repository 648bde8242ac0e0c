"""Classifies WAV files with an exported SavedModel.

  python -m experiments.predict --saved_model=runs/default/export a.wav b.wav

Needs only TensorFlow (and scipy to read and resample the files). Files at
another sample rate than the model's are resampled, and the output says so.
"""

from absl import app
from absl import flags
import numpy as np
import tensorflow as tf

from experiments.data import wav

_SAVED_MODEL = flags.DEFINE_string(
    'saved_model', None, 'Folder of an exported SavedModel.', required=True)
_TOP_K = flags.DEFINE_integer('top_k', 3, 'Classes to print per file.')


def predict_files(saved_model_dir, paths, top_k=3):
  """Yields (path, [(label, probability)] best first, note) for each file."""
  model = tf.saved_model.load(saved_model_dir)
  metadata = model.signatures['metadata']()
  sample_rate = int(metadata['sample_rate'])
  serve = model.signatures['serving_default']
  for path in paths:
    samples, rate = wav.read_wav(path)
    audio = wav.to_mono(samples)
    note = ''
    if rate != sample_rate:
      audio = wav.resample(audio, rate, sample_rate)
      note = f'resampled {rate} Hz -> {sample_rate} Hz'
    outputs = serve(waveform=tf.constant(audio[np.newaxis], tf.float32))
    probabilities = outputs['probabilities'].numpy()[0]
    names = [name.decode() for name in outputs['label_names'].numpy()]
    order = np.argsort(-probabilities)[:top_k]
    yield path, [(names[i], float(probabilities[i])) for i in order], note


def main(argv):
  paths = argv[1:]
  if not paths:
    raise app.UsageError('Give one or more WAV files to classify.')
  try:
    for path, top, note in predict_files(_SAVED_MODEL.value, paths,
                                         _TOP_K.value):
      ranked = ', '.join(f'{label} ({p:.3f})' for label, p in top)
      print(f'{path}: {ranked}' + (f'  [{note}]' if note else ''))
  except (ValueError, OSError) as error:
    raise SystemExit(f'error: {error}') from None


if __name__ == '__main__':
  app.run(main)
