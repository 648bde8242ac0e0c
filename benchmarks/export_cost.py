"""What an export costs: the SavedModel, then each converted file.

  python benchmarks/export_cost.py
  python benchmarks/export_cost.py --rounds 5 --code before=/path/to/a/checkout

The model is the README's main recipe (default.gin: `Leaf()` with 40
filters, `ConvNet((16, 32, 64))`, mean pooling, 10 classes, no loudness
normalisation), untrained: the cost does not depend on the weights. It is
saved as a training run (best.keras, run.json), then exported as
`python -m experiments.export --tflite=... --onnx=...` does
(`exporting.export_run`), in a fresh Python process per export, so that
every export pays its own tracing. Rows:

  SavedModel        experiments.export's SavedModel (serving_default,
                    serve_wav, stream_step, and the `tflite` and `onnx`
                    signatures the converters take)
  .tflite, .onnx    each offline file, converted from that SavedModel
  variables (MB)    the size of the SavedModel's variables folder

`--code name=path` exports with another checkout's code too (e.g. `before=`
the tree before a change). Rounds are interleaved: each round runs one
export per checkout, so that before and after are compared side by side on
a shared machine. Each cell is the median over rounds (seconds of wall
time; medians, so that a round preempted by another process does not
count), and the last column the ratio to the first checkout.
"""

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time


def export_once(folder):
  """Saves the main recipe's model as a run in `folder` and exports it:
  {row: seconds or MB}."""
  from experiments.serving import exporting  # pylint: disable=g-import-not-at-top
  # benchmarks/runtimes.py, beside this script.
  import runtimes  # pylint: disable=g-import-not-at-top
  folder = pathlib.Path(folder)
  _, model_dir = runtimes.save_main_recipe_run(str(folder))
  times = []

  def report(message):
    times.append((message.split(' written')[0], time.perf_counter()))

  start = time.perf_counter()
  written = exporting.export_run(model_dir, tflite=folder / 'model.tflite',
                                 onnx=folder / 'model.onnx', report=report)
  rows, previous = {}, start
  for message, when in times:
    name = {'SavedModel': 'SavedModel', 'TFLite model': '.tflite',
            'ONNX model': '.onnx'}[message]
    rows[name] = when - previous
    previous = when
  variables = pathlib.Path(written['saved_model']) / 'variables'
  rows['variables (MB)'] = sum(
      path.stat().st_size for path in variables.iterdir()) / 1e6
  return rows


def export_with(code_root):
  """export_once() run by `code_root`'s code in a fresh process."""
  with tempfile.TemporaryDirectory() as folder:
    environment = dict(os.environ, PYTHONPATH=code_root,
                       TF_CPP_MIN_LOG_LEVEL='3')
    result = subprocess.run(
        [sys.executable, os.path.abspath(__file__), '--export_in', folder],
        check=True, env=environment, cwd=code_root, capture_output=True,
        text=True)
  return json.loads(result.stdout.strip().splitlines()[-1])


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--rounds', type=int, default=3,
                      help='interleaved rounds (default 3)')
  parser.add_argument('--code', action='append', default=[],
                      help='NAME=PATH: another checkout to export with')
  parser.add_argument('--export_in', help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.export_in:
    print(json.dumps(export_once(args.export_in)))
    return
  if args.rounds < 1:
    parser.error(f'--rounds must be at least 1; got {args.rounds}')
  codes = {}
  for entry in args.code:
    name, _, path = entry.partition('=')
    if not name or not path or not os.path.isdir(path):
      parser.error(f'--code takes NAME=PATH to a checkout; got {entry!r}')
    codes[name] = os.path.abspath(path)
  codes['this tree'] = str(pathlib.Path(__file__).resolve().parents[1])
  samples = {name: {} for name in codes}
  for _ in range(args.rounds):
    for name, root in codes.items():
      for row, value in export_with(root).items():
        samples[name].setdefault(row, []).append(value)
  first = next(iter(codes))
  rows = list(samples[first])
  print(f'Main recipe model (untrained), median of {args.rounds} interleaved '
        'rounds; seconds unless stated\n')
  print(f'| {"row":<15} | ' + ' | '.join(f'{name:>10}' for name in codes) +
        (f' | ratio to {first}' if len(codes) > 1 else '') + ' |')
  print('|' + '---|' * (len(codes) + 1 + (len(codes) > 1)))
  for row in rows:
    medians = [statistics.median(samples[name][row]) for name in codes]
    cells = ' | '.join(f'{value:>10.2f}' for value in medians)
    ratios = ' / '.join(f'{value / medians[0]:.2f}' for value in medians[1:])
    print(f'| {row:<15} | {cells}' + (f' | {ratios}' if ratios else '') +
          ' |')


if __name__ == '__main__':
  main()
