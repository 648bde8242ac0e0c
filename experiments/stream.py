"""Plays a WAV file through the streaming classifier, as if live.

  python -m experiments.stream --saved_model=runs/default/export a.wav

Feeds the exported SavedModel's 'stream_step' one hop (10 ms by default) at a
time, carrying its state, and prints the top label of the last window every
--every_ms milliseconds (--plot=FILE.png also draws every class's
probability over time). Needs only TensorFlow (scipy to read and resample
the file; matplotlib for --plot). See docs/streaming.md.
"""

from absl import app
from absl import flags
import numpy as np
import tensorflow as tf

from experiments import errors
from experiments.data import wav
from experiments.serving import export_directory
from experiments.serving import streaming_signatures as streaming_export

_SAVED_MODEL = flags.DEFINE_string(
    'saved_model', None, 'Folder of an exported SavedModel.', required=True)
_EVERY_MS = flags.DEFINE_float('every_ms', 250., 'Print period in ms.')
_PLOT = flags.DEFINE_string('plot', None, 'Optional PNG of the probabilities.')


def stream_file(saved_model_dir, path):
  """(times [hops] in s, probabilities [hops, classes], label names, warm-up s).

  Row i holds the probabilities after hop i (of the window ending then).
  """
  model = tf.saved_model.load(
      export_directory.saved_model_path(saved_model_dir))
  if 'stream_step' not in model.signatures:
    raise ValueError(f'{saved_model_dir} has no stream_step signature (its '
                     'frontend does not stream, or it predates streaming).')
  metadata = model.signatures['metadata']()
  sample_rate = int(metadata['sample_rate'])
  names = [name.decode() for name in metadata['label_names'].numpy()]
  window_samples = int(metadata['window_samples'])
  step = model.signatures['stream_step']
  state = model.signatures['stream_initial_state']()
  hop = int(step.structured_input_signature[1]['samples'].shape[1])
  samples, rate = wav.read_wav(path)
  audio = wav.to_mono(samples).astype(np.float32)
  if rate != sample_rate:
    audio = wav.resample(audio, rate, sample_rate).astype(np.float32)
  rows = []
  for start in range(0, len(audio) - hop + 1, hop):
    outputs = step(samples=tf.constant(audio[np.newaxis, start:start + hop]),
                   **state)
    state = streaming_export.next_state(outputs)
    rows.append(outputs['probabilities'].numpy()[0])
  times = (np.arange(len(rows)) + 1) * hop / sample_rate
  return times, np.array(rows).reshape(-1, len(names)), names, (
      window_samples / sample_rate)


def main(argv):
  if len(argv) != 2:
    raise app.UsageError('Give one WAV file to stream.')
  try:
    times, probabilities, names, warmup = stream_file(_SAVED_MODEL.value,
                                                      argv[1])
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
  app.run(main)
