"""Exports a training run: the SavedModel and the converted files asked for.

`export_run` is what `python -m experiments.export` calls (kept apart from
the binary so that code and tests can call it without defining its flags).
"""

import json
import pathlib

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
  # Registers the model classes that best.keras names.
  from experiments import models  # pylint: disable=g-import-not-at-top,unused-import
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


def _refuse_tflite_without_builtins(model, files) -> None:
  """Raises ValueError, before any work, for --tflite / --streaming_tflite
  when a stage of the model's frontend has no TFLite builtin form
  (`leaf_audio.stages.Stage.tflite_builtins`, e.g. SincNet's float64
  filterbank)."""
  from leaf_audio import frontend as frontend_lib  # pylint: disable=g-import-not-at-top
  from leaf_audio import stages  # pylint: disable=g-import-not-at-top
  flags = sorted({'tflite', 'streaming_tflite'} & set(files))
  frontend = getattr(model, 'frontend', None)
  if not flags or not isinstance(frontend, frontend_lib.Frontend):
    return
  for role in frontend_lib.STAGES:
    layer = getattr(frontend, role)
    if layer is not None and not stages.of(layer).tflite_builtins:
      raise ValueError(
          f'--{flags[0]}: {type(frontend).__name__}\'s {role} '
          f'({type(layer).__name__}) has no TFLite builtin form (its '
          'tflite_builtins is False), so the model cannot be converted to '
          '.tflite; serve the SavedModel (the export folder) instead. '
          'Nothing was written.')


def _export_model(model, run, model_dir, export_dir, files, report):
  """The SavedModel of `model`, then each converted file of `files`."""
  from experiments import models  # pylint: disable=g-import-not-at-top
  from experiments.serving import converters  # pylint: disable=g-import-not-at-top
  from experiments.serving import signatures as serving  # pylint: disable=g-import-not-at-top
  from experiments.serving import streaming_signatures as streaming_export  # pylint: disable=g-import-not-at-top
  _refuse_tflite_without_builtins(model, files)
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
  # One load of the SavedModel for all the files.
  written.update(converters.write_files(
      written['saved_model'], files, lookahead_samples,
      report=lambda flag, path: report(
          f'{_DESCRIPTIONS[flag]} written to {path}')))
  return written
