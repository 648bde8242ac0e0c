"""Usage: python benchmarks/precise_batch_norm_runs.py EPOCHS (from the
repository root; runs go to runs/precise_batch_norm_<EPOCHS>_epochs/).

Issue 17 measurement: LEAF (default.gin) on leaf_synthetic_fine, 3 seeds,
precise BN off (0) vs on (16): validation accuracy of the last and the best
epoch, test accuracy of both, and the train-vs-inference-mode accuracy gap of
last.keras on 256 training crops."""
import json, subprocess, sys, os, pathlib, csv
import numpy as np

ROOT = pathlib.Path(__file__).resolve().parent.parent
EPOCHS = int(sys.argv[1])
OUT = ROOT / 'runs' / f'precise_batch_norm_{EPOCHS}_epochs'

def run(seed, batches):
  model_dir = OUT / f'pbn{batches}' / f'seed{seed}'
  cmd = [sys.executable, '-m', 'experiments.train',
         '--gin_config=gin_configs/default.gin',
         '--gin_config=gin_configs/tasks/leaf_synthetic_fine.gin',
         f'--gin_bindings=train.seed = {seed}',
         f'--gin_bindings=train.precise_batch_norm_batches = {batches}',
         '--gin_bindings=train.export = False', '--gin_bindings=train.verbose = 2', f'--gin_bindings=train.num_epochs = {EPOCHS}',
         f'--model_dir={model_dir}']
  r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
  assert r.returncode == 0, r.stderr[-2000:]
  return model_dir

def gap(model_dir):
  import keras, tensorflow as tf
  import gin
  from experiments import configurables, configuration, models, training
  from experiments.data import pipeline
  gin.clear_config()
  configuration.parse(['gin_configs/default.gin', 'gin_configs/tasks/leaf_synthetic_fine.gin'], [])
  splits, _ = pipeline.load_dataset()
  gin.clear_config()
  data = list(splits['train'].take(256).as_numpy_iterator())
  x = np.stack([d['audio'][:16000] for d in data]); y = np.array([d['label'] for d in data])
  model = keras.saving.load_model(model_dir / 'last.keras')
  acc = {}
  for mode in (True, False):
    logits = np.concatenate([model(x[i:i+32], training=mode) for i in range(0, 256, 32)])
    acc[mode] = float(np.mean(np.argmax(logits, -1) == y))
  return acc

os.chdir(ROOT)
results = []
for seed in (0, 1, 2):
  for batches in (0, 16):
    d = run(seed, batches)
    rows = list(csv.DictReader(open(d / 'metrics.csv')))
    val = [float(r['val_accuracy']) for r in rows]
    test = json.loads((d / 'test_metrics.json').read_text())
    g = gap(d)
    rec = dict(precise_bn=batches, seed=seed, val=val, val_last=val[-1], val_best=max(val),
               test_chosen=test['accuracy'], test_last=test['last']['accuracy'],
               chosen_epoch=test['chosen_epoch'], train_mode=g[True], inference_mode=g[False])
    results.append(rec); print(json.dumps(rec), flush=True)
OUT.mkdir(parents=True, exist_ok=True)
json.dump(results, open(OUT / 'results.json', 'w'), indent=1)
