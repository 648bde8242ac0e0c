"""Tiny datasets and runners shared by the training-binary tests."""

import os
import pathlib
import subprocess
import sys

import numpy as np

from conftest import REPO_ROOT
from experiments.data import wav

SAMPLE_RATE = 16000


def tone(frequency, seconds, rng):
  t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
  clip = 0.5 * np.sin(2 * np.pi * frequency * t + rng.uniform(0, 6.28))
  return (clip + 0.05 * rng.standard_normal(t.size)).astype(np.float32)


def make_tone_folder(root, clips_per_class=8, seconds=0.6):
  """root/{low,high}/*.wav: 300 Hz and 3 kHz tones in noise, 16 kHz mono."""
  rng = np.random.default_rng(0)
  root = pathlib.Path(root)
  for label, frequency in (('low', 300.), ('high', 3000.)):
    (root / label).mkdir(parents=True, exist_ok=True)
    for i in range(clips_per_class):
      wav.write_wav(root / label / f'{i}.wav',
                    tone(frequency * rng.uniform(0.9, 1.1), seconds, rng),
                    SAMPLE_RATE)
  return root


def tiny_bindings(folder, data_dir, **overrides):
  """Gin bindings for a run of a few seconds on a tone folder."""
  bindings = {
      'load_dataset.name': "'folder'",
      'load_dataset.folder': repr(str(folder)),
      'load_dataset.data_dir': repr(str(data_dir)),
      'train.num_epochs': '1',
      'train.steps_per_epoch': '2',
      'train.batch_size': '4',
      'train.window_seconds': '0.3',
      'train.shuffle_buffer': '16',
      'train.export': 'False',
      'train.verbose': '0',
  }
  bindings.update({key: str(value) for key, value in overrides.items()})
  return [f'{key} = {value}' for key, value in bindings.items()]


def run_module(module, *args, env=None, timeout=600, **popen_kwargs):
  """Runs `python -m module args` from the repository root."""
  environment = dict(os.environ, PYTHONPATH=str(REPO_ROOT),
                     TF_CPP_MIN_LOG_LEVEL='2')
  environment.update(env or {})
  return subprocess.run([sys.executable, '-m', module, *args],
                        cwd=REPO_ROOT, env=environment, capture_output=True,
                        text=True, timeout=timeout, **popen_kwargs)


def train_args(model_dir, configs, bindings):
  return ([f'--gin_config={c}' for c in configs] +
          [f'--gin_bindings={b}' for b in bindings] +
          [f'--model_dir={model_dir}'])


def train_in_process(model_dir, configs, bindings):
  """What `python -m experiments.train` with these gin files (paths relative
  to the repository root) and bindings trains, run in this process: for a
  reference run whose process the test does not watch (no import of
  TensorFlow to pay again). Returns train()'s test metrics."""
  import gin  # pylint: disable=g-import-not-at-top
  from experiments import configurables  # pylint: disable=g-import-not-at-top,unused-import
  from experiments import gin_files  # pylint: disable=g-import-not-at-top
  from experiments.training import job  # pylint: disable=g-import-not-at-top
  gin.clear_config()
  try:
    gin_files.parse([str(REPO_ROOT / config) for config in configs],
                    bindings)
    return job.train(model_dir=str(model_dir))
  finally:
    gin.clear_config()
