"""Where a streamed hop's time goes in LiteRT on one thread (issue 22).

  python benchmarks/streaming_cost.py
  python benchmarks/streaming_cost.py --rounds 7 --seconds 2
  python benchmarks/streaming_cost.py --code before=/path/to/a/checkout

The model is the README's main recipe (default.gin: `Leaf()` with 40
filters, `ConvNet((16, 32, 64))`, mean pooling, 10 classes, no loudness
normalisation), untrained: the cost does not depend on the weights. Its
`stream_step` is exported at cadence k = 1 and k = 10
(`signatures.export_saved_model(..., cadence=k)`) and converted to
`.tflite`; the frontend's own step (`StreamingFrontend.to_tflite()`) is
converted beside them. Each is run by one LiteRT interpreter on one thread,
hop by hop over `--seconds` of noise from a zero state (Python's call
overhead included: it is what a Python client pays), in interleaved rounds:

  k = 1        the classifier on its 1 s window after every hop
  k = 10       the classifier after every 10th hop: the hops that run the
               classifier and the hops that do not, and per hop (one of the
               first and nine of the second, over ten)
  k = 10 buffer_hops
               the same with `StreamingClassifier(buffer_hops=True)`: the
               frontend too runs once per 10 hops, on the buffered hops,
               inside the step's conditional
  frontend     the frontend's step alone (filterbank, pooling, PCEN), one
               hop per call
  frontend, 10 hops direct / fft
               the frontend's step on 10 hops per call (what a k = 10
               stream runs once per 10 hops), filtering by direct
               convolution or by FFT (`StreamingFrontend(filter_method=)`),
               per hop

`--code name=path` converts the same models with another checkout's code
(e.g. `before=` the tree before a change) in a subprocess; every file, this
tree's and the others', is then timed in the same interleaved rounds, so
that before and after are compared side by side (rows a checkout cannot
build are left out).

Each cell is the median over rounds of the median call in a round (medians,
not means, so that a call preempted on a shared machine does not count);
the fraction is of the hop's 10 ms (real time).
"""

import argparse
import inspect
import os
import pickle
import statistics
import subprocess
import sys
import tempfile
import time

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if __name__ == '__main__' and '--convert_to' in sys.argv:
  # A subprocess converting with another checkout's code (--code).
  sys.path.insert(0, sys.argv[sys.argv.index('--code_root') + 1])
else:
  sys.path.insert(0, _ROOT)

import numpy as np  # pylint: disable=g-import-not-at-top,wrong-import-position

HOP_SAMPLES = 160
HOP_SECONDS = 0.01
LABELS = [f'class_{i}' for i in range(10)]


def convert(folder):
  """{name: .tflite bytes}: 'k1' and 'k10' streams, 'frontend' step."""
  import keras  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  import leaf_audio  # pylint: disable=g-import-not-at-top
  from leaf_audio import streaming  # pylint: disable=g-import-not-at-top
  from experiments import models  # pylint: disable=g-import-not-at-top
  from experiments.serving import converters  # pylint: disable=g-import-not-at-top
  from experiments.serving import signatures  # pylint: disable=g-import-not-at-top
  keras.utils.set_random_seed(0)
  model = models.AudioClassifier(
      leaf_audio.Leaf(), models.ConvNet((16, 32, 64), dropout=0.0),
      num_outputs=len(LABELS), pooling='mean', normalization=None)
  model.build((None, 16000))
  windowed = models.WindowedClassifier(model, 16000)
  files = {}
  for cadence in (1, 10):
    export_dir = os.path.join(folder, f'k{cadence}')
    signatures.export_saved_model(windowed, LABELS, 16000, 16000, False,
                                  export_dir, cadence=cadence)
    path = os.path.join(folder, f'k{cadence}.tflite')
    converters.write_streaming_tflite(export_dir, path)
    with open(path, 'rb') as file:
      files[f'k{cadence}'] = file.read()
  files['frontend'] = streaming.StreamingFrontend(model.frontend).to_tflite()
  from experiments.serving import streaming_signatures  # pylint: disable=g-import-not-at-top
  if 'buffer_hops' in inspect.signature(
      streaming_signatures.StreamingClassifier).parameters:
    stream = streaming_signatures.StreamingClassifier(
        windowed, 16000, False, cadence=10, buffer_hops=True)
    archive = keras.export.ExportArchive()
    archive.track(windowed)
    archive.add_endpoint('stream_step', stream.step_signature(1))
    archive.write_out(os.path.join(folder, 'buffered'), verbose=False)
    converter = tf.lite.TFLiteConverter.from_saved_model(
        os.path.join(folder, 'buffered'), signature_keys=['stream_step'])
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    files['k10 buffered'] = converter.convert()
  if 'filter_method' in inspect.signature(
      streaming.StreamingFrontend).parameters:
    for method in ('direct', 'fft'):
      files[f'frontend x10 {method}'] = streaming.StreamingFrontend(
          model.frontend, filter_method=method).to_tflite(hops=10)
  return files


def convert_with(code_root):
  """convert() run by another checkout's code, in a subprocess."""
  with tempfile.TemporaryDirectory() as folder:
    output = os.path.join(folder, 'files.pickle')
    environment = dict(os.environ, PYTHONPATH=code_root)
    subprocess.run([sys.executable, os.path.abspath(__file__),
                    '--convert_to', output, '--code_root', code_root],
                   check=True, env=environment, cwd=code_root)
    with open(output, 'rb') as file:
      return pickle.load(file)


