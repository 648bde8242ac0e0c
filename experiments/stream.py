"""Plays a WAV file through the streaming classifier, as if live.

  python -m experiments.stream --model=runs/default/export a.wav
  python -m experiments.stream --model=runs/default/streaming.tflite a.wav
  python -m experiments.stream --model=runs/default/streaming.onnx a.wav

Feeds the exported model's stream step one hop (10 ms by default) at a time,
carrying its state, and prints the top label of the last window every
--every_ms milliseconds (--plot=FILE.png also draws every class's
probability over time). --model (or its older name --saved_model) is an
export folder (its 'stream_step' signature, in TensorFlow) or a streaming
.tflite / .onnx file of experiments.export (in LiteRT / onnxruntime; see
experiments/serving/runtimes.py). scipy reads and resamples the file;
matplotlib draws --plot. See docs/streaming.md.

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
_EVERY_MS = flags.DEFINE_float('every_ms', 250., 'Print period in ms.')
_PLOT = flags.DEFINE_string('plot', None, 'Optional PNG of the probabilities.')


def stream_file(model_path, path):
  """(times [hops] in s, probabilities [hops, classes], label names, warm-up s).

  Row i holds the probabilities after hop i (of the window ending then).

  Raises:
    ValueError: the model cannot be loaded or does not stream, or the file
      cannot be read (the message names it).
  """
  runtime = runtimes.open_runtime(model_path)
  metadata = runtime.metadata
  sample_rate = int(metadata['sample_rate'])
  names = metadata['label_names']
  samples, rate = wav.read_wav(path)
  audio = wav.to_mono(samples).astype(np.float32)
  if rate != sample_rate:
    audio = wav.resample(audio, rate, sample_rate).astype(np.float32)
  probabilities, _ = runtime.stream(audio)
  hop = metadata['hop_samples']
  times = (np.arange(len(probabilities)) + 1) * hop / sample_rate
  return times, probabilities, names, metadata['window_samples'] / sample_rate


def main(argv):
  if len(argv) != 2:
    raise app.UsageError('Give one WAV file to stream.')
  if not _MODEL.value:
    raise app.UsageError('Give --model=EXPORT_FOLDER (or a streaming .tflite '
                         'or .onnx file).')
  try:
    times, probabilities, names, warmup = stream_file(_MODEL.value, argv[1])
  except (ValueError, OSError) as error:
    errors.report_and_exit(error)
  if not len(times):  # pylint: disable=g-explicit-length-test
    raise SystemExit(f'error: {argv[1]} is shorter than one hop.')
  period = max(int(round(_EVERY_MS.value / 1000 / (times[0] or 1))), 1)
  for index in range(period - 1, len(times), period):
    top = int(np.argmax(probabilities[index]))
    note = '  (warm-up: window not yet full)' if times[index] < warmup else ''
    print(f'{times[index]:7.2f} s  {names[top]:<24} '
          f'{probabilities[index, top]:.3f}{note}')
  if _PLOT.value:
    import matplotlib  # pylint: disable=g-import-not-at-top
    matplotlib.use('Agg')
    from matplotlib import pyplot  # pylint: disable=g-import-not-at-top
    figure, axes = pyplot.subplots(figsize=(8, 3))
    for column, name in enumerate(names):
      axes.plot(times, probabilities[:, column], label=name)
    axes.axvspan(0, warmup, color='0.9')
    axes.set_xlabel('time (s)')
    axes.set_ylabel('probability')
    axes.legend(fontsize='x-small', ncol=2)
    figure.tight_layout()
    figure.savefig(_PLOT.value)
    print(f'plot written to {_PLOT.value}')


if __name__ == '__main__':
  console_lib.run(main)
