"""`--model` (and its older name `--saved_model`): the exported model that
`experiments.predict` and `experiments.stream` run.

One definition for both binaries, so that a process may import both (absl
refuses a flag defined twice).
"""

from absl import flags

MODEL = flags.DEFINE_string(
    'model', None, 'The exported model: an export folder (its newest '
    'version) or SavedModel folder, or a .tflite or .onnx file written by '
    'experiments.export (a streaming one for experiments.stream).')
flags.DEFINE_alias('saved_model', 'model')
