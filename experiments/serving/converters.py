"""Converts an export's SavedModel to self-describing .tflite and .onnx files.

  check_destination        refuses a path that is not ours to replace
  write_offline_tflite     'tflite' signature -> .tflite (LiteRT builtins)
  write_offline_onnx       'onnx' signature (older exports: 'tflite') -> .onnx
                           (opset ONNX_OPSET)
  write_streaming_tflite   'stream_step' signature -> .tflite
  write_streaming_onnx     'stream_step' signature -> .onnx
  write_files              several of these from one load of the SavedModel
  read_metadata            the marker of a .tflite or .onnx file, or None

Every file carries this project's marker: JSON under the key `leaf_audio`,
in the TFLite model's metadata or the ONNX model's `metadata_props`. It
holds what a client needs to run the file without the SavedModel:

  kind            'offline' or 'streaming'
  sample_rate     Hz
  label_names     the classes, in the order of `probabilities`
  window_samples  the window the classifier was trained on
  multi_label     sigmoid (True) or softmax (False) probabilities
  hop_samples, lookahead_samples   streaming only: samples per step, and the
                  zeros to feed after the last sample so that the stream has
                  seen all of it (see docs/streaming.md)
  state_names     streaming only: the SavedModel state key of each
                  `state_in_<i>` / `state_out_<i>`

An existing destination is replaced only when it carries that marker;
anything else is refused with an error naming the file. Files are written
to a temporary name beside the destination and renamed over it, so a reader
never sees half a file.

Signatures of the converted files:
  offline:   waveform float32 [batch, samples], any length -> probabilities
             [batch, classes], valid bool [batch]
  streaming: samples float32 [1, hop_samples], state_in_<i> -> probabilities
             [1, classes], valid bool [1], state_out_<i> (inputs and outputs
             with distinct names, as ONNX requires); the state starts as zeros.

tf2onnx, onnx and the runtimes come with `pip install -e '.[deploy]'`; they
are imported only when an .onnx file is written or read.
"""

import json
import os
import pathlib
import tempfile

import numpy as np
import tensorflow as tf

from experiments.serving import export_directory

# The ONNX operator set the .onnx files are written for (onnxruntime >= 1.14
# runs it); pinned so that a converter upgrade cannot change the files.
ONNX_OPSET = 17
MARKER_KEY = 'leaf_audio'
PRODUCER = 'leaf-audio'
_FLOAT32_MAX = float(np.finfo(np.float32).max)
_SUFFIXES = {'tflite': '.tflite', 'onnx': '.onnx'}


class ArtifactDestinationError(ValueError):
  """A .tflite/.onnx destination that this package may not write to."""


def _format_of(path) -> str:
  suffix = pathlib.Path(path).suffix
  for name, expected in _SUFFIXES.items():
    if suffix == expected:
      return name
  raise ArtifactDestinationError(
      f'expected a file ending in .tflite or .onnx; got {str(path)!r}.')


def read_metadata(path):
  """The marker dict of a .tflite or .onnx file, or None when it has none.

  Raises:
    ValueError: the file cannot be parsed as the format its suffix says.
  """
  path = pathlib.Path(path)
  if _format_of(path) == 'tflite':
    return _read_tflite_metadata(path.read_bytes())
  import onnx  # pylint: disable=g-import-not-at-top
  try:
    model = onnx.load(str(path), load_external_data=False)
  except Exception as error:  # pylint: disable=broad-except
    raise ValueError(f'{str(path)!r} is not a readable ONNX file: '
                     f'{type(error).__name__}: {error}') from error
  for prop in model.metadata_props:
    if prop.key == MARKER_KEY:
      return _parse_marker(prop.value)
  return None


def _parse_marker(text):
  try:
    marker = json.loads(text)
  except ValueError:
    return None
  if isinstance(marker, dict) and marker.get('producer') == PRODUCER:
    return marker
  return None


