"""One way to run an exported classifier in TensorFlow, LiteRT or onnxruntime.

  open_runtime(path)  a SavedModel folder, a .tflite or an .onnx file ->
                      a runtime with the same three members:

    metadata                 dict: sample_rate (Hz), label_names,
                             window_samples, multi_label, and for a stream
                             hop_samples and lookahead_samples (samples)
    classify(waveforms)      float32 [batch, samples], any length at
                             metadata['sample_rate'] -> (probabilities
                             [batch, classes], valid bool [batch])
    stream(audio)            float32 [samples], one recording fed hop by
                             hop from a zero state -> (probabilities
                             [hops, classes], valid bool [hops]): row i is
                             the output after hop i; a last partial hop is
                             left out. Feed metadata['lookahead_samples']
                             zeros after the end to let the stream see all
                             of it.

A SavedModel (experiments.export) does both; a .tflite or .onnx file does
the one it was converted for (its `kind`, experiments/serving/converters.py)
and says so otherwise. `valid` is False where a clip holds a NaN or inf
sample or gave non-finite scores; its probabilities are then NaN.

LiteRT (`ai_edge_litert`) and onnxruntime come with
`pip install -e '.[deploy]'` and are imported only when a file needs them.
"""

import json
import pathlib

import numpy as np

from experiments.serving import converters
from experiments.serving import export_directory

_FLOAT32_MAX = float(np.finfo(np.float32).max)


def _valid_rows(probabilities, valid=None):
  finite = np.all(np.abs(probabilities) <= _FLOAT32_MAX, axis=-1)
  if valid is None:
    return finite
  return np.logical_and(np.asarray(valid, bool).reshape(finite.shape), finite)


def _as_waveforms(waveforms):
  waveforms = np.asarray(waveforms, np.float32)
  if waveforms.ndim != 2 or waveforms.shape[1] < 1:
    raise ValueError('classify expects waveforms of shape [batch, samples] '
                     f'with at least one sample; got shape {waveforms.shape}.')
  return waveforms


def _as_audio(audio):
  audio = np.asarray(audio, np.float32)
  if audio.ndim != 1:
    raise ValueError('stream expects one recording of shape [samples]; got '
                     f'shape {audio.shape}.')
  return audio


def _hops(audio, hop):
  for start in range(0, len(audio) - hop + 1, hop):
    yield audio[np.newaxis, start:start + hop]


def _stack(rows, valid, classes):
  return (np.array(rows, np.float32).reshape(-1, classes),
          np.array(valid, bool).reshape(-1))


