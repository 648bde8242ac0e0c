"""The domain-shift benchmark: train on one recording set-up, test on another.

Usage (from the repository root; the protocol is in benchmarks/README.md,
"Domain shift"):

  python benchmarks/make_domain_shift.py --root runs/domain_shift
  python benchmarks/domain_shift.py --task runs/domain_shift        # grid
  python benchmarks/domain_shift.py --task runs/domain_shift \\
      --runs leaf/base mel/base --seeds 0                            # a part
  python benchmarks/domain_shift.py --table                          # table

Each run trains gin_configs/default.gin + gin_configs/tasks/folder.gin
(--epochs, default 5, x 40 steps of 16 clips, precise BatchNorm) with one
frontend and one recipe, then evaluates best.keras (chosen on the carved
validation split, training voices) and last.keras on every test clip, per test set-up (the
file name's first part), and on the test clips scaled by 0.1, 0.3, 1 and 3.
One JSON file per run in runs/domain_shift_results/ (a run whose file
exists is not retrained), so the grid can be run in parts and in any order;
`--table` prints the markdown table of whatever results exist.
"""
import argparse
import collections
import json
import os
import pathlib
import subprocess
import sys

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parent.parent
RESULTS = ROOT / 'runs' / 'domain_shift_results'
FRONTENDS = {
    'leaf': [],
    'mel': ['gin_configs/mel.gin'],
    'efficient_leaf': ['gin_configs/efficient_leaf.gin'],
}
NO_NORMALIZATION = ['AudioClassifier.normalization = None']
NORMALIZATION = ['AudioClassifier.normalization = @LoudnessNormalization()']
NO_AUGMENTATION = [
    f'WaveformAugmentation.{name}_probability = 0.0' for name in (
        'gain', 'shift', 'noise', 'speed', 'microphone', 'room')]
# LEAF's pre-compression floor of the recipes before 'aug_lowfloor' (the
# frontend's default; default.gin now lowers it).
FLOOR = ['leaf_audio.Leaf.pre_compression_floor = 1e-5']
AUGMENTATION = ['gin_configs/augmentation.gin']
# recipe -> (gin files after the task, bindings); explicit, so that the
# recipes mean the same whatever the task files default to.
RECIPES = {
    # The recipe before this benchmark: the clip-level loudness
    # normalisation, no augmentation.
    'base': ([], NORMALIZATION + NO_AUGMENTATION + FLOOR),
    # Augmentation (gin_configs/augmentation.gin), no loudness normalisation.
    'aug': (['gin_configs/augmentation.gin'], NO_NORMALIZATION + FLOOR),
    # Augmentation with the loudness normalisation kept.
    'aug_norm': (['gin_configs/augmentation.gin'], NORMALIZATION + FLOOR),
    # Only the random gain, no loudness normalisation.
    'gain_only': ([], NO_NORMALIZATION + NO_AUGMENTATION[1:] + FLOOR + [
        'WaveformAugmentation.gain_probability = 1.0']),
    # LEAF only: 'aug' with the pre-compression floor lowered from 1e-5 to
    # 1e-12 (sPCEN's own floor), so that quiet recordings are not flattened.
    'aug_lowfloor': (['gin_configs/augmentation.gin'], NO_NORMALIZATION + [
        'leaf_audio.Leaf.pre_compression_floor = 1e-12']),
    # LEAF only: per-stage control, with 'aug'.
    'aug_pcen_only': (AUGMENTATION, NO_NORMALIZATION + FLOOR + [
        "train.frontend_stage_learning_rates = {'preemphasis': 0, "
        "'filterbank': 0, 'pooling': 0}"]),
    'aug_fixed_filters': (AUGMENTATION, NO_NORMALIZATION + FLOOR + [
        "train.frontend_stage_learning_rates = {'filterbank': 0}"]),
    'aug_fixed_pcen': (AUGMENTATION, NO_NORMALIZATION + FLOOR + [
        "train.frontend_stage_learning_rates = {'compression': 0}"]),
}
CORE = [f'{frontend}/{recipe}' for recipe in ('base', 'aug')
        for frontend in FRONTENDS]
