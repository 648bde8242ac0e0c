"""Shows what the frontend of a trained run learned: figures and a summary.

  python -m experiments.inspect --model_dir=runs/default [--wav=clip.wav]

Reads model_dir/best.keras (or --checkpoint; last.keras when there is no
best.keras), prints a short summary (how far the centre frequencies moved, in
Hz and in mel; bandwidths; pooling widths; PCEN parameters; parameters held
at a constraint) and writes into model_dir/inspect/:
  summary.txt              the printed summary
  filter_responses.png     initial vs learned frequency responses (Hz)
  centre_frequencies.png   centre frequency vs bandwidth, against mel
  pooling.png              pooling widths (frontends with learnable pooling)
  pcen.png                 PCEN parameters (frontends with PCEN)
  representation.png       --wav through the frontend next to its log mel
                           spectrogram (without --wav: a built-in chirp)
Needs matplotlib (the `experiments` extra brings it). --model_dir may be on
any TensorFlow file system (gs://...).

TensorFlow's and the converters' log lines are hidden unless --verbosity
(-v) is given (experiments/console.py).
"""

import io
import os
import pathlib
import sys
from typing import Optional

from experiments import console as console_lib

if __name__ == '__main__':
  # Before TensorFlow is imported: what it prints then goes to the log.
  console_lib.Console.start(sys.argv)

# pylint: disable=g-import-not-at-top,wrong-import-position
from absl import app
from absl import flags
import numpy as np

from experiments import errors
from experiments import run_flags
# pylint: enable=g-import-not-at-top,wrong-import-position

_MODEL_DIR = run_flags.MODEL_DIR
flags.mark_flag_as_required('model_dir')
flags.declare_key_flag('model_dir')  # Listed by --helpshort.
_WAV = flags.DEFINE_string(
    'wav', None, 'A WAV file to show through the frontend; default: a chirp.')
_CHECKPOINT = run_flags.CHECKPOINT
flags.declare_key_flag('checkpoint')

OUTPUT_FOLDER = 'inspect'


def load_frontend(model_dir, checkpoint: Optional[str] = None):
  """(frontend layer, model file) of a run's saved model."""
  # Imported here so that `--help` stays fast; models registers the classes
  # that .keras files name.
  from experiments import storage  # pylint: disable=g-import-not-at-top
  from experiments.training import model_files  # pylint: disable=g-import-not-at-top
  from experiments import models  # pylint: disable=g-import-not-at-top,unused-import
  model_dir = os.fspath(model_dir)
  names = [checkpoint] if checkpoint else ['best.keras', 'last.keras']
  for name in names:
    path = storage.join(model_dir, name)
    if storage.exists(path):
      model = model_files.load_keras_file(path, compile=False)
      frontend = getattr(model, 'frontend', None)
      if frontend is None:
        raise ValueError(f'{path} holds a {type(model).__name__} without a '
                         '`frontend`; expected an AudioClassifier from '
                         'experiments.train.')
      return frontend, path
  raise FileNotFoundError(
      f'{" or ".join(storage.join(model_dir, n) for n in names)} not found: '
      '--model_dir must be the folder of a training run (python -m '
      'experiments.train --model_dir=...).')


def _span(values, unit, digits=1):
  low, high = float(np.min(values)), float(np.max(values))
  if np.isclose(low, high):
    return f'{low:.{digits}f} {unit}'
  return f'{low:.{digits}f}-{high:.{digits}f} {unit}'


def _channels(indices):
  indices = [int(i) for i in indices]
  shown = ', '.join(str(i) for i in indices[:8])
  return shown + (', ...' if len(indices) > 8 else '')


def _at(values, bound, beyond):
  """Indices where values reach `bound` (or lie beyond it: 'below'/'above')."""
  values = np.asarray(values, np.float64)
  close = np.isclose(values, bound, rtol=1e-5, atol=1e-7)
  past = values < bound if beyond == 'below' else values > bound
  return np.flatnonzero(close | past)