def _read_tflite_metadata(content: bytes):
  from tensorflow.lite.python import schema_py_generated as schema  # pylint: disable=g-import-not-at-top
  try:
    model = schema.Model.GetRootAs(content, 0)
    for index in range(model.MetadataLength()):
      entry = model.Metadata(index)
      if entry.Name() == MARKER_KEY.encode():
        data = model.Buffers(entry.Buffer()).DataAsNumpy()
        return _parse_marker(bytes(np.asarray(data, np.uint8)).decode())
  except Exception as error:  # pylint: disable=broad-except
    raise ValueError(f'not a readable TFLite model: {type(error).__name__}: '
                     f'{error}') from error
  return None


def check_destination(path, flag: str, fmt: str) -> pathlib.Path:
  """Refuses a destination for a `fmt` ('tflite' or 'onnx') file.

  Allowed: a new path (its folder is created), or a file that carries this
  package's marker (an earlier conversion). Refused, before anything is
  written: another suffix, a folder, a file without the marker (a user's
  file, named in the error), a path inside an export folder (later exports
  would refuse to replace that folder).

  Raises:
    ArtifactDestinationError: naming `flag` and the path.
  """
  path = pathlib.Path(path)
  expected = _SUFFIXES[fmt]
  if path.suffix != expected:
    raise ArtifactDestinationError(
        f'--{flag} must name a {expected} file; got {str(path)!r}.')
  if path.exists() and not path.is_file():
    raise ArtifactDestinationError(
        f'--{flag} {str(path)!r} exists and is not a file; name a new '
        f'{expected} file.')
  if export_directory.is_export(path.parent):
    raise ArtifactDestinationError(
        f'--{flag} {str(path)!r} is inside an export folder, which later '
        'exports would then refuse to replace; write it beside the export.')
  if path.exists():
    try:
      marker = read_metadata(path)
    except (ValueError, OSError):
      marker = None
    if marker is None:
      raise ArtifactDestinationError(
          f'--{flag}: {str(path)!r} exists and was not written by '
          'experiments.export (it has no leaf_audio marker); refusing to '
          'replace it. Move it away or name another file.')
  return path


def check_destinations(destinations) -> dict:
  """check_destination for each {flag: (path, fmt)}; also refuses two flags
  naming the same file. Returns {flag: pathlib.Path} of the given ones."""
  checked = {}
  for flag, (path, fmt) in destinations.items():
    if path:
      checked[flag] = check_destination(path, flag, fmt)
  seen = {}
  for flag, path in checked.items():
    key = os.path.abspath(path)
    if key in seen:
      raise ArtifactDestinationError(
          f'--{seen[key]} and --{flag} name the same file {str(path)!r}.')
    seen[key] = flag
  return checked


def _write_atomically(path: pathlib.Path, content: bytes):
  path.parent.mkdir(parents=True, exist_ok=True)
  temporary = path.with_name(f'.{path.name}.{os.getpid()}.tmp')
  try:
    temporary.write_bytes(content)
    os.replace(temporary, path)
  finally:
    if temporary.exists():
      temporary.unlink()


def _with_tflite_metadata(content: bytes, marker: dict) -> bytes:
  from tensorflow.lite.python import schema_py_generated as schema  # pylint: disable=g-import-not-at-top
  from tensorflow.lite.tools import flatbuffer_utils  # pylint: disable=g-import-not-at-top
  model = flatbuffer_utils.convert_bytearray_to_object(bytearray(content))
  buffer = schema.BufferT()
  buffer.data = np.frombuffer(json.dumps(marker).encode(), np.uint8)
  model.buffers.append(buffer)
  entry = schema.MetadataT()
  entry.name = MARKER_KEY
  entry.buffer = len(model.buffers) - 1
  model.metadata = list(model.metadata or []) + [entry]
  return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


# ---------------------------------------------------------------- signatures


def _export_marker(loaded, saved_model_dir, kind: str, **extra) -> dict:
  metadata = loaded.signatures['metadata']()
  marker = {
      'producer': PRODUCER,
      'kind': kind,
      'sample_rate': int(metadata['sample_rate']),
      'label_names': [name.decode() for name in
                      metadata['label_names'].numpy()],
      'window_samples': int(metadata['window_samples']),
  }
  try:
    info = json.loads((pathlib.Path(saved_model_dir) /
                       export_directory.MARKER_FILE).read_text())
  except (OSError, ValueError):
    info = {}
  if isinstance(info, dict) and 'multi_label' in info:
    marker['multi_label'] = bool(info['multi_label'])
  marker.update(extra)
  return marker


