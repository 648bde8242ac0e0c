"""Steps per second of the custom training loop vs Keras' fit, one machine.

  python benchmarks/training_loop.py                 # LEAF + ConvNet, batch 16
  python benchmarks/training_loop.py --rounds 7 --steps 10

Harness: the model of gin_configs/default.gin (LEAF, 40 filters, ConvNet
[16, 32, 64] with BatchNorm, mean pooling, 10 classes), Adam, batches of
`--batch` random 1 s waveforms at 16 kHz with random labels, from the same
in-memory tf.data pipeline for both. "fit" is `model.compile` (loss and the
accuracy / top-5 metrics the old binary compiled) + `model.fit(
steps_per_epoch=steps, verbose=0)`; "loop" is `experiments.training.loop.run_epoch`
(TrainStep under the default strategy through
`distribute_datasets_from_function`, its running loss and accuracy read
every step, verbose=0), exactly what experiments.train runs. Each round
times `--steps` steps of each, in alternating order, after one untimed
warm-up round (tracing); the table shows the median steps/s over rounds and
the median of the per-round ratios loop / fit.
"""

import argparse
import statistics
import time

SAMPLE_RATE = 16000


def build_model(num_classes):
  import leaf_audio  # pylint: disable=g-import-not-at-top
  from experiments import models  # pylint: disable=g-import-not-at-top
  model = models.AudioClassifier(
      leaf_audio.Leaf(n_filters=40),
      models.ConvNet((16, 32, 64), dropout=0.0, batch_norm_momentum=0.9),
      num_outputs=num_classes, pooling='mean')
  model.build((None, SAMPLE_RATE))
  return model


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--batch', type=int, default=16)
  parser.add_argument('--steps', type=int, default=8,
                      help='steps per timed run')
  parser.add_argument('--rounds', type=int, default=5)
  args = parser.parse_args()

  import keras  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from experiments.training import evaluation  # pylint: disable=g-import-not-at-top
  from experiments.training import loop  # pylint: disable=g-import-not-at-top

  num_classes = 10
  rng = np.random.default_rng(0)
  audio = rng.uniform(-0.5, 0.5, (4 * args.batch, SAMPLE_RATE)).astype(
      np.float32)
  labels = rng.integers(0, num_classes, 4 * args.batch).astype(np.int32)

  def dataset(_=None):
    return tf.data.Dataset.from_tensor_slices((audio, labels)).repeat().batch(
        args.batch, drop_remainder=True).prefetch(tf.data.AUTOTUNE)

  keras.utils.set_random_seed(0)
  fit_model = build_model(num_classes)
  fit_model.compile(
      optimizer=keras.optimizers.Adam(1e-3),
      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
      metrics=evaluation.clip_metrics(num_classes, False))
  fit_data = dataset()

  keras.utils.set_random_seed(0)
  strategy = tf.distribute.get_strategy()
  loop_model = build_model(num_classes)
  optimizer = keras.optimizers.Adam(1e-3)
  optimizer.build(loop_model.trainable_variables)
  step = loop.TrainStep(strategy, loop_model, optimizer, False, args.batch)
  totals = loop.EpochTotals()
  iterator = iter(strategy.distribute_datasets_from_function(dataset))

  def run_fit():
    fit_model.fit(fit_data, epochs=1, steps_per_epoch=args.steps, verbose=0)

  def run_loop():
    totals.reset()
    loop.run_epoch(step, iterator, 0, args.steps, totals, verbose=0)

  jobs = {'fit': run_fit, 'loop': run_loop}
  rates = {name: [] for name in jobs}
  for round_index in range(args.rounds + 1):
    order = list(jobs) if round_index % 2 else list(reversed(list(jobs)))
    for name in order:
      start = time.perf_counter()
      jobs[name]()
      seconds = time.perf_counter() - start
      if round_index:  # Round 0 traces and warms up.
        rates[name].append(args.steps / seconds)
  ratios = [l / f for l, f in zip(rates['loop'], rates['fit'])]
  print(f'LEAF + ConvNet, batch {args.batch} x 1 s, {args.steps} steps x '
        f'{args.rounds} rounds (medians)')
  print('| trainer | steps/s | s/step |')
  print('|---|---|---|')
  for name in jobs:
    median = statistics.median(rates[name])
    print(f'| {name} | {median:.3f} | {1 / median:.3f} |')
  print(f'| loop / fit (median of per-round ratios) | '
        f'{statistics.median(ratios):.3f} | |')


if __name__ == '__main__':
  main()