def constraint_hits(frontend) -> list:
  """One line per group of parameters held at (or clipped to) a constraint."""
  from leaf_audio import plotting  # pylint: disable=g-import-not-at-top
  hits = []

  def report(indices, what):
    if len(indices):
      hits.append(f'{len(indices)} {what} (channels {_channels(indices)})')

  sample_rate = frontend.sample_rate
  conv = plotting.filterbank_layer(frontend)
  gabor = plotting.gabor_parameters(frontend)
  if gabor is not None:
    low, high = conv.kernel.constraint.sigma_range
    report(_at(gabor[:, 0], 0., 'below'), 'Gabor centre frequencies at 0 Hz')
    report(_at(gabor[:, 0], np.pi, 'above'),
           f'Gabor centre frequencies at Nyquist ({sample_rate / 2:g} Hz)')
    report(_at(gabor[:, 1], low, 'below'),
           'Gabor widths at their smallest sigma (widest band, '
           f'{plotting.gabor_bandwidth_hz(low, sample_rate):.0f} Hz)')
    report(_at(gabor[:, 1], high, 'above'),
           'Gabor widths at their largest sigma (narrowest band, '
           f'{plotting.gabor_bandwidth_hz(high, sample_rate):.0f} Hz)')
  elif hasattr(conv, 'band_edges_hz'):  # sinc filters
    _, band_high = conv.band_edges_hz()
    report(_at(np.asarray(band_high), sample_rate / 2, 'above'),
           f'sinc bands cut at Nyquist ({sample_rate / 2:g} Hz)')
  gaussian = plotting.gaussian_pooling_sigma(frontend)
  if gaussian is not None:
    sigma, size = gaussian
    report(_at(sigma, 2. / size, 'below'),
           'pooling widths at their minimum (sigma 2 / window)')
    report(_at(sigma, 0.5, 'above'), 'pooling widths at their maximum '
           '(sigma 0.5)')
  pcen = plotting.pcen_layer(frontend)
  if pcen is not None:
    values = plotting.pcen_parameters(frontend)
    report(_at(values['alpha'], 1., 'above'), 'PCEN alpha at 1 (clipped)')
    report(_at(values['root'], 1., 'below'), 'PCEN root at 1 (clipped)')
    if pcen.min_delta is not None:
      report(_at(values['delta'], pcen.min_delta, 'below'),
             f'PCEN delta at min_delta={pcen.min_delta:g}')
    report(_at(values['smooth'], 0., 'below'), 'PCEN smoothing at 0')
    report(_at(values['smooth'], 1., 'above'), 'PCEN smoothing at 1')
  return hits


def learned_lines(frontend, initial) -> list:
  """Every learned quantity against its initialisation, stage by stage.

  Read through `leaf_audio.stages` (any stage that declares parameters,
  including one written outside the package): one line per stage with how
  far it moved (`plotting.parameter_drift`, 0.1 is about 10 %), then each
  parameter's range now and at initialisation.
  """
  from leaf_audio import plotting  # pylint: disable=g-import-not-at-top
  learned = plotting.stage_parameters(frontend)
  start = plotting.stage_parameters(initial)
  drift = plotting.parameter_drift(frontend, initial)
  lines = ['Learned since initialisation (relative change, median over '
           'channels):']
  for stage, parameters in learned.items():
    moved = drift[stage]
    lines.append(f'  {stage} moved {moved["moved"]:.3g} (' + ', '.join(
        f'{name} {moved[name]:.3g}' for name in parameters if name in moved)
                 + ')')
    for name, value in parameters.items():
      before = start.get(stage, {}).get(name)
      digits = 1 if value.unit else 3
      initially = ('' if before is None else ' (initially '
                   f'{_span(before.values, value.unit, digits).strip()})')
      lines.append(f'    {name} '
                   f'{_span(value.values, value.unit, digits).strip()}'
                   f'{initially}')
  if not learned:
    lines.append('  no stage declares learned parameters')
  return lines


def summarize(frontend, initial, source: str = '') -> str:
  """The text summary of what `frontend` learned since `initial`."""
  # pylint: disable=g-import-not-at-top
  from leaf_audio import melfilters
  from leaf_audio import plotting
  # pylint: enable=g-import-not-at-top
  trainable = sum(int(np.prod(w.shape)) for w in frontend.trainable_weights)
  channels = frontend.compute_output_shape((None, None))[-1]
  lines = [f'{type(frontend).__name__}{" from " + source if source else ""}: '
           f'{channels} filters at {frontend.sample_rate:g} Hz, '
           f'{trainable} trainable parameters']
  learned = plotting.filterbank_summary(frontend)
  start = plotting.filterbank_summary(initial)
  moved_hz = np.abs(learned.centre_hz - start.centre_hz)
  moved_mel = np.abs(melfilters.hz_to_mel(np.maximum(learned.centre_hz, 0)) -
                     melfilters.hz_to_mel(np.maximum(start.centre_hz, 0)))
  most = int(np.argmax(moved_hz))
  lines += [
      f'Filters ({learned.method}):',
      f'  centre frequencies moved {_span(moved_hz, "Hz")} (median '
      f'{np.median(moved_hz):.1f} Hz), {_span(moved_mel, "mel")} (median '
      f'{np.median(moved_mel):.1f} mel); most: channel {most}, '
      f'{start.centre_hz[most]:.1f} -> {learned.centre_hz[most]:.1f} Hz',
      f'  centre frequencies {_span(learned.centre_hz, "Hz")} (initially '
      f'{_span(start.centre_hz, "Hz")})',
      f'  bandwidths (FWHM) {_span(learned.bandwidth_hz, "Hz")} (initially '
      f'{_span(start.bandwidth_hz, "Hz")})',
  ]
  try:
    widths = plotting.pooling_widths_ms(frontend)
    lines.append(f'Pooling window FWHM {_span(widths, "ms", 2)} (initially '
                 f'{_span(plotting.pooling_widths_ms(initial), "ms", 2)})')
  except ValueError:
    pass
  try:
    values = plotting.pcen_parameters(frontend)
    lines.append('PCEN ' + ', '.join(
        f'{name} {_span(value, "", 3).strip()}'
        for name, value in values.items()))
  except ValueError:
    pass
  lines += learned_lines(frontend, initial)
  hits = constraint_hits(frontend)
  lines.append('At a constraint: ' + ('none' if not hits else ''))
  lines += [f'  {hit}' for hit in hits]
  return '\n'.join(lines)


