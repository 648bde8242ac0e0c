"""Hop-by-hop frontends: the frames of a clip computed as its samples arrive.

  frontend_parts      what streaming reads of a frontend, through its stages'
                      interface (`leaf_audio.stages`) only
  StreamingFrontend   the pure form: (state, samples) -> (state, frames), with
                      the state a dict of fixed-shape tensors (tf.function,
                      SavedModel and TFLite friendly)
  Streamer            a Python object over it: push(samples) any number of
                      samples at a time, flush() at the end

This module keeps the stream's bookkeeping (alignment, positions, state
layout, export); what a stage computes is the stage's: its `stream_kind()`
('filter', 'sum_pooling', 'max_pooling', 'pointwise', 'stateful' with its own
state and step, or 'pools_itself'), its filters and windows, or a refusal
with the reason. Streamed: `Leaf`, `SincNet`, `SincNetPlus`, `EfficientLeaf`
with PCEN or LogTBN(median=None), `MelFilterbanks` and compositions of such
stages. Refused: 'valid' pooling (`TimeDomainFilterbanks`: its frame count
is not ceil(samples / hop)), per-clip normalisation (mean_var_norm, LogTBN's
median over time), and layers that do not say how they stream (Lambda).

Exactness. TF's 'same' padding of a strided pooling puts
((frames - 1) * hop + window - samples) // 2 zeros before the first frame,
which depends on samples mod hop: the whole frame grid of `Leaf(clip)` shifts
by up to hop / 2 samples with the clip's last partial hop, which no causal
process can know in advance. A stream is therefore the clip padded with zeros
to a whole number of hops: the frames of any sequence of pushes and a flush
equal `frontend(pad_to_hop(clip))`, which is `frontend(clip)` whenever the
length is a multiple of the hop, and for every length with `MelFilterbanks`
(left-aligned frames, zeros past the end either way). A stream whose length
is known in advance (`total_samples`, e.g. a file) aligns its frames as the
offline layer does and equals `frontend(clip)` for any length. PCEN's
smoother starts at the first frame's energies, as the offline layer's does.

Latency. Frame f is final once sample f * hop + lookahead_samples has
arrived: for the 16 kHz defaults 480 samples (30 ms) for Leaf (200 for the
filters' right half, 280 for the pooling window's after its 'same'
padding), 440 (27.5 ms) for EfficientLeaf (its groups' decimated windows
end earlier), 400 (25 ms) for MelFilterbanks (left-aligned windows).
"""

import contextlib
import dataclasses
import inspect
import tempfile
import zlib
from typing import Callable, Optional

import keras
import numpy as np
import tensorflow as tf

from leaf_audio import framing
from leaf_audio import frontend as frontend_lib
from leaf_audio import pooling
from leaf_audio import real_fft_filterbank
from leaf_audio import stages as stages_lib

# Positions saturate here, so that a stream of any length never overflows
# int32: only the first hops of a stream need their true position (which
# frames precede the stream, where PCEN's smoother starts); the end of a
# stream is masked relative to the current position.
_POSITION_CAP = 2**30

# Streamer.push steps over at most this many hops at a time, so that its
# memory stays bounded whatever the length of one push.
PUSH_CHUNK_HOPS = 64

FILTER_METHODS = ('auto', 'direct', 'fft')


@dataclasses.dataclass(frozen=True)
class FrontendParts:
  """What streaming reads of a frontend, all through `leaf_audio.stages`.

  Attributes:
    kind: 'filterbank' (a stride-1 'same' filterbank, a pointwise activation,
      a 'same' pooling) or 'pools_itself' (a filterbank that sets the frames,
      e.g. EfficientLeaf's or MelFilterbanks' STFT).
    sample_rate: Hz.
    hop: samples between frames.
    window: samples of the filters and of the pooling window (of the frames
      of a filterbank that pools itself).
    padding: how the frames sit on the clip: 'same' (TF's padding, centred
      windows) or 'end' (left-aligned windows, the end zero-padded).
    channels: output channels.
    preemphasis: None, or a function returning the 2 taps [2] of a 'same'
      pre-emphasis (y[t] = w0 x[t] + w1 x[t + 1]).
    filters: 'filterbank': a function returning (filters [window,
      conv_channels], dtype) of a cross-correlation with 'same' padding.
    activation: 'filterbank': the pointwise layer after the filterbank.
    pooling: 'sum' or 'max' ('filterbank').
    pooling_windows: 'filterbank' with 'sum' pooling: a function returning
      the windows [window, channels or 1].
    bank: 'pools_itself': the filterbank stage.
    floor: None, or the lower clip of the energies before compression.
    frame_stages: ((name, stage, 'pointwise' or 'stateful'), ...): the stages
      after the floor (compression, normalization).
    tflite_builtins: whether every stage's step converts to TFLite builtins.
  """
  kind: str
  sample_rate: float
  hop: int
  window: int
  channels: int
  padding: str = 'same'
  preemphasis: Optional[Callable] = None
  filters: Optional[Callable] = None
  activation: Optional[Callable] = None
  pooling: str = 'sum'
  pooling_windows: Optional[Callable] = None
  bank: Optional[stages_lib.Stage] = None
  floor: Optional[float] = None
  frame_stages: tuple = ()
  tflite_builtins: bool = True


