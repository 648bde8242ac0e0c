"""Trains every frontend the same way on the embedded tasks and tabulates.

  python -m experiments.compare_frontends                 # everything
  python -m experiments.compare_frontends --frontends=mel,efficient_leaf \
      --tasks=leaf_synthetic_fine --seeds=0               # a subset

Each run is `experiments.train` with gin_configs/default.gin (small ConvNet,
Adam at 3e-3, batch 16) + gin_configs/<frontend>.gin +
gin_configs/tasks/<task>.gin, `train.seed` = the seed, --epochs x
--steps_per_epoch steps, validated after each epoch on --eval_split, a
slice of the validation split that this script carves (never the test
split), which picks the chosen epoch; the chosen and the last models are
then tested on the whole test split. Runs live in
--runs_dir/<task>/<frontend>/seed<seed>; a finished run (its compare.json
records the same settings) is not run again, so subsets add up, and a killed
run resumes. After each run the results section of --output (between its
BEGIN_MARK and END_MARK lines) is rewritten from every finished run under
--runs_dir: per frontend and task, the validation accuracy of the last epoch
and of the chosen epoch, and the test accuracy of both models, each as mean
+- standard deviation (min-max) over seeds, and the median wall-clock time
of a run (training, validation and test, on this machine).
"""

import csv
import json
import pathlib
import statistics
import subprocess
import sys
import time

from absl import app
from absl import flags

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
FRONTENDS = {
    'leaf': 'LEAF',
    'efficient_leaf': 'EfficientLeaf',
    'sincnet': 'SincNet',
    'tfbanks': 'TimeDomainFilterbanks',
    'mel': 'mel filterbanks',
}
TASKS = {
    'leaf_synthetic': 'LeafSynthetic (embedded, 10 classes)',
    'leaf_synthetic_fine': 'LeafSyntheticFine (low tones 25 Hz apart, '
                           'syllables > 4 kHz)',
}

_FRONTENDS = flags.DEFINE_list('frontends', list(FRONTENDS),
                               'gin_configs/<name>.gin frontends to train.')
_TASKS = flags.DEFINE_list('tasks', list(TASKS),
                           'gin_configs/tasks/<name>.gin tasks.')
_SEEDS = flags.DEFINE_list('seeds', ['0', '1', '2'], 'train.seed values.')
_EPOCHS = flags.DEFINE_integer('epochs', 2, 'train.num_epochs.')
_STEPS = flags.DEFINE_integer('steps_per_epoch', 40,
                              'train.steps_per_epoch (batches of 16).')
_EVAL_SPLIT = flags.DEFINE_string(
    'eval_split', 'validation[:100]',
    'load_dataset.eval_split: the clips that pick the best epoch.')
_RUNS_DIR = flags.DEFINE_string('runs_dir', 'runs/compare',
                                'Where the runs are kept.')
_OUTPUT = flags.DEFINE_string(
    'output', 'docs/frontend_comparison.md',
    'The page whose results section is rewritten (between the marks).')


def runs_dir():
  path = pathlib.Path(_RUNS_DIR.value)
  return path if path.is_absolute() else REPO_ROOT / path


def run_settings():
  """What makes two runs the same, besides task, frontend and seed."""
  return {'epochs': _EPOCHS.value, 'steps_per_epoch': _STEPS.value,
          'eval_split': _EVAL_SPLIT.value, 'base': 'gin_configs/default.gin'}


def train_command(task, frontend, seed, model_dir):
  configs = ['gin_configs/default.gin', f'gin_configs/{frontend}.gin',
             f'gin_configs/tasks/{task}.gin']
  bindings = [
      f'train.seed = {seed}',
      f'train.num_epochs = {_EPOCHS.value}',
      f'train.steps_per_epoch = {_STEPS.value}',
      f'load_dataset.eval_split = {_EVAL_SPLIT.value!r}',
      'train.export = False',
      'train.verbose = 2',
  ]
  return ([sys.executable, '-m', 'experiments.train'] +
          [f'--gin_config={c}' for c in configs] +
          [f'--gin_bindings={b}' for b in bindings] +
          [f'--model_dir={model_dir}'])


def run_one(task, frontend, seed):
  """Trains one run unless it is finished; returns its record."""
  model_dir = runs_dir() / task / frontend / f'seed{seed}'
  record_path = model_dir / 'compare.json'
  settings = dict(run_settings(), task=task, frontend=frontend, seed=seed)
  if record_path.exists():
    record = json.loads(record_path.read_text())
    if record['settings'] == settings:
      print(f'{task} / {frontend} / seed {seed}: done before, '
            f'accuracy {record["test_metrics"]["accuracy"]:.3f}')
      return record
  print(f'{task} / {frontend} / seed {seed}: training ...', flush=True)
  start = time.time()
  result = subprocess.run(train_command(task, frontend, seed, model_dir),
                          cwd=REPO_ROOT, capture_output=True, text=True)
  seconds = time.time() - start
  if result.returncode != 0:
    sys.exit(f'{task} / {frontend} / seed {seed} failed:\n'
             f'{result.stderr[-3000:]}')
  record = {
      'settings': settings,
      'seconds': seconds,
      'test_metrics': json.loads((model_dir / 'test_metrics.json').read_text()),
      'validation': validation_accuracies(model_dir / 'metrics.csv'),
  }
  record_path.write_text(json.dumps(record, indent=2, sort_keys=True))
  print(f'  accuracy {record["test_metrics"]["accuracy"]:.3f} in '
        f'{seconds:.0f} s', flush=True)
  return record


