"""What a frontend costs: forward, forward + backward, and a training step.

  python benchmarks/frontends.py                      # batch 8 x 1 s
  python benchmarks/frontends.py --batch 16 --seconds 10
  python benchmarks/frontends.py --train_step=false   # frontends only
  python benchmarks/frontends.py --frontends Leaf "Leaf (direct)" MelFilterbanks

Rows are frontend classes with their defaults; "Leaf (direct)" is `Leaf` forced
to the direct (reference) method, `Leaf(method='direct')`, while "Leaf" uses
the automatic choice (the FFT method, see `leaf_audio.methods`).

Harness (the same for every row): float32 waveforms [batch, seconds * 16000],
`tf.function`, training=True, loss = mean(output**2), gradients with respect to
the frontend's trainable variables only (no input gradient), TensorFlow's
default settings. Rounds are interleaved (every frontend once per round) and
the table shows medians, so load on a shared machine hits all rows alike;
`--warmup` untimed rounds come first (the first traces; steps are slower for
a few calls after that). A job shorter than `--min_ms` runs several times in a
row within each round, and its time is their mean, so that timer and
scheduler jitter do not decide a few-millisecond row. Each ratio to mel is
the median over rounds of that round's ratio, so both sides of a ratio are
measured seconds apart.
Peak resident memory is measured in a fresh process per frontend (forward +
backward, a few repetitions): the increase of the process' maximum RSS over
the same process after building the frontend.

The training step is a whole AudioClassifier (frontend + EfficientNetB0,
global max pooling, 10 classes, Adam) on the same batch, `train_on_batch`.

With the training step and the "Leaf" row, the same rounds also time the
FFTs that LEAF's exact FFT method cannot avoid (one inverse FFT per filter
output and chunk forward, one forward FFT per filter output and chunk
backward, in the same parallel graph loop, nothing else), and print what
they alone would make a training step cost relative to mel's.
"""

import argparse
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import time

FRONTENDS = ('Leaf', 'Leaf (direct)', 'MelFilterbanks',
             'TimeDomainFilterbanks', 'SincNet', 'SincNetPlus',
             'EfficientLeaf')
SAMPLE_RATE = 16000
_DIRECT = ' (direct)'


def _make_frontend(label):
  """A fresh frontend for a row label: a class name, optionally ' (direct)'."""
  import leaf_audio  # pylint: disable=g-import-not-at-top
  if label.endswith(_DIRECT):
    return getattr(leaf_audio, label[:-len(_DIRECT)])(method='direct')
  return getattr(leaf_audio, label)()


def _waveforms(tf, batch, seconds, seed=0):
  return tf.random.stateless_normal([batch, int(seconds * SAMPLE_RATE)],
                                    seed=[seed, 0]) * 0.1


def _frontend_functions(tf, name):
  """(forward, forward_backward) tf.functions of a fresh frontend."""
  layer = _make_frontend(name)

  @tf.function
  def forward(x):
    return layer(x, training=True)

  @tf.function
  def forward_backward(x):
    with tf.GradientTape() as tape:
      loss = tf.reduce_mean(tf.square(layer(x, training=True)))
    variables = layer.trainable_variables
    return [loss] + (tape.gradient(loss, variables) if variables else [])

  return forward, forward_backward