def _refuse(frontend, reason):
  raise stages_lib.StreamingRefused(
      f'Streaming {type(frontend).__name__}: {reason}')


def _kind(frontend, name, layer):
  """The stage's `stream_kind()`, its refusal prefixed with the frontend."""
  try:
    return stages_lib.of(layer).stream_kind()
  except stages_lib.StreamingRefused as error:
    _refuse(frontend, f'its {name} stage: {error}')


def _pointwise(layer):
  """A pointwise stage as a function, in inference mode."""
  if 'training' in inspect.signature(layer.call).parameters:
    return lambda inputs: layer(inputs, training=False)
  return layer


def _output_channels(frontend):
  return frontend.compute_output_shape((None, None))[-1]


def frontend_parts(frontend) -> FrontendParts:
  """What streaming reads of `frontend`, through its stages' interface.

  Args:
    frontend: a built `Frontend` (`Leaf`, `SincNet`, `SincNetPlus`,
      `EfficientLeaf`, `MelFilterbanks` or a composition).

  Returns:
    `FrontendParts`. Raises `stages.StreamingRefused` (a ValueError) naming
    what cannot be streamed.
  """
  if not frontend.built:
    raise ValueError(f'Streaming {type(frontend).__name__}: build the '
                     'frontend first (call it once, or frontend.build('
                     '(None, None))), so that its weights exist.')
  if not isinstance(frontend, frontend_lib.Frontend):
    _refuse(frontend, 'not a leaf_audio Frontend.')
  frame_stages = tuple(
      (name, getattr(frontend, name),
       _kind(frontend, name, getattr(frontend, name)))
      for name in ('compression', 'normalization')
      if getattr(frontend, name) is not None)
  for name, _, kind in frame_stages:
    if kind not in ('pointwise', 'stateful'):
      _refuse(frontend, f"its {name} stage streams as {kind!r}, not "
              "'pointwise' or 'stateful'.")
  bank = stages_lib.of(frontend.filterbank)
  common = dict(sample_rate=frontend.sample_rate,
                channels=_output_channels(frontend),
                floor=frontend.pre_compression_floor,
                frame_stages=frame_stages)
  used = [bank] + [stages_lib.of(layer) for _, layer, _ in frame_stages]
  kind = _kind(frontend, 'filterbank', frontend.filterbank)
  if kind == 'pools_itself':
    if frontend.pooling is not None or frontend.preemphasis is not None:
      _refuse(frontend, 'its filterbank pools itself; no pre-emphasis or '
              'pooling stage may surround it.')
    geometry = bank.stage_geometry()
    if geometry.padding not in ('same', 'end'):
      _refuse(frontend, f'its filterbank frames with padding '
              f"{geometry.padding!r}, not 'same' or 'end'.")
    return FrontendParts(
        kind='pools_itself', hop=geometry.hop_samples,
        window=geometry.window_samples, padding=geometry.padding, bank=bank,
        tflite_builtins=all(stage.tflite_builtins for stage in used),
        **common)
  if kind != 'filter':
    _refuse(frontend, f'its filterbank streams as {kind!r}, not a filter.')
  if frontend.pooling is None:
    _refuse(frontend, 'it has no pooling stage.')
  pool = stages_lib.of(frontend.pooling)
  pool_kind = _kind(frontend, 'pooling', frontend.pooling)
  if pool_kind not in ('sum_pooling', 'max_pooling'):
    _refuse(frontend, f'its pooling streams as {pool_kind!r}.')
  activation = None
  if frontend.activation is not None:
    if _kind(frontend, 'activation', frontend.activation) != 'pointwise':
      _refuse(frontend, 'its activation is not pointwise.')
    activation = _pointwise(frontend.activation)
  window = bank.stage_geometry().window_samples
  geometry = pool.stage_geometry()
  if geometry.window_samples != window:
    _refuse(frontend, 'its pooling window and filters differ in length.')
  preemphasis = None
  if frontend.preemphasis is not None:
    preemp = stages_lib.of(frontend.preemphasis)
    if (_kind(frontend, 'preemphasis', frontend.preemphasis) != 'filter' or
        preemp.stage_geometry().window_samples != 2):
      _refuse(frontend, "its pre-emphasis is not a 2-tap filter with 'same' "
              'padding.')
    preemphasis = lambda: preemp.stream_filters()[0][:, 0]
    used.append(preemp)
  used.append(pool)
  return FrontendParts(
      kind='filterbank', hop=geometry.hop_samples, window=window,
      preemphasis=preemphasis, filters=bank.stream_filters,
      activation=activation,
      pooling='max' if pool_kind == 'max_pooling' else 'sum',
      pooling_windows=pool.stream_windows if pool_kind == 'sum_pooling'
      else None,
      tflite_builtins=all(stage.tflite_builtins for stage in used), **common)


