"""Audio frontends: waveform -> filterbank -> non-linearity -> pooling -> compression.

  Leaf                   Gabor filters, squared modulus, Gaussian pooling, sPCEN
  TimeDomainFilterbanks  free conv (Gabor init), squared modulus, shared
                         learnable window ('valid'), log
  SincNet                sinc filters, LeakyReLU, max pooling, LayerNorm
  SincNetPlus            sinc filters, LeakyReLU, Gaussian pooling, fixed PCEN
  MelFilterbanks         STFT, mel matrix, log (nothing learnable)

`Frontend` composes stages, each from its own module; the first four are
its presets (EfficientLeaf, another, lives in `efficient_leaf`).
All frontends take float audio [batch, samples] or [batch, samples, 1] in
[-1, 1] and return [batch, frames, n_filters] in float32.
"""

import contextlib
import functools
import inspect
import types
import warnings

import keras
import tensorflow as tf

from leaf_audio import augment
from leaf_audio import compression
from leaf_audio import convolution
from leaf_audio import framing
from leaf_audio import initializers
from leaf_audio import melfilters
from leaf_audio import methods
from leaf_audio import modulus
from leaf_audio import pooling
from leaf_audio import serialization
from leaf_audio import stages as stages_lib
from leaf_audio import stft_filterbank
from leaf_audio import validation


class _FrontendDefault:
  """Marks an argument left at the frontend's own default."""

  def __repr__(self):
    return 'DEFAULT'


# Sentinel for "this frontend's default". None keeps the original release's
# meaning: no compression, no activation, Keras' default initializer.
DEFAULT = _FrontendDefault()

DEFAULT_MIN_FREQ_HZ = 60.0
DEFAULT_MAX_FREQ_HZ = 7800.0


def default_max_freq(sample_rate):
  """7800 Hz, the original default, capped at Nyquist."""
  return min(DEFAULT_MAX_FREQ_HZ, sample_rate / 2.)


def default_gabor_init(sample_rate):
  """Mel-scale Gabor filters from 60 Hz to `default_max_freq`."""
  return initializers.GaborInit(sample_rate=sample_rate,
                                min_freq=DEFAULT_MIN_FREQ_HZ,
                                max_freq=default_max_freq(sample_rate))


def leaf_pcen(policy, parameterization='linear'):
  """LEAF's sPCEN: alpha 0.96, smoothing 0.04 per channel, delta 2, root 2,
  floor 1e-12, all learned."""
  return compression.PCENCompression(
      alpha=0.96, smooth_coef=0.04, delta=2.0, root=2.0, floor=1e-12,
      trainable=True, learn_smooth_coef=True, per_channel_smooth_coef=True,
      parameterization=parameterization, dtype=policy, name='PCEN')


def as_layer(fn, owner: str, argument: str, dtype):
  """Turns a compression or activation argument into a Keras layer or None."""
  if fn is None or fn is tf.identity:
    return None
  if isinstance(fn, keras.layers.Layer):
    return fn
  if fn is compression.log_compression:
    return compression.LogCompression(dtype=dtype)
  if (isinstance(fn, functools.partial) and
      fn.func is compression.log_compression and not fn.args):
    return compression.LogCompression(dtype=dtype, **fn.keywords)
  if isinstance(fn, (dict, str)):
    return as_layer(serialization.deserialize(fn), owner, argument, dtype)
  if callable(fn):
    return keras.layers.Lambda(fn, dtype=dtype)
  raise TypeError(f'{owner}: {argument} must be a Keras layer, a callable or '
                  f'None; got {fn!r}.')


def compression_argument(owner: str, compression, compression_fn):
  """`compression`, or `compression_fn` (its deprecated name) if given.

  DEFAULT marks an argument not given; passing both is a ValueError.
  """
  if compression_fn is DEFAULT:
    return compression
  if compression is not DEFAULT:
    raise ValueError(
        f'{owner}: compression_fn is the deprecated name of compression; pass '
        f'one of them, not both (got compression={compression!r} and '
        f'compression_fn={compression_fn!r}).')
  warnings.warn(
      f'{owner}: compression_fn is deprecated; use compression= (the same '
      'values: a layer, a callable, None or a named choice).',
      DeprecationWarning, stacklevel=3)
  return compression_fn


def config_with_compression(config: dict) -> dict:
  """A preset's config with a saved 'compression_fn' renamed 'compression'."""
  config = dict(config)
  if 'compression_fn' in config and 'compression' not in config:
    config['compression'] = config.pop('compression_fn')
  return config


def _accepts(cls, argument: str) -> bool:
  """Whether `cls(...)` names `argument` in its constructor signature."""
  return argument in inspect.signature(cls.__init__).parameters


def set_filters_and_framing(frontend, n_filters, sample_rate, window_len,
                            window_stride):
  """Validates and stores the arguments every preset shares."""
  owner = type(frontend).__name__
  frontend.n_filters = validation.check_positive_int(owner, 'n_filters',
                                                     n_filters)
  frontend.window_size, frontend.stride = framing.checked_window_and_stride(
      owner, sample_rate, window_len, window_stride)
  frontend.sample_rate = sample_rate
  frontend.window_len = window_len
  frontend.window_stride = window_stride