class _Runner:
  """One .tflite step fed hop by hop, its state outputs fed back."""

  def __init__(self, content, signature, state_prefix, output_of,
               hops_per_call=1):
    from ai_edge_litert import interpreter as litert  # pylint: disable=g-import-not-at-top
    self._runner = litert.Interpreter(
        model_content=content, num_threads=1).get_signature_runner(signature)
    self._names = [name for name in self._runner.get_input_details()
                   if name.startswith(state_prefix)]
    self._output_of = output_of
    self._samples = hops_per_call * HOP_SAMPLES
    self._initial = {
        name: np.zeros(detail['shape'], detail['dtype'])
        for name, detail in self._runner.get_input_details().items()
        if name in self._names}

  def run(self, audio):
    """Seconds per call, one per `hops_per_call` hops of audio [samples]."""
    state = dict(self._initial)
    times = []
    for start in range(0, len(audio) - self._samples + 1, self._samples):
      hop = audio[np.newaxis, start:start + self._samples]
      begin = time.perf_counter()
      outputs = self._runner(samples=hop, **state)
      state = {name: outputs[self._output_of(name)] for name in self._names}
      times.append(time.perf_counter() - begin)
    return times


def measure(codes, rounds, seconds):
  """{code: {row: median seconds per hop}} over interleaved rounds.

  codes: {code name: {file name: .tflite bytes}} (`convert`).
  """
  stream_output = lambda name: name.replace('state_in_', 'state_out_')
  runners = {}
  for code, files in codes.items():
    for name, content in files.items():
      if name.startswith('k'):
        runner = _Runner(content, 'stream_step', 'state_in_', stream_output)
      else:
        runner = _Runner(content, 'step', 'state_', lambda n: n,
                         10 if 'x10' in name else 1)
      runners[(code, name)] = runner
  audio = (0.1 * np.random.default_rng(0).standard_normal(
      int(seconds * 16000))).astype(np.float32)
  for runner in runners.values():
    runner.run(audio[:16000])  # warm-up
  rows = {}
  for _ in range(rounds):
    for (code, name), runner in runners.items():
      times = runner.run(audio)
      if name in ('k10', 'k10 buffered'):
        # Hops 10, 20, ... (counted from 1) run the classifier.
        rows.setdefault((code, name + ' classifier hops'), []).append(
            statistics.median(times[9::10]))
        rows.setdefault((code, name + ' other hops'), []).append(
            statistics.median(
                [t for index, t in enumerate(times) if index % 10 != 9]))
      elif 'x10' in name:
        rows.setdefault((code, name), []).append(statistics.median(times) /
                                                 10)
      else:
        rows.setdefault((code, name), []).append(statistics.median(times))
  results = {}
  for (code, key), values in rows.items():
    results.setdefault(code, {})[key] = statistics.median(values)
  for result in results.values():
    for name in ('k10', 'k10 buffered'):
      if name + ' other hops' in result:
        result[name] = (result[name + ' classifier hops'] +
                        9 * result[name + ' other hops']) / 10
  return results


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--rounds', type=int, default=5)
  parser.add_argument('--seconds', type=float, default=2.0,
                      help='audio streamed per round and runner')
  parser.add_argument('--code', action='append', default=[],
                      metavar='NAME=PATH',
                      help='also convert with the checkout at PATH')
  parser.add_argument('--convert_to', help=argparse.SUPPRESS)
  parser.add_argument('--code_root', help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.convert_to:
    with tempfile.TemporaryDirectory() as folder:
      files = convert(folder)
    with open(args.convert_to, 'wb') as file:
      pickle.dump(files, file)
    return
  codes = {}
  for entry in args.code:
    name, _, path = entry.partition('=')
    if not name or not os.path.isdir(path):
      parser.error(f'--code takes NAME=PATH to a checkout; got {entry!r}')
    codes[name] = convert_with(os.path.abspath(path))
  with tempfile.TemporaryDirectory() as folder:
    codes['this tree' if codes else ''] = convert(folder)
  results = measure(codes, args.rounds, args.seconds)
  print(f'main recipe model, LiteRT, 1 thread, {args.seconds:g} s streamed '
        f'per round; median of {args.rounds} interleaved rounds\n')
  for code, result in results.items():
    if code:
      print(f'code: {code}')
    print(f'{"":<38}{"us per hop":>12}{"of real time":>14}')
    for key, title in (
        ('k1', 'stream k = 1, per hop'),
        ('k10', 'stream k = 10, per hop'),
        ('k10 classifier hops', '  k = 10, hops with classifier'),
        ('k10 other hops', '  k = 10, other hops'),
        ('k10 buffered', 'stream k = 10 buffer_hops, per hop'),
        ('k10 buffered classifier hops', '  hops with frontend + classifier'),
        ('k10 buffered other hops', '  other hops'),
        ('frontend', 'frontend step alone, 1 hop per call'),
        ('frontend x10 direct', 'frontend, 10 hops per call, direct'),
        ('frontend x10 fft', 'frontend, 10 hops per call, fft')):
      if key in result:
        print(f'{title:<38}{result[key] * 1e6:>12.0f}'
              f'{result[key] / HOP_SECONDS:>14.1%}')
    print()


if __name__ == '__main__':
  main()
