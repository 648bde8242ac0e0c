"""Exports the serving SavedModel of a trained run, and .tflite/.onnx files.

  python -m experiments.export --model_dir=runs/default
  python -m experiments.export --model_dir=runs/default \
      --tflite=runs/default/leaf.tflite --onnx=runs/default/leaf.onnx \
      --streaming_tflite=runs/default/streaming.tflite \
      --streaming_onnx=runs/default/streaming.onnx

Reads model_dir/best.keras (or --checkpoint) and model_dir/run.json, and
writes model_dir/export (or --export_dir); training already does this at its
end, so this is for re-exporting, e.g. another checkpoint, and for the
converted files (`pip install -e '.[deploy]'`):

  --tflite / --onnx                      the offline classifier: waveforms
      [batch, samples] of any length -> probabilities, valid (as
      serving_default), for LiteRT / onnxruntime
  --streaming_tflite / --streaming_onnx  the streaming classifier (one hop
      and explicit state in, probabilities out; docs/streaming.md)

Each file describes itself (sample rate, labels, hop, lookahead: see
experiments/serving/converters.py) and is written atomically; an existing
file is replaced only if an earlier export wrote it. --export_dir must be
new, empty or a previous export (see experiments/serving/export_directory.py).
Every destination is checked before anything is written; anything refused is
left intact. Errors print one `error: ...` line and exit with the status of
their kind (experiments/errors.py; 1 for others).
"""

import pathlib
import sys

from absl import app
from absl import flags

from experiments import errors

_MODEL_DIR = flags.DEFINE_string('model_dir', None, 'Folder of a training run.',
                                 required=True)
_CHECKPOINT = flags.DEFINE_string(
    'checkpoint', 'best.keras', 'Model file inside model_dir to export.')
_EXPORT_DIR = flags.DEFINE_string(
    'export_dir', None, 'Destination: a new or empty folder, or a previous '
    'export; defaults to model_dir/export.')
_TFLITE = flags.DEFINE_string(
    'tflite', None, 'Also write the offline classifier (waveforms of any '
    'length in, probabilities and valid out) as a .tflite file here.')
_ONNX = flags.DEFINE_string(
    'onnx', None, 'Also write the offline classifier as an .onnx file here.')
_STREAMING_TFLITE = flags.DEFINE_string(
    'streaming_tflite', None, 'Also write the streaming classifier (one hop '
    'and explicit state in, probabilities out) as a .tflite file here; see '
    'docs/streaming.md.')
_STREAMING_ONNX = flags.DEFINE_string(
    'streaming_onnx', None, 'Also write the streaming classifier as an .onnx '
    'file here.')


_DESCRIPTIONS = {
    'tflite': 'TFLite model', 'onnx': 'ONNX model',
    'streaming_tflite': 'Streaming TFLite model',
    'streaming_onnx': 'Streaming ONNX model',
}


def _destinations(tflite=None, onnx=None, streaming_tflite=None,
                  streaming_onnx=None):
  return {'tflite': (tflite, 'tflite'), 'onnx': (onnx, 'onnx'),
          'streaming_tflite': (streaming_tflite, 'tflite'),
          'streaming_onnx': (streaming_onnx, 'onnx')}