def initializer_for(owner, argument, value, sample_rate):
  """`value` as a Keras initializer; raises if it was built for another rate."""
  initializer = keras.initializers.get(serialization.deserialize(value))
  rate = getattr(initializer, 'sample_rate', None)
  if rate is not None and rate != sample_rate:
    raise ValueError(
        f'{owner}: {argument} was built for sample_rate={rate} Hz but the '
        f'frontend runs at sample_rate={sample_rate} Hz; pass an initializer '
        f'with sample_rate={sample_rate}.')
  return initializer


def preset_config(preset, plain, serialized):
  """A preset's config: Keras' layer config and its arguments, `serialized` ones serialized."""
  config = keras.layers.Layer.get_config(preset)
  config.update({name: getattr(preset, name) for name in plain})
  config.update({name: serialization.serialize(getattr(preset, name))
                 for name in serialized})
  return config


def assert_enough_samples(owner, waveform, valid_window=0):
  """`waveform` [batch, samples, ...], checked to hold enough samples.

  At least one sample, or a whole window (samples) when the frames are cut
  with 'valid' padding (`valid_window` > 0); a ValueError when the length is
  known, the same message in an InvalidArgumentError inside a graph traced
  for [batch, None] (see `validation.assert_enough_samples`).
  """
  if valid_window:
    return validation.assert_enough_samples(
        waveform, valid_window,
        framing.too_short_message(owner, valid_window))
  return validation.assert_enough_samples(
      waveform, 1, f'{owner} expects at least one sample')


STAGES = ('preemphasis', 'filterbank', 'activation', 'pooling', 'compression',
          'normalization', 'spec_augment')


def _stage(name, doc):
  """A read-only property: the frontend's stage `name` (a layer or None)."""
  return property(lambda self: self._stages[name], doc=f'The {name} layer '
                  f'({doc}), or None.')