def load_saved_model(saved_model_dir):
  """tf.saved_model.load with an error that names the folder.

  Raises:
    ValueError: the folder is missing, or is not a complete SavedModel
      with the 'serving_default' and 'metadata' signatures.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  try:
    # An export folder's newest version; a plain SavedModel folder as is.
    saved_model_dir = export_directory.saved_model_path(saved_model_dir)
    model = tf.saved_model.load(str(saved_model_dir))
  except (OSError, ValueError, tf.errors.OpError) as error:
    first_line = (str(error).strip().splitlines() or [''])[0]
    raise ValueError(
        f'could not load the SavedModel in {str(saved_model_dir)!r}: it is '
        'missing or damaged (re-export it with python -m experiments.export);'
        f' {type(error).__name__}: {first_line}') from error
  missing = {'serving_default', 'metadata'} - set(model.signatures)
  if missing:
    raise ValueError(
        f'{str(saved_model_dir)!r} is a SavedModel without the signatures '
        f'{sorted(missing)}; expected an export of experiments.export.')
  return model


class SavedModelRuntime:
  """An export folder run by TensorFlow (serving_default, stream_step)."""

  def __init__(self, saved_model_dir):
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    self._tf = tf
    self._model = load_saved_model(saved_model_dir)
    # The version folder that was loaded (its marker is beside it).
    self.path = pathlib.Path(export_directory.saved_model_path(saved_model_dir))
    # The loaded SavedModel's signatures, for calls beyond classify/stream.
    self.signatures = self._model.signatures
    metadata = self._model.signatures['metadata']()
    self.metadata = {
        'sample_rate': int(metadata['sample_rate']),
        'label_names': [name.decode() for name in
                        metadata['label_names'].numpy()],
    }
    # Some earlier exports' metadata() lacks it (predict does not need it).
    if 'window_samples' in metadata:
      self.metadata['window_samples'] = int(metadata['window_samples'])
    for key in ('hop_samples', 'lookahead_samples'):
      if key in metadata:
        self.metadata[key] = int(metadata[key])
    try:
      marker = json.loads((self.path / 'leaf_audio_export.json').read_text())
      self.metadata['multi_label'] = bool(marker.get('multi_label', False))
    except (OSError, ValueError):
      pass
    self._step = self._model.signatures.get('stream_step')
    self._loop = None  # stream's tf.function, traced at its first call
    if self._step is not None:
      self.metadata.setdefault('hop_samples', int(
          self._step.structured_input_signature[1]['samples'].shape[1]))

  def classify(self, waveforms):
    outputs = self._model.signatures['serving_default'](
        waveform=self._tf.constant(_as_waveforms(waveforms)))
    probabilities = outputs['probabilities'].numpy()
    # Exports before the `valid` output marked nothing: checked here too.
    valid = outputs['valid'].numpy() if 'valid' in outputs else None
    return probabilities, _valid_rows(probabilities, valid)

  def stream(self, audio):
    if self._step is None:
      raise ValueError(f'{str(self.path)!r} has no stream_step signature (its '
                       'frontend does not stream, or it predates streaming).')
    hop = self.metadata['hop_samples']
    audio = _as_audio(audio)
    hops = audio[:len(audio) // hop * hop].reshape(-1, hop)
    rows, valid = self._stream_loop()(self._tf.constant(hops))
    rows = rows.numpy()
    return _stack(rows, _valid_rows(rows, valid.numpy()),
                  len(self.metadata['label_names']))

  def _stream_loop(self):
    """A tf.function: hops float32 [n, hop_samples] -> (probabilities [n,
    classes], valid [n]), the export's stream_step called once per hop from
    stream_initial_state's state, each step's state fed to the next, in one
    graph (a tf.while_loop): the same steps as a client's loop, without
    Python's cost per call (about half of the time per hop)."""
    if self._loop is not None:
      return self._loop
    tf = self._tf
    step = self._step
    initial_state = self._model.signatures['stream_initial_state']
    classes = len(self.metadata['label_names'])

    @tf.function(input_signature=[
        tf.TensorSpec([None, self.metadata['hop_samples']], tf.float32)])
    def loop(hops):
      count = tf.shape(hops)[0]

      def body(index, state, rows, valid):
        outputs = step(samples=hops[index][tf.newaxis], **state)
        # The state outputs share the inputs' names, or (ONNX-safe) carry
        # state_out_ where the inputs carry state_in_.
        state = {name: outputs[name] if name in outputs else
                 outputs[name.replace('state_in_', 'state_out_')]
                 for name in state}
        probabilities = outputs['probabilities'][0]
        # Exports before the `valid` output: _valid_rows checks the rows.
        is_valid = (outputs['valid'][0] if 'valid' in outputs else
                    tf.constant(True))
        return (index + 1, state, rows.write(index, probabilities),
                valid.write(index, is_valid))

      _, _, rows, valid = tf.while_loop(
          lambda index, *_: index < count, body,
          (tf.constant(0), initial_state(),
           tf.TensorArray(tf.float32, size=count, element_shape=[classes]),
           tf.TensorArray(tf.bool, size=count, element_shape=[])))
      return rows.stack(), valid.stack()

    self._loop = loop
    return loop


def _file_marker(path):
  try:
    marker = converters.read_metadata(path)
  except (ValueError, OSError) as error:
    raise ValueError(f'could not read {str(path)!r}: {error}') from error
  if marker is None:
    raise ValueError(f'{str(path)!r} was not written by experiments.export '
                     '(it has no leaf_audio marker), so its inputs, labels '
                     'and sample rate are unknown.')
  return marker


class _FileRuntime:
  """What the .tflite and .onnx runtimes share: the marker and its kind."""

  def __init__(self, path):
    self.path = pathlib.Path(path)
    if not self.path.is_file():
      raise ValueError(f'{str(self.path)!r} is not a file.')
    marker = _file_marker(self.path)
    self.kind = marker['kind']
    self.metadata = {key: value for key, value in marker.items()
                     if key not in ('producer', 'kind')}

  def _require(self, kind, what):
    if self.kind != kind:
      raise ValueError(
          f'{str(self.path)!r} is a {self.kind} model and cannot {what}; '
          f'export a {kind} one (python -m experiments.export --'
          f'{"streaming_" if kind == "streaming" else ""}'
          f'{self.path.suffix[1:]}=...).')

  def stream(self, audio):
    """One row per hop: (probabilities [hops, classes], valid [hops]),
    through the subclass's initial_state and step."""
    self._require('streaming', 'stream')
    state = self.initial_state()
    rows, valid = [], []
    for hop in _hops(_as_audio(audio), self.metadata['hop_samples']):
      outputs, state = self.step(hop, state)
      rows.append(outputs['probabilities'][0])
      valid.append(bool(outputs['valid'][0]))
    return _stack(rows, valid, len(self.metadata['label_names']))


