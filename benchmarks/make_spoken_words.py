"""Builds a small spoken-keyword WAV folder with espeak-ng, offline.

Usage (from the repository root; needs the `espeak-ng` program, e.g. the
Debian package of that name):

  python benchmarks/make_spoken_words.py --root runs/spoken_words

writes `root/train/<word>/*.wav` and `root/test/<word>/*.wav`: 1 s mono
clips at 16 kHz, 16-bit PCM, one synthesized word each at a random offset,
with a little seeded background noise. The test clips are spoken by voices
(language variant + voice variant) that no training clip uses, so the task
measures generalisation to unseen speakers. There is no `validation/`
folder: the `folder` dataset carves one from `train/` by a hash of the path.

The default size (10 words, 96 training and 24 test clips per word: about
860 training, 100 carved validation and 240 test clips) is a task harder
than the embedded ones that trains in a few minutes on a CPU with
`gin_configs/default.gin`. The audio is generated,
never committed.
"""
import argparse
import pathlib
import subprocess
import tempfile

import numpy as np
from scipy import signal
from scipy.io import wavfile

SAMPLE_RATE = 16000
WORDS = ('yes', 'no', 'up', 'down', 'left', 'right', 'on', 'off', 'stop',
         'go')
# (espeak-ng language voice, voice variant). Train and test share none.
TRAIN_VOICES = tuple(
    (language, variant)
    for language in ('en-us', 'en', 'en-gb-x-rp')
    for variant in ('m1', 'm2', 'm3', 'f1', 'f2', 'f3'))
TEST_VOICES = tuple(
    (language, variant)
    for language in ('en-gb-scotland', 'en-029')
    for variant in ('m4', 'm5', 'f4', 'f5'))


def synthesize(word, language, variant, pitch, speed, workdir):
  """Speaks `word` with espeak-ng; returns float32 samples at SAMPLE_RATE.

  Args:
    word: the text to speak.
    language: an espeak-ng voice name, e.g. 'en-us'.
    variant: an espeak-ng voice variant, e.g. 'f2'.
    pitch: espeak-ng pitch, 0..99 (50 is the voice's default).
    speed: words per minute (espeak-ng's default is 175).
    workdir: a folder for the temporary WAV file.

  Returns:
    A [samples] float32 array in [-1, 1], resampled to 16 kHz.
  """
  path = pathlib.Path(workdir) / 'word.wav'
  subprocess.run(
      ['espeak-ng', '-v', f'{language}+{variant}', '-p', str(pitch), '-s',
       str(speed), '-w', str(path), word],
      check=True, capture_output=True)
  rate, samples = wavfile.read(path)
  samples = samples.astype(np.float32) / 32768.0
  if samples.ndim == 2:
    samples = samples.mean(axis=1)
  divisor = np.gcd(SAMPLE_RATE, rate)
  return signal.resample_poly(samples, SAMPLE_RATE // divisor,
                              rate // divisor).astype(np.float32)


def make_clip(speech, rng, noise_db):
  """Places `speech` at a random offset in 1 s of noise.

  Args:
    speech: [samples] float32 waveform at 16 kHz.
    rng: a numpy Generator (offset, gain and noise).
    noise_db: noise level in dB relative to the speech's RMS.

  Returns:
    A [16000] float32 clip in [-1, 1].
  """
  speech = speech[:SAMPLE_RATE]
  clip = np.zeros(SAMPLE_RATE, np.float32)
  offset = rng.integers(0, SAMPLE_RATE - len(speech) + 1)
  clip[offset:offset + len(speech)] = speech * rng.uniform(0.3, 1.0)
  rms = np.sqrt(np.mean(speech**2)) + 1e-8
  clip += rng.normal(0.0, rms * 10**(noise_db / 20), SAMPLE_RATE)
  return np.clip(clip, -1.0, 1.0)


def write_split(root, split, voices, clips_per_word, rng, noise_db):
  """Writes clips_per_word clips of every word, voices taken in turn."""
  with tempfile.TemporaryDirectory() as workdir:
    for word in WORDS:
      folder = root / split / word
      folder.mkdir(parents=True, exist_ok=True)
      for index in range(clips_per_word):
        language, variant = voices[index % len(voices)]
        pitch = int(rng.integers(20, 81))
        speed = int(rng.integers(120, 221))
        speech = synthesize(word, language, variant, pitch, speed, workdir)
        clip = make_clip(speech, rng, noise_db)
        name = f'{language}_{variant}_p{pitch}_s{speed}_{index:03d}.wav'
        wavfile.write(folder / name, SAMPLE_RATE,
                      (clip * 32767).astype(np.int16))


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--root', type=pathlib.Path, required=True,
                      help='folder to create (must not exist yet)')
  parser.add_argument('--train_per_word', type=int, default=96)
  parser.add_argument('--test_per_word', type=int, default=24)
  parser.add_argument('--noise_db', type=float, default=-20.0,
                      help='background noise RMS relative to the speech, dB')
  parser.add_argument('--seed', type=int, default=0)
  args = parser.parse_args()
  if args.root.exists():
    raise SystemExit(f'--root {args.root} exists already; give a new folder')
  rng = np.random.default_rng(args.seed)
  write_split(args.root, 'train', TRAIN_VOICES, args.train_per_word, rng,
              args.noise_db)
  write_split(args.root, 'test', TEST_VOICES, args.test_per_word, rng,
              args.noise_db)
  print(f'{args.root}: {len(WORDS)} words, {args.train_per_word} train and '
        f'{args.test_per_word} test clips each')


if __name__ == '__main__':
  main()