def _module_of_variables(loaded):
  """A tf.Module that holds the loaded export's variables, and only them:
  what the converter's input needs saved beside its one function. (Holding
  `loaded` itself would save every function of the export again, and the
  TFLite converter would then load them all: seconds per file.)"""
  module = tf.Module()
  module.export_variables = [
      item for item in tf.train.TrackableView(loaded).descendants()
      if isinstance(item, tf.Variable)]
  return module


def _offline_module(loaded, saved_model_dir, fmt='tflite'):
  """A tf.Module whose 'serving_default' is the export's 'tflite' signature
  (TFLite builtins: the FFT method's builtin variant where it applies) or,
  for ONNX, its 'onnx' signature (the direct method, which onnxruntime runs
  faster) when the export has one: [batch, samples] -> probabilities, valid."""
  if 'tflite' not in loaded.signatures:
    raise ValueError(f'{saved_model_dir} has no tflite signature; re-export '
                     'it with python -m experiments.export.')
  key = 'onnx' if fmt == 'onnx' and 'onnx' in loaded.signatures else 'tflite'
  signature = loaded.signatures[key]
  spec = signature.structured_input_signature[1]['waveform']
  if spec.shape.as_list() != [None, None]:
    raise ValueError(
        f'{saved_model_dir} was exported before the tflite signature took any '
        f'length (its input is {spec.shape}); re-export it with python -m '
        'experiments.export.')
  module = _module_of_variables(loaded)

  @tf.function(input_signature=[
      tf.TensorSpec([None, None], tf.float32, name='waveform')])
  def classify(waveform):
    outputs = signature(waveform=waveform)
    return {'probabilities': outputs['probabilities'],
            'valid': outputs['valid']}

  module.classify = classify
  return module, classify


def stream_state_names(loaded, saved_model_dir):
  """The 'stream_step' signature's state keys, in the order of state_in_<i>."""
  if 'stream_step' not in loaded.signatures:
    raise ValueError(
        f'{saved_model_dir} has no stream_step signature: its frontend does '
        'not stream (see docs/streaming.md) or it was exported before '
        'streaming existed; re-export it with python -m experiments.export.')
  inputs = loaded.signatures['stream_step'].structured_input_signature[1]
  names = [name for name in inputs if name != 'samples']
  if all(name.startswith('state_in_') and name[9:].isdigit() for name in names):
    # The stream_step contract's names: state_in_<i>, in the order of i.
    return sorted(names, key=lambda name: int(name[9:]))
  return sorted(names)  # Exports before the contract: state_<key>.


def _streaming_module(loaded, saved_model_dir):
  """A tf.Module whose 'stream_step' renames the export's stream_step to
  samples, state_in_<i> -> probabilities, valid, state_out_<i>."""
  names = stream_state_names(loaded, saved_model_dir)
  signature = loaded.signatures['stream_step']
  inputs = signature.structured_input_signature[1]
  specs = [tf.TensorSpec(inputs['samples'].shape, tf.float32, name='samples')]
  specs += [tf.TensorSpec(inputs[name].shape, inputs[name].dtype,
                          name=f'state_in_{index}')
            for index, name in enumerate(names)]
  module = _module_of_variables(loaded)

  @tf.function(input_signature=specs)
  def step(samples, *state):
    outputs = signature(samples=samples,
                        **dict(zip(names, state)))
    probabilities = outputs['probabilities']
    result = {'probabilities': probabilities}
    if 'valid' in outputs:
      result['valid'] = outputs['valid']
    else:
      # |p| <= float32 max is False for NaN and inf and converts everywhere.
      result['valid'] = tf.reduce_all(
          tf.abs(probabilities) <= _FLOAT32_MAX, axis=-1)
    for index, name in enumerate(names):
      # Before the contract the outputs shared the inputs' names.
      result[f'state_out_{index}'] = (
          outputs[name] if name in outputs else
          outputs[name.replace('state_in_', 'state_out_')])
    return result

  module.step = step
  return module, step, int(inputs['samples'].shape[1]), names