@serialization.register()
class Frontend(keras.layers.Layer):
  """A frontend composed of stages, each a Keras layer (or None to skip it).

  waveform [batch, samples, 1] -> [preemphasis] -> filterbank -> [activation]
  -> [pooling] -> max(x, pre_compression_floor) -> [compression] ->
  [normalization] -> [spec_augment (training only)].

  `Leaf`, `TimeDomainFilterbanks`, `SincNet`, `SincNetPlus` and
  `EfficientLeaf` are presets of this class: they build the stages from their
  arguments. The stages are read-only attributes of the same names.

  Consumers (`streaming`, `methods`, `plotting`, the inspector, the
  TensorBoard figures) read every stage through `leaf_audio.stages`: its
  geometry in samples, its learned parameters in physical units, how it
  streams, whether the FFT method applies. A filterbank that pools itself
  (EfficientLeaf's) says so (`pools_itself`), and no pooling stage follows
  it. See docs/extending.md for a stage of your own.

  Args:
    filterbank: Keras layer, [batch, samples, 1] -> [batch, time, channels].
    activation: Keras layer or None, e.g. `SquaredModulus()`.
    pooling: Keras layer or None, e.g. `GaussianLowpassPooling(401, 160)`.
    compression: Keras layer or None, e.g. `PCENCompression()`.
    preemphasis: Keras layer or None, applied to the waveform first.
    normalization: Keras layer or None, applied after compression.
    spec_augment: Keras layer or None, applied in training only.
    pre_compression_floor: float or None, default 1e-5; values are clipped to
      at least this before compression (None: no clipping).
    method: 'auto' (default), 'fft', 'direct', 'fft_builtin' or
      'auto_builtin'; how filterbank -> squared modulus -> pooling is
      computed (see `methods`).
    sample_rate: Hz, default 16000; the rate of the waveform. A stage built
      for another rate (its own `sample_rate` or its initializer's) is
      refused.
    **kwargs: Keras layer arguments (name, dtype; dtype defaults to float32).

  Attributes:
    sample_rate: Hz.
    hop_samples: int, samples between output frames (the product of the
      stages' hops; `stride` is an alias).
    window_samples: int, the window of the stage that sets the frames (the
      pooling's, else the filterbank's), in samples (`window_size` is an
      alias).

  Every stage is read through `leaf_audio.stages` (its geometry, learned
  parameters, streaming); see docs/extending.md for a stage of your own.

  Input shape: [batch, samples] or [batch, samples, 1], float in [-1, 1].
  Output shape: [batch, frames, channels].

  Example:
    >>> frontend = Frontend(
    ...     filterbank=GaborConv1D(filters=80, kernel_size=401),
    ...     activation=SquaredModulus(),
    ...     pooling=GaussianLowpassPooling(kernel_size=401, strides=160),
    ...     compression=LogCompression())
    >>> frontend(tf.zeros([2, 16000])).shape
    TensorShape([2, 100, 40])
  """

  def __init__(self, filterbank, activation=None, pooling=None,
               compression=None, preemphasis=None, normalization=None,
               spec_augment=None, pre_compression_floor=1e-5,
               method: str = 'auto', sample_rate: float = 16000, **kwargs):
    kwargs.setdefault('dtype', 'float32')
    super().__init__(**kwargs)
    owner = type(self).__name__
    self.sample_rate = validation.check_positive_number(owner, 'sample_rate',
                                                        sample_rate)
    if pre_compression_floor is not None and not pre_compression_floor >= 0:
      raise ValueError(f'{owner}: pre_compression_floor must be >= 0 or None;'
                       f' got {pre_compression_floor!r}.')
    self.pre_compression_floor = pre_compression_floor
    stages = {}
    for name, layer in zip(STAGES, (preemphasis, filterbank, activation,
                                    pooling, compression, normalization,
                                    spec_augment)):
      layer = serialization.deserialize(layer)
      if layer is not None and not isinstance(layer, keras.layers.Layer):
        raise TypeError(f'{owner}: {name} must be a Keras layer or None'
                        f"{' (or a bool)' * (name == 'spec_augment')}; got "
                        f'{layer!r}.')
      stages[name] = layer
    if stages['filterbank'] is None:
      raise ValueError(f'{owner}: filterbank must be a Keras layer; got None.')
    for name, layer in stages.items():
      rate = stages_lib.stage_sample_rate(layer)
      if rate is not None and rate != sample_rate:
        raise ValueError(
            f'{owner}: its {name} ({type(layer).__name__}) was built for '
            f'sample_rate={rate} Hz but the frontend runs at sample_rate='
            f'{sample_rate} Hz; build the stage for {sample_rate} Hz or pass '
            f'sample_rate={rate}.')
    self._stages = stages
    # The window of the stage that sets the frames, if it pools 'valid'.
    framer = stages['pooling'] or stages['filterbank']
    self._valid_window = (framer.kernel_size if getattr(
        framer, 'padding', None) == 'valid' else 0)
    self.method = methods.check_method(owner, method)
    self._method = self._resolved(self.method)
    # Lets a Python list reach `call`, which says what it expects.
    self._allow_non_tensor_positional_args = True

  preemphasis = _stage('preemphasis', 'applied to the waveform first')
  filterbank = _stage('filterbank', '[batch, samples, 1] -> [batch, time, ch]')
  activation = _stage('activation', 'applied after the filterbank')
  pooling = _stage('pooling', 'downsampling in time')
  compression = _stage('compression', 'applied after the floor')
  normalization = _stage('normalization', 'applied after compression')
  spec_augment = _stage('spec_augment', 'applied last, in training only')

  # Keras keeps a sub-layer's weights in a .keras file under the first name
  # that dir() gives for it (public names first). Files written before the
  # stages were public keep them under `stages/...`, `_compression`,
  # `_instance_norm` and (EfficientLeaf) `_filterbank`; dir() lists only these
  # names for the stages, so that such files load.
  _compression = _stage('compression', 'saved weights path')
  _instance_norm = _stage('normalization', 'saved weights path')
  _filterbank = _stage('filterbank', 'saved weights path')

  def __dir__(self):
    hidden = set(STAGES) | {'_stages'}
    if self._stages['pooling'] is None:
      hidden.add('stages')
    return sorted(set(super().__dir__()) - hidden)

  @property
  def stages(self):
    """The layers before the floor, in the order they run."""
    return [self._stages[name] for name in STAGES[:4]
            if self._stages[name] is not None]

  def _geometries(self):
    return [stages_lib.of(layer).stage_geometry() for layer in self.stages]

  @property
  def hop_samples(self) -> int:
    """Samples between output frames (the product of the stages' hops)."""
    hop = 1
    for geometry in self._geometries():
      hop *= geometry.hop_samples
    return hop

  @property
  def window_samples(self) -> int:
    """The window in samples of the stage that sets the frames."""
    framer = self._stages['pooling'] or self._stages['filterbank']
    return stages_lib.of(framer).stage_geometry().window_samples

  # The names the presets' arguments use: aliases of hop_samples and
  # window_samples (the presets set them while they build their stages).
  @property
  def stride(self) -> int:
    """Alias of `hop_samples`."""
    if '_stages' in self.__dict__:
      return self.hop_samples
    return self.__dict__.get('_preset_stride')

  @stride.setter
  def stride(self, value):
    self.__dict__['_preset_stride'] = value

  @property
  def window_size(self) -> int:
    """Alias of `window_samples`."""
    if '_stages' in self.__dict__:
      return self.window_samples
    return self.__dict__.get('_preset_window')

  @window_size.setter
  def window_size(self, value):
    self.__dict__['_preset_window'] = value

  @property
  def active_method(self):
    """'fft', 'fft_builtin' or 'direct': how this frontend computes its first stages."""
    return self._method

  @contextlib.contextmanager
  def computing_with(self, method: str):
    """Inside, this frontend computes its first stages with `method` (one of
    `methods.METHODS`), on its own weights; `methods.computed_with` does it
    for every frontend of a model. Raises as the constructor does if the
    method cannot compute the stages."""
    previous = self._method
    self._method = self._resolved(
        methods.check_method(type(self).__name__, method))
    try:
      yield self
    finally:
      self._method = previous

  def _resolved(self, method: str) -> str:
    """The method this frontend runs for `method`: 'direct', 'fft' or
    'fft_builtin'; raises if `method` cannot compute its stages."""
    return methods.resolve(type(self).__name__, method,
                           self._stages['filterbank'],
                           self._stages['activation'],
                           self._stages['pooling'], self.compute_dtype)

  def _check_enough_samples(self, input_shape):
    """The waveform shape [batch, samples, 1]; raises if 'valid' framing lacks a window."""
    owner = type(self).__name__
    # The window first: an empty input of a 'valid' frontend lacks a window.
    samples = tuple(input_shape)[1:2] if input_shape is not None else ()
    if samples and isinstance(samples[0], int):
      framing.check_enough_samples(owner, samples[0], self._valid_window,
                                   'valid', input_shape)
    return validation.waveform_shape(owner, input_shape)

  def build(self, input_shape):
    shape = self._check_enough_samples(input_shape)
    for name in STAGES:
      layer = self._stages[name]
      if layer is None:
        continue
      if not layer.built:
        layer.build(shape)
      shape = layer.compute_output_shape(shape)

  def _run(self, name, outputs, training):
    layer = self._stages[name]
    if layer is None:
      return outputs
    if 'training' in inspect.signature(layer.call).parameters:
      return layer(outputs, training=training)
    return layer(outputs)

  def call(self, inputs, training=None):
    owner = type(self).__name__
    validation.check_float_waveform(owner, inputs)
    self._check_enough_samples(inputs.shape)
    outputs = inputs[:, :, tf.newaxis] if inputs.shape.rank == 2 else inputs
    outputs = assert_enough_samples(owner, outputs, self._valid_window)
    outputs = self._run('preemphasis', outputs, training)
    if self._method in methods.FFT_METHODS:
      outputs = methods.pooled_energy_fft(outputs, self.filterbank,
                                          self.pooling, training=training,
                                          method=self._method)
    else:
      for name in ('filterbank', 'activation', 'pooling'):
        outputs = self._run(name, outputs, training)
    if self.pre_compression_floor is not None:
      outputs = tf.maximum(outputs, self.pre_compression_floor)
    for name in STAGES[4:]:  # compression, normalization, spec_augment
      outputs = self._run(name, outputs, training)
    return validation.mark_non_finite_clips(inputs, outputs)

  def compute_output_shape(self, input_shape):
    shape = self._check_enough_samples(input_shape)
    for name in STAGES:
      if self._stages[name] is not None:
        shape = self._stages[name].compute_output_shape(shape)
    return shape

  def get_config(self):
    config = super().get_config()
    config.update({name: serialization.serialize(self._stages[name])
                   for name in STAGES})
    config.update(pre_compression_floor=self.pre_compression_floor,
                  method=self.method, sample_rate=self.sample_rate)
    return config


