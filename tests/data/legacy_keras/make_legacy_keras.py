"""Writes the .keras files that tests/test_legacy_keras.py reloads.

Run once with the code of main at 6362f62 (before the frontends became
presets of `leaf_audio.Frontend`), from the repository root:

    PYTHONPATH=. python tests/data/legacy_keras/make_legacy_keras.py

Each frontend is small (few filters) and its weights are moved away from
their initial values, so that a reload that ignored the saved weights would
not match. `outputs.npz` holds the input and every file's output;
`outputs_clip_by_clip.npz` (computed from these files at 6362f62, one clip
at a time) is what tests/test_legacy_keras.py compares with.
"""

import pathlib

import keras
import numpy as np

import leaf_audio

HERE = pathlib.Path(__file__).resolve().parent


def frontends():
  return {
      'leaf': leaf_audio.Leaf(n_filters=8),
      'tfbanks': leaf_audio.TimeDomainFilterbanks(n_filters=4),
      'sincnet': leaf_audio.SincNet(n_filters=4),
      'sincnet_plus': leaf_audio.SincNetPlus(n_filters=4),
      'efficient_leaf': leaf_audio.EfficientLeaf(n_filters=8, num_groups=2),
      'leaf_custom': leaf_audio.Leaf(
          n_filters=6, preemp=True, mean_var_norm=True, learn_pooling=False,
          compression_fn=leaf_audio.LogCompression(log_offset=1e-4)),
  }


def main():
  rng = np.random.default_rng(0)
  t = np.arange(4000) / 16000
  waveform = np.stack([0.5 * np.sin(2 * np.pi * 440 * t),
                       0.1 * rng.standard_normal(4000)]).astype(np.float32)
  outputs = {'input': waveform}
  layers = frontends()
  layers['model'] = keras.Sequential([
      keras.Input((None,)), leaf_audio.Leaf(n_filters=8),
      keras.layers.GlobalAveragePooling1D(), keras.layers.Dense(3)])
  for name, layer in layers.items():
    layer(waveform)
    layer.set_weights([
        w + (0.01 * rng.standard_normal(w.shape) * np.maximum(np.abs(w), 0.1)
             ).astype(w.dtype) for w in layer.get_weights()])
    outputs[name] = np.asarray(layer(waveform))
    if isinstance(layer, keras.Model):
      layer.save(HERE / f'{name}.keras')
    else:
      keras.Sequential([keras.Input((None,)), layer]).save(
          HERE / f'{name}.keras')
  np.savez(HERE / 'outputs.npz', **outputs)


if __name__ == '__main__':
  main()
