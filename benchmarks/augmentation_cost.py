"""What waveform augmentation adds to a training step, side by side.

  python benchmarks/augmentation_cost.py                # LEAF + ConvNet, batch 16
  python benchmarks/augmentation_cost.py --rounds 7 --steps 10

Harness: the model of gin_configs/default.gin (LEAF, 40 filters, ConvNet
[16, 32, 64], mean pooling, 10 classes) and one Adam optimizer; two endless
training streams (experiments.data.pipeline.training_stream) over the same
64 in-memory clips of 1.5 s (random 1 s crops, batch 16): one plain, one
with the augmentation of gin_configs/augmentation.gin (every transform at
its recipe probability). Each round times `--steps` training steps
(experiments.training.loop.run_epoch, as experiments.train runs them) on each
stream in alternating order, after one untimed warm-up round; the table
gives median s/step over rounds and the median of the per-round ratios.
"pipeline only" rows time drawing the same number of batches without
training (what the augmentation costs the input pipeline; tf.data overlaps
it with the step when a core is free).
"""

import argparse
import statistics
import time

SAMPLE_RATE = 16000
RECIPE = dict(gain_probability=1.0, max_gain_db=20.0, shift_probability=0.5,
              noise_probability=0.5, speed_probability=0.5,
              microphone_probability=0.5, room_probability=0.3)


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
  import leaf_audio  # pylint: disable=g-import-not-at-top
  from experiments import models  # pylint: disable=g-import-not-at-top
  from experiments.data import augmentation  # pylint: disable=g-import-not-at-top
  from experiments.data import pipeline  # pylint: disable=g-import-not-at-top
  from experiments.training import loop  # pylint: disable=g-import-not-at-top

  rng = np.random.default_rng(0)
  clips = tf.data.Dataset.from_tensor_slices({
      'audio': rng.uniform(-0.5, 0.5, (64, 24000)).astype(np.float32),
      'label': rng.integers(0, 10, 64).astype(np.int32)})
  augment = augmentation.WaveformAugmentation(**RECIPE)

  def stream(with_augmentation):
    return iter(pipeline.training_stream(
        clips, args.batch, crop_samples=SAMPLE_RATE, shuffle_buffer=64,
        seed=0, num_examples=64,
        augmentation=augment if with_augmentation else None))

  keras.utils.set_random_seed(0)
  model = models.AudioClassifier(
      leaf_audio.Leaf(n_filters=40),
      models.ConvNet((16, 32, 64), dropout=0.0, batch_norm_momentum=0.9),
      num_outputs=10, pooling='mean')
  model.build((None, SAMPLE_RATE))
  optimizer = keras.optimizers.Adam(1e-3)
  optimizer.build(model.trainable_variables)
  step = loop.TrainStep(tf.distribute.get_strategy(), model, optimizer,
                        False, args.batch)
  totals = loop.EpochTotals()
  iterators = {'plain': stream(False), 'augmented': stream(True)}
  pipelines = {'plain': stream(False), 'augmented': stream(True)}

  def train(name):
    totals.reset()
    loop.run_epoch(step, iterators[name], 0, args.steps, totals, verbose=0)

  def draw(name):
    for _ in range(args.steps):
      next(pipelines[name])

  jobs = {('step', 'plain'): lambda: train('plain'),
          ('step', 'augmented'): lambda: train('augmented'),
          ('pipeline', 'plain'): lambda: draw('plain'),
          ('pipeline', 'augmented'): lambda: draw('augmented')}
  seconds = {name: [] for name in jobs}
  for round_index in range(args.rounds + 1):
    order = list(jobs) if round_index % 2 else list(reversed(list(jobs)))
    for name in order:
      start = time.perf_counter()
      jobs[name]()
      if round_index:  # Round 0 traces and warms up.
        seconds[name].append((time.perf_counter() - start) / args.steps)
  print(f'LEAF + ConvNet, batch {args.batch} x 1 s, {args.steps} steps x '
        f'{args.rounds} rounds (medians)')
  print('| what | plain s/step | augmented s/step | augmented / plain |')
  print('|---|---|---|---|')
  for kind, label in (('step', 'training step'),
                      ('pipeline', 'pipeline only (a batch)')):
    plain, augmented = seconds[kind, 'plain'], seconds[kind, 'augmented']
    ratio = statistics.median(a / p for a, p in zip(augmented, plain))
    print(f'| {label} | {statistics.median(plain):.4f} | '
          f'{statistics.median(augmented):.4f} | {ratio:.3f} |')


if __name__ == '__main__':
  main()