class _FilterbankPreset(Frontend):
  """LEAF, a learnable audio frontend (Zeghidour et al., ICLR 2021).

  waveform -> [pre-emphasis] -> complex Gabor filterbank (`GaborConv1D`) ->
  squared modulus -> Gaussian lowpass pooling per channel -> max(x, 1e-5) ->
  sPCEN. Initialised as mel filterbanks (60-7800 Hz) and trained jointly with
  the classifier. A preset of `Frontend`: the stages are its `filterbank`,
  `activation`, `pooling`, `compression` (and `preemphasis`,
  `normalization`, `spec_augment`) attributes.

  Defaults: 40 filters, 16 kHz, 25 ms windows (401 samples), 10 ms stride
  (160 samples), 'same' padding everywhere (ceil(samples / 160) frames),
  Gaussian pooling initialised at sigma 0.4, sPCEN with alpha 0.96, smoothing
  0.04 per channel, delta 2, root 2, floor 1e-12, all learnable. 280 trainable
  parameters: 80 Gabor, 40 pooling, 160 PCEN.

  Arguments left at `DEFAULT` take this preset's default (`DEFAULTS`);
  `TimeDomainFilterbanks`, `SincNet` and `SincNetPlus` take the same
  arguments with other defaults.

  Args:
    learn_pooling: bool, default True; learn the pooling windows.
    learn_filters: bool, default True; learn the filterbank (and pre-emphasis).
    conv1d_cls: filterbank class, default `GaborConv1D`; called with (filters=
      2 * n_filters, kernel_size, strides=1, padding='same', use_bias=False,
      kernel_initializer, kernel_regularizer, name, trainable[, sample_rate]).
    activation: layer or callable applied after the filterbank, default
      `SquaredModulus()`; None for none.
    pooling_cls: pooling class, default `GaussianLowpassPooling`; called with
      (kernel_size, strides, padding[, kernel_initializer, kernel_regularizer]).
    n_filters: int, default 40; number of output channels.
    sample_rate: sampling rate of the input in Hz, default 16000.
    window_len: filter and pooling window in ms, default 25; the window has
      sample_rate * window_len // 1000 + 1 samples.
    window_stride: hop between frames in ms, default 10.
    compression: layer or callable applied last, default sPCEN (see above);
      `functools.partial(log_compression, log_offset=...)` becomes a
      `LogCompression` layer; None for no compression. (`compression_fn`,
      its former name, is accepted with a DeprecationWarning.)
    preemp: bool, default False; apply a learnable 2-tap pre-emphasis first,
      y[n] = x[n+1] - 0.97 x[n].
    preemp_init: default `PreempInit()`.
    complex_conv_init: initializer of the filterbank, default
      `GaborInit(sample_rate, min_freq=60, max_freq=min(7800, sample_rate/2))`.
      An explicitly passed initializer is used as is.
    pooling_init: initializer of the pooling, default Constant(0.4).
    regularizer_fn: optional Keras regularizer of the learned kernels.
    mean_var_norm: bool, default False; per-example, per-channel mean and
      variance normalisation over time after compression (instance norm).
    spec_augment: bool or `SpecAugment` layer, default False; applied in
      training only.
    pooling_padding: 'same' (default) or 'valid'; the pooling's padding.
    pre_compression_floor: float or None, default 1e-5; the pooled energies are
      clipped to at least this value before compression, as in the original
      release (for SincNet it also clips the negative LeakyReLU outputs).
      None disables the clipping.
    method: 'auto' (default), 'fft' or 'direct'; how the filterbank, squared
      modulus and pooling are computed. 'direct' runs each stage as its layer
      (a stride-1 convolution at the full rate: the reference); 'fft' computes
      the same function with FFTs at the kept frames only, in bounded memory
      (`fft_filterbank`), several times faster, equal to float32 rounding.
      'auto' uses 'fft' wherever it applies (see `methods`). 'fft_builtin'
      and 'auto_builtin' are their variants written with TFLite builtins,
      for converted models. The weights are the same either way, so a model
      trained with one runs with the other.
    **kwargs: Keras layer arguments (name, dtype). The dtype defaults to
      float32 so that the frontend computes in float32 under mixed precision.

  Input shape: [batch, samples] or [batch, samples, 1], float in [-1, 1].
  Output shape: [batch, frames, n_filters].

  Example:
    >>> leaf = Leaf()
    >>> leaf(tf.zeros([2, 16000])).shape
    TensorShape([2, 100, 40])
  """

  # Each default, as a function of the preset's sample_rate (Hz), window_len
  # (ms) and dtype_policy.
  DEFAULTS = dict(
      conv1d_cls=lambda f: convolution.GaborConv1D,
      pooling_cls=lambda f: pooling.GaussianLowpassPooling,
      pooling_padding=lambda f: 'same',
      activation=lambda f: modulus.SquaredModulus(dtype=f.dtype_policy,
                                                  name='squared_modulus'),
      complex_conv_init=lambda f: default_gabor_init(f.sample_rate),
      pooling_init=lambda f: keras.initializers.Constant(0.4),
      compression=lambda f: leaf_pcen(f.dtype_policy))

  def __init__(self,
               learn_pooling: bool = True,
               learn_filters: bool = True,
               conv1d_cls=DEFAULT,
               activation=DEFAULT,
               pooling_cls=DEFAULT,
               n_filters: int = 40,
               sample_rate: float = 16000,
               window_len: float = 25.,
               window_stride: float = 10.,
               compression=DEFAULT,
               preemp: bool = False,
               preemp_init=DEFAULT,
               complex_conv_init=DEFAULT,
               pooling_init=DEFAULT,
               regularizer_fn=None,
               mean_var_norm: bool = False,
               spec_augment=False,
               pooling_padding=DEFAULT,
               pre_compression_floor=1e-5,
               method: str = 'auto',
               *,
               compression_fn=DEFAULT,
               **kwargs):
    kwargs.setdefault('dtype', 'float32')
    owner = type(self).__name__
    compression = compression_argument(owner, compression, compression_fn)
    set_filters_and_framing(self, n_filters, sample_rate, window_len,
                            window_stride)
    policy = keras.dtype_policies.get(kwargs['dtype'])
    preset = types.SimpleNamespace(sample_rate=sample_rate,
                                   window_len=window_len, dtype_policy=policy)
    self.learn_pooling = bool(learn_pooling)
    self.learn_filters = bool(learn_filters)
    self.preemp = bool(preemp)
    self.mean_var_norm = bool(mean_var_norm)
    self.regularizer_fn = keras.regularizers.get(regularizer_fn)

    def resolve(name, value):
      return self.DEFAULTS[name](preset) if value is DEFAULT else value

    self.conv1d_cls = serialization.deserialize_class(
        resolve('conv1d_cls', conv1d_cls), owner, 'conv1d_cls')
    self.pooling_cls = serialization.deserialize_class(
        resolve('pooling_cls', pooling_cls), owner, 'pooling_cls')
    self.pooling_padding = validation.check_padding(
        owner, 'pooling_padding', resolve('pooling_padding', pooling_padding))
    self.complex_conv_init = initializer_for(
        owner, 'complex_conv_init',
        resolve('complex_conv_init', complex_conv_init), sample_rate)
    pooling_takes_kernel = _accepts(self.pooling_cls, 'kernel_initializer')
    if pooling_init is DEFAULT:
      pooling_init = (resolve('pooling_init', pooling_init)
                      if pooling_takes_kernel else None)
    elif pooling_init is not None and not pooling_takes_kernel:
      raise ValueError(
          f'{owner}: pooling_init={pooling_init!r} was given but '
          f'{self.pooling_cls.__name__} has no kernel to initialise.')
    self.pooling_init = initializer_for(owner, 'pooling_init', pooling_init,
                                        sample_rate)
    self.preemp_init = keras.initializers.get(serialization.deserialize(
        initializers.PreempInit() if preemp_init is DEFAULT else preemp_init))
    filter_regularizer = self.regularizer_fn if learn_filters else None

    preemphasis = None
    if self.preemp:
      preemphasis = keras.layers.Conv1D(
          filters=1, kernel_size=2, strides=1, padding='same', use_bias=False,
          kernel_initializer=self.preemp_init,
          kernel_regularizer=filter_regularizer, trainable=self.learn_filters,
          dtype=policy, name='tfbanks_preemp')
    conv_kwargs = dict(
        filters=2 * self.n_filters, kernel_size=self.window_size, strides=1,
        padding='same', use_bias=False,
        kernel_initializer=self.complex_conv_init,
        kernel_regularizer=filter_regularizer, trainable=self.learn_filters,
        dtype=policy, name='tfbanks_complex_conv')
    if _accepts(self.conv1d_cls, 'sample_rate'):
      conv_kwargs['sample_rate'] = sample_rate
    pooling_kwargs = dict(
        kernel_size=self.window_size, strides=self.stride,
        padding=self.pooling_padding, trainable=self.learn_pooling,
        dtype=policy, name='learnable_pooling')
    if pooling_takes_kernel:
      pooling_kwargs.update(
          kernel_initializer=self.pooling_init,
          kernel_regularizer=self.regularizer_fn if learn_pooling else None)
    normalization = None
    if self.mean_var_norm:
      normalization = keras.layers.GroupNormalization(
          groups=self.n_filters, axis=-1, epsilon=1e-6, dtype=policy,
          name='tfbanks_instancenorm')
    if spec_augment is True:
      spec_augment = augment.SpecAugment(dtype=policy)
    super().__init__(
        filterbank=self.conv1d_cls(**conv_kwargs),
        activation=as_layer(resolve('activation', activation), owner,
                            'activation', policy),
        pooling=self.pooling_cls(**pooling_kwargs),
        compression=as_layer(resolve('compression', compression), owner,
                             'compression', policy),
        preemphasis=preemphasis,
        normalization=normalization,
        spec_augment=None if spec_augment is False else spec_augment,
        pre_compression_floor=pre_compression_floor,
        method=method,
        sample_rate=sample_rate,
        **kwargs)

  def get_config(self):
    owner = type(self).__name__
    config = preset_config(
        self, ('learn_pooling', 'learn_filters', 'n_filters', 'sample_rate',
               'window_len', 'window_stride', 'preemp', 'mean_var_norm',
               'pooling_padding', 'pre_compression_floor', 'method'),
        ('preemp_init', 'complex_conv_init', 'pooling_init', 'regularizer_fn'))
    config.update(
        conv1d_cls=serialization.serialize_class(self.conv1d_cls, owner,
                                                 'conv1d_cls'),
        pooling_cls=serialization.serialize_class(self.pooling_cls, owner,
                                                  'pooling_cls'),
        activation=serialization.serialize(self.activation),
        compression=serialization.serialize(self.compression),
        spec_augment=(serialization.serialize(self.spec_augment)
                      if self.spec_augment is not None else False))
    return config

  @classmethod
  def from_config(cls, config):
    config = config_with_compression(config)
    for key in ('activation', 'compression', 'preemp_init',
                'complex_conv_init', 'pooling_init', 'regularizer_fn',
                'spec_augment'):
      config[key] = serialization.deserialize(config.get(key))
    return cls(**config)


