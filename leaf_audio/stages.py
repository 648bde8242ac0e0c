"""What every stage of a frontend declares: the contract consumers read.

A frontend is its stages (`frontend.Frontend`): filterbank, activation,
pooling, compression, normalisation (and pre-emphasis). Streaming, plots,
TensorBoard figures, the inspector and the FFT method read a stage only
through this interface, never through its class or its attributes:

  stage_geometry()           `Geometry`: window and hop in samples, padding
                             (None for a pointwise stage)
  stage_parameters(rate)     {name: `Parameter`}: what it learns, in physical
                             units (Hz, ms, plain numbers), whatever its
                             parameterisation
  stream_kind()              how it streams: 'pointwise', 'stateful',
                             'filter', 'sum_pooling', 'max_pooling' or
                             'pools_itself'; raises `StreamingRefused` (a
                             ValueError) with the reason otherwise
  stream_initial_state(batch, channels) / stream_step(state, x, frames)
                             'stateful' stages: their own state and pure step
  stream_filters()           'filter': (taps [window, channels], dtype) of a
                             stride-1 'same' cross-correlation
  stream_windows()           'sum_pooling': windows [window, channels or 1]
  stream_lead() / stream_reach() / stream_pooled(state, buffer, inside, hops)
                             'pools_itself': the samples a frame reads before
                             and after its window start, and its frames
  fft_problem(role)          '' when the FFT method applies, else why not
  tflite_builtins            whether it and its streaming step convert to
                             TFLite builtin ops
  pools_itself               a filterbank that also sets the frames

A stage implements it by subclassing `Stage` next to `keras.layers.Layer`
(every stage of this package does, in its own module); `Stage` refuses
whatever a stage does not override, with its name in the message. Plain
Keras layers the presets use (`Conv1D`, `LeakyReLU`, `LayerNormalization`,
`GroupNormalization`, `Identity`) are served by adapters registered here,
so that their `.keras` configs do not change. `of(layer)` gives the
interface of any layer: the layer itself, its adapter, or an adapter that
refuses everything (a `Lambda`).

Example (a stage written outside the package, see docs/extending.md):

    class CubeRoot(stages.Stage, keras.layers.Layer):
      def call(self, x):
        return tf.pow(x, 1. / 3)
      def stream_kind(self):
        return 'pointwise'
"""

import dataclasses
from typing import Optional

import keras
import numpy as np
import tensorflow as tf


class StreamingRefused(ValueError):
  """A stage (or frontend) that cannot be streamed, with the reason."""


@dataclasses.dataclass(frozen=True)
class Geometry:
  """Where a stage's outputs sit on its input's time axis, in samples.

  Attributes:
    window_samples: int, input samples one output reads (1 if pointwise).
    hop_samples: int, input samples between outputs (1 if not strided).
    padding: 'same', 'valid', 'end' (frame f starts at f * hop, samples
      past the end read as 0: an STFT's left-aligned frames, ceil(samples /
      hop) of them), or None for a pointwise stage.
  """
  window_samples: int = 1
  hop_samples: int = 1
  padding: Optional[str] = None

  @property
  def lookahead_samples(self) -> int:
    """Samples after an output's position it reads ('same' centres it).

    The delay this stage adds to a live stream of unknown length.
    """
    if self.padding != 'same':
      return (self.window_samples - 1 if self.padding in ('valid', 'end')
              else 0)
    return self.window_samples - 1 - (self.window_samples - 1) // 2


@dataclasses.dataclass(frozen=True)
class Parameter:
  """A learned quantity in physical units.

  Attributes:
    values: float64 [channels] (or [1] when shared).
    unit: 'Hz', 'ms' or '' (a plain number).
    scale: 'linear' or 'log': how a change is best measured (a ratio for
      'log': widths, gains; a difference for 'linear').
  """
  values: np.ndarray
  unit: str = ''
  scale: str = 'linear'


def parameter(values, unit='', scale='linear') -> Parameter:
  """A `Parameter` from any array-like (tensors are read)."""
  return Parameter(np.asarray(values, np.float64).reshape(-1), unit, scale)


def _name(stage) -> str:
  """The class name of a stage (of the layer an adapter serves)."""
  return type(stage.layer if isinstance(stage, _Adapter) else stage).__name__


class Stage:
  """The stage interface, as a mixin: `class X(Stage, keras.layers.Layer)`.

  Every method has a default: a pointwise geometry, no learned parameters,
  and refusals (with the stage's name) for streaming and the FFT method.
  Override what your stage does.
  """

  # A filterbank that also pools (its outputs are the frames).
  pools_itself = False
  # Whether it and its streaming step convert to TFLite builtin ops
  # (experiments.export refuses --tflite otherwise).
  tflite_builtins = True

  def stage_geometry(self) -> Geometry:
    """Window and hop in samples of its input; pointwise by default."""
    return Geometry()

  def stage_parameters(self, sample_rate: float) -> dict:
    """{name: Parameter} of what it learns; `sample_rate` of the waveform."""
    del sample_rate
    return {}

  def stream_kind(self) -> str:
    raise StreamingRefused(
        f'{_name(self)} does not say how it streams (implement '
        "leaf_audio.stages.Stage.stream_kind: 'pointwise' or 'stateful').")

  def stream_initial_state(self, batch_size, channels) -> dict:
    """'stateful': {name: tensor [batch, ...]} before the first frame."""
    del batch_size, channels
    return {}

  def stream_step(self, state, inputs, frame_index):
    """'stateful': (state, inputs [B, k, C], frame_index int32 [k]) -> (state, outputs).

    frame_index counts the stream's frames from 0; negative indices precede
    the stream (their inputs are placeholders; the outputs are dropped).
    """
    raise StreamingRefused(f'{_name(self)} has no stream_step.')

  def stream_filters(self):
    raise StreamingRefused(f'{_name(self)} offers no filters to stream.')

  def stream_windows(self):
    raise StreamingRefused(f'{_name(self)} offers no pooling windows.')

  def stream_lead(self) -> int:
    """'pools_itself': samples a frame reads before its window's first one.

    By default the left half of filters as long as the window, centred as a
    'same' convolution centres them: (window_samples - 1) // 2.
    """
    return (self.stage_geometry().window_samples - 1) // 2

  def fft_problem(self, role: str) -> str:
    """'' when the FFT method can compute this stage in `role`, else why not."""
    return (f'the {role} is {_name(self)}, which the FFT method does not '
            'compute')


