"""EfficientLEAF's filterbank stage: Gabor filters computed group by group.

  FilterGroup             one group's filters, kernel size and stride
  group_geometry          how the filters split into groups (pure numpy)
  GroupedGaborFilterbank  the layer: waveform -> pooled Gabor energies

LEAF convolves every Gabor filter with the waveform at every sample (401 taps
x 80 real channels at 16 kHz) and then keeps one pooled value every 160
samples. Schlüter & Gutenbrunner ("EfficientLEAF: A Faster LEarnable Audio
Frontend of Questionable Use", EUSIPCO 2022, Section 3) sort the filters by
centre frequency, split them into groups and give each group

  * a kernel of conv_win_factor x its widest Gaussian envelope (in samples)
    instead of the whole window: high-frequency filters are short;
  * a convolution stride: the squared modulus of a complex filter output is a
    slowly varying envelope, so it can be computed only every `stride`
    samples and pooled with the same Gaussian window sampled at that stride.

The stride of a group is the largest divisor of the hop (160 samples) not
above stride_factor * pi / mu_max, mu_max being the group's highest centre
frequency in radians/sample (their rule; with the mel initialisation the
widest bandwidth of a group grows with its centre frequency). The pooling
then steps hop / stride decimated samples per frame.
"""

import dataclasses
import math
from typing import Optional, Tuple

import keras
import numpy as np
import tensorflow as tf

from leaf_audio import blocks
from leaf_audio import convolution
from leaf_audio import framing
from leaf_audio import impulse_responses
from leaf_audio import initializers
from leaf_audio import serialization
from leaf_audio import stages
from leaf_audio import validation


def check_group_arguments(owner, n_filters, num_groups, conv_win_factor,
                          stride_factor):
  """Validates a grouped filterbank's arguments; returns num_groups.

  Raises ValueError, naming `owner`, unless num_groups is a positive int of at
  most n_filters (every group needs a filter) and each factor is None or a
  positive number.
  """
  num_groups = validation.check_positive_int(owner, 'num_groups', num_groups)
  if num_groups > n_filters:
    raise ValueError(f'{owner}: num_groups={num_groups} exceeds n_filters='
                     f'{n_filters}; every group needs a filter.')
  for name, value in (('conv_win_factor', conv_win_factor),
                      ('stride_factor', stride_factor)):
    if value is not None:
      validation.check_positive_number(owner, name, value)
  return num_groups


@dataclasses.dataclass(frozen=True)
class FilterGroup:
  """One group of filters of a `GroupedGaborFilterbank`.

  Attributes:
    indices: tuple of int, the filters (channels) of the group, in order of
      increasing initial centre frequency.
    kernel_size: int, taps of the group's Gabor filters.
    stride: int, the group's convolution stride in samples (a divisor of the
      frontend's hop).
  """
  indices: Tuple[int, ...]
  kernel_size: int
  stride: int


def group_geometry(centre_freqs, sigmas, num_groups: int, window_size: int,
                   hop: int, conv_win_factor: Optional[float],
                   stride_factor: Optional[float]):
  """Splits Gabor filters into groups and sizes each group's convolution.

  Args:
    centre_freqs: float [n_filters], centre frequencies mu in radians/sample.
    sigmas: float [n_filters], Gaussian widths in samples.
    num_groups: int, 1 <= num_groups <= n_filters; the sorted filters are cut
      into groups of n_filters // num_groups or one more (the first groups
      get the smaller share, as in CPJKU's implementation).
    window_size: int, the frontend's window in samples; no kernel is longer.
    hop: int, the frontend's hop in samples; every stride divides it.
    conv_win_factor: float or None; a group's kernel is
      int(conv_win_factor * max sigma) taps made odd, at most window_size.
      None: window_size taps for every group (LEAF's kernel).
    stride_factor: float or None; a group's stride is the largest divisor of
      hop not above max(1, stride_factor * pi / max mu). None: stride 1
      (LEAF's dense convolution).

  Returns:
    A tuple of `FilterGroup`, in order of increasing centre frequency.
  """
  centre_freqs = np.asarray(centre_freqs, np.float64)
  sigmas = np.asarray(sigmas, np.float64)
  n_filters = centre_freqs.shape[0]
  if not 1 <= num_groups <= n_filters:
    raise ValueError(f'group_geometry: num_groups must be in [1, n_filters='
                     f'{n_filters}]; got {num_groups}.')
  order = np.argsort(centre_freqs, kind='stable')
  splits = np.arange(num_groups + 1) * n_filters // num_groups
  divisors = [d for d in range(1, hop + 1) if hop % d == 0]
  groups = []
  for start, stop in zip(splits[:-1], splits[1:]):
    indices = tuple(int(i) for i in order[start:stop])
    if conv_win_factor is None:
      kernel_size = window_size
    else:
      kernel_size = int(np.max(sigmas[list(indices)]) * conv_win_factor)
      kernel_size += 1 - kernel_size % 2
      kernel_size = max(1, min(kernel_size, window_size))
    stride = 1
    if stride_factor is not None:
      highest = float(np.max(centre_freqs[list(indices)]))
      target = (stride_factor * math.pi / highest if highest > 0 else
                float(hop))
      stride = max(d for d in divisors if d <= max(1., target))
    groups.append(FilterGroup(indices, kernel_size, stride))
  return tuple(groups)