@serialization.register()
class Leaf(_FilterbankPreset):
  __doc__ = _FilterbankPreset.__doc__


_FilterbankPreset.__doc__ = """What `Leaf`, `TimeDomainFilterbanks`, `SincNet` and `SincNetPlus` share.

Their constructor (the arguments of `Leaf`) builds a `Frontend` from its
stage classes and `DEFAULTS`; each preset is a sibling subclass with its
own `DEFAULTS`, not a subclass of another preset.
"""


@serialization.register()
class TimeDomainFilterbanks(_FilterbankPreset):
  """Time-Domain filterbanks (Zeghidour et al., ICASSP 2018, Section 2).

  A plain `keras.layers.Conv1D` initialised with Gabor filters that match mel
  filterbanks (real and imaginary parts as separate channels), squared modulus,
  one learnable lowpass window shared by all channels (`LearnablePooling1D`,
  squared Hann init) with 'valid' padding, max(x, 1e-5), log(x + 1e-5).

  Defaults: 40 filters, 16 kHz, 25 ms windows (401 samples), 10 ms stride,
  'same' convolution and 'valid' pooling: (samples - 401) // 160 + 1 frames, so
  an input needs at least one window (401 samples). 32481 trainable
  parameters: 32080 convolution (401 x 80), 401 pooling window.

  Takes the arguments of `Leaf`; these defaults differ: conv1d_cls=Conv1D,
  pooling_cls=LearnablePooling1D, pooling_padding='valid', complex_conv_init=
  GaborInit(sample_rate, 60, min(7800, sample_rate / 2)), pooling_init=
  LowpassInit(sample_rate, window_len), compression=LogCompression(1e-5).

  Input shape: [batch, samples] or [batch, samples, 1], samples >= window.
  Output shape: [batch, frames, n_filters].
  """

  DEFAULTS = dict(
      Leaf.DEFAULTS,
      conv1d_cls=lambda f: keras.layers.Conv1D,
      pooling_cls=lambda f: pooling.LearnablePooling1D,
      pooling_padding=lambda f: 'valid',
      pooling_init=lambda f: initializers.LowpassInit(
          sample_rate=f.sample_rate, window_len=f.window_len,
          window_type='squared_hanning'),
      compression=lambda f: compression.LogCompression(
          log_offset=1e-5, dtype=f.dtype_policy, name='log_compression'))


