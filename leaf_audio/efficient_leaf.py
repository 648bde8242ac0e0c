"""EfficientLeaf: LEAF's filters at a fraction of its cost.

Schlüter & Gutenbrunner, "EfficientLEAF: A Faster LEarnable Audio Frontend
of Questionable Use", EUSIPCO 2022 (arXiv:2207.05508). This module only
composes: the grouped filterbank lives in `grouped_filterbank`, the
compressions in `logtbn` and `compression`.
"""

import keras

from leaf_audio import frontend
from leaf_audio import grouped_filterbank
from leaf_audio import logtbn
from leaf_audio import serialization
from leaf_audio import validation

DEFAULT = frontend.DEFAULT
COMPRESSIONS = ('logtbn', 'pcen', 'log_pcen')


@serialization.register()
class EfficientLeaf(frontend.Frontend):
  """EfficientLEAF: grouped Gabor filterbank, Gaussian pooling, compression.

  waveform -> `GroupedGaborFilterbank` (LEAF's Gabor filters, mel-initialised
  60-7800 Hz, sorted by centre frequency and split into `num_groups` groups;
  each group convolves with a kernel sized to its widest envelope at a
  stride set by its highest centre frequency, takes the squared modulus and
  pools with LEAF's Gaussian windows sampled at that stride) -> max(x, 1e-5)
  -> compression. A preset of `Frontend` whose filterbank pools itself: its
  `filterbank` attribute is the `GroupedGaborFilterbank`, `pooling` is None.

  The defaults are the paper's recommended configuration, CPJKU's
  "Gabor 8G-opt": 8 groups, conv_win_factor 6, stride_factor 16 (at 16 kHz
  with 40 filters: kernels of 401, 383, 287, 231, 143, 115, 83, 63 taps at
  strides 160, 160, 80, 40, 40, 32, 20, 16 samples; CPJKU's lowest group
  has 575 taps, here capped at LEAF's 401), and LogTBN compression: log(1 +
  10**a x) with a = 5 learned per channel, minus the median over time,
  temporal batch norm. The paper appends the median-subtracted channels to
  the log ones (80 outputs); this default subtracts, so that the output has
  n_filters channels like every other frontend; pass
  `compression=LogTBN(median='append')` for the paper's.

  With compression='pcen' it uses LEAF's sPCEN and, initialised alike,
  computes LEAF's features up to the decimation error of its strides; with
  conv_win_factor=None and stride_factor=None it computes LEAF exactly (and
  costs as much).

  Defaults: 40 filters, 16 kHz, 25 ms windows (401 samples), 10 ms stride
  (160 samples), 'same' padding (ceil(samples / 160) frames). 240 trainable
  parameters: 80 Gabor, 40 pooling, 40 log gains, 80 batch norm.

  Args:
    n_filters: int, default 40; output channels.
    sample_rate: Hz, default 16000.
    window_len: ms, default 25; the longest filter and the pooling window
      have sample_rate * window_len // 1000 + 1 samples.
    window_stride: ms, default 10; hop between frames.
    num_groups: int, default 8; 1 <= num_groups <= n_filters.
    conv_win_factor: float or None, default 6.0; a group's kernel is this
      many times its widest Gabor envelope (sigma, samples), at most the
      window. None: the whole window for every group.
    stride_factor: float or None, default 16.0; a group's stride is the
      largest divisor of the hop not above stride_factor * pi / (its highest
      centre frequency in radians/sample). None: stride 1.
    compression: 'logtbn' (DEFAULT, `LogTBN()`), 'pcen' (LEAF's sPCEN:
      alpha 0.96, smoothing 0.04 per channel, delta 2, root 2, floor 1e-12,
      learned), 'log_pcen' (the same, learned in log space), any Keras layer
      or callable, or None for none. (`compression_fn`, its former name, is
      accepted with a DeprecationWarning.)
    learn_filters: bool, default True.
    learn_pooling: bool, default True.
    complex_conv_init: initializer of the Gabor parameters, default
      `GaborInit(sample_rate, 60, min(7800, sample_rate / 2))`.
    pooling_init: initializer of the pooling widths, default Constant(0.4).
    regularizer_fn: optional Keras regularizer of the learned kernels.
    pooling_padding: 'same' (default) or 'valid'.
    pre_compression_floor: float or None, default 1e-5; energies are clipped
      to at least this before compression (None: no clipping).
    **kwargs: Keras layer arguments (name, dtype; dtype defaults to float32).

  Input shape: [batch, samples] or [batch, samples, 1], float in [-1, 1].
  Output shape: [batch, frames, n_filters] (2 * n_filters with
    LogTBN(median='append')).

  Example:
    >>> EfficientLeaf()(tf.zeros([2, 16000])).shape
    TensorShape([2, 100, 40])
  """

  def __init__(self,
               n_filters: int = 40,
               sample_rate: float = 16000,
               window_len: float = 25.,
               window_stride: float = 10.,
               num_groups: int = 8,
               conv_win_factor=6.0,
               stride_factor=16.0,
               compression=DEFAULT,
               learn_filters: bool = True,
               learn_pooling: bool = True,
               complex_conv_init=DEFAULT,
               pooling_init=DEFAULT,
               regularizer_fn=None,
               pooling_padding: str = 'same',
               pre_compression_floor=1e-5,
               *,
               compression_fn=DEFAULT,
               **kwargs):
    kwargs.setdefault('dtype', 'float32')
    owner = type(self).__name__
    compression = frontend.compression_argument(owner, compression,
                                                compression_fn)
    frontend.set_filters_and_framing(self, n_filters, sample_rate, window_len,
                                     window_stride)
    self.num_groups = grouped_filterbank.check_group_arguments(
        owner, self.n_filters, num_groups, conv_win_factor, stride_factor)
    self.conv_win_factor = conv_win_factor
    self.stride_factor = stride_factor
    self.learn_filters = bool(learn_filters)
    self.learn_pooling = bool(learn_pooling)
    self.pooling_padding = validation.check_padding(owner, 'pooling_padding',
                                                    pooling_padding)
    self.regularizer_fn = keras.regularizers.get(regularizer_fn)
    self.complex_conv_init = frontend.initializer_for(
        owner, 'complex_conv_init', frontend.default_gabor_init(sample_rate)
        if complex_conv_init is DEFAULT else complex_conv_init, sample_rate)
    self.pooling_init = frontend.initializer_for(
        owner, 'pooling_init', keras.initializers.Constant(0.4)
        if pooling_init is DEFAULT else pooling_init, sample_rate)
    policy = keras.dtype_policies.get(kwargs['dtype'])
    filterbank = grouped_filterbank.GroupedGaborFilterbank(
        n_filters=self.n_filters,
        window_size=self.window_size,
        hop=self.stride,
        num_groups=self.num_groups,
        conv_win_factor=conv_win_factor,
        stride_factor=stride_factor,
        padding=self.pooling_padding,
        kernel_initializer=self.complex_conv_init,
        pooling_initializer=self.pooling_init,
        learn_filters=self.learn_filters,
        learn_pooling=self.learn_pooling,
        kernel_regularizer=self.regularizer_fn if learn_filters else None,
        pooling_regularizer=self.regularizer_fn if learn_pooling else None,
        dtype=policy,
        name='grouped_filterbank')
    super().__init__(
        filterbank=filterbank,
        compression=frontend.as_layer(
            _named_compression(compression, policy), owner, 'compression',
            policy),
        pre_compression_floor=pre_compression_floor,
        sample_rate=sample_rate,
        **kwargs)

  @property
  def groups(self):
    """The filter groups (`FilterGroup`), known once the layer is built."""
    return self.filterbank.groups

  def get_config(self):
    config = frontend.preset_config(
        self, ('n_filters', 'sample_rate', 'window_len', 'window_stride',
               'num_groups', 'conv_win_factor', 'stride_factor',
               'learn_filters', 'learn_pooling', 'pooling_padding',
               'pre_compression_floor'),
        ('complex_conv_init', 'pooling_init', 'regularizer_fn'))
    config['compression'] = serialization.serialize(self.compression)
    return config

  @classmethod
  def from_config(cls, config):
    config = frontend.config_with_compression(config)
    for key in ('compression', 'complex_conv_init', 'pooling_init',
                'regularizer_fn'):
      config[key] = serialization.deserialize(config.get(key))
    return cls(**config)


def _named_compression(compression, policy):
  """The layer for DEFAULT and the names in COMPRESSIONS; others unchanged."""
  if compression is DEFAULT or compression == 'logtbn':
    return logtbn.LogTBN(dtype=policy, name='log_tbn')
  if compression in ('pcen', 'log_pcen'):
    return frontend.leaf_pcen(
        policy, 'log' if compression == 'log_pcen' else 'linear')
  if isinstance(compression, str) and '>' not in compression and (
      keras.saving.get_registered_object(compression) is None):
    raise ValueError(
        f'EfficientLeaf: compression must be one of {COMPRESSIONS}, a '
        f'layer, a callable or None; got {compression!r}.')
  return compression