class LiteRTRuntime(_FileRuntime):
  """A .tflite file of experiments.export run by LiteRT.

  Args:
    path: the .tflite file.
    num_threads: int, default 1; the interpreter's CPU threads.
  """

  def __init__(self, path, num_threads: int = 1):
    super().__init__(path)
    from ai_edge_litert import interpreter as litert  # pylint: disable=g-import-not-at-top
    self._interpreter = litert.Interpreter(
        model_content=self.path.read_bytes(), num_threads=int(num_threads))
    key = 'stream_step' if self.kind == 'streaming' else 'serving_default'
    self._runner = self._interpreter.get_signature_runner(key)

  def classify(self, waveforms):
    self._require('offline', 'classify whole clips')
    outputs = self._runner(waveform=_as_waveforms(waveforms))
    probabilities = np.array(outputs['probabilities'])
    return probabilities, _valid_rows(probabilities, outputs['valid'])

  def initial_state(self):
    return {name: np.zeros(detail['shape'], detail['dtype'])
            for name, detail in self._runner.get_input_details().items()
            if name.startswith('state_in_')}

  def step(self, samples, state):
    """(samples [1, hop], state) -> (outputs dict, new state)."""
    outputs = self._runner(samples=samples, **state)
    return outputs, {name: outputs[name.replace('state_in_', 'state_out_')]
                     for name in state}


class OnnxRuntime(_FileRuntime):
  """An .onnx file of experiments.export run by onnxruntime (CPU).

  Args:
    path: the .onnx file.
    num_threads: int, default 1; onnxruntime's intra-op threads.
  """

  def __init__(self, path, num_threads: int = 1):
    super().__init__(path)
    import onnxruntime  # pylint: disable=g-import-not-at-top
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = int(num_threads)
    options.inter_op_num_threads = 1
    try:
      self._session = onnxruntime.InferenceSession(
          str(self.path), options, providers=['CPUExecutionProvider'])
    except Exception as error:  # pylint: disable=broad-except
      raise ValueError(f'onnxruntime could not load {str(self.path)!r}: '
                       f'{str(error).strip().splitlines()[0]}') from error
    self._outputs = [output.name for output in self._session.get_outputs()]

  def _run(self, feeds):
    return dict(zip(self._outputs, self._session.run(self._outputs, feeds)))

  def classify(self, waveforms):
    self._require('offline', 'classify whole clips')
    outputs = self._run({'waveform': _as_waveforms(waveforms)})
    probabilities = outputs['probabilities']
    return probabilities, _valid_rows(probabilities, outputs['valid'])

  def initial_state(self):
    types = {'tensor(float)': np.float32, 'tensor(int32)': np.int32,
             'tensor(int64)': np.int64, 'tensor(bool)': np.bool_}
    return {item.name: np.zeros(item.shape, types[item.type])
            for item in self._session.get_inputs()
            if item.name.startswith('state_in_')}

  def step(self, samples, state):
    """(samples [1, hop], state) -> (outputs dict, new state)."""
    outputs = self._run(dict(state, samples=samples))
    return outputs, {name: outputs[name.replace('state_in_', 'state_out_')]
                     for name in state}


def open_runtime(path, num_threads: int = 1):
  """The runtime for `path`: a SavedModel folder, a .tflite or an .onnx file.

  num_threads applies to LiteRT and onnxruntime; TensorFlow's threads are
  set for the whole process (tf.config.threading).

  Raises:
    ValueError: the path is none of these, or cannot be loaded (named).
  """
  path = pathlib.Path(path)
  if path.suffix == '.tflite':
    return LiteRTRuntime(path, num_threads)
  if path.suffix == '.onnx':
    return OnnxRuntime(path, num_threads)
  if path.is_dir() or not path.exists():
    return SavedModelRuntime(path)
  raise ValueError(f'{str(path)!r} is neither a SavedModel folder nor a '
                   '.tflite or .onnx file.')