@serialization.register()
class SincNet(_FilterbankPreset):
  """SincNet (Ravanelli & Bengio, SLT 2018, Section 2).

  Sinc band-pass filters (`SincConv1D`, lower edge and band width learnable,
  initialised on the mel scale), LeakyReLU(0.2), max pooling, max(x, 1e-5),
  LayerNormalization over channels.

  Defaults: 40 filters, 16 kHz, 25 ms windows (401 samples), 10 ms stride,
  'same' padding (ceil(samples / 160) frames). 160 trainable parameters: 80
  sinc, 80 LayerNorm (scale and offset). The 1e-5 floor also clips the
  negative LeakyReLU outputs, as in the original release; set
  pre_compression_floor=None to keep them.

  Takes the arguments of `Leaf`; these defaults differ: conv1d_cls=SincConv1D,
  activation=LeakyReLU(0.2), pooling_cls=MaxPooling1D (no pooling_init),
  complex_conv_init=SincInit(sample_rate), compression=
  LayerNormalization().

  Input shape: [batch, samples] or [batch, samples, 1].
  Output shape: [batch, frames, n_filters].
  """

  DEFAULTS = dict(
      Leaf.DEFAULTS,
      conv1d_cls=lambda f: convolution.SincConv1D,
      pooling_cls=lambda f: pooling.MaxPooling1D,
      activation=lambda f: keras.layers.LeakyReLU(
          negative_slope=0.2, dtype=f.dtype_policy, name='leaky_relu'),
      complex_conv_init=lambda f: initializers.SincInit(
          sample_rate=f.sample_rate),
      compression=lambda f: keras.layers.LayerNormalization(
          dtype=f.dtype_policy, name='layer_norm'))


