"""Writes a `MelFilterbanks` whose compression has weights (PCEN).

Run once with the code of main at 3a5301c (MelFilterbanks a plain layer,
before it became a `Frontend`), from the repository root:

    PYTHONPATH=. python tests/data/legacy_keras/make_mel_pcen_fixture.py

Such a file keeps the compression's weights under `compression/...`;
tests/test_legacy_keras.py checks that it loads and gives the outputs in
`outputs_mel_pcen.npz` (computed one clip at a time).
"""

import pathlib

import keras
import numpy as np

import leaf_audio

HERE = pathlib.Path(__file__).resolve().parent


def main():
  rng = np.random.default_rng(2)
  t = np.arange(4000) / 16000
  waveform = np.stack([0.5 * np.sin(2 * np.pi * 440 * t),
                       0.1 * rng.standard_normal(4000)]).astype(np.float32)
  layer = leaf_audio.MelFilterbanks(
      n_filters=8, compression_fn=leaf_audio.PCENCompression(
          trainable=True, learn_smooth_coef=True,
          per_channel_smooth_coef=True))
  layer(waveform)
  layer.set_weights([
      w + (0.05 * rng.standard_normal(w.shape) * np.maximum(np.abs(w), 0.1)
           ).astype(w.dtype) for w in layer.get_weights()])
  outputs = np.concatenate(
      [np.asarray(layer(clip[np.newaxis])) for clip in waveform])
  keras.Sequential([keras.Input((None,)), layer]).save(
      HERE / 'mel_filterbanks_pcen.keras')
  np.savez(HERE / 'outputs_mel_pcen.npz', input=waveform,
           mel_filterbanks_pcen=outputs)


if __name__ == '__main__':
  main()