SCALES = (0.1, 0.3, 1.0, 3.0)


def run_name(run, seed, epochs):
  return f"{run.replace('/', '_')}_e{epochs}_seed{seed}"


def train(task, run, seed, epochs, model_dir):
  frontend, recipe = run.split('/')
  files, bindings = RECIPES[recipe]
  configs = (['gin_configs/default.gin'] + FRONTENDS[frontend] +
             ['gin_configs/tasks/folder.gin'] + files)
  bindings = [f"load_dataset.folder = '{task}'"] + bindings + [
      f'train.seed = {seed}', f'train.num_epochs = {epochs}',
      'train.steps_per_epoch = 40', 'train.export = False',
      'train.verbose = 2']
  command = [sys.executable, '-m', 'experiments.train']
  command += [f'--gin_config={config}' for config in configs]
  command += [f'--gin_bindings={binding}' for binding in bindings]
  command += [f'--model_dir={model_dir}']
  result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
  if result.returncode != 0:
    raise SystemExit(f'training failed ({model_dir}):\n'
                     f'{result.stderr[-3000:]}')


def test_clips(task):
  """(audio [n, 16000], labels [n], set-ups [n]) of task/test/."""
  from scipy.io import wavfile
  words = sorted(p.name for p in (pathlib.Path(task) / 'test').iterdir())
  audio, labels, setups = [], [], []
  for label, word in enumerate(words):
    for path in sorted((pathlib.Path(task) / 'test' / word).glob('*.wav')):
      _, samples = wavfile.read(path)
      audio.append(samples.astype(np.float32)[:16000] / 32768.0)
      labels.append(label)
      setups.append(path.name.split('_')[0])
  return np.stack(audio), np.array(labels), np.array(setups)


def load(model_path):
  import keras
  from experiments import models  # pylint: disable=unused-import
  return keras.saving.load_model(model_path)


def accuracies(model_path, audio, labels, setups):
  model = load(model_path)

  def predict(x):
    return np.concatenate([np.argmax(model(x[i:i + 64]), -1)
                           for i in range(0, len(x), 64)])

  correct = predict(audio) == labels
  result = {'all': float(correct.mean())}
  for setup in sorted(set(setups)):
    result[setup] = float(correct[setups == setup].mean())
  for scale in SCALES:
    result[f'x{scale:g}'] = float(np.mean(predict(audio * scale) == labels))
  return result


def compression_parameters(model_path):
  """Mean learned sPCEN parameters of a LEAF model (None otherwise)."""
  model = load(model_path)
  compression = getattr(model.frontend, 'compression', None)
  if not hasattr(compression, 'effective_parameters'):
    return None
  return {name: float(np.mean(value)) for name, value in
          compression.effective_parameters().items()}


def level_sensitivity(model_path, audio):
  """How much the features the encoder sees move when the level changes.

  For factors 0.1 and 3: the mean absolute change of the frontend's output
  (after the model's normalisation, if any) between the clip at that factor
  and at 1, over the output's standard deviation at 1; 0 is level
  invariant. The first 64 test clips.
  """
  model = load(model_path)
  audio = audio[:64]

  def features(x):
    if model.normalization is not None:
      x = model.normalization(x)
    return np.asarray(model.frontend(x))

  reference = features(audio)
  return {f'x{factor:g}': float(np.mean(np.abs(
      features(audio * factor) - reference)) / np.std(reference))
          for factor in (0.1, 3.0)}


