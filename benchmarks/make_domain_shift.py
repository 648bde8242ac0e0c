"""Builds the domain-shift spoken-word task: train on one recording set-up,
test on another, offline (needs the `espeak-ng` program).

Usage (from the repository root):

  python benchmarks/make_domain_shift.py --root runs/domain_shift

writes `root/train/<word>/*.wav` and `root/test/<word>/*.wav` (1 s mono
clips at 16 kHz, 16-bit PCM), the 10 words of make_spoken_words.py.

- train/: the voices of make_spoken_words.TRAIN_VOICES, made exactly as
  make_spoken_words.py makes them (one level range, white background noise
  20 dB below the speech). The binary carves its validation split from
  train/, so model selection never sees the test set-up.
- test/: the voices of make_spoken_words.TEST_VOICES (none is a training
  voice), each clip recorded in one of four set-ups, taken in turn:
    level   the training noise, but the level drawn over -26..+6 dB
            around the training level (clipped at full scale);
    babble  other words of other test voices mixed in at 5-15 dB SNR;
    phone   a telephone band (4th-order Butterworth band-pass
            300-3400 Hz) and hum at 50 Hz + harmonics, 20 dB below;
    room    a synthetic small room (early reflections + exponentially
            decaying noise, RT60 0.2-0.6 s) and low-frequency rumble at
            10-20 dB SNR;
  and every test clip gets the -26..+6 dB level change of 'level'. The
  set-up is the first part of the file name.

None of the test set-ups is made with the training pipeline's
augmentation code (experiments/data/augmentation.py): the noises, filters
and rooms here are other signals built with scipy, so an augmentation
cannot win by reproducing the test corruption exactly.
"""
import argparse
import pathlib
import sys
import tempfile

import numpy as np
from scipy import signal
from scipy.io import wavfile

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import make_spoken_words as spoken  # pylint: disable=wrong-import-position

SAMPLE_RATE = spoken.SAMPLE_RATE
SETUPS = ('level', 'babble', 'phone', 'room')


def _rms(x):
  return float(np.sqrt(np.mean(np.square(x))) + 1e-8)


def _place(speech, rng):
  """The word at a random offset in 1 s of silence, at the training gain."""
  speech = speech[:SAMPLE_RATE]
  clip = np.zeros(SAMPLE_RATE, np.float32)
  offset = rng.integers(0, SAMPLE_RATE - len(speech) + 1)
  clip[offset:offset + len(speech)] = speech * rng.uniform(0.3, 1.0)
  return clip


def _babble(rng, voices, workdir, count=3):
  """1 s of `count` other words by random test voices, overlapping."""
  mix = np.zeros(SAMPLE_RATE, np.float32)
  for _ in range(count):
    language, variant = voices[rng.integers(len(voices))]
    word = spoken.WORDS[rng.integers(len(spoken.WORDS))]
    speech = spoken.synthesize(word, language, variant,
                               int(rng.integers(20, 81)),
                               int(rng.integers(120, 221)), workdir)
    mix += _place(speech, rng)
  return mix


def _room_impulse_response(rng):
  """Direct path, 6 early reflections (2-20 ms) and a decaying tail."""
  rt60 = rng.uniform(0.2, 0.6)
  length = int(rt60 * SAMPLE_RATE)
  t = np.arange(length) / SAMPLE_RATE
  response = rng.normal(0, 1, length) * np.exp(-6.9 * t / rt60)
  response *= 0.3 / np.sqrt(np.sum(response**2))
  response[0] = 1.0
  for _ in range(6):
    response[rng.integers(32, 320)] += rng.uniform(-0.5, 0.5)
  return response


def make_test_clip(speech, setup, rng, voices, workdir):
  """One test clip of `speech` recorded in `setup` (see the docstring)."""
  clip = _place(speech, rng)
  speech_rms = _rms(clip)
  if setup == 'level':
    clip = clip + rng.normal(0, speech_rms * 0.1, SAMPLE_RATE)
  elif setup == 'babble':
    babble = _babble(rng, voices, workdir)
    snr = rng.uniform(5, 15)
    clip = clip + babble * speech_rms / _rms(babble) * 10**(-snr / 20)
  elif setup == 'phone':
    sos = signal.butter(4, [300, 3400], 'bandpass', fs=SAMPLE_RATE,
                        output='sos')
    t = np.arange(SAMPLE_RATE) / SAMPLE_RATE
    hum = sum(np.sin(2 * np.pi * 50 * k * t + rng.uniform(0, 6.3)) / k
              for k in (1, 2, 3))
    clip = clip + hum * speech_rms / _rms(hum) * 0.1
    clip = signal.sosfilt(sos, clip)
  elif setup == 'room':
    clip = signal.fftconvolve(clip, _room_impulse_response(rng))[:SAMPLE_RATE]
    sos = signal.butter(2, 120, 'lowpass', fs=SAMPLE_RATE, output='sos')
    rumble = signal.sosfilt(sos, rng.normal(0, 1, SAMPLE_RATE))
    snr = rng.uniform(10, 20)
    clip = clip + rumble * _rms(clip) / _rms(rumble) * 10**(-snr / 20)
  else:
    raise ValueError(f'setup must be one of {SETUPS}; got {setup!r}')
  clip = clip * 10**(rng.uniform(-26, 6) / 20)
  return np.clip(clip, -1.0, 1.0).astype(np.float32)


def write_test(root, voices, clips_per_word, rng):
  with tempfile.TemporaryDirectory() as workdir:
    for word in spoken.WORDS:
      folder = root / 'test' / word
      folder.mkdir(parents=True, exist_ok=True)
      for index in range(clips_per_word):
        language, variant = voices[index % len(voices)]
        setup = SETUPS[index % len(SETUPS)]
        pitch = int(rng.integers(20, 81))
        speed = int(rng.integers(120, 221))
        speech = spoken.synthesize(word, language, variant, pitch, speed,
                                   workdir)
        clip = make_test_clip(speech, setup, rng, voices, workdir)
        name = f'{setup}_{language}_{variant}_{index:03d}.wav'
        wavfile.write(folder / name, SAMPLE_RATE,
                      (clip * 32767).astype(np.int16))


def main():
  parser = argparse.ArgumentParser(
      description=__doc__.split('\n')[0],
      formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
  parser.add_argument('--root', type=pathlib.Path, required=True,
                      help='folder to create (must not exist yet)')
  parser.add_argument('--train_per_word', type=int, default=96)
  parser.add_argument('--test_per_word', type=int, default=32)
  parser.add_argument('--seed', type=int, default=0)
  args = parser.parse_args()
  if args.root.exists():
    raise SystemExit(f'--root {args.root} exists already; give a new folder')
  rng = np.random.default_rng(args.seed)
  spoken.write_split(args.root, 'train', spoken.TRAIN_VOICES,
                     args.train_per_word, rng, -20.0)
  write_test(args.root, spoken.TEST_VOICES, args.test_per_word, rng)
  print(f'{args.root}: {len(spoken.WORDS)} words, {args.train_per_word} '
        f'train and {args.test_per_word} test clips each (test set-ups '
        f'{", ".join(SETUPS)})')


if __name__ == '__main__':
  main()
