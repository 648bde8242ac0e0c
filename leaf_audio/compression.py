"""The last stage of a frontend: dynamic range compression.

  log_compression / LogCompression   log(x + offset), mel-style
  PCENCompression                    per-channel energy normalisation (PCEN),
                                     learnable as sPCEN in LEAF, with its
                                     parameters in linear or log space
  ExponentialMovingAverage           the smoother inside PCEN

All act on non-negative energies [batch, frames, channels] and keep the shape.
"""

import math

import keras
import numpy as np
import tensorflow as tf

from leaf_audio import serialization
from leaf_audio import smoothing
from leaf_audio import stages


@serialization.register()
def log_compression(inputs, log_offset: float = 1e-5):
  """log(inputs + log_offset), the compression of mel filterbanks."""
  return tf.math.log(inputs + log_offset)


@serialization.register()
class LogCompression(stages.Stage, keras.layers.Layer):
  """Log compression, log(x + log_offset), as a layer.

  Args:
    log_offset: float, default 1e-5; keeps log finite at x = 0.

  Input and output shape: any, usually [batch, frames, channels].
  """

  def __init__(self, log_offset: float = 1e-5, **kwargs):
    super().__init__(**kwargs)
    if not log_offset > 0:
      raise ValueError('LogCompression: log_offset must be > 0 so that log '
                       f'stays finite at zero energy; got {log_offset!r}.')
    self.log_offset = log_offset

  def call(self, inputs):
    return log_compression(inputs, self.log_offset)

  def stream_kind(self):
    return 'pointwise'

  def compute_output_shape(self, input_shape):
    return input_shape

  def get_config(self):
    config = super().get_config()
    config['log_offset'] = self.log_offset
    return config


@serialization.register()
class MinValue(keras.constraints.Constraint):
  """Clips a variable from below: w -> max(w, min_value)."""

  def __init__(self, min_value: float):
    self.min_value = min_value

  def __call__(self, w):
    return tf.maximum(w, tf.cast(self.min_value, w.dtype))

  def get_config(self):
    return {'min_value': self.min_value}


@serialization.register()
class MaxValue(keras.constraints.Constraint):
  """Clips a variable from above: w -> min(w, max_value)."""

  def __init__(self, max_value: float):
    self.max_value = max_value

  def __call__(self, w):
    return tf.minimum(w, tf.cast(self.max_value, w.dtype))

  def get_config(self):
    return {'max_value': self.max_value}


@serialization.register()
class ExponentialMovingAverage(keras.layers.Layer):
  """First-order IIR smoother along time.

  m[t] = s x[t] + (1 - s) m[t - 1], with m[-1] = initial_state. The smoothing
  coefficient s is clipped to [0, 1] in the forward pass.

  Args:
    coeff_init: float, initial smoothing coefficient s.
    per_channel: bool, default False; one coefficient per channel instead of
      one shared by all.
    trainable: bool, default False.

  Call arguments:
    inputs: [batch, frames, channels].
    initial_state: [batch, channels], the smoother's state before frame 0.

  Output shape: [batch, frames, channels].
  """

  def __init__(self,
               coeff_init: float = 0.04,
               per_channel: bool = False,
               **kwargs):
    kwargs.setdefault('trainable', False)
    super().__init__(**kwargs)
    self.coeff_init = coeff_init
    self.per_channel = bool(per_channel)

  def build(self, input_shape):
    self.smooth = self.add_weight(
        name='smooth',
        shape=(input_shape[-1],) if self.per_channel else (1,),
        initializer=keras.initializers.Constant(self.coeff_init))

  def call(self, inputs, initial_state):
    return smoothing.exponential_smoothing(
        inputs, tf.clip_by_value(self.smooth, 0., 1.), initial_state)

  def compute_output_shape(self, input_shape):
    return input_shape

  def get_config(self):
    config = super().get_config()
    config.update({
        'coeff_init': self.coeff_init,
        'per_channel': self.per_channel,
    })
    return config


class _LogSpaceMovingAverage(ExponentialMovingAverage):
  """An `ExponentialMovingAverage` whose coefficient is learned as its log.

  The variable is log_smooth <= 0 (a constraint after each optimizer step and
  a clip in the forward pass), so s = exp(log_smooth) stays in (0, 1]. The
  smoothing itself is the parent's: it reads `self.smooth`.
  """

  def build(self, input_shape):
    self.log_smooth = self.add_weight(
        name='log_smooth',
        shape=(input_shape[-1],) if self.per_channel else (1,),
        initializer=keras.initializers.Constant(math.log(self.coeff_init)),
        constraint=MaxValue(0.))

  @property
  def smooth(self):
    return tf.exp(tf.minimum(self.log_smooth, 0.))