def _stage_state_keys(parts, batch_size):
  """{stage name: {state key: tensor}} of the stateful frame stages.

  A stage's keys are kept as it names them ('smoother' for PCEN), prefixed
  with the stage name only when two stages would share one.
  """
  states = {name: stages_lib.of(layer).stream_initial_state(
      batch_size, parts.channels)
            for name, layer, kind in parts.frame_stages if kind == 'stateful'}
  seen = {}
  for name, state in states.items():
    for key in state:
      seen[key] = seen.get(key, 0) + 1
  return {name: {(f'{name}_{key}' if seen[key] > 1 else key): (key, value)
                 for key, value in state.items()}
          for name, state in states.items()}


_STREAMED = ('Leaf', 'SincNet', 'SincNetPlus', 'EfficientLeaf',
             'MelFilterbanks')


def _type_code(name: str) -> int:
  """A stable int32 for a frontend's class name (crc32)."""
  return zlib.crc32(name.encode()) & 0x7fffffff


def flat_step_function(step, initial_state, samples_shape, output_name):
  """`step` as a tf.function of flat, named, fixed-shape tensors.

  Args:
    step: `(state dict, samples) -> (state dict, output)`.
    initial_state: a state dict; its shapes and dtypes fix the signature.
    samples_shape: [batch, samples] of one call.
    output_name: the name of `output` among the outputs.

  Returns:
    A tf.function taking `samples` and 'state_<key>' for each key (sorted)
    and returning {output_name: output, 'state_<key>': new state}: the form
    a SavedModel signature and TFLite need.
  """
  names = sorted(initial_state)
  specs = [tf.TensorSpec(samples_shape, tf.float32, name='samples')]
  specs += [tf.TensorSpec(initial_state[key].shape, initial_state[key].dtype,
                          name='state_' + key) for key in names]

  def flat_step(samples, *state):
    state, output = step(dict(zip(names, state)), samples)
    outputs = {output_name: output}
    outputs.update({'state_' + key: state[key] for key in names})
    return outputs

  # Without autograph (the step has no Python control flow on tensors): its
  # conversion is most of a trace's time.
  return tf.function(flat_step, input_signature=specs, autograph=False)


