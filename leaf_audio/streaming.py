"""Hop-by-hop frontends: the frames of a clip computed as its samples arrive.

  frontend_parts      what streaming reads of a frontend; its stages come
                      through one adapter, `_stages` (public stage
                      attributes when the frontend has them)
  StreamingFrontend   the pure form: (state, samples) -> (state, frames), with
                      the state a dict of fixed-shape tensors (tf.function,
                      SavedModel and TFLite friendly)
  Streamer            a Python object over it: push(samples) any number of
                      samples at a time, flush() at the end

Streamed: `Leaf`, `SincNet`, `SincNetPlus` ('same' pooling, no mean_var_norm),
`EfficientLeaf` ('same' pooling; compression 'pcen', 'log_pcen' or LogTBN
without its median) and `MelFilterbanks`. Refused with a reason:
`TimeDomainFilterbanks` ('valid' pooling: its frame count is not
ceil(samples / hop)), per-clip normalisation (mean_var_norm, LogTBN's median
over time), and compression layers the streamer cannot tell per-frame from
recurrent (Lambda).

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

import dataclasses
import tempfile
import zlib
from typing import Callable, Optional

import keras
import numpy as np
import tensorflow as tf

from leaf_audio import compression
from leaf_audio import convolution
from leaf_audio import frontend as frontend_lib
from leaf_audio import grouped_filterbank
from leaf_audio import impulse_responses
from leaf_audio import logtbn
from leaf_audio import pooling
from leaf_audio import smoothing

# Positions saturate here, so that a stream of any length never overflows
# int32: only the first hops of a stream need their true position (which
# frames precede the stream, where PCEN's smoother starts); the end of a
# stream is masked relative to the current position.
_POSITION_CAP = 2**30


@dataclasses.dataclass(frozen=True)
class FrontendParts:
  """What streaming needs to know of a frontend (see `frontend_parts`).

  Attributes:
    kind: 'filterbank' (a stride-1 'same' filterbank, an activation, a
      'same' pooling), 'grouped' (EfficientLeaf's grouped filterbank) or
      'mel' (STFT frames).
    sample_rate: Hz.
    hop: samples between frames.
    window: samples of the filters and of the pooling window (of the STFT
      frames for 'mel').
    channels: output channels.
    preemphasis: None, or a function returning the 2 taps [2] of a 'same'
      pre-emphasis (y[t] = w0 x[t] + w1 x[t + 1]).
    filters: 'filterbank': a function returning the filters [window,
      conv_channels] of a cross-correlation with 'same' padding.
    filter_dtype: the precision the filterbank is computed in.
    activation: 'filterbank': the layer after the filterbank.
    pooling: 'sum' or 'max' ('filterbank' and 'grouped').
    pooling_windows: 'filterbank' with 'sum' pooling: a function returning
      the windows [window, channels or 1].
    grouped: 'grouped': the `GroupedGaborFilterbank` layer.
    mel_matrix: 'mel': [n_fft // 2 + 1, channels].
    n_fft: 'mel': FFT size.
    floor: None, or the lower clip of the energies before compression.
    compression: the last layer (Identity when absent).
  """
  kind: str
  sample_rate: float
  hop: int
  window: int
  channels: int
  preemphasis: Optional[Callable] = None
  filters: Optional[Callable] = None
  filter_dtype: tf.DType = tf.float32
  activation: Optional[keras.layers.Layer] = None
  pooling: str = 'sum'
  pooling_windows: Optional[Callable] = None
  grouped: Optional[keras.layers.Layer] = None
  mel_matrix: Optional[np.ndarray] = None
  n_fft: Optional[int] = None
  floor: Optional[float] = None
  compression: Optional[keras.layers.Layer] = None


def _refuse(frontend, reason):
  raise ValueError(f'Streaming {type(frontend).__name__}: {reason}')


def _interleaved_complex(conv, real, imag):
  # [kernel_size, filters], channel 2i real and 2i + 1 imaginary, as
  # GaborConv1D's own convolution.
  return tf.reshape(tf.stack([tf.transpose(real), tf.transpose(imag)], axis=2),
                    (conv.kernel_size, 2 * real.shape[0]))


_STAGES = ('preemphasis', 'filterbank', 'activation', 'pooling', 'compression',
           'normalization')


def _stages(frontend):
  """{stage name: layer or None} of a `leaf_audio.Frontend`, else None."""
  if isinstance(frontend, frontend_lib.Frontend):
    return {name: getattr(frontend, name) for name in _STAGES}
  return None


def _single(value):
  """Keras' Conv1D keeps strides and kernel sizes as 1-tuples."""
  return value[0] if isinstance(value, (tuple, list)) else value


def _output_channels(frontend):
  channels = getattr(frontend, 'n_filters', None)
  if channels is None:
    channels = frontend.compute_output_shape((None, None))[-1]
  return channels


def _grouped_parts(frontend, stages):
  bank = stages['filterbank']
  if bank.padding != 'same':
    _refuse(frontend, "its pooling has 'valid' padding; only 'same' is "
            'streamed.')
  return FrontendParts(
      kind='grouped', sample_rate=getattr(frontend, 'sample_rate', 0),
      hop=bank.hop, window=bank.window_size,
      channels=_output_channels(frontend), grouped=bank,
      floor=frontend.pre_compression_floor,
      compression=stages['compression'] or keras.layers.Identity())


def _filterbank_parts(frontend, stages):
  """A stride-1 filterbank, an activation and a strided 'same' pooling."""
  conv, pool = stages['filterbank'], stages['pooling']
  if pool is None:
    _refuse(frontend, 'it has no pooling stage.')
  if pool.padding != 'same':
    _refuse(frontend, "its pooling has 'valid' padding, so its frame count "
            "is (samples - window) // hop + 1, not ceil(samples / hop); only "
            "'same' pooling is streamed (TimeDomainFilterbanks is refused).")
  if _single(conv.strides) != 1 or conv.padding != 'same' or getattr(
      conv, 'use_bias', False):
    _refuse(frontend, "its filterbank must have stride 1, 'same' padding and "
            'no bias.')
  kernel_size = _single(conv.kernel_size)
  dtype = tf.float32
  if isinstance(conv, keras.layers.Conv1D):
    filters = lambda: conv.kernel[:, 0, :]
  elif isinstance(conv, convolution.GaborConv1D) or getattr(
      conv, 'is_complex', False):
    filters = lambda: _interleaved_complex(conv, *conv.impulse_responses())
  elif hasattr(conv, 'impulse_responses'):
    filters = conv.impulse_responses  # real filters [kernel_size, channels]
    if isinstance(conv, convolution.SincConv1D):
      # In float64 as SincConv1D computes (PCEN magnifies float32's
      # rounding of the upper bands).
      dtype = tf.float64
  else:
    _refuse(frontend, f'its filterbank {type(conv).__name__} offers no '
            'impulse_responses().')
  if isinstance(pool, pooling.MaxPooling1D):
    kind, windows = 'max', None
  elif hasattr(pool, 'windows'):
    kind, windows = 'sum', pool.windows
  elif isinstance(pool, pooling.GaussianLowpassPooling):
    kind, windows = 'sum', (lambda: pool.impulse_responses()[0, :, :, 0])
  elif isinstance(pool, pooling.LearnablePooling1D):
    kind, windows = 'sum', (lambda: pool.kernel[0, :, :, 0])
  else:
    _refuse(frontend, f'its pooling {type(pool).__name__} offers no '
            'windows() and is not max pooling.')
  if _single(pool.kernel_size) != kernel_size:
    _refuse(frontend, 'its pooling window and filters differ in length.')
  preemphasis = None
  preemp = stages['preemphasis']
  if preemp is not None:
    if not (isinstance(preemp, keras.layers.Conv1D) and
            _single(preemp.kernel_size) == 2 and preemp.padding == 'same' and
            not preemp.use_bias):
      _refuse(frontend, 'its pre-emphasis is not a 2-tap Conv1D with '
              "'same' padding.")
    preemphasis = lambda: preemp.kernel[:, 0, 0]
  return FrontendParts(
      kind='filterbank', sample_rate=getattr(frontend, 'sample_rate', 0),
      hop=_single(pool.strides), window=kernel_size,
      channels=_output_channels(frontend), preemphasis=preemphasis,
      filters=filters, filter_dtype=dtype,
      activation=stages['activation'] or keras.layers.Identity(),
      pooling=kind, pooling_windows=windows,
      floor=frontend.pre_compression_floor,
      compression=stages['compression'] or keras.layers.Identity())


def frontend_parts(frontend) -> FrontendParts:
  """What streaming reads of `frontend` (its stages through `_stages`).

  Args:
    frontend: a built `Leaf`, `SincNet`, `SincNetPlus`, `EfficientLeaf` or
      `MelFilterbanks` (or a composed `Frontend` of the same kinds of stages).

  Returns:
    `FrontendParts`. Raises ValueError naming what cannot be streamed.
  """
  if not frontend.built:
    raise ValueError(f'Streaming {type(frontend).__name__}: build the '
                     'frontend first (call it once, or frontend.build('
                     '(None, None))), so that its weights exist.')
  if isinstance(frontend, frontend_lib.MelFilterbanks):
    return FrontendParts(
        kind='mel', sample_rate=frontend.sample_rate, hop=frontend.stride,
        window=frontend.window_size, channels=frontend.n_filters,
        mel_matrix=frontend.mel_matrix, n_fft=frontend.n_fft,
        compression=frontend.compression)
  stages = _stages(frontend)
  if stages is None:
    _refuse(frontend, 'not a Leaf, SincNet, SincNetPlus, EfficientLeaf, '
            'MelFilterbanks or Frontend.')
  if stages['normalization'] is not None:
    _refuse(frontend, 'its normalization stage (mean_var_norm) normalises '
            'each clip over all its frames, which a stream never has; build '
            'it without (mean_var_norm=False).')
  if isinstance(stages['filterbank'],
                grouped_filterbank.GroupedGaborFilterbank):
    return _grouped_parts(frontend, stages)
  return _filterbank_parts(frontend, stages)


def _compression_kind(owner, layer):
  """'pcen' (recurrent, carried in the state) or 'frame' (frame by frame)."""
  if isinstance(layer, compression.PCENCompression):
    return 'pcen'
  if isinstance(layer, (keras.layers.Identity, compression.LogCompression)):
    return 'frame'
  if isinstance(layer, keras.layers.LayerNormalization):
    if list(layer.axis) in ([-1], [2]):
      return 'frame'
  if isinstance(layer, logtbn.LogTBN):
    if layer.median is None:
      return 'frame'  # batch norm with its moving statistics (inference).
    raise ValueError(
        f'Streaming {owner}: LogTBN subtracts the median over all the frames '
        'of a clip, which a stream never has. Stream EfficientLeaf with '
        "compression_fn='pcen' or 'log_pcen' (or LogTBN(median=None)).")
  raise ValueError(
      f'Streaming {owner}: cannot tell whether compression '
      f'{type(layer).__name__} acts frame by frame; streamed compressions are '
      'PCENCompression, LogCompression, LayerNormalization over channels, '
      'LogTBN(median=None) and none.')


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

  return tf.function(flat_step, input_signature=specs)


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
"""

  def __init__(self, frontend, total_samples: Optional[int] = None):
    self.frontend = frontend
    self.parts = parts = frontend_parts(frontend)
    if total_samples is not None and (
        isinstance(total_samples, bool) or
        not isinstance(total_samples, (int, np.integer)) or total_samples < 0):
      raise ValueError(f'Streaming {type(frontend).__name__}: total_samples '
                       f'must be None or an int >= 0; got {total_samples!r}.')
    self.total_samples = total_samples
    self.name = type(frontend).__name__
    self.compression_kind = _compression_kind(self.name, parts.compression)
    self.hop_samples = hop = parts.hop
    window = parts.window
    if parts.kind == 'mel':
      # Frame f covers samples [f * hop, f * hop + window).
      self.lookahead_samples = window - 1
      history_start = 0
    else:
      # TF's 'same' padding: for a length that is a whole number of hops,
      # unless the stream's length is known.
      frames = -(-(total_samples or hop) // hop)
      length = total_samples if total_samples else frames * hop
      pool_left = max((frames - 1) * hop + window - length, 0) // 2
      conv_left = (window - 1) // 2
      conv_right = window - 1 - conv_left
      self._pool_left, self._conv_left = pool_left, conv_left
      self._preemp = int(parts.preemphasis is not None)
      self.lookahead_samples = (window - 1 - pool_left) + conv_right + (
          self._preemp)
      history_start = pool_left + conv_left
    self._groups = []
    if parts.kind == 'grouped':
      self._groups = self._group_geometry()
      # A group reads up to its last decimated sample plus its kernel's
      # right half: less than LEAF's full window and filters.
      centre = (window - 1) // 2
      self.lookahead_samples = max(
          centre + group['stride'] * group['after'] - pool_left +
          window // 2 - group['kernel_size'] // 2 - conv_left +
          group['kernel_size'] - 1 for group in self._groups)
    self.delay_frames = self.lookahead_samples // hop
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
    for index, group in enumerate(self._groups):
      if group['cached']:
        state[f'group_energies_{index}'] = tf.zeros(
            [batch_size, group['cached'], len(group['indices'])], tf.float32)
    if self.compression_kind == 'pcen':
      state['smoother'] = tf.zeros([batch_size, self.channels], tf.float32)
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
    return flat_step_function(self.step, self.initial_state(batch_size),
                              [batch_size, hops * self.hop_samples], 'frames')

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
    if self.parts.kind == 'mel':
      energies = self._mel(buffer, hops)
    else:
      # Buffer sample i sits at stream position start + i.
      start = position - self.history_samples
      if self.parts.kind == 'grouped':
        energies, group_histories = self._grouped(buffer, state, start, end,
                                                  position, hops)
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
    if self._groups:
      new_state.update(group_histories)
    if self.compression_kind == 'pcen':
      frames, new_state['smoother'] = self._pcen(energies, state['smoother'],
                                                 first_frame, hops)
    else:
      frames = self._per_frame(energies)
    frames = tf.where(valid, frames, tf.zeros_like(frames))
    return new_state, frames

  def _inside(self, positions, end, position):
    """Which stream positions hold signal: 0 <= p < position + end."""
    return tf.logical_and(positions >= 0, positions - position < end)

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
    filters = tf.cast(parts.filters(), parts.filter_dtype)
    outputs = tf.nn.conv1d(
        tf.cast(signal, parts.filter_dtype)[:, :, tf.newaxis],
        filters[:, tf.newaxis, :], stride=1, padding='VALID')
    # One output per new sample, at stream positions start + conv_left + j.
    outputs = parts.activation(tf.cast(outputs, tf.float32))
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

  def _group_geometry(self):
    """Per EfficientLeaf group: its decimation, as its layer's call sets it.

    A group's squared-modulus energies sit on a grid of `stride` samples;
    frame f pools the decimated samples f * steps + [0, taps). A step
    computes only the new decimated samples and keeps the last
    `cached` = taps - steps for the next frames.
    """
    layer, window = self.parts.grouped, self.parts.window
    centre = (window - 1) // 2
    groups = []
    for group in layer.groups:
      stride = group.stride
      before = centre // stride
      after = (window - 1 - centre) // stride
      taps = before + after + 1
      steps = self.hop_samples // stride
      groups.append({
          'indices': list(group.indices), 'kernel_size': group.kernel_size,
          'stride': stride, 'steps': steps, 'before': before,
          'after': after, 'first': centre - stride * before,
          'cached': max(taps - steps, 0),
      })
    return groups

  def _grouped(self, buffer, state, start, end, position, hops):
    """EfficientLeaf's grouped filterbank at the new frames (see its call).

    Returns the pooled energies [B, hops, C] and the groups' new caches.
    """
    layer = self.parts.grouped
    window = self.parts.window
    real, imag = layer.impulse_responses()
    filters = tf.transpose(tf.concat([real, imag], axis=0))
    windows = tf.transpose(impulse_responses.gaussian_lowpass(
        layer.pooling_width, window)[0, :, :, 0])
    centre = (window - 1) // 2
    # The block correlation may read up to a stride past its last tap.
    buffer = tf.pad(buffer, [[0, 0], [0, max(
        group['stride'] for group in self._groups)]])
    outputs, histories = [], {}
    for index, group in enumerate(self._groups):
      stride, steps, cached = group['stride'], group['steps'], group['cached']
      taps = group['before'] + group['after'] + 1
      count = (hops - 1) * steps + taps  # decimated samples the frames pool
      tap = window // 2 - group['kernel_size'] // 2
      indices = group['indices']
      channels = indices + [layer.n_filters + i for i in indices]
      group_filters = tf.gather(filters[tap:tap + group['kernel_size']],
                                channels, axis=1)
      # The buffer starts at the first frame's window start minus the
      # filters' left half: decimated sample m reads from
      # first + tap + stride * m. The first `cached` come from the state.
      responses = grouped_filterbank.strided_correlation(
          buffer, group['first'] + tap + stride * cached, group_filters,
          stride, count - cached)
      real_part, imag_part = tf.split(tf.square(responses), 2, axis=0)
      energies = real_part + imag_part  # [channels, batch, new]
      if cached:
        key = f'group_energies_{index}'
        energies = tf.concat(
            [tf.transpose(state[key], (2, 0, 1)), energies], axis=2)
        histories[key] = tf.transpose(energies[:, :, -cached:], (1, 2, 0))
      # LEAF pools zeros outside the signal, not the filters' response.
      positions = (start + self._conv_left + group['first'] +
                   stride * tf.range(count))
      inside = self._inside(positions, end, position)
      energies *= tf.cast(inside, energies.dtype)
      pooling_taps = tf.gather(
          tf.gather(windows, indices),
          centre + stride * np.arange(-group['before'], group['after'] + 1),
          axis=1) * float(stride)
      outputs.append(grouped_filterbank.strided_pooling(
          energies, pooling_taps, steps, hops))
    order = [i for group in self._groups for i in group['indices']]
    outputs = tf.transpose(tf.concat(outputs, axis=0), (1, 2, 0))
    if order != sorted(order):
      outputs = tf.gather(outputs, np.argsort(order).astype(np.int32),
                          axis=-1)
    return outputs, histories

  def _mel(self, buffer, hops):
    parts = self.parts
    window, hop = parts.window, self.hop_samples
    # Frame f of the buffer covers its samples [f * hop, f * hop + window).
    pieces = -(-window // hop)
    by_hop = tf.reshape(buffer, [tf.shape(buffer)[0], -1, hop])
    frames = tf.concat([by_hop[:, piece:piece + hops] for piece in
                        range(pieces)], axis=-1)[..., :window]
    hann = tf.signal.hann_window(window, periodic=True, dtype=frames.dtype)
    stft = tf.signal.rfft(frames * hann, [parts.n_fft])
    power = tf.square(tf.abs(stft))
    return tf.matmul(power, tf.constant(parts.mel_matrix, power.dtype))

  def _per_frame(self, energies):
    layer = self.parts.compression
    if isinstance(layer, logtbn.LogTBN):
      return layer(energies, training=False)
    return layer(energies)

  def _pcen(self, energies, smoother, first_frame, hops):
    """PCEN of frames first_frame + [0, hops), carrying its smoother."""
    layer = self.parts.compression
    parameters = layer.effective_parameters()
    coeff = tf.cast(parameters['smooth'], energies.dtype)
    # The offline smoother starts at frame 0's energies (m[-1] = x[0]).
    # Frames before the stream are replaced by that start, a fixed point of
    # the recurrence, so they change nothing.
    is_zeroth = tf.cast(tf.equal(first_frame + tf.range(hops), 0),
                        energies.dtype)[tf.newaxis, :, tf.newaxis]
    # (A one-hot sum, not a gather: TFLite's gather with a computed scalar
    # index went wrong here.)
    has_zeroth = tf.reduce_max(is_zeroth)
    frame_zero = tf.reduce_sum(energies * is_zeroth, axis=1)
    initial = has_zeroth * frame_zero + (1. - has_zeroth) * smoother
    before = (first_frame + tf.range(hops) < 0)[tf.newaxis, :, tf.newaxis]
    inputs = tf.where(before, initial[:, tf.newaxis, :], energies)
    if isinstance(hops, int) and hops <= 16:
      smoothed, state = [], initial
      for index in range(hops):
        state = coeff * inputs[:, index] + (1. - coeff) * state
        smoothed.append(state)
      smoothed = tf.stack(smoothed, axis=1)
    else:
      smoothed = smoothing.exponential_smoothing(inputs, coeff, initial)
    alpha, delta, root = (parameters['alpha'], parameters['delta'],
                          parameters['root'])
    one_over_root = 1. / root
    frames = ((energies / (layer.floor + smoothed)**alpha + delta)**
              one_over_root - delta**one_over_root)
    return frames, smoothed[:, -1]


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

  def _start(self, batch):
    self._state = self.stream.initial_state(batch)
    self._pending = np.zeros([batch, 0], np.float32)

  def _run(self, samples, end=_POSITION_CAP):
    """Steps over whole hops; returns the frames of stream index >= 0."""
    self._state, frames = self._step(self._state, tf.constant(samples),
                                     tf.constant(end, tf.int32))
    frames = frames.numpy()
    hops = samples.shape[1] // self.hop_samples
    # The steps' first delay_frames outputs precede the stream.
    skip = max(self.stream.delay_frames - self._frames_out, 0)
    self._frames_out += hops
    return frames[:, min(skip, hops):]

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
    self._pushed += samples.shape[1]
    pending = np.concatenate([self._pending, samples.astype(np.float32)],
                             axis=1)
    whole = pending.shape[1] // self.hop_samples * self.hop_samples
    self._pending = pending[:, whole:]
    if not whole:
      return np.zeros([pending.shape[0], 0, self.stream.channels], np.float32)
    return self._run(pending[:, :whole])

  def flush(self):
    """Ends the stream; returns its remaining frames [batch, k, C]."""
    name = self.stream.name
    if self._finished:
      raise RuntimeError(f'{name} Streamer: flush called twice.')
    self._finished = True
    if self._state is None:
      raise RuntimeError(f'{name} Streamer: flush before any push; push at '
                         'least an empty [batch, 0] array to set the batch.')
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