@serialization.register()
class PCENCompression(stages.Stage, keras.layers.Layer):
  """Per-Channel Energy Normalization (Wang et al., ICASSP 2017).

    PCEN(x)[t] = (x[t] / (floor + M[t])**alpha + delta)**(1/r) - delta**(1/r),
  where M is an `ExponentialMovingAverage` of x started at x[0]. In the forward
  pass alpha is clipped to <= 1, r to >= 1 and, unless `min_delta` is None,
  delta to >= min_delta (also enforced on the variable after each optimizer
  step): a negative delta makes the root of a negative number, NaN.

  With parameterization='log' the layer learns log(alpha), log(delta),
  log(r) and log(s) instead, as the PCEN paper does (and Schlüter &
  Gutenbrunner, EUSIPCO 2022, needed for long inputs): the parameters stay
  positive by construction, the logs are kept <= 0 (alpha, s), >= 0 (r) and
  >= log(min_delta) (delta) after each optimizer step and in the forward
  pass, and a learning-rate step changes a parameter by a factor rather than
  by an amount, so a large step cannot carry it across zero.

  LEAF's sPCEN is `PCENCompression(alpha=0.96, smooth_coef=0.04, delta=2.0,
  root=2.0, floor=1e-12, trainable=True, learn_smooth_coef=True,
  per_channel_smooth_coef=True)`.

  Args:
    alpha: float, default 0.96; initial gain-normalisation exponent.
    smooth_coef: float, default 0.04; initial smoother coefficient.
    delta: float, default 2.0; initial bias added before the root.
    root: float, default 2.0; initial root r.
    floor: float, default 1e-6; added to M to avoid division by zero.
    trainable: bool, default False; learn alpha, delta and root (one per
      channel each).
    learn_smooth_coef: bool, default False; learn the smoother coefficient.
    per_channel_smooth_coef: bool, default False; one smoother coefficient per
      channel instead of one shared.
    min_delta: float or None, default 1e-6; lower bound of delta. None restores
      the original release's unconstrained delta (in log space: delta > 0
      only).
    parameterization: 'linear' (default, the original release's) or 'log';
      'log' needs 0 < alpha <= 1, delta > 0, root >= 1 and 0 < smooth_coef
      <= 1.

  Input and output shape: [batch, frames, channels].

  Example:
    >>> pcen = PCENCompression(trainable=True, parameterization='log')
    >>> pcen(tf.ones([2, 100, 40])).shape
    TensorShape([2, 100, 40])
  """

  def __init__(self,
               alpha: float = 0.96,
               smooth_coef: float = 0.04,
               delta: float = 2.0,
               root: float = 2.0,
               floor: float = 1e-6,
               trainable: bool = False,
               learn_smooth_coef: bool = False,
               per_channel_smooth_coef: bool = False,
               min_delta=1e-6,
               parameterization: str = 'linear',
               **kwargs):
    # `trainable` selects which PCEN parameters learn, as in the original
    # release, so the layer itself stays trainable for the smoother's sake.
    super().__init__(**kwargs)
    if not floor > 0:
      raise ValueError(f'PCENCompression: floor must be > 0; got {floor!r}.')
    if min_delta is not None and delta < min_delta:
      raise ValueError(f'PCENCompression: delta={delta!r} is below '
                       f'min_delta={min_delta!r}.')
    if not 0. <= smooth_coef <= 1.:
      raise ValueError('PCENCompression: smooth_coef must be in [0, 1]; got '
                       f'{smooth_coef!r}.')
    if parameterization not in ('linear', 'log'):
      raise ValueError("PCENCompression: parameterization must be 'linear' or "
                       f"'log'; got {parameterization!r}.")
    if parameterization == 'log' and not (0 < alpha <= 1 and delta > 0 and
                                          root >= 1 and smooth_coef > 0):
      raise ValueError(
          "PCENCompression: parameterization='log' learns logarithms and "
          'needs 0 < alpha <= 1, delta > 0, root >= 1 and smooth_coef > 0; '
          f'got alpha={alpha!r}, delta={delta!r}, root={root!r}, '
          f'smooth_coef={smooth_coef!r}.')
    self.parameterization = parameterization
    self.alpha_init = alpha
    self.smooth_coef = smooth_coef
    self.delta_init = delta
    self.root_init = root
    self.floor = floor
    self.learn_params = bool(trainable)
    self.learn_smooth_coef = bool(learn_smooth_coef)
    self.per_channel_smooth_coef = bool(per_channel_smooth_coef)
    self.min_delta = min_delta
    smoother_cls = (_LogSpaceMovingAverage if parameterization == 'log' else
                    ExponentialMovingAverage)
    self.ema = smoother_cls(
        coeff_init=smooth_coef,
        per_channel=per_channel_smooth_coef,
        trainable=learn_smooth_coef,
        dtype=self.dtype_policy,
        name='EMA')

  def build(self, input_shape):
    channels = input_shape[-1]
    if channels is None:
      raise ValueError('PCENCompression needs a known number of channels; got '
                       f'shape {tuple(input_shape)}.')

    def parameter(name, value, constraint=None):
      return self.add_weight(
          name=name,
          shape=(channels,),
          initializer=keras.initializers.Constant(value),
          trainable=self.learn_params,
          constraint=constraint)

    if self.parameterization == 'log':
      self.log_alpha = parameter('log_alpha', math.log(self.alpha_init),
                                 MaxValue(0.))
      self.log_delta = parameter(
          'log_delta', math.log(self.delta_init),
          None if self.min_delta is None else MinValue(
              math.log(self.min_delta)))
      self.log_root = parameter('log_root', math.log(self.root_init),
                                MinValue(0.))
    else:
      self.alpha = parameter('alpha', self.alpha_init)
      self.delta = parameter(
          'delta', self.delta_init,
          None if self.min_delta is None else MinValue(self.min_delta))
      self.root = parameter('root', self.root_init)
    self.ema.build(input_shape)

  def effective_parameters(self):
    """{'alpha', 'delta', 'root', 'smooth'}: the values the forward pass uses."""
    if self.parameterization == 'log':
      log_delta = self.log_delta
      if self.min_delta is not None:
        log_delta = tf.maximum(log_delta, math.log(self.min_delta))
      alpha = tf.exp(tf.minimum(self.log_alpha, 0.))
      delta = tf.exp(log_delta)
      root = tf.exp(tf.maximum(self.log_root, 0.))
    else:
      alpha = tf.minimum(self.alpha, 1.0)
      root = tf.maximum(self.root, 1.0)
      delta = self.delta
      if self.min_delta is not None:
        delta = tf.maximum(delta, self.min_delta)
    return {'alpha': alpha, 'delta': delta, 'root': root,
            'smooth': tf.clip_by_value(self.ema.smooth, 0., 1.)}

  def _normalise(self, inputs, smoother, parameters):
    """PCEN of energies [B, T, C] given their smoothed values."""
    alpha, delta, root = (parameters['alpha'], parameters['delta'],
                          parameters['root'])
    one_over_root = 1. / root
    return ((inputs / (self.floor + smoother)**alpha + delta)**one_over_root -
            delta**one_over_root)

  def call(self, inputs):
    parameters = self.effective_parameters()
    smoother = self.ema(inputs, initial_state=inputs[:, 0])
    return self._normalise(inputs, smoother, parameters)

  # The stage interface (`stages.Stage`): a recurrent stage.

  def stage_parameters(self, sample_rate):
    del sample_rate
    values = {name: np.asarray(value, np.float64).reshape(-1) for name, value
              in self.effective_parameters().items()}
    channels = values['alpha'].shape[0]
    # One number per channel, in linear space whatever the parameterisation
    # ('log' scale: a change is a ratio).
    return {
        'alpha': stages.parameter(values['alpha'], '', 'log'),
        'delta': stages.parameter(values['delta'], '', 'log'),
        'root': stages.parameter(values['root'], '', 'log'),
        'smoothing': stages.parameter(
            np.broadcast_to(values['smooth'], (channels,)), '', 'log'),
    }

  def stream_kind(self):
    return 'stateful'

  def stream_initial_state(self, batch_size, channels):
    return {'smoother': tf.zeros([batch_size, channels], tf.float32)}

  def stream_step(self, state, inputs, frame_index):
    """PCEN of stream frames `frame_index` [k], carrying the smoother."""
    parameters = self.effective_parameters()
    coeff = tf.cast(parameters['smooth'], inputs.dtype)
    # The offline smoother starts at frame 0's energies (m[-1] = x[0]).
    # Frames before the stream are replaced by that start, a fixed point of
    # the recurrence, so they change nothing.
    is_zeroth = tf.cast(tf.equal(frame_index, 0),
                        inputs.dtype)[tf.newaxis, :, tf.newaxis]
    # (A one-hot sum, not a gather: TFLite's gather with a computed scalar
    # index went wrong here.)
    has_zeroth = tf.reduce_max(is_zeroth)
    frame_zero = tf.reduce_sum(inputs * is_zeroth, axis=1)
    smoother = state['smoother']
    initial = has_zeroth * frame_zero + (1. - has_zeroth) * smoother
    before = (frame_index < 0)[tf.newaxis, :, tf.newaxis]
    steps = tf.where(before, initial[:, tf.newaxis, :], inputs)
    hops = inputs.shape[1]
    if hops is not None and hops <= 16:
      smoothed, current = [], initial
      for index in range(hops):
        current = coeff * steps[:, index] + (1. - coeff) * current
        smoothed.append(current)
      smoothed = tf.stack(smoothed, axis=1)
    else:
      smoothed = smoothing.exponential_smoothing(steps, coeff, initial)
    return ({'smoother': smoothed[:, -1]},
            self._normalise(inputs, smoothed, parameters))

  def compute_output_shape(self, input_shape):
    return input_shape

  def get_config(self):
    config = super().get_config()
    config.update({
        'alpha': self.alpha_init,
        'smooth_coef': self.smooth_coef,
        'delta': self.delta_init,
        'root': self.root_init,
        'floor': self.floor,
        'trainable': self.learn_params,
        'learn_smooth_coef': self.learn_smooth_coef,
        'per_channel_smooth_coef': self.per_channel_smooth_coef,
        'min_delta': self.min_delta,
        'parameterization': self.parameterization,
    })
    return config