# Kernels spanning at most this many strides are applied block by block
# (matrix products); longer ones (small strides) use tf.nn.conv1d.
def strided_correlation(signal, start: int, filters, stride: int, count):
  """y[c, b, m] = sum_j signal[b, start + stride * m + j] filters[j, c].

  For m < count.

  A 'valid' cross-correlation evaluated only every `stride` samples, channels
  first. When the kernel spans few strides it is computed block by block
  (`blocks`): one matrix product applies every piece of the kernel to every
  block, pieces and channels first so that each piece's products are
  contiguous runs of memory (slicing across the last axes costs more than
  the product on CPUs). Otherwise it is a strided convolution.

  Args:
    signal: float [batch, samples], at least start + stride * (count + P -
      1) samples.
    start: int, the first sample read.
    filters: float [kernel_size, channels].
    stride: int, hop in samples.
    count: int32 scalar, the number of outputs.

  Returns:
    float [channels, batch, count].
  """
  size, channels = filters.shape
  if not blocks.uses_blocks(size, stride):
    signal = tf.slice(signal, [0, start],
                      [-1, (count - 1) * stride + size])[:, :, tf.newaxis]
    outputs = tf.nn.conv1d(signal, filters[:, tf.newaxis], stride=stride,
                           padding='VALID')
    return tf.transpose(outputs, (2, 0, 1))
  pieces = blocks.num_pieces(size, stride)
  cut = blocks.to_blocks(signal, start, count + pieces - 1, stride)
  # [pieces * channels, stride]: row p C + c holds taps p S .. p S + S - 1.
  kernel = tf.reshape(
      tf.transpose(blocks.window_pieces(filters, stride), (0, 2, 1)),
      [pieces * channels, stride])
  products = tf.reshape(
      tf.matmul(kernel, tf.reshape(cut, [-1, stride]), transpose_b=True),
      [pieces, channels, tf.shape(signal)[0], -1])
  return blocks.diagonal_sum(products, count, block_axis=3, piece_axis=0)


def strided_pooling(inputs, windows, steps: int, frames):
  """out[c, b, f] = sum_i inputs[c, b, f * steps + i] * windows[c, i].

  A depthwise 'valid' window sum with hop `steps`, channels first, computed
  block by block (`blocks`).

  Args:
    inputs: float [channels, batch, time], time >= (frames - 1) * steps +
      window length.
    windows: float [channels, window length].
    steps: int, hop in time steps.
    frames: int32 scalar, number of outputs.

  Returns:
    float [channels, batch, frames].
  """
  pieces = blocks.num_pieces(windows.shape[1], steps)
  cut = blocks.to_blocks(inputs, 0, frames + pieces - 1, steps)
  # [C, 1, 1, P, steps]: elementwise products on contiguous slices.
  pieces = tf.transpose(blocks.window_pieces(tf.transpose(windows), steps),
                        (2, 0, 1))[:, tf.newaxis, tf.newaxis]
  products = tf.reduce_sum(cut[:, :, :, tf.newaxis] * pieces, axis=4)
  return blocks.diagonal_sum(products, frames)