class StreamingFrontend:
  """A frontend as a pure function of a state and whole hops of samples.

    state = stream.initial_state(batch_size)
    state, frames = stream.step(state, samples)   # samples [batch, k * hop]
    ...
    state, frames = stream.finish(state)          # the last frames

`step` returns exactly k frames for k hops; frame i of a stream comes out of
the step that completes hop i + delay_frames (hops counted from 0), so the
first `delay_frames` frames a stream's steps return precede its start: they
are zeros, to be dropped. `finish` returns the last `delay_frames` frames, as if
the stream had ended with the last step (pad a partial hop with zeros
first). Every method is traceable with tf.function; with a static k the
step converts to TFLite with builtin ops (except SincNet's float64
filterbank).

State, a dict of tensors (batch B, channels C):
  'samples':  float32 [B, history_samples], the last samples (zeros before
              the stream starts).
  'energies': float32 [B, energy_history, C], the filterbank's last outputs
              after its activation, which the next pooling windows read
              (Leaf, SincNet, SincNetPlus only).
  'group_energies_<g>': float32 [B, cached_g, channels of group g],
              EfficientLeaf: each group's last decimated energies.
  'position': int32 [], samples consumed (saturating at 2**30).
  'smoother': float32 [B, C], PCEN's smoother (only with PCEN).
  'frontend': int32 [5], [crc32 of the class name, sample_rate, hop,
              window, channels]: which frontend and rate the state is of.

Args:
  frontend: a built frontend (see `frontend_parts`).
  total_samples: None (default) for a stream of unknown length: its frames
    are those of the clip padded with zeros to a whole number of hops. With
    the length known in advance (a file), the frames are exactly
    frontend(clip): TF's 'same' padding aligns the frame grid by the length
    (the Streamer then masks the end at total_samples; the pure `finish`
    keeps the padded end).
  filter_method: how a filterbank step (Leaf, SincNet, SincNetPlus) filters
    its new samples: 'direct' (a convolution, window multiply-adds per
    sample and channel; a step of several hops convolves them as a batch of
    hops), 'fft' (`real_fft_filterbank.correlate`: overlap-save with TFLite
    builtins, float32 filters only; a step whose sample count is not static
    filters directly), or 'auto' (default), now 'direct': in LiteRT on one
    thread the FFT step of 10 hops measured slower than the direct one
    (benchmarks/README.md, "streaming cost"). Both give the same frames to
    float32 rounding.
"""

  def __init__(self, frontend, total_samples: Optional[int] = None,
               filter_method: str = 'auto'):
    self.frontend = frontend
    self.parts = parts = frontend_parts(frontend)
    if filter_method not in FILTER_METHODS:
      raise ValueError(
          f'Streaming {type(frontend).__name__}: filter_method must be one of '
          f'{FILTER_METHODS}; got {filter_method!r}.')
    self._filter_dtype = (parts.filters()[1] if parts.kind == 'filterbank'
                          else None)
    if filter_method == 'fft' and self._filter_dtype != tf.float32:
      raise ValueError(
          f"Streaming {type(frontend).__name__}: filter_method='fft' needs a "
          'filterbank with float32 filters (Leaf); this frontend '
          + ('pools itself.' if parts.kind != 'filterbank' else
             'filters in float64.') + " Use 'auto' or 'direct'.")
    self.filter_method = filter_method
    self._constant_filters = False
    if total_samples is not None and (
        isinstance(total_samples, bool) or
        not isinstance(total_samples, (int, np.integer)) or total_samples < 0):
      raise ValueError(f'Streaming {type(frontend).__name__}: total_samples '
                       f'must be None or an int >= 0; got {total_samples!r}.')
    self.total_samples = total_samples
    self.name = type(frontend).__name__
    self.hop_samples = hop = parts.hop
    window = parts.window
    # TF's 'same' padding: for a length that is a whole number of hops,
    # unless the stream's length is known. Left-aligned frames ('end': frame
    # f covers samples [f * hop, f * hop + window)) have no front padding.
    frames = -(-(total_samples or hop) // hop)
    length = total_samples if total_samples else frames * hop
    pool_left = (max((frames - 1) * hop + window - length, 0) // 2
                 if parts.padding == 'same' else 0)
    conv_left = (window - 1) // 2
    conv_right = window - 1 - conv_left
    self._pool_left = pool_left
    self._preemp = int(parts.preemphasis is not None)
    self.lookahead_samples = (window - 1 - pool_left) + conv_right + (
        self._preemp)
    if parts.kind == 'pools_itself':
      # What the filterbank reads before a frame's window start (its
      # filters' left half) and after it, from its first sample read (a
      # grouped bank reads less than LEAF's window and filters).
      conv_left = parts.bank.stream_lead()
      self.lookahead_samples = parts.bank.stream_reach() - conv_left - (
          pool_left)
    self._conv_left = conv_left
    history_start = pool_left + conv_left
    self.delay_frames = self.lookahead_samples // hop
    # Frame f reads samples f * hop - lookbehind_samples ... f * hop +
    # lookahead_samples.
    self.lookbehind_samples = history_start
    self.history_samples = self.delay_frames * hop + history_start
    self.energy_history = 0
    if parts.kind == 'filterbank':
      # The filterbank runs once per sample: each step filters its new hops
      # only (reading the last window - 1 + preemp samples) and keeps the
      # filter outputs the next frames' pooling windows still need.
      self.history_samples = window - 1 + self._preemp
      self.energy_history = (self.delay_frames * hop + pool_left -
                             conv_right - self._preemp)
      if self.energy_history < 0:
        _refuse(frontend, f'its window ({window} samples) is shorter than '
                f'its hop ({hop} samples).')
    self.channels = parts.channels
    self.fingerprint = np.array(
        [_type_code(self.name), round(parts.sample_rate), hop, window,
         parts.channels], np.int32)
    self._traced_step = None

  # -- state ---------------------------------------------------------------

  def initial_state(self, batch_size: int):
    """The state before the first sample, for `batch_size` streams."""
    state = {
        'samples': tf.zeros([batch_size, self.history_samples], tf.float32),
        'position': tf.constant(0, tf.int32),
        'frontend': tf.constant(self.fingerprint),
    }
    if self.energy_history:
      state['energies'] = tf.zeros(
          [batch_size, self.energy_history, self.channels], tf.float32)
    if self.parts.kind == 'pools_itself':
      state.update(self.parts.bank.stream_initial_state(batch_size,
                                                        self.channels))
    for keys in _stage_state_keys(self.parts, batch_size).values():
      state.update({key: value for key, (_, value) in keys.items()})
    return state

  def check_state(self, state):
    """Raises ValueError unless `state` is a state of this frontend."""
    expected = self.initial_state(1)
    if not isinstance(state, dict) or set(state) != set(expected):
      keys = sorted(state) if isinstance(state, dict) else type(state).__name__
      raise ValueError(
          f'{self.name} stream: state must be a dict with keys '
          f'{sorted(expected)} (from initial_state); got {keys}. Is the '
          'state from another frontend or sample rate?')
    for key, value in expected.items():
      shape = tf.TensorShape(state[key].shape)
      if shape[1:] != value.shape[1:] or shape.rank != value.shape.rank:
        raise ValueError(
            f"{self.name} stream: state['{key}'] has shape {shape}; this "
            f'frontend ({self._describe(self.fingerprint)}) needs '
            f'{value.shape}. Is the state from another frontend or sample '
            'rate?')
    fingerprint = tf.get_static_value(state['frontend'])
    if fingerprint is not None and not np.array_equal(fingerprint,
                                                      self.fingerprint):
      raise ValueError(
          f'{self.name} stream: the state belongs to another frontend or '
          f'sample rate ({self._describe(fingerprint)}); this one is '
          f'{self._describe(self.fingerprint)}.')

  def _describe(self, fingerprint):
    code, rate, hop, window, channels = (int(v) for v in fingerprint)
    names = {_type_code(name): name for name in _STREAMED}
    return (f'{names.get(code, "an unknown frontend")}, {rate} Hz, hop {hop},'
            f' window {window}, {channels} channels')

  # -- steps ---------------------------------------------------------------

  def check_samples(self, samples):
    """Float32 [batch, k * hop] from any float array; raises otherwise."""
    samples = tf.convert_to_tensor(samples)
    if not samples.dtype.is_floating:
      raise TypeError(f'{self.name} stream: samples must be float audio in '
                      f'[-1, 1]; got dtype {samples.dtype.name}.')
    if samples.shape.rank != 2:
      raise ValueError(f'{self.name} stream: samples must have shape [batch, '
                       f'samples]; got shape {samples.shape}.')
    length = samples.shape[1]
    if length is not None and length % self.hop_samples:
      raise ValueError(
          f'{self.name} stream: step takes whole hops of {self.hop_samples} '
          f'samples; got {length} samples (Streamer buffers partial hops).')
    return tf.cast(samples, tf.float32)

  def step(self, state, samples):
    """(state, samples [B, k * hop]) -> (state, frames [B, k, C])."""
    self.check_state(state)
    samples = self.check_samples(samples)
    return self._step(state, samples, tf.constant(_POSITION_CAP))

  def finish(self, state):
    """The stream's last `delay_frames` frames: -> (state, [B, delay, C])."""
    self.check_state(state)
    batch = tf.shape(state['samples'])[0]
    frames = []
    for index in range(self.delay_frames):
      zeros = tf.zeros([batch, self.hop_samples], tf.float32)
      state, new = self._step(state, zeros,
                              tf.constant(-index * self.hop_samples))
      frames.append(new)
    if not frames:
      return state, tf.zeros([batch, 0, self.channels], tf.float32)
    return state, tf.concat(frames, axis=1)

  def traced_step(self):
    """`_step` as one tf.function for any batch and hop count (cached)."""
    if self._traced_step is None:
      state_spec = {
          key: tf.TensorSpec([None] * (value.shape.rank > 0 and 1) +
                             value.shape[1:].as_list(), value.dtype)
          for key, value in self.initial_state(1).items()
      }
      state_spec['frontend'] = tf.TensorSpec([5], tf.int32)
      self._traced_step = tf.function(
          self._step,
          input_signature=[state_spec,
                           tf.TensorSpec([None, None], tf.float32),
                           tf.TensorSpec([], tf.int32)])
    return self._traced_step

  def state_names(self):
    """The state's keys, sorted: the order of its flat form."""
    return sorted(self.initial_state(1))

  def step_signature(self, batch_size: int = 1, hops: int = 1):
    """`step` as a tf.function of fixed shapes with flat, named tensors.

    Inputs: samples float32 [batch_size, hops * hop] and one input
    'state_<key>' per state key; outputs: {'frames': [batch_size, hops, C],
    'state_<key>': ...}. Export it as a SavedModel signature and convert it
    with `tf.lite.TFLiteConverter.from_saved_model(dir, signature_keys=...)`
    (builtin ops only) to run the stream with explicit state in TFLite.
    """
    def step(state, samples):
      with self.constant_filters():
        return self.step(state, samples)

    return flat_step_function(step, self.initial_state(batch_size),
                              [batch_size, hops * self.hop_samples], 'frames')

  @contextlib.contextmanager
  def constant_filters(self):
    """Within it, a traced step holds its filters as constants.

    The filters (and the FFT method's spectra of them) are computed from the
    weights when the step is traced, eagerly, and enter the graph as
    constants: an exported or converted step (the signatures, `to_tflite`)
    then does not recompute them on every call, and LiteRT's XNNPACK runs
    the convolution, which it takes only with constant filters. A step
    traced outside this context reads the weights on every call (it follows
    later changes of the weights, e.g. `Streamer`).
    """
    previous, self._constant_filters = self._constant_filters, True
    try:
      yield
    finally:
      self._constant_filters = previous

  def export(self, directory, batch_size: int = 1, hops: int = 1):
    """Writes a SavedModel whose endpoint 'step' is `step_signature`."""
    archive = keras.export.ExportArchive()
    archive.track(self.frontend)
    archive.add_endpoint('step', self.step_signature(batch_size, hops))
    archive.write_out(str(directory), verbose=False)

  def to_tflite(self, batch_size: int = 1, hops: int = 1) -> bytes:
    """The step as a TFLite model (builtin ops only), signature 'step'.

    Run it hop by hop with `tf.lite.Interpreter(model_content=...)
    .get_signature_runner('step')`, passing samples and every
    'state_<key>' (start from `initial_state`) and feeding the returned
    states back.
    """
    with tempfile.TemporaryDirectory() as directory:
      self.export(directory, batch_size, hops)
      converter = tf.lite.TFLiteConverter.from_saved_model(
          directory, signature_keys=['step'])
      converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
      return converter.convert()

  def _step(self, state, samples, end):
    """`end`: int32 [], the stream's end minus `position` (huge while live)."""
    buffer = tf.concat([state['samples'], samples], axis=1)
    position = state['position']
    hops = samples.shape[1] // self.hop_samples if samples.shape[
        1] is not None else tf.shape(samples)[1] // self.hop_samples
    # Buffer sample i sits at stream position start + i.
    start = position - self.history_samples
    bank_state = {}
    if self.parts.kind == 'pools_itself':
      # The bank's offsets count from the first new frame's window start,
      # buffer sample `stream_lead()`.
      keys = self.parts.bank.stream_initial_state(1, self.channels)
      energies, bank_state = self.parts.bank.stream_pooled(
          {key: state[key] for key in keys}, buffer,
          lambda offsets: self._inside(start + self._conv_left + offsets,
                                       end, position), hops)
    else:
      energies, energy_history = self._filterbank(
          buffer, state['energies'], start, end, position, hops)
    if self.parts.floor is not None:
      energies = tf.maximum(energies, self.parts.floor)
    first_frame = position // self.hop_samples - self.delay_frames
    frame_index = first_frame + tf.range(hops)
    valid = (frame_index >= 0)[tf.newaxis, :, tf.newaxis]
    new_state = {
        'samples': buffer[:, -self.history_samples:] if self.history_samples
                   else buffer[:, :0],
        'position': tf.minimum(position + tf.shape(samples)[1],
                               _POSITION_CAP),
        'frontend': tf.constant(self.fingerprint),
    }
    if self.energy_history:
      new_state['energies'] = energy_history
    if self.parts.kind == 'pools_itself':
      new_state.update(bank_state)
    frames = energies
    keys = _stage_state_keys(self.parts, 1)
    for name, layer, kind in self.parts.frame_stages:
      if kind == 'pointwise':
        frames = _pointwise(layer)(frames)
        continue
      # A stateful stage: its own state and pure step.
      own = {key: state[ours] for ours, (key, _) in keys[name].items()}
      own, frames = stages_lib.of(layer).stream_step(own, frames,
                                                      frame_index)
      new_state.update({ours: own[key]
                        for ours, (key, _) in keys[name].items()})
    frames = tf.where(valid, frames, tf.zeros_like(frames))
    return new_state, frames

  def _inside(self, positions, end, position):
    """Which stream positions hold signal: 0 <= p < position + end."""
    return tf.logical_and(positions >= 0, positions - position < end)

  def _filters_by_fft(self, length):
    """Whether a step filters `length` (static or None) samples by FFT."""
    return (self.filter_method == 'fft' and length is not None and
            self._filter_dtype == tf.float32)

  def _filterbank(self, buffer, history, start, end, position, hops):
    """Pooled energies [B, hops, C] and the new filter-output history.

    `buffer` holds the samples at stream positions start + i; `history` the
    activation outputs [B, energy_history, C] before the new ones.
    """
    parts = self.parts
    window, hop = parts.window, self.hop_samples
    signal = buffer
    if parts.preemphasis is not None:
      taps = parts.preemphasis()
      signal = taps[0] * buffer[:, :-1] + taps[1] * buffer[:, 1:]
      # The pre-emphasised signal is 0 before the stream (TF's zero padding),
      # not the filter's response to its first sample.
      positions = start + tf.range(tf.shape(signal)[1])
      signal *= tf.cast(positions >= 0, signal.dtype)[tf.newaxis]
    by_fft = self._filters_by_fft(signal.shape[1])
    terms = None
    if self._constant_filters:
      with tf.init_scope():  # eagerly, once, at trace time
        filters, dtype = parts.filters()
        filters = tf.cast(filters, dtype).numpy()
        if by_fft:
          size = real_fft_filterbank.correlation_size(
              window, signal.shape[1] - window + 1)
          terms = [term.numpy() for term in
                   real_fft_filterbank.correlation_terms(filters, size)]
      # Const nodes of the traced graph (an eager tensor would be captured
      # as an extra input, which tf2onnx keeps as one).
      filters = tf.constant(filters)
      if terms is not None:
        terms = tuple(tf.constant(term) for term in terms)
    else:
      filters, dtype = parts.filters()
      filters = tf.cast(filters, dtype)
    if by_fft:
      outputs = real_fft_filterbank.correlate(signal, filters, terms=terms)
    elif isinstance(hops, int) and hops > 1:
      # Hop by hop as a batch: each hop's outputs read hop + window - 1
      # samples (LiteRT's convolution is faster on these short rows than
      # on one long one: benchmarks/README.md, "streaming cost").
      rows = framing.overlapping_frames(tf.cast(signal, dtype),
                                        hop + window - 1, hop)
      outputs = tf.reshape(
          tf.nn.conv1d(tf.reshape(rows, [-1, hop + window - 1, 1]),
                       filters[:, tf.newaxis, :], stride=1, padding='VALID'),
          [-1, hops * hop, filters.shape[1]])
    else:
      outputs = tf.nn.conv1d(
          tf.cast(signal, dtype)[:, :, tf.newaxis],
          filters[:, tf.newaxis, :], stride=1, padding='VALID')
    # One output per new sample, at stream positions start + conv_left + j.
    outputs = tf.cast(outputs, tf.float32)
    if parts.activation is not None:
      outputs = parts.activation(outputs)
    outputs = tf.concat([history, outputs], axis=1)
    new_history = outputs[:, -self.energy_history:]
    # The frames' pooling windows: (hops - 1) * hop + window outputs from
    # the first frame's window start.
    span = (hops - 1) * hop + window
    outputs = outputs[:, :span]
    first = start + self._conv_left - self.energy_history
    inside = self._inside(first + tf.range(span), end, position)
    inside = inside[tf.newaxis, :, tf.newaxis]
    if parts.pooling == 'max':
      # TF's max pooling ignores its padding: -inf never wins.
      outputs = tf.where(inside, outputs, tf.fill(tf.shape(outputs),
                                                  -np.inf))
      return tf.nn.max_pool1d(outputs, window, hop, 'VALID'), new_history
    # TF pools zeros outside the input, not the filters' response there.
    outputs *= tf.cast(inside, outputs.dtype)
    return pooling.strided_window_sum(outputs, parts.pooling_windows(), hop,
                                      'valid'), new_history


