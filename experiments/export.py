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

TensorFlow's and the converters' log lines are hidden unless --verbosity
(-v) is given (experiments/console.py).
"""

import sys

from experiments import console as console_lib

if __name__ == '__main__':
  # Before TensorFlow is imported: what it prints then goes to the log.
  console_lib.Console.start(sys.argv)

# pylint: disable=g-import-not-at-top,wrong-import-position
from absl import app
from absl import flags

from experiments import errors
from experiments import run_flags
from experiments.serving.exporting import export_run  # pylint: disable=unused-import
# pylint: enable=g-import-not-at-top,wrong-import-position

_MODEL_DIR = run_flags.MODEL_DIR
flags.mark_flag_as_required('model_dir')
flags.declare_key_flag('model_dir')  # Listed by --helpshort.
_CHECKPOINT = run_flags.CHECKPOINT
flags.declare_key_flag('checkpoint')
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


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  try:
    export_run(_MODEL_DIR.value, _CHECKPOINT.value or 'best.keras',
               _EXPORT_DIR.value,
               tflite=_TFLITE.value, onnx=_ONNX.value,
               streaming_tflite=_STREAMING_TFLITE.value,
               streaming_onnx=_STREAMING_ONNX.value, report=print)
  except (ValueError, OSError) as error:
    # ExportDirectoryError, ArtifactDestinationError, DamagedModelFileError
    # and RunLockedError are ValueErrors.
    errors.report_and_exit(error)


if __name__ == '__main__':
  console_lib.run(main)
