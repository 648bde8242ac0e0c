"""Serving accuracy of an exported run on test clips played louder or softer.

  python benchmarks/level_robustness.py --model_dir runs/default
  python benchmarks/level_robustness.py --model_dir runs/default \\
      --gin_config gin_configs/default.gin --clips 40 --scales 0.1 0.3 1 3

Loads the run's serving SavedModel (`export/`, signature serving_default:
raw waveforms in, the evaluation path in the graph), takes the first
`--clips` clips of the run's test split (the dataset of `--gin_config`),
multiplies each waveform by every `--scales` factor and prints the accuracy
per factor. A factor of 3 may push samples beyond [-1, 1]; they are passed
as they are (a float waveform), not clipped.
"""

import argparse
import pathlib


def main():
  parser = argparse.ArgumentParser(
      description=__doc__.split('\n')[0],
      formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
  parser.add_argument('--model_dir', required=True, type=pathlib.Path)
  parser.add_argument('--gin_config', nargs='+',
                      default=['gin_configs/default.gin'])
  parser.add_argument('--gin_bindings', nargs='*', default=[])
  parser.add_argument('--clips', type=int, default=40)
  parser.add_argument('--scales', type=float, nargs='+',
                      default=[0.1, 0.3, 1.0, 3.0])
  args = parser.parse_args()

  import gin  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from experiments import configurables  # pylint: disable=g-import-not-at-top,unused-import
  from experiments import gin_files  # pylint: disable=g-import-not-at-top
  from experiments.training import job  # pylint: disable=g-import-not-at-top,unused-import
  from experiments.data import pipeline  # pylint: disable=g-import-not-at-top

  gin_files.parse(args.gin_config, args.gin_bindings)
  splits, info = pipeline.load_dataset()
  gin.clear_config()
  clips = list(splits['test'].take(args.clips).as_numpy_iterator())
  serve = tf.saved_model.load(str(args.model_dir / 'export')).signatures[
      'serving_default']
  print(f'{args.model_dir}: serving accuracy on {len(clips)} test clips of '
        f'{info.name}')
  print('| level factor | accuracy |')
  print('|---|---|')
  for scale in args.scales:
    correct = 0
    for clip in clips:
      outputs = serve(waveform=tf.constant(clip['audio'][np.newaxis] * scale))
      correct += int(np.argmax(outputs['probabilities'][0]) == clip['label'])
    print(f'| {scale:g} | {correct / len(clips):.3f} |')


if __name__ == '__main__':
  main()