def demo_clip(sample_rate: float, seconds: float = 2.0) -> np.ndarray:
  """A 440 Hz tone plus a linear chirp from 100 Hz to 0.9 Nyquist, float32."""
  t = np.arange(int(seconds * sample_rate)) / sample_rate
  top = 0.45 * sample_rate
  chirp = np.sin(2 * np.pi * (100 * t + 0.5 * (top - 100) / seconds * t**2))
  return (0.3 * np.sin(2 * np.pi * 440 * t) + 0.3 * chirp).astype(np.float32)


def _read_clip(path, sample_rate):
  from experiments.data import wav  # pylint: disable=g-import-not-at-top
  samples, rate = wav.read_wav(path)
  audio = wav.to_mono(samples)
  if rate != sample_rate:
    audio = wav.resample(audio, rate, sample_rate)
  return np.asarray(audio, np.float32)


def inspect_run(model_dir, wav_path=None, checkpoint=None):
  """Writes the figures and summary of a run; returns (summary, paths).

  model_dir may be on any TensorFlow file system (gs://...); the paths of
  the figures are pathlib.Paths for a local model_dir, URLs otherwise.
  """
  from leaf_audio import plotting  # pylint: disable=g-import-not-at-top
  from experiments import storage  # pylint: disable=g-import-not-at-top
  frontend, model_file = load_frontend(model_dir, checkpoint)
  initial = plotting.initial_frontend(frontend)
  output = storage.join(model_dir, OUTPUT_FOLDER)
  storage.makedirs(output)
  summary = summarize(frontend, initial, source=str(model_file))
  paths, skipped = [], []

  def save(name, draw, *args):
    figure = draw(frontend, *args)
    path = storage.join(output, f'{name}.png')
    png = io.BytesIO()
    figure.savefig(png, format='png', dpi=100)
    storage.write_bytes(path, png.getvalue())
    paths.append(path if storage.is_url(path) else pathlib.Path(path))

  save('filter_responses', plotting.plot_filter_responses, initial)
  save('centre_frequencies', plotting.plot_centre_frequencies, initial)
  try:
    plotting.pooling_widths_ms(frontend)
  except ValueError as reason:  # No learnable pooling.
    skipped.append(f'pooling.png ({str(reason).rstrip(".")})')
  else:
    save('pooling', plotting.plot_pooling, initial)
  if plotting.pcen_layer(frontend) is None:
    skipped.append(f'pcen.png ({type(frontend).__name__} has no PCEN)')
  else:
    save('pcen', plotting.plot_pcen, initial)
  if plotting.stage_parameters(frontend):
    save('parameters', plotting.plot_parameters, initial)
  else:
    skipped.append('parameters.png (no stage declares learned parameters)')
  if wav_path:
    clip, title = _read_clip(wav_path, frontend.sample_rate), str(wav_path)
    summary += f'\nClip: {wav_path}'
  else:
    clip = demo_clip(frontend.sample_rate)
    title = 'a 440 Hz tone and a linear chirp (no --wav given)'
  save('representation', plotting.plot_representation, clip, title)
  summary += '\nFigures: ' + ', '.join(str(p) for p in paths)
  if skipped:
    summary += '\nNot drawn: ' + '; '.join(skipped)
  storage.write_bytes(storage.join(output, 'summary.txt'),
                      (summary + '\n').encode('utf-8'))
  return summary, paths


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  try:
    summary, _ = inspect_run(_MODEL_DIR.value, _WAV.value, _CHECKPOINT.value)
  except (FileNotFoundError, ImportError, ValueError) as error:
    errors.report_and_exit(error)
  print(summary)


if __name__ == '__main__':
  console_lib.run(main)