@serialization.register()
class GroupedGaborFilterbank(stages.Stage, keras.layers.Layer):
  """Gabor filterbank, squared modulus and Gaussian pooling, group by group.

  Computes what LEAF's `GaborConv1D` -> `SquaredModulus` ->
  `GaussianLowpassPooling` computes, with the Gabor filters split into groups
  (see `group_geometry` and the module docstring). Group g convolves with
  kernels of kernel_size_g taps at stride_g, takes the squared modulus and
  pools it with the channel's Gaussian window sampled every stride_g samples
  (times stride_g, so a group's output keeps LEAF's scale). With
  conv_win_factor=None and stride_factor=None every group uses LEAF's kernel
  and stride 1 and the layer computes LEAF's pooled energies exactly.

  Frames are LEAF's: frame f pools the window of window_size samples starting
  at f * hop - left (left = TF's 'same' padding, 0 for 'valid'). A group
  evaluates its filters at the samples congruent to that window's centre
  modulo its stride, so each pooled window stays centred, and its kernels
  are the middle kernel_size_g taps of LEAF's.

  The groups, kernel sizes and strides are fixed when the layer is built,
  from the initializer's filter parameters (a TensorFlow graph needs static
  strides; CPJKU recomputes them at every step). Learned parameters keep
  LEAF's `GaborConstraint`; a filter that learns a much wider envelope is
  truncated by its group's kernel, one that learns a much wider band is
  pooled with some aliasing.

  Args:
    n_filters: int, number of complex Gabor filters (output channels).
    window_size: int, LEAF's window in samples (filter and pooling length).
    hop: int, frame hop in samples.
    num_groups: int, default 8.
    conv_win_factor: float or None, default 6.0; see `group_geometry`.
    stride_factor: float or None, default 16.0; see `group_geometry`.
    padding: 'same' (default) or 'valid', the pooling's frame padding.
    kernel_initializer: initializer of the Gabor parameters [n_filters, 2]
      (mu in radians/sample, sigma in samples), default
      `GaborInit(sample_rate=16000, min_freq=60, max_freq=7800)`.
    pooling_initializer: initializer of the pooling widths [1, 1, n_filters,
      1] (relative to half the window), default Constant(0.4).
    learn_filters: bool, default True.
    learn_pooling: bool, default True.
    kernel_regularizer: optional regularizer of the Gabor parameters.
    pooling_regularizer: optional regularizer of the pooling widths.

  Input shape: [batch, samples, 1].
  Output shape: [batch, frames, n_filters], non-negative energies; frames =
    ceil(samples / hop) ('same') or (samples - window_size) // hop + 1.

  Example:
    >>> bank = GroupedGaborFilterbank(n_filters=40, window_size=401, hop=160)
    >>> bank(tf.zeros([2, 16000, 1])).shape
    TensorShape([2, 100, 40])
  """

  def __init__(self,
               n_filters: int,
               window_size: int,
               hop: int,
               num_groups: int = 8,
               conv_win_factor: Optional[float] = 6.0,
               stride_factor: Optional[float] = 16.0,
               padding: str = 'same',
               kernel_initializer=None,
               pooling_initializer=None,
               learn_filters: bool = True,
               learn_pooling: bool = True,
               kernel_regularizer=None,
               pooling_regularizer=None,
               **kwargs):
    super().__init__(**kwargs)
    owner = type(self).__name__
    self.n_filters = validation.check_positive_int(owner, 'n_filters',
                                                   n_filters)
    self.window_size = validation.check_positive_int(owner, 'window_size',
                                                     window_size)
    self.hop = validation.check_positive_int(owner, 'hop', hop)
    if self.window_size < framing.MIN_WINDOW_SAMPLES:
      raise ValueError(
          f'{owner}: window_size must be at least {framing.MIN_WINDOW_SAMPLES}'
          ' samples (a one-tap Gaussian pooling window has no width: NaN '
          f'outputs); got {window_size}.')
    self.num_groups = check_group_arguments(owner, self.n_filters, num_groups,
                                            conv_win_factor, stride_factor)
    self.conv_win_factor = conv_win_factor
    self.stride_factor = stride_factor
    self.padding = validation.check_padding(owner, 'padding', padding)
    if kernel_initializer is None:
      kernel_initializer = initializers.GaborInit(
          sample_rate=16000, min_freq=60., max_freq=7800.)
    if pooling_initializer is None:
      pooling_initializer = keras.initializers.Constant(0.4)
    self.kernel_initializer = keras.initializers.get(kernel_initializer)
    self.pooling_initializer = keras.initializers.get(pooling_initializer)
    self.learn_filters = bool(learn_filters)
    self.learn_pooling = bool(learn_pooling)
    self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
    self.pooling_regularizer = keras.regularizers.get(pooling_regularizer)
    self.groups = None

  def build(self, input_shape):
    if len(input_shape) != 3 or input_shape[-1] != 1:
      raise ValueError(
          f'{type(self).__name__} expects a waveform of shape [batch, samples,'
          f' 1]; got shape {tuple(input_shape)}.')
    self.kernel = self.add_weight(
        name='kernel',
        shape=(self.n_filters, 2),
        initializer=self.kernel_initializer,
        regularizer=self.kernel_regularizer,
        constraint=convolution.GaborConstraint(self.window_size),
        trainable=self.learn_filters)
    self.pooling_width = self.add_weight(
        name='pooling_width',
        shape=(1, 1, self.n_filters, 1),
        initializer=self.pooling_initializer,
        regularizer=self.pooling_regularizer,
        trainable=self.learn_pooling)
    # The initializer's values, not the variable's: a variable created inside
    # a tf.function has no value to read yet. init_scope runs eagerly.
    with tf.init_scope():
      initial = np.asarray(self.kernel.constraint(
          self.kernel_initializer((self.n_filters, 2), dtype='float32')))
    self.groups = group_geometry(initial[:, 0], initial[:, 1],
                                 self.num_groups, self.window_size, self.hop,
                                 self.conv_win_factor, self.stride_factor)
    order = [i for group in self.groups for i in group.indices]
    # Outputs are computed group after group; this restores channel order.
    self._restore_order = (None if order == sorted(order) else
                           np.argsort(order).astype(np.int32))

  # impulse_responses() gives (real, imag) parts; see convolution.complex_filters.
  is_complex = True

  @property
  def kernel_size(self):
    """The pooling window (and longest filter) in samples, as a pooling stage's."""
    return self.window_size

  @property
  def strides(self):
    """The frame hop in samples, as a pooling stage's."""
    return self.hop

  def gabor_parameters(self):
    """Constrained [n_filters, 2]: centre frequency (radians/sample), sigma (samples)."""
    return self.kernel.constraint(self.kernel)

  def impulse_responses(self):
    """LEAF's constrained Gabor filters (real, imag), each [n_filters, window]."""
    return impulse_responses.gabor_filters_real_imag(self.gabor_parameters(),
                                                     self.window_size)

  def windows(self):
    """LEAF's Gaussian pooling windows [window_size, n_filters]."""
    return impulse_responses.gaussian_lowpass(self.pooling_width,
                                              self.window_size)[0, :, :, 0]

  def complex_filters(self):
    return self.impulse_responses()

  # The stage interface (`stages.Stage`): a filterbank that pools itself.
  pools_itself = True

  def stage_geometry(self):
    return stages.Geometry(self.window_size, self.hop, self.padding)

  def stage_parameters(self, sample_rate):
    kernel = np.asarray(self.gabor_parameters(), np.float64)
    width = impulse_responses.gaussian_lowpass_fwhm(
        np.asarray(self.pooling_width).reshape(-1), self.window_size)
    return {
        'centre_frequency': stages.parameter(
            kernel[:, 0] * sample_rate / (2 * np.pi), 'Hz'),
        'bandwidth': stages.parameter(
            convolution.gabor_bandwidth_hz(kernel[:, 1], sample_rate), 'Hz',
            'log'),
        'pooling_width': stages.parameter(width * 1000. / sample_rate, 'ms',
                                          'log'),
    }

  def fft_problem(self, role):
    return f'the {role} ({type(self).__name__}) pools itself'

  def stream_kind(self):
    if self.padding != 'same':
      raise stages.StreamingRefused(
          "its pooling has 'valid' padding; only 'same' is streamed.")
    return 'pools_itself'

  def _stream_groups(self):
    """Per group: its decimation, as `call` sets it.

    A group's squared-modulus energies sit on a grid of `stride` samples;
    frame f pools the decimated samples f * steps + [0, taps). A stream
    computes only the new decimated samples and keeps the last `cached` =
    taps - steps for the next frames.
    """
    centre = (self.window_size - 1) // 2
    groups = []
    for group in self.groups:
      stride = group.stride
      before = centre // stride
      after = (self.window_size - 1 - centre) // stride
      steps = self.hop // stride
      groups.append(dict(
          indices=list(group.indices), kernel_size=group.kernel_size,
          stride=stride, steps=steps, before=before, after=after,
          first=centre - stride * before,
          tap=self.window_size // 2 - group.kernel_size // 2,
          cached=max(before + after + 1 - steps, 0)))
    return groups

  def stream_reach(self) -> int:
    """The last sample a frame reads, counted from its window's first sample
    minus the filters' left half ((window_size - 1) // 2); LEAF's is
    window_size - 1 + window_size // 2, a group's less."""
    return max(group['first'] + group['stride'] * (
        group['before'] + group['after']) + group['tap'] +
               group['kernel_size'] - 1 for group in self._stream_groups())

  def stream_initial_state(self, batch_size, channels):
    del channels
    return {f'group_energies_{index}': tf.zeros(
        [batch_size, group['cached'], len(group['indices'])], tf.float32)
            for index, group in enumerate(self._stream_groups())
            if group['cached']}

  def stream_pooled(self, state, buffer, inside, hops):
    """The pooled energies of `hops` new frames, and the new state.

    Args:
      state: this stage's part of the stream state (`stream_initial_state`).
      buffer: float32 [batch, samples]; sample i sits i samples after the
        first new frame's window start minus (window_size - 1) // 2.
      inside: a function of int32 offsets from the first new frame's window
        start, true where the stream holds signal (LEAF pools zeros outside
        the signal, not the filters' response to the zeros).
      hops: int or int32 [], the number of new frames.

    Returns:
      (energies [batch, hops, n_filters], new state).
    """
    real, imag = self.impulse_responses()
    filters = tf.transpose(tf.concat([real, imag], axis=0))
    windows = tf.transpose(self.windows())
    centre = (self.window_size - 1) // 2
    groups = self._stream_groups()
    # The block correlation may read up to a stride past its last tap.
    buffer = tf.pad(buffer, [[0, 0], [0, max(
        group['stride'] for group in groups)]])
    outputs, new_state = [], {}
    for index, group in enumerate(groups):
      stride, steps, cached = group['stride'], group['steps'], group['cached']
      taps = group['before'] + group['after'] + 1
      count = (hops - 1) * steps + taps  # decimated samples the frames pool
      channels = group['indices'] + [self.n_filters + i
                                     for i in group['indices']]
      group_filters = tf.gather(
          filters[group['tap']:group['tap'] + group['kernel_size']],
          channels, axis=1)
      # Decimated sample m reads from first + tap + stride * m; the first
      # `cached` come from the state.
      responses = strided_correlation(
          buffer, group['first'] + group['tap'] + stride * cached,
          group_filters, stride, count - cached)
      real_part, imag_part = tf.split(tf.square(responses), 2, axis=0)
      energies = real_part + imag_part  # [channels, batch, new]
      if cached:
        key = f'group_energies_{index}'
        energies = tf.concat(
            [tf.transpose(state[key], (2, 0, 1)), energies], axis=2)
        new_state[key] = tf.transpose(energies[:, :, -cached:], (1, 2, 0))
      energies *= tf.cast(inside(group['first'] + stride * tf.range(count)),
                          energies.dtype)
      pooling_taps = tf.gather(
          tf.gather(windows, group['indices']),
          centre + stride * np.arange(-group['before'], group['after'] + 1),
          axis=1) * float(stride)
      outputs.append(strided_pooling(energies, pooling_taps, steps, hops))
    outputs = tf.transpose(tf.concat(outputs, axis=0), (1, 2, 0))
    if self._restore_order is not None:
      outputs = tf.gather(outputs, self._restore_order, axis=-1)
    return outputs, new_state

  def call(self, inputs):
    # LEAF's filters, [window_size, 2 * n_filters] (real parts, then
    # imaginary parts): a group's shorter kernels are their middle taps.
    real, imag = self.impulse_responses()
    filters = tf.transpose(tf.concat([real, imag], axis=0))
    # LEAF's Gaussian windows, [n_filters, window_size]; groups sample them.
    windows = tf.transpose(self.windows())
    waveform = tf.squeeze(inputs, axis=2)
    length = tf.shape(waveform)[1]
    frames, left, _ = framing.frames_and_padding(length, self.window_size,
                                                 self.hop, self.padding)
    centre = (self.window_size - 1) // 2
    margin = max(group.kernel_size for group in self.groups)
    # After `left + margin` zeros, frame f's window starts at sample
    # margin + f * hop, so every group reads from a fixed offset.
    longest = max(group.stride * blocks.num_pieces(group.kernel_size,
                                                   group.stride)
                  for group in self.groups)
    right = tf.maximum((frames - 1) * self.hop + self.window_size + margin +
                       longest - left - length, 0)
    padded = tf.pad(waveform, [[0, 0], [left + margin, right]])
    outputs = []
    for group in self.groups:
      stride = group.stride
      steps = self.hop // stride  # decimated samples per frame
      before = centre // stride  # window taps before / after its centre
      after = (self.window_size - 1 - centre) // stride
      # Decimated sample m is sample `first + m * stride` of frame 0's
      # window; the window centres fall on the grid.
      first = centre - stride * before
      count = (frames - 1) * steps + before + after + 1
      # The group's kernel is taps `tap` ... `tap + size - 1` of LEAF's,
      # aligned as LEAF's 'same' convolution aligns the whole filter.
      tap = self.window_size // 2 - group.kernel_size // 2
      start = margin + first - (self.window_size - 1) // 2 + tap
      channels = list(group.indices) + [self.n_filters + i
                                        for i in group.indices]
      group_filters = tf.gather(filters[tap:tap + group.kernel_size],
                                channels, axis=1)
      responses = strided_correlation(padded, start, group_filters, stride,
                                      count)
      real, imag = tf.split(tf.square(responses), 2, axis=0)
      # LEAF pools zeros outside the input, not the filters' response to
      # the zeros around it.
      sample = first + stride * tf.range(count) - left
      inside = tf.logical_and(sample >= 0, sample < length)
      energies = (real + imag) * tf.cast(inside, real.dtype)
      taps = tf.gather(tf.gather(windows, list(group.indices)),
                       centre + stride * np.arange(-before, after + 1),
                       axis=1) * float(stride)
      outputs.append(strided_pooling(energies, taps, steps, frames))
    # [n_filters, batch, frames] -> [batch, frames, n_filters].
    outputs = tf.transpose(tf.concat(outputs, axis=0), (1, 2, 0))
    if self._restore_order is not None:
      outputs = tf.gather(outputs, self._restore_order, axis=-1)
    return outputs

  def compute_output_shape(self, input_shape):
    return (input_shape[0],
            framing.num_frames(input_shape[1], self.window_size, self.hop,
                               self.padding), self.n_filters)

  def get_config(self):
    config = super().get_config()
    config.update({name: getattr(self, name) for name in (
        'n_filters', 'window_size', 'hop', 'num_groups', 'conv_win_factor',
        'stride_factor', 'padding', 'learn_filters', 'learn_pooling')})
    config.update({name: keras.initializers.serialize(getattr(self, name))
                   for name in ('kernel_initializer', 'pooling_initializer')})
    config.update({name: keras.regularizers.serialize(getattr(self, name))
                   for name in ('kernel_regularizer', 'pooling_regularizer')})
    return config
