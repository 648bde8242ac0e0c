"""LEAF with and without precise BatchNorm, seed by seed (issue 17).

Usage (from the repository root):

  python benchmarks/precise_batch_norm_runs.py --epochs 3
  python benchmarks/make_spoken_words.py --root runs/spoken_words_960
  python benchmarks/precise_batch_norm_runs.py --epochs 10 \\
      --task runs/spoken_words_960

`--task` is an embedded task (a file in gin_configs/tasks/) or a WAV folder
(trained with gin_configs/tasks/folder.gin). Every run trains default.gin's
LEAF + ConvNet with `train.precise_batch_norm_batches` = each of
`--precise_batch_norm_batches` (0: moving averages, "before"; 16: "after")
and each seed, into runs/precise_batch_norm/<task>_<epochs>_epochs/. For each
run it prints one JSON line: the validation accuracy per epoch, the last and
the best epoch's, the test accuracy of the chosen and of the last model, and
the accuracy of last.keras on `--crops` training crops in training mode
(batch statistics) and inference mode (stored statistics). `--gin_bindings`
adds bindings to every run (write them into a folder named with `--name`,
e.g. `--name _frontend_lr_0.1`). All lines are
also written to results.json in the output folder. Finished runs (with a
test_metrics.json) are summarized again, not retrained.
"""
import argparse
import csv
import json
import os
import pathlib
import subprocess
import sys

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parent.parent
CLIP_SAMPLES = 16000


def task_gin(task):
  """Returns (gin config files, gin bindings) that select `task`."""
  embedded = ROOT / 'gin_configs' / 'tasks' / f'{task}.gin'
  if embedded.exists():
    return ['gin_configs/default.gin', f'gin_configs/tasks/{task}.gin'], []
  folder = pathlib.Path(task).resolve()
  if not folder.is_dir():
    raise SystemExit(f'--task expects an embedded task (a file in '
                     f'gin_configs/tasks/) or a WAV folder; got {task!r}')
  return (['gin_configs/default.gin', 'gin_configs/tasks/folder.gin'],
          [f"load_dataset.folder = '{folder}'"])


def train(task, epochs, seed, batches, model_dir, extra_bindings):
  """Trains one model into model_dir with the training binary."""
  configs, bindings = task_gin(task)
  bindings = bindings + list(extra_bindings) + [
      f'train.seed = {seed}',
      f'train.precise_batch_norm_batches = {batches}',
      f'train.num_epochs = {epochs}',
      'train.export = False',
      'train.verbose = 2',
  ]
  command = [sys.executable, '-m', 'experiments.train']
  command += [f'--gin_config={config}' for config in configs]
  command += [f'--gin_bindings={binding}' for binding in bindings]
  command += [f'--model_dir={model_dir}']
  result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
  if result.returncode != 0:
    raise SystemExit(f'training failed ({model_dir}):\n'
                     f'{result.stderr[-3000:]}')


def training_crops(task, count):
  """Returns [count, 16000] training crops and their [count] labels."""
  import gin
  from experiments import configurables  # pylint: disable=unused-import
  from experiments import gin_files as configuration
  from experiments.training import job as training  # pylint: disable=unused-import
  from experiments.data import pipeline
  configs, bindings = task_gin(task)
  gin.clear_config()
  configuration.parse(configs, bindings)
  splits, _ = pipeline.load_dataset()
  gin.clear_config()
  examples = list(splits['train'].take(count).as_numpy_iterator())
  audio = np.stack([example['audio'][:CLIP_SAMPLES] for example in examples])
  labels = np.array([example['label'] for example in examples])
  return audio, labels


def mode_accuracies(model_path, audio, labels, batch_size=32):
  """Accuracy of a saved model in training and in inference mode."""
  import keras
  model = keras.saving.load_model(model_path)
  accuracies = {}
  for training in (True, False):
    logits = np.concatenate([
        model(audio[start:start + batch_size], training=training)
        for start in range(0, len(audio), batch_size)])
    accuracies[training] = float(np.mean(np.argmax(logits, -1) == labels))
  return accuracies


def summarize(model_dir, batches, seed, crops):
  """One result record for a finished run."""
  with open(model_dir / 'metrics.csv') as metrics_file:
    rows = list(csv.DictReader(metrics_file))
  validation = [float(row['val_accuracy']) for row in rows]
  test = json.loads((model_dir / 'test_metrics.json').read_text())
  accuracies = mode_accuracies(model_dir / 'last.keras', *crops)
  return dict(
      precise_bn=batches, seed=seed, val=validation,
      val_last=validation[-1], val_best=max(validation),
      chosen_epoch=test['chosen_epoch'], test_chosen=test['accuracy'],
      test_last=test['last']['accuracy'], train_mode=accuracies[True],
      inference_mode=accuracies[False])


def _short(value):
  """0.8939 -> '.894', 1.0 -> '1'."""
  return '1' if value == 1 else f'{value:.3f}'.lstrip('0')


def markdown_table(results):
  """The records as the rows of benchmarks/README.md's table."""
  lines = ['| precise BN | seed | validation accuracy per epoch | '
           'last / best epoch | test chosen / last | train / inference mode |',
           '|---|---|---|---|---|---|']
  for record in results:
    lines.append('| {} | {} | {} | {} / {} | {} / {} | {} / {} |'.format(
        record['precise_bn'] or 'off', record['seed'],
        ' '.join(_short(value) for value in record['val']),
        _short(record['val_last']), _short(record['val_best']),
        _short(record['test_chosen']), _short(record['test_last']),
        _short(record['train_mode']), _short(record['inference_mode'])))
  return '\n'.join(lines)


def main():
  parser = argparse.ArgumentParser(
      description=__doc__.split('\n')[0],
      formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
  parser.add_argument('--task', default='leaf_synthetic_fine',
                      help='embedded task name or WAV folder')
  parser.add_argument('--epochs', type=int, default=3)
  parser.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
  parser.add_argument('--precise_batch_norm_batches', type=int, nargs='+',
                      default=[0, 16])
  parser.add_argument('--crops', type=int, default=256,
                      help='training crops for the train/inference gap')
  parser.add_argument('--gin_bindings', nargs='*', default=[],
                      help='more bindings for every run, e.g. '
                      '"train.frontend_learning_rate_multiplier = 0.1"')
  parser.add_argument('--name', default='',
                      help='suffix of the output folder (for --gin_bindings)')
  args = parser.parse_args()
  if pathlib.Path(args.task).is_dir():
    args.task = str(pathlib.Path(args.task).resolve())
  os.chdir(ROOT)  # The gin files include each other by relative paths.
  task_name = pathlib.Path(args.task).name
  out = (ROOT / 'runs' / 'precise_batch_norm' /
         f'{task_name}_{args.epochs}_epochs{args.name}')
  crops = None
  results = []
  for seed in args.seeds:
    for batches in args.precise_batch_norm_batches:
      model_dir = out / f'pbn{batches}' / f'seed{seed}'
      if not (model_dir / 'test_metrics.json').exists():
        train(args.task, args.epochs, seed, batches, model_dir,
              args.gin_bindings)
      if crops is None:
        crops = training_crops(args.task, args.crops)
      record = summarize(model_dir, batches, seed, crops)
      results.append(record)
      print(json.dumps(record), flush=True)
  out.mkdir(parents=True, exist_ok=True)
  (out / 'results.json').write_text(json.dumps(results, indent=1))
  print(markdown_table(results))


if __name__ == '__main__':
  main()
