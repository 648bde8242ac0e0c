"""Exports the serving SavedModel of a trained run.

  python -m experiments.export --model_dir=runs/default
  python -m experiments.export --model_dir=runs/default \
      --streaming_tflite=runs/default/streaming.tflite

Reads model_dir/best.keras (or --checkpoint) and model_dir/run.json, and
writes model_dir/export (or --export_dir); training already does this at its
end, so this is for re-exporting, e.g. another checkpoint.

--export_dir must be new, empty or a previous export (see
experiments/serving/export_directory.py); anything else is refused and left intact.
Errors print one `error: ...` line and exit with status 1.
"""

import pathlib
import sys

from absl import app
from absl import flags

_MODEL_DIR = flags.DEFINE_string('model_dir', None, 'Folder of a training run.',
                                 required=True)
_CHECKPOINT = flags.DEFINE_string(
    'checkpoint', 'best.keras', 'Model file inside model_dir to export.')
_EXPORT_DIR = flags.DEFINE_string(
    'export_dir', None, 'Destination: a new or empty folder, or a previous '
    'export; defaults to model_dir/export.')
_STREAMING_TFLITE = flags.DEFINE_string(
    'streaming_tflite', None, 'Also write the streaming classifier (one hop '
    'and explicit state in, probabilities out) as a .tflite file here; see '
    'docs/streaming.md.')


def export_run(model_dir, checkpoint='best.keras', export_dir=None):
  """Exports model_dir/checkpoint; returns the SavedModel folder.

  Raises:
    FileNotFoundError: model_dir is not a training run.
    export_directory.ExportDirectoryError: export_dir may not be replaced.
    model_files.DamagedModelFileError: the checkpoint cannot be read.
    checkpoints.RunFileError: run.json is damaged.
    run_lock.RunLockedError: another process (a training) works in
      model_dir.
  """
  # Imported here so that `--help` stays fast.
  import leaf_audio  # pylint: disable=g-import-not-at-top,unused-import
  from experiments.training import run_files as checkpoints  # pylint: disable=g-import-not-at-top
  from experiments.serving import export_directory  # pylint: disable=g-import-not-at-top
  from experiments.training import model_files  # pylint: disable=g-import-not-at-top
  from experiments import models  # pylint: disable=g-import-not-at-top
  from experiments.training import run_lock  # pylint: disable=g-import-not-at-top
  from experiments.serving import signatures as serving  # pylint: disable=g-import-not-at-top
  model_dir = pathlib.Path(model_dir)
  export_dir = pathlib.Path(export_dir or model_dir / 'export')
  # Before anything slow: a destination we may not replace ends the run.
  export_directory.check_destination(export_dir, model_dir)
  run = checkpoints.read_run_file(model_dir)
  model_file = model_dir / checkpoint
  if not model_file.exists():
    raise FileNotFoundError(
        f'{model_file} not found: --model_dir must be the folder of a '
        'training run (python -m experiments.train --model_dir=...).')
  # No training may replace best.keras while it is read and exported.
  with run_lock.acquire(model_dir, 'export'):
    model = model_files.load_keras_file(model_file)
    windowed = models.WindowedClassifier(model, run['window_samples'])
    return serving.export_saved_model(
        windowed, run['label_names'], run['sample_rate'],
        run['window_samples'], run['multi_label'], export_dir,
        model_dir=model_dir)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  try:
    path = export_run(_MODEL_DIR.value, _CHECKPOINT.value, _EXPORT_DIR.value)
  except (ValueError, OSError, RuntimeError) as error:
    # ExportDirectoryError and DamagedModelFileError are ValueErrors,
    # RunLockedError a RuntimeError.
    sys.exit(f'error: {error}')
  print(f'SavedModel written to {path}')
  if _STREAMING_TFLITE.value:
    from experiments.serving import streaming_signatures as streaming_export  # pylint: disable=g-import-not-at-top
    try:
      tflite = streaming_export.write_streaming_tflite(path,
                                                       _STREAMING_TFLITE.value)
    except ValueError as error:
      raise SystemExit(f'error: {error}') from None
    print(f'Streaming TFLite model written to {tflite}')


if __name__ == '__main__':
  app.run(main)