def run_one(task, run, seed, epochs, clips):
  model_dir = (ROOT / 'runs' / 'domain_shift_models' /
               run_name(run, seed, epochs))
  if not (model_dir / 'test_metrics.json').exists():
    train(task, run, seed, epochs, model_dir)
  test = json.loads((model_dir / 'test_metrics.json').read_text())
  record = {
      'run': run, 'seed': seed, 'epochs': epochs,
      'chosen_epoch': test['chosen_epoch'],
      'test_chosen': test['accuracy'], 'test_last': test['last']['accuracy'],
      'chosen': accuracies(model_dir / 'best.keras', *clips),
      'last': accuracies(model_dir / 'last.keras', *clips),
      'compression_last': compression_parameters(model_dir / 'last.keras'),
      'level_sensitivity_last': level_sensitivity(model_dir / 'last.keras',
                                                  clips[0]),
  }
  RESULTS.mkdir(parents=True, exist_ok=True)
  (RESULTS / f'{run_name(run, seed, epochs)}.json').write_text(
      json.dumps(record, indent=1))
  return record


def _mean_spread(values):
  values = np.array(values)
  return f'{values.mean():.3f} ({values.min():.3f}-{values.max():.3f})'


def table():
  """Markdown: per run, mean (min-max) over seeds of each column."""
  records = collections.defaultdict(list)
  for path in sorted(RESULTS.glob('*.json')):
    record = json.loads(path.read_text())
    records[record['run'], record['epochs']].append(record)
  setups = ('level', 'babble', 'phone', 'room')
  lines = ['| frontend / recipe | epochs | seeds | test, chosen | '
           'test, last | ' +
           ' | '.join(f'{s}, last' for s in setups) +
           ' | x0.1 / x1 / x3, last |',
           '|---|---|---|---|---|' + '---|' * len(setups) + '---|']
  order = [f'{f}/{r}' for r in RECIPES for f in FRONTENDS]
  for run, epochs in sorted(records, key=lambda r: (
      r[1], order.index(r[0]) if r[0] in order else len(order))):
    rows = records[run, epochs]
    cells = [run, str(epochs), ','.join(str(r['seed']) for r in rows),
             _mean_spread([r['chosen']['all'] for r in rows]),
             _mean_spread([r['last']['all'] for r in rows])]
    cells += [_mean_spread([r['last'][s] for r in rows]) for s in setups]
    cells.append(' / '.join(f"{np.mean([r['last'][k] for r in rows]):.3f}"
                            for k in ('x0.1', 'x1', 'x3')))
    lines.append('| ' + ' | '.join(cells) + ' |')
  return '\n'.join(lines)


def main():
  parser = argparse.ArgumentParser(
      description=__doc__.split('\n')[0],
      formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
  parser.add_argument('--task', help='the folder make_domain_shift.py wrote')
  parser.add_argument('--runs', nargs='+', default=CORE,
                      help='frontend/recipe pairs; default: the core grid '
                      f"{' '.join(CORE)}. Recipes: {', '.join(RECIPES)}")
  parser.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
  parser.add_argument('--epochs', type=int, default=5)
  parser.add_argument('--table', action='store_true',
                      help='only print the table of existing results')
  args = parser.parse_args()
  if args.table:
    print(table())
    return
  if not args.task:
    raise SystemExit('--task is required to train (or use --table)')
  for run in args.runs:
    frontend, _, recipe = run.partition('/')
    if frontend not in FRONTENDS or recipe not in RECIPES:
      raise SystemExit(f'--runs: {run!r} is not frontend/recipe with a '
                       f'frontend in {list(FRONTENDS)} and a recipe in '
                       f'{list(RECIPES)}')
  task = str(pathlib.Path(args.task).resolve())
  os.chdir(ROOT)  # The gin files include each other by relative paths.
  clips = test_clips(task)
  for seed in args.seeds:
    for run in args.runs:
      if (RESULTS / f'{run_name(run, seed, args.epochs)}.json').exists():
        continue
      record = run_one(task, run, seed, args.epochs, clips)
      print(json.dumps({k: record[k] for k in ('run', 'seed', 'test_chosen',
                                               'test_last')}), flush=True)
  print(table())


if __name__ == '__main__':
  main()
