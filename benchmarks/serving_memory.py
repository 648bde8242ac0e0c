"""Peak memory of serve_wav on long WAV files: today's export and the old one.

  python benchmarks/serving_memory.py [--minutes 10 30]

Exports one untrained model of the default recipe's shape (LEAF, ConvNet
16/32/64, 10 classes) twice into a temporary folder: with today's
signatures (windows decoded and classified a few at a time) and with the
previous serve_wav (the whole file decoded, then all its windows in one
batch), kept here as a function. Then, for each export and length, a fresh
process loads the export, serves a 2 s file (so that graphs and buffers
exist), resets the kernel's peak-RSS counter, serves a mono 16 kHz WAV of
that length and reports the peak RSS growth over the RSS before that call.
Each case runs in its own process, so one case's allocations cannot hide
another's. Linux only (/proc/self/status, /proc/self/clear_refs).
"""

import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time

import numpy as np

SAMPLE_RATE = 16000
REPO = pathlib.Path(__file__).resolve().parent.parent


def _status_kib(field):
  for line in pathlib.Path('/proc/self/status').read_text().splitlines():
    if line.startswith(field + ':'):
      return int(line.split()[1])
  raise RuntimeError(f'{field} not in /proc/self/status')


def child(export, wav_path):
  """Serves one file in this process; prints JSON growth and time."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  model = tf.saved_model.load(export)
  serve = model.signatures['serve_wav']
  with open(wav_path, 'rb') as file:
    contents = tf.constant([file.read()])
  short = tf.audio.encode_wav(tf.zeros([2 * SAMPLE_RATE, 1]), SAMPLE_RATE)
  serve(wav=tf.reshape(short, [1]))
  before = _status_kib('VmRSS')
  pathlib.Path('/proc/self/clear_refs').write_text('5')  # resets VmHWM
  start = time.perf_counter()
  outputs = serve(wav=contents)
  seconds = time.perf_counter() - start
  peak = _status_kib('VmHWM')
  assert outputs['probabilities'].shape[0] == 1
  print(json.dumps({'growth_mb': (peak - before) / 1024,
                    'seconds': seconds}))


def _model():
  import keras  # pylint: disable=g-import-not-at-top
  import leaf_audio  # pylint: disable=g-import-not-at-top
  from experiments import models  # pylint: disable=g-import-not-at-top
  keras.utils.set_random_seed(0)
  classifier = models.AudioClassifier(
      leaf_audio.Leaf(), models.ConvNet([16, 32, 64], dropout=0.0),
      num_outputs=10, normalization=None, pooling='mean')
  classifier.build((None, SAMPLE_RATE))
  return models.WindowedClassifier(classifier, SAMPLE_RATE)


def _export_previous(windowed, folder):
  """The serve_wav of earlier versions: decode_wav, then every window of
  the file through the model in one batch (WindowedClassifier)."""
  import keras  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  def classify(contents):
    audio, _ = tf.audio.decode_wav(contents)
    mono = tf.reduce_mean(audio, axis=-1)[tf.newaxis]
    return windowed(mono, training=False)[0]

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
  def serve_wav(wav):
    logits = tf.map_fn(classify, wav,
                       fn_output_signature=tf.TensorSpec([10], tf.float32))
    return {'probabilities': tf.nn.softmax(logits)}

  archive = keras.export.ExportArchive()
  archive.track(windowed)
  archive.add_endpoint('serve_wav', serve_wav)
  archive.write_out(str(folder), verbose=False)
  return str(folder)


def _write_wav(path, minutes):
  import scipy.io.wavfile  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(minutes)
  samples = (rng.standard_normal(minutes * 60 * SAMPLE_RATE) * 3000).clip(
      -32768, 32767).astype(np.int16)
  scipy.io.wavfile.write(path, SAMPLE_RATE, samples)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--minutes', type=int, nargs='+', default=[10, 30])
  parser.add_argument('--child', nargs=2, metavar=('EXPORT', 'WAV'),
                      help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.child:
    child(*args.child)
    return
  sys.path.insert(0, str(REPO))
  from experiments.serving import export_directory  # pylint: disable=g-import-not-at-top
  from experiments.serving import signatures  # pylint: disable=g-import-not-at-top
  with tempfile.TemporaryDirectory() as scratch:
    scratch = pathlib.Path(scratch)
    windowed = _model()
    exports = {
        'previous (one batch of all windows)': _export_previous(
            windowed, scratch / 'previous'),
    }
    signatures.export_saved_model(windowed, [str(i) for i in range(10)],
                                  SAMPLE_RATE, SAMPLE_RATE, False,
                                  scratch / 'export')
    exports['today (8 windows at a time)'] = (
        export_directory.saved_model_path(scratch / 'export'))
    rows = []
    for minutes in args.minutes:
      wav_path = scratch / f'{minutes}min.wav'
      _write_wav(wav_path, minutes)
      size_mb = wav_path.stat().st_size / 2**20
      for name, export in exports.items():
        completed = subprocess.run(
            [sys.executable, __file__, '--child', export, str(wav_path)],
            capture_output=True, text=True, check=False,
            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2'))
        if completed.returncode:
          result = f'failed: {completed.stderr.strip().splitlines()[-1]}'
          rows.append((minutes, size_mb, name, result, ''))
          continue
        measured = json.loads(completed.stdout.strip().splitlines()[-1])
        rows.append((minutes, size_mb, name, f"{measured['growth_mb']:.0f}",
                     f"{measured['seconds']:.1f}"))
  print('| WAV | file MB | serve_wav | peak RSS growth MB | seconds |')
  print('|---|---|---|---|---|')
  for minutes, size_mb, name, growth, seconds in rows:
    print(f'| {minutes} min | {size_mb:.0f} | {name} | {growth} | {seconds} |')


if __name__ == '__main__':
  main()