def _to_tflite(module, function, key: str) -> bytes:
  with tempfile.TemporaryDirectory() as folder:
    # The converter reads the forward graph only: tracing each custom
    # gradient (e.g. leaf_audio.blocks') would cost seconds for nothing.
    tf.saved_model.save(
        module, folder, signatures={key: function.get_concrete_function()},
        options=tf.saved_model.SaveOptions(experimental_custom_gradients=False))
    converter = tf.lite.TFLiteConverter.from_saved_model(
        folder, signature_keys=[key])
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    return converter.convert()


def _select_as_where(ctx, node, name, args):  # pylint: disable=unused-argument
  # tf2onnx writes tf.where as x * cond + y * (1 - cond) unless it sees a
  # NaN constant, which turns a silenced NaN clip (NaN * 0) and the NaN
  # that marks an invalid clip back into NaN everywhere. ONNX's Where
  # broadcasts like tf.where (SelectV2).
  node.type = 'Where'
  return node


def _complex_abs(ctx, node, name, args):  # pylint: disable=unused-argument
  # tf2onnx writes RFFT as a DFT matrix product on [2 (real, imag), ...]
  # but loses the leading 2 of the shape when the frame count is dynamic,
  # and then refuses ComplexAbs (e.g. MelFilterbanks' STFT magnitude).
  from tf2onnx.onnx_opset import signal  # pylint: disable=g-import-not-at-top
  shape = ctx.get_shape(node.input[0])
  if shape is not None and shape[0] != 2:
    ctx.set_shape(node.input[0], [2] + list(shape[1:]))
  signal.ComplexAbsOp.version_13(ctx, node)


# The FFT method with TFLite builtins (leaf_audio.real_fft_filterbank) reads
# its spectra only through Real and Imag; tf2onnx writes RFFT and RFFT2D only
# for a ComplexAbs consumer. These handlers write such transforms as ONNX DFT
# operations (opset 17) whose output holds (real, imaginary) on a last axis
# of 2, and Real / Imag as the Gather of one of them.


def _consumer_types(ctx, node):
  return {consumer.type for consumer in ctx.find_output_consumers(
      node.output[0])}


def _as_dft(ctx, node, axes):
  """Rewrites an RFFT/RFFT2D `node` over its last len(axes) axes as DFTs:
  one-sided on the last axis, then full on the one before (RFFT2D)."""
  import onnx  # pylint: disable=g-import-not-at-top
  shape = ctx.get_shape(node.input[0])
  rank = ctx.get_rank(node.input[0])
  last = ctx.make_const(
      name=f'{node.name}_last_axis', np_val=np.array([-1], np.int64))
  values = ctx.make_node('Unsqueeze', [node.input[0], last.output[0]]).output[0]
  for index in range(axes - 1):
    values = ctx.make_node('DFT', [values], attr={
        'axis': rank - 1 - index, 'onesided': int(index == 0)}).output[0]
  ctx.replace_inputs(node, [values])
  node.type = 'DFT'
  for name in list(node.attr):
    del node.attr[name]
  node.set_attr('axis', rank - axes)
  node.set_attr('onesided', int(axes == 1))
  ctx.set_dtype(node.output[0], onnx.TensorProto.FLOAT)
  if shape is not None:
    bins = shape[-1] // 2 + 1 if shape[-1] > 0 else -1
    ctx.set_shape(node.output[0], list(shape[:-1]) + [bins, 2])


def _rfft(ctx, node, name, args):  # pylint: disable=unused-argument
  if _consumer_types(ctx, node) <= {'Real', 'Imag'}:
    _as_dft(ctx, node, 1)
  else:
    from tf2onnx.onnx_opset import signal  # pylint: disable=g-import-not-at-top
    signal.RFFTOp.version_13(ctx, node)


def _rfft2d(ctx, node, name, args):  # pylint: disable=unused-argument
  if _consumer_types(ctx, node) <= {'Real', 'Imag'}:
    _as_dft(ctx, node, 2)
  else:
    from tf2onnx.onnx_opset import signal  # pylint: disable=g-import-not-at-top
    signal.RFFT2DOp.version_13(ctx, node)