def _fft_floor(tf, batch, seconds):
  """The FFTs of Leaf's FFT method alone, forward and backward: a tf.function."""
  import leaf_audio  # pylint: disable=g-import-not-at-top
  from leaf_audio import fft_filterbank  # pylint: disable=g-import-not-at-top
  layer = leaf_audio.Leaf()
  kernel_size = layer.filterbank.kernel_size  # pylint: disable=protected-access
  size = fft_filterbank.fft_size(kernel_size, kernel_size, 160)
  geometry = fft_filterbank._Geometry(  # pylint: disable=protected-access
      batch, int(seconds * SAMPLE_RATE), kernel_size, kernel_size, 160,
      'same', size)
  rows = geometry.chunks
  outputs = 2 * layer.n_filters
  spectra = tf.complex(tf.random.normal([outputs, size // 2 + 1]),
                       tf.random.normal([outputs, size // 2 + 1]))
  signals = tf.random.normal([outputs, size])

  def loop(transform):
    return tf.while_loop(
        lambda row, _: row < rows,
        lambda row, total: (row + 1, total + tf.reduce_sum(tf.abs(
            transform(row)[:, :2]))),
        (0, tf.constant(0.)), parallel_iterations=8)[1]

  @tf.function
  def floor(unused_x):
    forward = loop(lambda row: tf.signal.irfft(
        spectra * tf.cast(row, tf.complex64), [size]))
    backward = loop(lambda row: tf.signal.rfft(
        signals * tf.cast(row, tf.float32)))
    return forward + backward

  return floor


def _train_step(tf, name, batch):
  import keras  # pylint: disable=g-import-not-at-top
  from experiments import models  # pylint: disable=g-import-not-at-top
  model = models.AudioClassifier(
      frontend=_make_frontend(name),
      encoder=models.EfficientNetB0Encoder(),
      num_outputs=10)
  model.compile(optimizer=keras.optimizers.Adam(1e-4),
                loss=keras.losses.SparseCategoricalCrossentropy(
                    from_logits=True))
  labels = tf.zeros([batch], tf.int32)
  return lambda x: model.train_on_batch(x, labels)


def _run(fn, x):
  """Runs fn(x) and waits for the result; returns seconds."""
  start = time.perf_counter()
  result = fn(x)
  if isinstance(result, (list, tuple)):
    [getattr(r, 'numpy', lambda: r)() for r in result]  # pylint: disable=expression-not-assigned
  elif hasattr(result, 'numpy'):
    result.numpy()
  return time.perf_counter() - start


def _repeats(seconds, min_ms):
  """Calls per round for a job that took `seconds` once: enough for min_ms.

  At most 100, so that a job that measured 0 s (a coarse clock) cannot stall
  the run.
  """
  return max(1, min(100, math.ceil(min_ms / 1000. / max(seconds, 1e-9))))


def median_ratio(numerators, denominators):
  """Median over rounds of numerators[i] / denominators[i]."""
  if len(numerators) != len(denominators) or not numerators:
    raise ValueError('median_ratio: needs two equally long, non-empty lists '
                     f'of round times; got {len(numerators)} and '
                     f'{len(denominators)}.')
  return statistics.median(n / d for n, d in zip(numerators, denominators))


def measure_times(args):
  """{(row, job): [seconds per call, one per round]}."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  x = _waveforms(tf, args.batch, args.seconds)
  jobs = {}
  for name in args.frontends:
    forward, forward_backward = _frontend_functions(tf, name)
    jobs[(name, 'forward')] = forward
    jobs[(name, 'forward_backward')] = forward_backward
    if args.train_step:
      jobs[(name, 'train_step')] = _train_step(tf, name, args.batch)
  if args.train_step and 'Leaf' in args.frontends:
    jobs[('FFTs of Leaf', 'forward_backward')] = _fft_floor(
        tf, args.batch, args.seconds)
  last = {}
  for _ in range(max(args.warmup, 1)):  # Trace, then let allocators settle.
    for key, fn in jobs.items():
      last[key] = _run(fn, x)
  repeats = {key: _repeats(last[key], args.min_ms) for key in jobs}
  times = {key: [] for key in jobs}
  for _ in range(args.rounds):
    for key, fn in jobs.items():
      times[key].append(
          sum(_run(fn, x) for _ in range(repeats[key])) / repeats[key])
  return times


def measure_memory_here(name, batch, seconds):
  """Peak RSS increase (MiB) of forward + backward; run in a fresh process."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  x = _waveforms(tf, batch, seconds)
  _, forward_backward = _frontend_functions(tf, name)
  small = _waveforms(tf, 1, 0.1)
  _run(forward_backward, small)  # Build and trace on a tiny input.
  before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
  for _ in range(3):
    _run(forward_backward, x)
  after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
  return (after - before) / 1024.


def measure_memory(args):
  memory = {}
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  env = dict(os.environ, PYTHONPATH=root, TF_CPP_MIN_LOG_LEVEL='3')
  for name in args.frontends:
    result = subprocess.run(
        [sys.executable, os.path.abspath(__file__), '--memory_of', name,
         '--batch', str(args.batch), '--seconds', str(args.seconds)],
        env=env, capture_output=True, text=True, check=True)
    memory[name] = json.loads(result.stdout.strip().splitlines()[-1])
  return memory


def table(args, round_times, memory):
  """The markdown table and the lines under it, from measure_times' rounds."""
  times = {key: statistics.median(values)
           for key, values in round_times.items()}

  def to_mel(name, job):
    return median_ratio(round_times[(name, job)],
                        round_times[('MelFilterbanks', job)])

  header = ['frontend', 'forward ms', 'fwd+bwd ms', 'fwd / mel fwd',
            'peak RSS MiB (fwd+bwd)']
  if args.train_step:
    header += ['train step ms', 'step / mel step']
    mel_step = times[('MelFilterbanks', 'train_step')]
  rows = []
  for name in args.frontends:
    row = [name, f'{1000 * times[(name, "forward")]:.1f}',
           f'{1000 * times[(name, "forward_backward")]:.1f}',
           f'{to_mel(name, "forward"):.1f}x',
           f'{memory[name]:.0f}']
    if args.train_step:
      row += [f'{1000 * times[(name, "train_step")]:.0f}',
              f'{to_mel(name, "train_step"):.2f}x']
    rows.append(row)
  lines = ['| ' + ' | '.join(header) + ' |',
           '|' + '---|' * len(header)]
  lines += ['| ' + ' | '.join(row) + ' |' for row in rows]
  if 'Leaf' in args.frontends and 'Leaf (direct)' in args.frontends:
    lines.append(
        '\nLeaf forward + backward: %.1fx faster than the direct method.' %
        median_ratio(round_times[('Leaf (direct)', 'forward_backward')],
                     round_times[('Leaf', 'forward_backward')]))
  if ('FFTs of Leaf', 'forward_backward') in times:
    floor = times[('FFTs of Leaf', 'forward_backward')]
    lines.append(
        'The FFTs of the exact FFT method alone take %.1f ms forward + '
        'backward (Leaf: %.1f ms); a training step with only them added to '
        "mel's would cost %.2fx mel's." %
        (1000 * floor, 1000 * times[('Leaf', 'forward_backward')],
         (mel_step + floor) / mel_step))
  return '\n'.join(lines)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--batch', type=int, default=8)
  parser.add_argument('--seconds', type=float, default=1.0)
  parser.add_argument('--rounds', type=int, default=7)
  parser.add_argument('--warmup', type=int, default=2,
                      help='untimed rounds first (the first traces); at '
                      'least 1')
  parser.add_argument('--min_ms', type=float, default=50.,
                      help='a job shorter than this runs several times per '
                      'round; its time is their mean')
  parser.add_argument('--train_step', default='true',
                      choices=['true', 'false'])
  parser.add_argument('--frontends', nargs='+', default=list(FRONTENDS),
                      metavar='ROW', help='rows to measure, default: all of '
                      f'{FRONTENDS}; MelFilterbanks is always included')
  parser.add_argument('--memory_of', help=argparse.SUPPRESS)
  args = parser.parse_args()
  import leaf_audio  # pylint: disable=g-import-not-at-top
  for label in args.frontends:
    if not hasattr(leaf_audio, label.replace(_DIRECT, '')):
      parser.error(f'--frontends: unknown row {label!r}; rows are frontend '
                   f'class names of leaf_audio, optionally with "{_DIRECT}".')
  if 'MelFilterbanks' not in args.frontends:
    args.frontends.insert(0, 'MelFilterbanks')
  args.train_step = args.train_step == 'true'
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
  if args.memory_of:
    print(json.dumps(measure_memory_here(args.memory_of, args.batch,
                                         args.seconds)))
    return
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  print(f'batch {args.batch} x {args.seconds:g} s at {SAMPLE_RATE} Hz, '
        f'{args.rounds} interleaved rounds after {args.warmup} untimed, '
        f'jobs under {args.min_ms:g} ms repeated within a round, medians; '
        f'TensorFlow '
        f'{tf.__version__}, {os.cpu_count()} CPUs, '
        f'TF_ENABLE_ONEDNN_OPTS={os.environ.get("TF_ENABLE_ONEDNN_OPTS", "unset")}')
  memory = measure_memory(args)
  times = measure_times(args)
  print(table(args, times, memory))


if __name__ == '__main__':
  main()