def export_run(model_dir, checkpoint='best.keras', export_dir=None, *,
               tflite=None, onnx=None, streaming_tflite=None,
               streaming_onnx=None, report=None):
  """Exports model_dir/checkpoint and the converted files asked for.

  Returns:
    {'saved_model': folder, and each written flag name: its path}.

  Raises:
    FileNotFoundError: model_dir is not a training run.
    export_directory.ExportDirectoryError,
    converters.ArtifactDestinationError: a destination may not be replaced
      (every one is checked before anything is written).
    model_files.DamagedModelFileError: the checkpoint cannot be read.
    ValueError: a conversion failed (the message names the flag).
    checkpoints.RunFileError: run.json is damaged.
    run_lock.RunLockedError: another process (a training) works in
      model_dir.
  """
  # Imported here so that `--help` stays fast.
  import leaf_audio  # pylint: disable=g-import-not-at-top,unused-import
  from experiments.training import run_files as checkpoints  # pylint: disable=g-import-not-at-top
  from experiments.serving import converters  # pylint: disable=g-import-not-at-top
  from experiments.serving import export_directory  # pylint: disable=g-import-not-at-top
  from experiments.training import model_files  # pylint: disable=g-import-not-at-top
  from experiments.training import run_lock  # pylint: disable=g-import-not-at-top
  report = report or (lambda message: None)
  model_dir = pathlib.Path(model_dir)
  export_dir = pathlib.Path(export_dir or model_dir / 'export')
  # Before anything slow: a destination we may not replace ends the run.
  export_directory.check_destination(export_dir, model_dir)
  files = converters.check_destinations(_destinations(
      tflite, onnx, streaming_tflite, streaming_onnx))
  run = checkpoints.read_run_file(model_dir)
  model_file = model_dir / checkpoint
  if not model_file.exists():
    raise FileNotFoundError(
        f'{model_file} not found: --model_dir must be the folder of a '
        'training run (python -m experiments.train --model_dir=...).')
  # No training may replace best.keras while it is read and exported.
  with run_lock.acquire(model_dir, 'export'):
    model = model_files.load_keras_file(model_file)
    return _export_model(model, run, model_dir, export_dir, files, report)


def _export_model(model, run, model_dir, export_dir, files, report):
  """The SavedModel of `model`, then each converted file of `files`."""
  from experiments import models  # pylint: disable=g-import-not-at-top
  from experiments.serving import converters  # pylint: disable=g-import-not-at-top
  from experiments.serving import signatures as serving  # pylint: disable=g-import-not-at-top
  from experiments.serving import streaming_signatures as streaming_export  # pylint: disable=g-import-not-at-top
  lookahead_samples = 0
  if {'streaming_tflite', 'streaming_onnx'} & set(files):
    try:
      stream = streaming_export.StreamingClassifier(
          model, run['window_samples'], run['multi_label'])
    except (ValueError, AttributeError) as error:
      flag = sorted({'streaming_tflite', 'streaming_onnx'} & set(files))[0]
      raise ValueError(f'--{flag}: the model cannot stream: {error}') from error
    lookahead_samples = stream.frontend.delay_frames * stream.hop_samples
  windowed = models.WindowedClassifier(model, run['window_samples'])
  written = {'saved_model': serving.export_saved_model(
      windowed, run['label_names'], run['sample_rate'], run['window_samples'],
      run['multi_label'], export_dir, model_dir=model_dir)}
  report(f'SavedModel written to {written["saved_model"]}')
  writers = {
      'tflite': converters.write_offline_tflite,
      'onnx': converters.write_offline_onnx,
      'streaming_tflite': lambda d, p: converters.write_streaming_tflite(
          d, p, lookahead_samples),
      'streaming_onnx': lambda d, p: converters.write_streaming_onnx(
          d, p, lookahead_samples),
  }
  for flag, path in files.items():
    written[flag] = writers[flag](written['saved_model'], path)
    report(f'{_DESCRIPTIONS[flag]} written to {written[flag]}')
  return written


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  try:
    export_run(_MODEL_DIR.value, _CHECKPOINT.value, _EXPORT_DIR.value,
               tflite=_TFLITE.value, onnx=_ONNX.value,
               streaming_tflite=_STREAMING_TFLITE.value,
               streaming_onnx=_STREAMING_ONNX.value, report=print)
  except (ValueError, OSError) as error:
    # ExportDirectoryError, ArtifactDestinationError and
    # DamagedModelFileError and RunLockedError are ValueErrors.
    errors.report_and_exit(error)


if __name__ == '__main__':
  app.run(main)