@serialization.register()
class SincNetPlus(_FilterbankPreset):
  """SincNet+: SincNet with LEAF's Gaussian pooling and a fixed PCEN.

  Sinc band-pass filters, LeakyReLU(0.2), Gaussian lowpass pooling per channel
  (sigma 0.4, learnable), max(x, 1e-5), PCEN with alpha 0.96, smoothing 0.04
  (one shared, fixed coefficient), delta 2, root 2, floor 1e-6, not learnable.

  Defaults: 40 filters, 16 kHz, 25 ms windows (401 samples), 10 ms stride,
  'same' padding (ceil(samples / 160) frames). 120 trainable parameters: 80
  sinc, 40 pooling.

  Takes the arguments of `Leaf`; these defaults differ: conv1d_cls=SincConv1D,
  activation=LeakyReLU(0.2), complex_conv_init=SincInit(sample_rate),
  compression=PCENCompression().

  Input shape: [batch, samples] or [batch, samples, 1].
  Output shape: [batch, frames, n_filters].
  """

  DEFAULTS = dict(
      SincNet.DEFAULTS,
      pooling_cls=lambda f: pooling.GaussianLowpassPooling,
      compression=lambda f: compression.PCENCompression(
          dtype=f.dtype_policy, name='PCEN'))


def _mel_compression(policy):
  """MelFilterbanks' default: log(x + 1e-5)."""
  return compression.LogCompression(log_offset=1e-5, dtype=policy,
                                    name='log_compression')