def _part(index):
  """A handler writing Real (index 0) or Imag (1) of a DFT's output."""

  def handler(ctx, node, name, args):  # pylint: disable=unused-argument
    import onnx  # pylint: disable=g-import-not-at-top
    shape = ctx.get_shape(node.input[0])
    which = ctx.make_const(name=f'{node.name}_part',
                           np_val=np.array(index, np.int64))
    ctx.replace_inputs(node, [node.input[0], which.output[0]])
    node.type = 'Gather'
    for key in list(node.attr):
      del node.attr[key]
    node.set_attr('axis', -1)
    ctx.set_dtype(node.output[0], onnx.TensorProto.FLOAT)
    if shape is not None:
      ctx.set_shape(node.output[0], list(shape[:-1]))

  return handler


def _to_onnx(function, marker: dict):
  import tf2onnx  # pylint: disable=g-import-not-at-top
  try:
    model, _ = tf2onnx.convert.from_function(
        function, input_signature=function.input_signature, opset=ONNX_OPSET,
        custom_op_handlers={'SelectV2': (_select_as_where, []),
                            'ComplexAbs': (_complex_abs, []),
                            'RFFT': (_rfft, []), 'RFFT2D': (_rfft2d, []),
                            'Real': (_part(0), []), 'Imag': (_part(1), [])})
  except Exception as error:  # pylint: disable=broad-except
    raise ValueError(f'ONNX conversion failed: {type(error).__name__}: '
                     f'{str(error).strip().splitlines()[0]}') from error
  import onnx  # pylint: disable=g-import-not-at-top
  # tf2onnx keeps an operation it cannot convert under its TensorFlow name.
  unsupported = sorted({node.op_type for node in model.graph.node
                        if node.domain not in ('', 'ai.onnx') or
                        not onnx.defs.has(node.op_type)})
  if unsupported:
    raise ValueError('ONNX conversion left operations that are not standard '
                     f'ONNX: {unsupported}; the model uses TensorFlow '
                     'operations tf2onnx cannot express.')
  del model.metadata_props[:]
  entry = model.metadata_props.add()
  entry.key = MARKER_KEY
  entry.value = json.dumps(marker)
  for key in ('kind', 'sample_rate', 'window_samples', 'hop_samples',
              'lookahead_samples'):
    if key in marker:
      entry = model.metadata_props.add()
      entry.key = key
      entry.value = str(marker[key])
  entry = model.metadata_props.add()
  entry.key = 'label_names'
  entry.value = json.dumps(marker['label_names'])
  model.producer_name = PRODUCER
  return model.SerializeToString()


def _check_converted(content: bytes, fmt: str):
  """Loads the converted bytes in their runtime: an unsupported operation
  fails here, named, instead of in a user's application."""
  if fmt == 'tflite':
    from ai_edge_litert import interpreter as litert  # pylint: disable=g-import-not-at-top
    try:
      litert.Interpreter(model_content=content).allocate_tensors()
    except (RuntimeError, ValueError) as error:
      raise ValueError(f'LiteRT cannot load the converted model: '
                       f'{error}') from error
  else:
    import onnxruntime  # pylint: disable=g-import-not-at-top
    try:
      onnxruntime.InferenceSession(content,
                                   providers=['CPUExecutionProvider'])
    except Exception as error:  # pylint: disable=broad-except
      raise ValueError(f'onnxruntime cannot load the converted model: '
                       f'{str(error).strip().splitlines()[0]}') from error


def _load(saved_model_dir, flag):
  """(the version folder read, the loaded SavedModel) of saved_model_dir."""
  try:
    # An export folder's newest version; a plain SavedModel folder as is.
    saved_model_dir = export_directory.saved_model_path(saved_model_dir)
    return saved_model_dir, tf.saved_model.load(str(saved_model_dir))
  except (OSError, ValueError, tf.errors.OpError) as error:
    raise ValueError(f'--{flag}: could not load the SavedModel in '
                     f'{str(saved_model_dir)!r}: {type(error).__name__}'
                     ) from error


