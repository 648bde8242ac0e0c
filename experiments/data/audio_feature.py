"""How the builders store audio: int16 PCM as raw bytes in an Audio feature.

`tfds.features.Audio(encoding=Encoding.BYTES)` is the natural storage for
PCM, two bytes a sample. In TFDS 4.9, though, `Audio.encode_example` returns
an in-memory array before its own Tensor encoding runs, so the bytes
encoding fails for arrays, and the default encoding writes every sample as
an int64 varint in a proto: about 6 bytes a sample (negative samples take
10) and, for 1.5 s clips, twice the time needed to synthesise them.
`PcmAudio` runs the Tensor encoding for arrays; reading is unchanged
(`tf.io.decode_raw`), and it is still an Audio feature with a sample_rate.
"""

import numpy as np
import tensorflow_datasets as tfds


class PcmAudio(tfds.features.Audio):
  """tfds.features.Audio that stores in-memory arrays with its encoding.

  Takes the arguments of tfds.features.Audio; make one with `pcm16_audio`.
  TFDS finds this class again from features.json by its module path.
  """

  def encode_example(self, audio_or_path_or_fobj):
    if isinstance(audio_or_path_or_fobj, np.ndarray):
      return tfds.features.Tensor.encode_example(self, audio_or_path_or_fobj)
    return super().encode_example(audio_or_path_or_fobj)


def pcm16_audio(sample_rate):
  """Mono int16 audio [samples] at `sample_rate` Hz, stored as raw bytes."""
  return PcmAudio(shape=(None,), dtype=np.int16, sample_rate=sample_rate,
                  encoding=tfds.features.Encoding.BYTES)
