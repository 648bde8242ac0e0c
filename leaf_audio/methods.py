"""How a frontend computes filterbank -> squared modulus -> pooling.

  'direct'  each stage as its layer: a stride-1 convolution at the full rate,
            the squared modulus, the pooling (the reference).
  'fft'     `fft_filterbank.pooled_energy`: the same function with FFTs,
            evaluated only at the kept frames, in bounded memory.
  'auto'    'fft' when it applies, else 'direct'.
  'fft_builtin'   `real_fft_filterbank.pooled_energy`: the FFT method's
            function with operations TFLite has as builtins (forward real
            FFTs only, all chunks at once), for models converted to
            .tflite/.onnx; in TensorFlow 'fft' is faster.
  'auto_builtin'  'fft_builtin' when the FFT method applies, else 'direct':
            what the offline .tflite and .onnx files are converted from.

The FFT method applies when every stage says it can (`stages.Stage.
fft_problem`): a stride-1, 'same', bias-free filterbank with complex impulse
responses (`complex_filters()`: `GaborConv1D`, or a `keras.layers.Conv1D`
with real and imaginary parts interleaved), `SquaredModulus`, and a pooling
stage with windows (`GaussianLowpassPooling`, `LearnablePooling1D`) whose
window spans at most `blocks.MAX_PIECES` (8) hops, in float32. Otherwise the
stages run directly. A frontend's `active_method` is the method it runs:
'direct', 'fft' or 'fft_builtin'.
"""

import contextlib

import keras

from leaf_audio import fft_filterbank
from leaf_audio import real_fft_filterbank
from leaf_audio import stages
from leaf_audio import sublayers

METHODS = ('auto', 'direct', 'fft', 'fft_builtin', 'auto_builtin')
# The methods that compute filterbank -> modulus -> pooling in one function.
FFT_METHODS = ('fft', 'fft_builtin')


def check_method(owner: str, method) -> str:
  if method not in METHODS:
    raise ValueError(f'{owner}: method must be one of {METHODS}; got '
                     f'{method!r}.')
  return method


def fft_problem(conv, activation, pool, dtype) -> str:
  """Why the FFT method does not apply to these stages, or '' if it does.

  Each stage answers for itself (`stages.Stage.fft_problem`).
  """
  for role, layer in (('filterbank', conv), ('activation', activation),
                      ('pooling', pool)):
    if layer is None:
      return f'there is no {role} stage'
    problem = stages.of(layer).fft_problem(role)
    if problem:
      return problem
  if dtype != 'float32':
    return f'the frontend computes in {dtype}, not float32'
  return ''


def resolve(owner: str, method: str, conv, activation, pool, dtype) -> str:
  """The method a frontend uses: 'direct', 'fft' or 'fft_builtin'; raises
  if 'fft' or 'fft_builtin' cannot compute the stages."""
  problem = fft_problem(conv, activation, pool, dtype)
  if method in FFT_METHODS and problem:
    fallback = 'auto_builtin' if method == 'fft_builtin' else 'auto'
    raise ValueError(f"{owner}: method={method!r} cannot compute these "
                     f"stages: {problem}. Use method='direct' or "
                     f"{fallback!r}.")
  if method in ('auto', 'auto_builtin'):
    fft = 'fft' if method == 'auto' else 'fft_builtin'
    return 'direct' if problem else fft
  return method


def pooled_energy_fft(waveform, conv, pool, training=None, method='fft'):
  """The FFT method's pooled energies for these layers; waveform [batch, samples, 1].

  `method` 'fft' (`fft_filterbank.pooled_energy`) or 'fft_builtin'
  (`real_fft_filterbank.pooled_energy`). With 'fft', in training
  (`training` true) the forward pass keeps its filter outputs for the
  backward pass, up to `fft_filterbank.KEPT_BYTES`; otherwise it keeps none,
  so that the function can be exported as a SavedModel (a gradient taken
  then filters the input again).
  """
  real, imag = stages.of(conv).complex_filters()
  pooling = stages.of(pool)
  geometry = pooling.stage_geometry()
  if method == 'fft_builtin':
    return real_fft_filterbank.pooled_energy(
        waveform[:, :, 0], real, imag, pooling.stream_windows(),
        geometry.hop_samples, geometry.padding)
  return fft_filterbank.pooled_energy(
      waveform[:, :, 0], real, imag, pooling.stream_windows(),
      geometry.hop_samples, geometry.padding,
      kept_bytes=fft_filterbank.KEPT_BYTES if training else 0)


def _set_method(config, method):
  """Sets 'method' in every leaf_audio frontend config nested in `config`."""
  if isinstance(config, dict):
    inner = config.get('config')
    if (isinstance(inner, dict) and inner.get('method') in METHODS and
        str(config.get('registered_name', '')).startswith('leaf_audio>')):
      inner['method'] = method
    for value in config.values():
      _set_method(value, method)
  elif isinstance(config, (list, tuple)):
    for value in config:
      _set_method(value, method)


@contextlib.contextmanager
def computed_with(model, method: str):
  """Inside, every leaf_audio frontend of `model` (a Keras model or layer)
  computes with `method`, on the model's own weights.

  For tracing a function in another method without copying the model (as
  `with_method` does): an export's `tflite` and `onnx` signatures call the
  serving model inside `computed_with(model, 'auto_builtin')` and
  `computed_with(model, 'direct')`, so the SavedModel holds one set of
  weights. The method is read when a function is traced, so enter it inside
  the traced function's body (each trace then sees it), in one thread.

  Args:
    model: a Keras model or layer that contains leaf_audio frontends.
    method: one of `METHODS`.

  Yields:
    `model`.
  """
  check_method('computed_with', method)
  with contextlib.ExitStack() as frontends:
    for layer in sublayers.within(model):
      if callable(getattr(layer, 'computing_with', None)):
        frontends.enter_context(layer.computing_with(method))
    yield model


def with_method(model, method: str):
  """A copy of a built Keras model or layer whose frontends all use `method`.

  The copy has the same weights. For example, `with_method(model, 'direct')`
  gives a model that the TFLite converter takes (TFLite has no FFT of every
  length and no loops over tensor lists), computing the same function, and
  `with_method(model, 'auto_builtin')` one that it takes and runs faster
  (the FFT method with TFLite builtins wherever it applies).

  Args:
    model: a built Keras model or layer that contains leaf_audio frontends.
    method: one of `METHODS`.

  Returns:
    A new, built model of the same class.
  """
  check_method('with_method', method)
  if not model.built:
    raise ValueError('with_method needs a built model, so that the copy can '
                     'take its weights; call the model on an input first.')
  config = keras.saving.serialize_keras_object(model)
  _set_method(config, method)
  copy = keras.saving.deserialize_keras_object(config)
  copy.set_weights(model.get_weights())
  return copy