@serialization.register()
class MelFilterbanks(Frontend):
  """Log mel filterbanks: the fixed baseline the learnable frontends start from.

  |STFT|^2 with a periodic Hann window of `window_len` ms, hop `window_stride`
  ms and n_fft points (`tf.signal.stft`, frames left-aligned: frame i covers
  samples [i * hop, i * hop + window), the end zero-padded), times a triangular
  HTK mel matrix (`tf.signal.linear_to_mel_weight_matrix`), then compression.
  A preset of `Frontend`: its `filterbank` is an `STFTMelFilterbank` (which
  sets the frames itself), its `compression` the compression layer; no
  floor, no pooling stage.

  Defaults: 40 filters, 16 kHz, 25 ms windows (401 samples), 10 ms stride
  (ceil(samples / 160) frames), n_fft 512, 60-7800 Hz, log(x + 1e-5). No
  trainable parameters.

  Args:
    n_filters: int, default 40.
    sample_rate: Hz, default 16000.
    n_fft: int, FFT size; DEFAULT is 512, or the next power of two when the
      window is longer. Must be at least the window length in samples.
    window_len: ms, default 25.
    window_stride: ms, default 10.
    compression: layer or callable, DEFAULT `LogCompression(1e-5)`; None
      for power mel filterbanks. (`compression_fn`, its former name, is
      accepted with a DeprecationWarning.)
    min_freq: lowest mel edge in Hz, default 60.
    max_freq: highest mel edge in Hz; DEFAULT 7800 capped at Nyquist, None for
      Nyquist (as in the original release).
    **kwargs: Keras layer arguments (name, dtype; dtype defaults to float32).

  Attributes:
    mel_matrix: float32 [n_fft // 2 + 1, n_filters], the filterbank's.

  Input shape: [batch, samples] or [batch, samples, 1], float in [-1, 1].
  Output shape: [batch, frames, n_filters].

  Example:
    >>> MelFilterbanks()(tf.zeros([2, 16000])).shape
    TensorShape([2, 100, 40])
  """

  def __init__(self,
               n_filters: int = 40,
               sample_rate: float = 16000,
               n_fft=DEFAULT,
               window_len: float = 25.,
               window_stride: float = 10.,
               compression=DEFAULT,
               min_freq: float = DEFAULT_MIN_FREQ_HZ,
               max_freq=DEFAULT,
               *,
               compression_fn=DEFAULT,
               **kwargs):
    kwargs.setdefault('dtype', 'float32')
    owner = type(self).__name__
    compression = compression_argument(owner, compression, compression_fn)
    set_filters_and_framing(self, n_filters, sample_rate, window_len,
                            window_stride)
    if n_fft is DEFAULT:
      n_fft = max(512, 1 << (self.window_size - 1).bit_length())
    self.n_fft = validation.check_positive_int(owner, 'n_fft', n_fft)
    if self.n_fft < self.window_size:
      raise ValueError(
          f'{owner}: n_fft={n_fft} is shorter than the window of '
          f'{self.window_size} samples ({window_len} ms at {sample_rate} Hz); '
          'the STFT would drop the end of every window. Use n_fft >= '
          f'{self.window_size}.')
    if max_freq is DEFAULT:
      max_freq = default_max_freq(sample_rate)
    elif max_freq is None:
      max_freq = sample_rate / 2.
    melfilters.check_frequency_range(owner, sample_rate, min_freq, max_freq)
    self.min_freq = min_freq
    self.max_freq = max_freq
    policy = keras.dtype_policies.get(kwargs['dtype'])
    if compression is DEFAULT:
      compression = _mel_compression(policy)
    filterbank = stft_filterbank.STFTMelFilterbank(
        n_filters=self.n_filters, window_size=self.window_size, hop=self.stride,
        n_fft=self.n_fft, sample_rate=sample_rate, min_freq=min_freq,
        max_freq=max_freq, dtype=policy, name='stft_mel_filterbank')
    super().__init__(
        filterbank=filterbank,
        compression=as_layer(compression, owner, 'compression', policy),
        pre_compression_floor=None,
        sample_rate=sample_rate,
        **kwargs)

  @property
  def mel_matrix(self):
    """float32 [n_fft // 2 + 1, n_filters]: column j is mel filter j."""
    return self.filterbank.mel_matrix

  def __dir__(self):
    # Files written while MelFilterbanks was a plain layer keep a
    # compression's weights under `compression`, not `_compression`.
    return sorted((set(super().__dir__()) - {'_compression'}) |
                  {'compression'})

  def get_config(self):
    config = preset_config(
        self, ('n_filters', 'sample_rate', 'n_fft', 'window_len',
               'window_stride', 'min_freq', 'max_freq'), ())
    config['compression'] = serialization.serialize(self.compression)
    return config

  @classmethod
  def from_config(cls, config):
    config = config_with_compression(config)
    config['compression'] = serialization.deserialize(
        config.get('compression'))
    return cls(**config)