def _convert(saved_model_dir, path, flag, fmt, streaming, lookahead_samples,
             loaded=None):
  """Writes one file; `loaded` is saved_model_dir already loaded (_load)."""
  path = check_destination(path, flag, fmt)
  if loaded is None:
    saved_model_dir, loaded = _load(saved_model_dir, flag)
  if streaming:
    module, function, hop, names = _streaming_module(loaded, saved_model_dir)
    exported = loaded.signatures['metadata']()
    if 'lookahead_samples' in exported:  # the stream_step contract's own
      lookahead_samples = int(exported['lookahead_samples'])
    marker = _export_marker(
        loaded, saved_model_dir, 'streaming', hop_samples=hop,
        lookahead_samples=int(lookahead_samples or 0), state_names=names)
    key = 'stream_step'
  else:
    module, function = _offline_module(loaded, saved_model_dir, fmt)
    marker = _export_marker(loaded, saved_model_dir, 'offline')
    key = 'serving_default'
  if fmt == 'tflite':
    try:
      content = _to_tflite(module, function, key)
    except Exception as error:  # pylint: disable=broad-except
      lines = [line for line in str(error).splitlines()
               if 'error:' in line] or str(error).splitlines()[:1]
      raise ValueError(f'--{flag}: TFLite conversion failed: '
                       f'{lines[0].strip()}') from error
    content = _with_tflite_metadata(content, marker)
  else:
    try:
      content = _to_onnx(function, marker)
    except ValueError as error:
      raise ValueError(f'--{flag}: {error}') from error
  _check_converted(content, fmt)
  # Checked again: the folder may have changed during the conversion.
  check_destination(path, flag, fmt)
  _write_atomically(path, content)
  return path


# What write_files writes for each flag: (format, streaming).
_KINDS = {'tflite': ('tflite', False), 'onnx': ('onnx', False),
          'streaming_tflite': ('tflite', True),
          'streaming_onnx': ('onnx', True)}


def write_files(saved_model_dir, files, lookahead_samples=0, report=None):
  """Each file of `files` converted from one load of the SavedModel.

  What the write_* functions below write, one after the other, without
  loading the SavedModel again for each (a load traces every function of
  the export).

  Args:
    saved_model_dir: an export folder (its newest version is read) or a
      SavedModel folder.
    files: {flag: path}, flags 'tflite', 'onnx' (offline), 'streaming_tflite'
      and 'streaming_onnx' (the stream_step signature), in the order to
      write them.
    lookahead_samples: the stream's lookahead, for the streaming files of
      exports whose metadata() lacks it.
    report: optional callable(flag, path), called after each file is written.

  Returns:
    {flag: path written}.

  Raises:
    ArtifactDestinationError: a destination may not be written (each is
      checked before the SavedModel is loaded, and again before it is
      written).
    ValueError: an unknown flag, a SavedModel that cannot be loaded, or a
      conversion that failed (the message names the flag).
  """
  unknown = sorted(set(files) - set(_KINDS))
  if unknown:
    raise ValueError(f'write_files: unknown flags {unknown}; expected some '
                     f'of {sorted(_KINDS)}.')
  files = {flag: check_destination(path, flag, _KINDS[flag][0])
           for flag, path in files.items()}
  written = {}
  if not files:
    return written
  saved_model_dir, loaded = _load(saved_model_dir, next(iter(files)))
  for flag, path in files.items():
    fmt, streaming = _KINDS[flag]
    written[flag] = _convert(saved_model_dir, path, flag, fmt, streaming,
                             lookahead_samples, loaded)
    if report is not None:
      report(flag, written[flag])
  return written


def write_offline_tflite(saved_model_dir, path, flag='tflite'):
  """The export's offline classifier as a .tflite; returns the path."""
  return _convert(saved_model_dir, path, flag, 'tflite', False, None)


def write_offline_onnx(saved_model_dir, path, flag='onnx'):
  """The export's offline classifier as an .onnx; returns the path."""
  return _convert(saved_model_dir, path, flag, 'onnx', False, None)


def write_streaming_tflite(saved_model_dir, path, lookahead_samples=0,
                           flag='streaming_tflite'):
  """The export's 'stream_step' as a .tflite; returns the path."""
  return _convert(saved_model_dir, path, flag, 'tflite', True,
                  lookahead_samples)


def write_streaming_onnx(saved_model_dir, path, lookahead_samples=0,
                         flag='streaming_onnx'):
  """The export's 'stream_step' as an .onnx; returns the path."""
  return _convert(saved_model_dir, path, flag, 'onnx', True,
                  lookahead_samples)
