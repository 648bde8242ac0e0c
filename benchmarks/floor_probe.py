"""How much of a clip's time-frequency energy falls under the frontends'
floors, by input level, with and without the loudness normalisation.

  python benchmarks/floor_probe.py --task runs/domain_shift

LEAF clips its pooled energies to at least `pre_compression_floor` (1e-5)
before sPCEN; mel takes log(x + 1e-5). Energies below 1e-5 are therefore
flattened to one value, whatever the signal. For the first 200 test clips of
the domain-shift task (and its training clips), scaled by each factor, the
table gives the share of (frame, channel) energies below 1e-5, for LEAF's
initial frontend (no compression) and mel's power, on the raw waveform and
after `LoudnessNormalization()` (target 15 dB, gain capped at 30 dB), and
the share of clips whose normalisation gain hit that cap.
"""

import argparse
import pathlib

import numpy as np

FLOOR = 1e-5


def read_clips(folder, count):
  from scipy.io import wavfile  # pylint: disable=g-import-not-at-top
  paths = sorted(pathlib.Path(folder).glob('*/*.wav'))
  rng = np.random.default_rng(0)
  paths = [paths[i] for i in rng.permutation(len(paths))[:count]]
  return np.stack([wavfile.read(p)[1][:16000].astype(np.float32) / 32768.0
                   for p in paths])


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--task', required=True)
  parser.add_argument('--clips', type=int, default=200)
  parser.add_argument('--scales', type=float, nargs='+',
                      default=[0.1, 0.3, 1.0, 3.0])
  args = parser.parse_args()

  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  import leaf_audio  # pylint: disable=g-import-not-at-top
  from experiments import models  # pylint: disable=g-import-not-at-top

  leaf = leaf_audio.Leaf()
  energies_leaf = leaf_audio.Frontend(
      filterbank=leaf.filterbank, activation=leaf.activation,
      pooling=leaf.pooling, compression=None, pre_compression_floor=None)
  energies_mel = leaf_audio.MelFilterbanks(
      compression=lambda x: x)
  normalization = models.LoudnessNormalization()
  max_gain = 10**(normalization.max_gain_db / 20)
  target = 10**(normalization.target_db / 20)

  print('| clips | level factor | normalisation | LEAF energies < 1e-5 | '
        'mel energies < 1e-5 | gain at its cap |')
  print('|---|---|---|---|---|---|')
  for split in ('train', 'test'):
    audio = read_clips(pathlib.Path(args.task) / split, args.clips)
    for scale in args.scales:
      for normalized in (False, True):
        x = tf.constant(audio * scale)
        capped = ''
        if normalized:
          std = np.std(audio * scale, axis=1)
          capped = f'{np.mean(target / (std + 1e-9) > max_gain):.2f}'
          x = normalization(x)
        below_leaf = float(np.mean(np.asarray(energies_leaf(x)) < FLOOR))
        below_mel = float(np.mean(np.asarray(energies_mel(x)) < FLOOR))
        print(f'| {split} | {scale:g} | {"yes" if normalized else "no"} | '
              f'{below_leaf:.2f} | {below_mel:.2f} | {capped} |')


if __name__ == '__main__':
  main()
