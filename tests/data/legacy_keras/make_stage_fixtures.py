"""Writes the .keras files of frontends that the stage interface must keep.

Run once with the code of main at c432b2a (before stages declared their own
contract, `leaf_audio.stages`), from the repository root:

    PYTHONPATH=. python tests/data/legacy_keras/make_stage_fixtures.py

`MelFilterbanks`, a composed `Frontend` and a `Leaf` whose PCEN learns in
log space, each small and with its weights moved away from their initial
values. `outputs_stages.npz` holds the input and each file's output computed
one clip at a time (a batch of one), which tests/test_legacy_keras.py
compares with.
"""

import pathlib

import keras
import numpy as np

import leaf_audio

HERE = pathlib.Path(__file__).resolve().parent


def frontends():
  return {
      'mel_filterbanks': leaf_audio.MelFilterbanks(n_filters=8),
      'composed_frontend': leaf_audio.Frontend(
          filterbank=leaf_audio.GaborConv1D(filters=12, kernel_size=401,
                                            padding='same', use_bias=False),
          activation=leaf_audio.SquaredModulus(),
          pooling=leaf_audio.GaussianLowpassPooling(kernel_size=401,
                                                    strides=160),
          compression=leaf_audio.LogCompression()),
      'leaf_log_pcen': leaf_audio.Leaf(
          n_filters=6, compression_fn=leaf_audio.PCENCompression(
              alpha=0.96, smooth_coef=0.04, delta=2.0, root=2.0, floor=1e-12,
              trainable=True, learn_smooth_coef=True,
              per_channel_smooth_coef=True, parameterization='log')),
  }


def main():
  rng = np.random.default_rng(1)
  t = np.arange(4000) / 16000
  waveform = np.stack([0.5 * np.sin(2 * np.pi * 440 * t),
                       0.1 * rng.standard_normal(4000)]).astype(np.float32)
  outputs = {'input': waveform}
  for name, layer in frontends().items():
    layer(waveform)
    layer.set_weights([
        w + (0.01 * rng.standard_normal(w.shape) * np.maximum(np.abs(w), 0.1)
             ).astype(w.dtype) for w in layer.get_weights()])
    outputs[name] = np.concatenate(
        [np.asarray(layer(clip[np.newaxis])) for clip in waveform])
    keras.Sequential([keras.Input((None,)), layer]).save(HERE / f'{name}.keras')
  np.savez(HERE / 'outputs_stages.npz', **outputs)


if __name__ == '__main__':
  main()