class Streamer:
  """Streams a frontend: push(samples) returns the frames that became final.

    streamer = Streamer(leaf_audio.Leaf())
    for chunk in chunks:                    # float32 [batch, n], any n >= 0
      frames = streamer.push(chunk)         # [batch, k, channels], k >= 0
    frames = streamer.flush()               # the remaining frames

All the frames together equal frontend(clip padded with zeros to a whole
number of hops) to float32 rounding (see the module docstring): exactly
frontend(clip) when its length is a multiple of `hop_samples`, always for
MelFilterbanks, and for any length when `total_samples` is given.

A push of any length runs in steps of at most `PUSH_CHUNK_HOPS` hops, so
its memory is bounded (a long push costs no more than the offline frontend
on the same audio).

Non-finite samples (NaN, inf) do not poison the stream: they are computed
as zeros, and every frame whose window holds one comes out as NaN (the
offline frontend marks the whole clip). Once such frames have passed, the
stream's frames are finite again (a recurrent stage such as PCEN still
remembers the zeros for a while, as it would remember silence).

Args:
  frontend: a built `Leaf`, `SincNet`, `SincNetPlus`, `EfficientLeaf` or
    `MelFilterbanks` (see `frontend_parts` for what is refused), or a
    `StreamingFrontend` (new streams of it reuse its traced step).
  total_samples: optional int, the stream's length when known in advance
    (a file): the frames then equal frontend(clip) exactly for any length.
    Pushing more, or flushing after fewer, raises ValueError.

Attributes:
  hop_samples: samples per frame.
  lookahead_samples: frame f is final once sample f * hop_samples +
    lookahead_samples has arrived (frames come out at whole hops).
  stream: the `StreamingFrontend` it runs.
"""

  def __init__(self, frontend, total_samples: Optional[int] = None):
    if isinstance(frontend, StreamingFrontend):
      if total_samples is not None and total_samples != frontend.total_samples:
        raise ValueError(
            f'{frontend.name} Streamer: total_samples={total_samples} differs '
            f'from its StreamingFrontend\'s ({frontend.total_samples}).')
      self.stream = frontend
    else:
      self.stream = StreamingFrontend(frontend, total_samples)
    self.total_samples = self.stream.total_samples
    self._pushed = 0
    self.hop_samples = self.stream.hop_samples
    self.lookahead_samples = self.stream.lookahead_samples
    self._step = self.stream.traced_step()
    self._state = None
    self._pending = None
    self._frames_out = 0
    self._finished = False
    # Per stream of the batch: [first, last] stream frames that a
    # non-finite sample reached, not yet returned.
    self._invalid = None

  def _start(self, batch):
    self._state = self.stream.initial_state(batch)
    self._pending = np.zeros([batch, 0], np.float32)
    self._invalid = [[] for _ in range(batch)]

  def _mark_non_finite(self, samples):
    """Zeros the non-finite samples; remembers the frames they reach."""
    bad = ~np.isfinite(samples)
    if not bad.any():
      return samples
    hop = self.hop_samples
    for row in np.flatnonzero(bad.any(axis=1)):
      positions = self._pushed + np.flatnonzero(bad[row])
      # Frame f reads samples f * hop - lookbehind ... f * hop + lookahead.
      first = -(-(positions - self.stream.lookahead_samples) // hop)
      last = (positions + self.stream.lookbehind_samples) // hop
      # Both grow with the position: merge overlapping spans.
      starts = np.concatenate([[0], np.flatnonzero(first[1:] >
                                                   last[:-1] + 1) + 1])
      ends = np.concatenate([starts[1:] - 1, [len(first) - 1]])
      self._invalid[row] += [(int(first[a]), int(last[b]))
                             for a, b in zip(starts, ends)]
    return np.where(bad, 0., samples).astype(np.float32)

  def _invalidate(self, frames, first_frame):
    """Sets the frames a non-finite sample reached to NaN."""
    last_frame = first_frame + frames.shape[1] - 1
    for row, spans in enumerate(self._invalid):
      for first, last in spans:
        low, high = max(first, first_frame), min(last, last_frame)
        if low <= high:
          frames[row, low - first_frame:high - first_frame + 1] = np.nan
      self._invalid[row] = [span for span in spans if span[1] > last_frame]
    return frames

  def _run(self, samples, end=_POSITION_CAP):
    """Steps over whole hops; returns the frames of stream index >= 0."""
    self._state, frames = self._step(self._state, tf.constant(samples),
                                     tf.constant(end, tf.int32))
    frames = frames.numpy()
    hops = samples.shape[1] // self.hop_samples
    # The steps' first delay_frames outputs precede the stream.
    skip = max(self.stream.delay_frames - self._frames_out, 0)
    first_frame = self._frames_out - self.stream.delay_frames + min(skip,
                                                                     hops)
    self._frames_out += hops
    return self._invalidate(frames[:, min(skip, hops):], first_frame)

  def push(self, samples):
    """Adds samples [batch, n]; returns the newly final frames [batch, k, C]."""
    name = self.stream.name
    if self._finished:
      raise RuntimeError(f'{name} Streamer: push after flush; create a new '
                         'Streamer for a new stream.')
    samples = np.asarray(samples)
    if not (np.issubdtype(samples.dtype, np.floating)):
      raise TypeError(f'{name} Streamer: samples must be float audio in '
                      f'[-1, 1]; got dtype {samples.dtype}.')
    if samples.ndim != 2:
      raise ValueError(f'{name} Streamer: samples must have shape [batch, n];'
                       f' got shape {samples.shape}.')
    if samples.shape[0] < 1:
      raise ValueError(f'{name} Streamer: samples must hold at least one '
                       f'stream (batch size >= 1); got shape {samples.shape}.')
    if self._state is None:
      self._start(samples.shape[0])
    elif samples.shape[0] != self._pending.shape[0]:
      raise ValueError(
          f'{name} Streamer: the stream has batch size '
          f'{self._pending.shape[0]}; got samples of shape {samples.shape}.')
    if self.total_samples is not None and (
        self._pushed + samples.shape[1] > self.total_samples):
      raise ValueError(
          f'{name} Streamer: total_samples={self.total_samples}, but '
          f'{self._pushed + samples.shape[1]} samples were pushed.')
    samples = self._mark_non_finite(samples.astype(np.float32))
    self._pushed += samples.shape[1]
    pending = np.concatenate([self._pending, samples], axis=1)
    whole = pending.shape[1] // self.hop_samples * self.hop_samples
    self._pending = pending[:, whole:]
    if not whole:
      return np.zeros([pending.shape[0], 0, self.stream.channels], np.float32)
    # Bounded steps: memory does not grow with the length of one push.
    chunk = PUSH_CHUNK_HOPS * self.hop_samples
    return np.concatenate([self._run(pending[:, start:min(start + chunk,
                                                          whole)])
                           for start in range(0, whole, chunk)], axis=1)

  def flush(self):
    """Ends the stream; returns its remaining frames [batch, k, C]."""
    name = self.stream.name
    if self._finished:
      raise RuntimeError(f'{name} Streamer: flush called twice.')
    if self._state is None:
      # The stream stays open: a push, then a flush, work as usual.
      raise RuntimeError(f'{name} Streamer: flush before any push; push at '
                         'least an empty [batch, 0] array to set the batch, '
                         'then flush.')
    self._finished = True
    if self.total_samples is not None and self._pushed != self.total_samples:
      raise ValueError(f'{name} Streamer: total_samples={self.total_samples}, '
                       f'but {self._pushed} samples were pushed.')
    batch = self._pending.shape[0]
    hop = self.hop_samples
    # Stream positions from the end on are padding (masked, TF's zeros):
    # the clip's end if its length was given, else the padded hop's end.
    consumed = self._pushed - self._pending.shape[1]
    end = (self.total_samples if self.total_samples is not None else
           -(-self._pushed // hop) * hop)
    outputs = []
    if self._pending.shape[1]:
      padded = np.zeros([batch, hop], np.float32)
      padded[:, :self._pending.shape[1]] = self._pending
      outputs.append(self._run(padded, end=end - consumed))
      consumed += hop
    # The last frames need delay_frames more hops: silence past the end.
    zeros = np.zeros([batch, hop], np.float32)
    for _ in range(self.stream.delay_frames):
      outputs.append(self._run(zeros, end=end - consumed))
      consumed += hop
    if not outputs:
      return np.zeros([batch, 0, self.stream.channels], np.float32)
    return np.concatenate(outputs, axis=1)