class _Adapter(Stage):
  """The interface of a layer that does not implement it (see `register`)."""

  def __init__(self, layer):
    self.layer = layer

  def __getattr__(self, name):
    return getattr(self.layer, name)


class _Opaque(_Adapter):
  """Any other layer: refuses with its name."""

  def stream_kind(self):
    raise StreamingRefused(
        f'cannot tell whether {_name(self.layer)} acts frame by frame; give '
        'the stage the leaf_audio.stages.Stage interface (stream_kind).')



def _single(value):
  """Keras' Conv1D keeps strides and kernel sizes as 1-tuples."""
  return value[0] if isinstance(value, (tuple, list)) else value


class _Conv1DStage(_Adapter):
  """`keras.layers.Conv1D`: a free filterbank (TimeDomainFilterbanks) or a
  2-tap pre-emphasis. With an even number of channels, channels 2i and
  2i + 1 are read as the real and imaginary parts of filter i."""

  def stage_geometry(self):
    layer = self.layer
    return Geometry(_single(layer.kernel_size), _single(layer.strides),
                    layer.padding)

  def _settings_problem(self):
    layer = self.layer
    settings = dict(strides=_single(layer.strides), padding=layer.padding,
                    use_bias=layer.use_bias,
                    dilation_rate=_single(layer.dilation_rate),
                    groups=layer.groups,
                    activation=keras.activations.serialize(layer.activation))
    expected = dict(strides=1, padding='same', use_bias=False,
                    dilation_rate=1, groups=1, activation='linear')
    for name, value in settings.items():
      if value != expected[name]:
        return f'the filterbank has {name}={value!r}, not {expected[name]!r}'
    return ''

  def stream_kind(self):
    problem = self._settings_problem()
    if problem:
      raise StreamingRefused(f'{problem} (Conv1D streams with stride 1, '
                             "'same' padding, no bias).")
    return 'filter'

  def stream_filters(self):
    return self.layer.kernel[:, 0, :], tf.float32

  def complex_filters(self):
    """(real, imag) [filters, taps] from interleaved channels."""
    kernel = tf.convert_to_tensor(self.layer.kernel)[:, 0, :]
    return tf.transpose(kernel[:, 0::2]), tf.transpose(kernel[:, 1::2])

  def stage_parameters(self, sample_rate):
    del sample_rate
    return {}  # free taps: consumers measure them (plotting.filter_taps).

  def fft_problem(self, role):
    problem = self._settings_problem()
    if problem:
      return problem
    if self.layer.filters % 2:
      return 'the filterbank has an odd number of channels (not complex)'
    return ''


class _PointwiseStage(_Adapter):
  """A layer that acts on each frame (or each value) alone."""

  def stream_kind(self):
    return 'pointwise'



class _LayerNormalizationStage(_PointwiseStage):

  def stream_kind(self):
    if list(self.layer.axis) in ([-1], [2]):
      return 'pointwise'
    raise StreamingRefused(
        f'LayerNormalization over axes {self.layer.axis} mixes frames; only '
        'normalisation over channels (axis=-1) streams.')

  def stage_parameters(self, sample_rate):
    del sample_rate
    values = {}
    if self.layer.scale:
      values['scale'] = parameter(self.layer.gamma)
    if self.layer.center:
      values['offset'] = parameter(self.layer.beta)
    return values


class _GroupNormalizationStage(_Adapter):

  def stream_kind(self):
    raise StreamingRefused(
        'its normalization (GroupNormalization, mean_var_norm) normalises '
        'each clip over all its frames, which a stream never has; build it '
        'without (mean_var_norm=False).')


_ADAPTERS = {}


def register(layer_class, adapter_class):
  """Serves `layer_class` (and subclasses) through `adapter_class(layer)`."""
  _ADAPTERS[layer_class] = adapter_class


register(keras.layers.Conv1D, _Conv1DStage)
register(keras.layers.LeakyReLU, _PointwiseStage)
register(keras.layers.ReLU, _PointwiseStage)
register(keras.layers.Identity, _PointwiseStage)
register(keras.layers.Activation, _PointwiseStage)
register(keras.layers.LayerNormalization, _LayerNormalizationStage)
register(keras.layers.GroupNormalization, _GroupNormalizationStage)


def of(layer) -> Stage:
  """The stage interface of `layer` (the layer itself when it implements it)."""
  if isinstance(layer, Stage):
    return layer
  for cls in type(layer).__mro__:
    if cls in _ADAPTERS:
      return _ADAPTERS[cls](layer)
  return _Opaque(layer)


def stage_sample_rate(layer) -> Optional[float]:
  """The sampling rate a stage was built for (its own or its initializer's)."""
  rate = getattr(layer, 'sample_rate', None)
  if rate is None:
    for name in ('kernel_initializer', 'pooling_initializer'):
      rate = getattr(getattr(layer, name, None), 'sample_rate', None)
      if rate is not None:
        break
  return rate