def validation_accuracies(metrics_csv):
  """{'last': val_accuracy of the last epoch, 'chosen': the highest one,
  'chosen_epoch': its 1-based epoch} from a run's metrics.csv."""
  with open(metrics_csv, newline='') as file:
    values = [float(row['val_accuracy']) for row in csv.DictReader(file)]
  best = max(range(len(values)), key=lambda i: (values[i], -i))
  return {'last': values[-1], 'chosen': values[best], 'chosen_epoch': best + 1}


def finished_records():
  return [json.loads(path.read_text())
          for path in sorted(runs_dir().glob('*/*/seed*/compare.json'))]


def _summary(values):
  """'mean ± std (min-max)' of percentages, or a dash."""
  if not values:
    return '—'
  spread = statistics.stdev(values) if len(values) > 1 else 0.
  return (f'{statistics.mean(values):.1f} ± {spread:.1f} '
          f'({min(values):.1f}-{max(values):.1f})')


# Columns: header -> the accuracy (0-1) of a record, or None when absent.
COLUMNS = {
    'validation, last epoch': lambda r: r.get('validation', {}).get('last'),
    'validation, chosen epoch': lambda r: r.get('validation', {}).get(
        'chosen'),
    'test, chosen model': lambda r: r['test_metrics'].get('accuracy'),
    'test, last model': lambda r: r['test_metrics'].get('last', {}).get(
        'accuracy'),
}


def results_table(records):
  """Markdown: one row per frontend and task; accuracy in % over seeds."""
  cells = {}
  for record in records:
    settings = record['settings']
    key = (settings['frontend'], settings['task'])
    cells.setdefault(key, []).append(record)
  def order(key):
    frontend, task = key
    return (list(TASKS).index(task) if task in TASKS else len(TASKS), task,
            list(FRONTENDS).index(frontend) if frontend in FRONTENDS else
            len(FRONTENDS), frontend)
  header = ['task', 'frontend', 'seeds'] + list(COLUMNS) + ['median run time']
  lines = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
  for key in sorted(cells, key=order):
    frontend, task = key
    runs = cells[key]
    row = [task, FRONTENDS.get(frontend, frontend),
           ','.join(str(r['settings']['seed']) for r in runs)]
    for value_of in COLUMNS.values():
      values = [100 * value_of(r) for r in runs if value_of(r) is not None]
      row.append(_summary(values))
    row.append(f'{statistics.median(r["seconds"] for r in runs) / 60:.1f} '
               'min')
    lines.append('| ' + ' | '.join(row) + ' |')
  return '\n'.join(lines)


BEGIN_MARK = ('<!-- Results: written by `python -m '
              'experiments.compare_frontends`; do not edit by hand. -->')
END_MARK = '<!-- End of results. -->'


def results_section(records):
  """The markdown between BEGIN_MARK and END_MARK."""
  if not records:
    return ('*Not run yet: no finished run under the runs folder. The '
            'command above fills this table.*')
  settings = sorted({
      json.dumps({k: v for k, v in r['settings'].items()
                  if k not in ('task', 'frontend', 'seed')}, sort_keys=True)
      for r in records})
  return '\n'.join([
      'Accuracy in % (full clips, 1 s windows averaged per clip), mean ± '
      'standard deviation over seeds (min-max): on the validation slice '
      '(--eval_split) after the last epoch and after the chosen epoch (the '
      'best on that slice), and on the whole test split (500 clips) for the '
      'chosen and the last model; and the median wall-clock time of one run '
      'on the machine that ran it.',
      '',
      results_table(records),
      '',
      'Run settings: ' + '; '.join(f'`{s}`' for s in settings) + '.',
  ])


def write_results(records):
  """Rewrites the results section of the --output page."""
  output = pathlib.Path(_OUTPUT.value)
  output = output if output.is_absolute() else REPO_ROOT / output
  text = output.read_text() if output.exists() else f'{BEGIN_MARK}\n{END_MARK}\n'
  if BEGIN_MARK not in text or END_MARK not in text:
    sys.exit(f'error: {output} has no results section; it needs the lines\n'
             f'{BEGIN_MARK}\n{END_MARK}')
  before, rest = text.split(BEGIN_MARK, 1)
  after = rest.split(END_MARK, 1)[1]
  output.write_text(f'{before}{BEGIN_MARK}\n{results_section(records)}\n'
                    f'{END_MARK}{after}')


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  for name, known, kind in ((_FRONTENDS.value, 'gin_configs/{}.gin',
                             'frontend'),
                            (_TASKS.value, 'gin_configs/tasks/{}.gin',
                             'task')):
    for item in name:
      if not (REPO_ROOT / known.format(item)).exists():
        sys.exit(f'error: unknown {kind} {item!r}: '
                 f'{known.format(item)} does not exist.')
  start = time.time()
  for task in _TASKS.value:
    for frontend in _FRONTENDS.value:
      for seed in _SEEDS.value:
        run_one(task, frontend, int(seed))
        write_results(finished_records())
  print(f'All runs in {(time.time() - start) / 60:.1f} min; results in '
        f'{_OUTPUT.value}')


if __name__ == '__main__':
  app.run(main)
