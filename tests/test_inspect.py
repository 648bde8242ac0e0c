"""Tests for experiments/inspect.py: the summary reports what the saved
frontend holds, and the figures land in model_dir/inspect.

The inspector on a real `make train` run directory (default.gin) runs in
tests/test_docs.py, which executes the tutorial; here the run directory is
written directly, with parameters set to known values.
"""

import json
import re

import numpy as np
import pytest

import leaf_audio
from experiments import inspect as inspector
from experiments import models
from leaf_audio import melfilters
from leaf_audio import plotting

SAMPLE_RATE = 16000


def hz(radians):
  return radians * SAMPLE_RATE / (2 * np.pi)


@pytest.fixture(scope='module')
def moved_run(tmp_path_factory):
  """A run directory whose Leaf has moved filters and parameters at bounds.

  Channel 5's centre frequency moved up by 100 Hz (plus 2.7 Hz) and every
  other one by less; channel 0 sits at 0 Hz (94 Hz down), channel 39's width at its largest sigma;
  channel 3's pooling width at its maximum; channel 7's PCEN alpha above 1.
  """
  model_dir = tmp_path_factory.mktemp('run')
  frontend = leaf_audio.Leaf()
  model = models.AudioClassifier(
      frontend=frontend, encoder=models.ConvNet(filters=[4]), num_outputs=2)
  model.build((None, SAMPLE_RATE))
  conv = plotting.filterbank_layer(frontend)
  kernel = np.asarray(conv.kernel)
  kernel[1:, 0] += np.linspace(0, 0.01, 39)  # At most 25 Hz.
  kernel[5, 0] += 2 * np.pi * 100 / SAMPLE_RATE
  kernel[0, 0] = 0.
  kernel[39, 1] = conv.kernel.constraint.sigma_range[1]
  conv.kernel.assign(kernel)
  pooling_kernel = np.asarray(plotting.pooling_layer(frontend).kernel)
  pooling_kernel[0, 0, 3, 0] = 0.5
  plotting.pooling_layer(frontend).kernel.assign(pooling_kernel)
  pcen = plotting.pcen_layer(frontend)
  alpha = np.asarray(pcen.alpha)
  alpha[7] = 1.2
  pcen.alpha.assign(alpha)
  model.save(model_dir / 'best.keras')
  (model_dir / 'run.json').write_text(json.dumps({'sample_rate': SAMPLE_RATE}))
  return model_dir, kernel


def test_summary_reports_the_moves_and_the_constraints(moved_run, capsys):
  model_dir, kernel = moved_run
  summary, paths = inspector.inspect_run(model_dir)
  initial = leaf_audio.GaborInit(sample_rate=SAMPLE_RATE, min_freq=60.,
                                 max_freq=7800.)((40, 2)).numpy()
  moved_hz = np.abs(hz(kernel[:, 0]) - hz(initial[:, 0]))
  assert int(np.argmax(moved_hz)) == 5  # 100 Hz + its share of the ramp.
  most = re.search(r'most: channel (\d+), ([\d.]+) -> ([\d.]+) Hz', summary)
  assert most.groups() == ('5', f'{hz(initial[5, 0]):.1f}',
                           f'{hz(kernel[5, 0]):.1f}')
  span = re.search(r'centre frequencies moved ([\d.]+)-([\d.]+) Hz', summary)
  assert float(span.group(2)) == pytest.approx(moved_hz.max(), abs=0.05)
  moved_mel = np.abs(melfilters.hz_to_mel(hz(kernel[:, 0])) -
                     melfilters.hz_to_mel(hz(initial[:, 0])))
  assert f'-{moved_mel.max():.1f} mel' in summary
  assert re.search(r'\n  1 Gabor centre frequencies at 0 Hz \(channels 0\)',
                   summary)
  assert re.search(r'1 Gabor widths at their largest sigma \(narrowest band, '
                   r'40 Hz\) \(channels 39\)', summary)
  assert '1 pooling widths at their maximum (sigma 0.5) (channels 3)' in (
      summary)
  assert '1 PCEN alpha at 1 (clipped) (channels 7)' in summary
  # The values the forward pass uses: alpha is clipped to 1.
  assert 'alpha 0.960-1.000' in summary
  # Every learned quantity against its initialisation, one number per stage.
  assert re.search(r'\n  pooling moved ([\d.e-]+) \(pooling_width', summary)
  assert '\n    pooling_width 11.8-14.7 ms (initially 11.8 ms)' in summary
  moved = re.search(r'\n  compression moved ([\d.e-]+) \(alpha ([\d.e-]+)',
                    summary)
  # One channel of 40 moved: the median change is 0, the largest stage's
  # drift too; the filterbank moved more (every centre frequency moved).
  assert float(moved.group(2)) == 0
  filterbank = re.search(r'\n  filterbank moved ([\d.e-]+)', summary)
  assert float(filterbank.group(1)) > 0
  assert 'Leaf from' in summary and '280 trainable parameters' in summary
  names = sorted(path.name for path in paths)
  assert names == ['centre_frequencies.png', 'filter_responses.png',
                   'parameters.png', 'pcen.png', 'pooling.png',
                   'representation.png']
  for path in paths:
    assert path.parent == model_dir / 'inspect'
    assert path.read_bytes().startswith(b'\x89PNG') and (
        path.stat().st_size > 10_000)
  assert (model_dir / 'inspect' / 'summary.txt').read_text() == summary + '\n'


def test_an_untouched_frontend_has_nothing_at_a_constraint():
  leaf = leaf_audio.Leaf()
  leaf.build((None, None))
  summary = inspector.summarize(leaf, plotting.initial_frontend(leaf))
  assert 'centre frequencies moved 0.0 Hz (median 0.0 Hz)' in summary
  assert summary.endswith('At a constraint: none')


def test_a_wav_file_is_shown_and_named(moved_run, tmp_path):
  from experiments.data import wav  # pylint: disable=g-import-not-at-top
  model_dir, _ = moved_run
  path = tmp_path / 'clip.wav'
  # 22.05 kHz stereo: resampled and downmixed like `predict` does.
  t = np.arange(22050) / 22050
  wav.write_wav(path, np.stack([np.sin(2 * np.pi * 440 * t)] * 2, 1) * 0.3,
                22050)
  summary, paths = inspector.inspect_run(model_dir, wav_path=path)
  assert f'Clip: {path}' in summary
  assert model_dir / 'inspect' / 'representation.png' in paths


def test_a_folder_without_a_model_is_refused_clearly(tmp_path):
  with pytest.raises(FileNotFoundError, match='experiments.train'):
    inspector.inspect_run(tmp_path)


def test_figures_of_missing_stages_are_skipped_with_the_reason(tmp_path):
  model = models.AudioClassifier(frontend=leaf_audio.MelFilterbanks(),
                                 encoder=None, num_outputs=2)
  model.build((None, SAMPLE_RATE))
  model.save(tmp_path / 'last.keras')  # No best.keras yet: last is used.
  summary, paths = inspector.inspect_run(tmp_path)
  assert 'MelFilterbanks from' in summary and 'last.keras' in summary
  assert sorted(p.name for p in paths) == [
      'centre_frequencies.png', 'filter_responses.png', 'representation.png']
  assert ('pooling.png (MelFilterbanks has no learnable lowpass pooling: no '
          'stage declares a pooling_width)') in summary
  assert 'parameters.png (no stage declares learned parameters)' in summary
  assert 'pcen.png (MelFilterbanks has no PCEN)' in summary
