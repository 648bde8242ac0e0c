"""Complex filterbank energies, pooled at the kept frames, computed with FFTs.

LEAF's first three stages compute, for a complex filterbank h_c = real_c +
i imag_c of K taps, lowpass windows w_c of W taps and a hop of S samples,

  y_c[n]      = sum_k x[n + k - (K - 1) // 2] h_c[k]       ('same', stride 1)
  out[f, c]   = sum_j w_c[j] |y_c[f S + j - left]|^2        (kept frames f)

with x and |y_c|^2 zero outside [0, samples) and `left` the pooling's 'same'
(or 0 for 'valid') padding. Evaluated directly, the filterbank is a
K-tap convolution at the full rate for every channel (about 1.3 GFLOP per
second of 16 kHz audio for LEAF's 40 filters), and its backward pass costs
twice that.

`pooled_energy` computes the same function exactly (up to float rounding):

  * The energies are cut into blocks of S samples, starting at sample -left;
    frame f is the sum over the ceil(W / S) blocks f, f + 1, ... of each block
    times its piece of the window (see `blocks`).
  * The clips of a batch are laid end to end in one signal, each padded with
    enough zeros that no filter output inside a clip reads its neighbours
    (`_Geometry`), and the signal's blocks are cut into chunks. Each clip is
    first divided by a power of two near its peak (`clip_scales`; undone
    exactly on its energies), so that the float rounding a chunk spreads
    over its clips is relative to each clip's own scale, and a clip holding
    NaN or inf is filtered as silence and returned as NaN: each clip's
    result does not depend on the other clips.
  * Chunks of Q whole blocks are filtered with FFTs of `fft_size` N samples
    (overlap-save: a chunk reads Q S + K - 1 input samples and Q S <= N - K +
    1), by multiplying the chunk's spectrum with the spectra of the truncated
    K-tap filters themselves. Nothing is band-limited, so the result is the
    direct convolution's, whatever the filters are.
  * A graph while loop filters one chunk per iteration and runs several
    iterations at once, which keeps all cores busy. The forward pass keeps
    the filter outputs of the first chunks, up to `kept_bytes`, for the
    backward pass (written by hand), which filters the other chunks again.
    So memory is bounded on inputs of any length: beyond that budget it
    grows only with the input, the framed input and the output.

All arguments are float32 tensors; the result is float32.
"""

import math
import numbers

import tensorflow as tf

from leaf_audio import blocks
from leaf_audio import framing

# Default budget for the filter outputs kept from the forward pass for the
# backward pass, in bytes ([2 C, N] float32 per chunk, 1.3 MB for LEAF): a
# batch of about 64 one-second clips. Chunks beyond it are filtered again in
# the backward pass, so memory stays bounded on long inputs.
KEPT_BYTES = 384 * 2**20

# Chunks in flight at once in the loops; TensorFlow runs the iterations of a
# graph while loop concurrently, which keeps all cores busy with the FFTs.
_PARALLEL_CHUNKS = 8


def fft_size(kernel_size: int, window_size: int, stride: int) -> int:
  """The FFT length N used for filters of `kernel_size` taps.

  The smallest power of two (TFLite supports no other lengths) that is at
  least 2048 and leaves room for a chunk of at least 3 (kernel + window)
  lengths' worth of output, so that the K - 1 samples each chunk reads twice
  cost at most a quarter of the work.

  Args:
    kernel_size: K, taps of the filters.
    window_size: W, taps of the pooling window.
    stride: S, hop in samples.

  Returns:
    int, a power of two >= kernel_size - 1 + stride.
  """
  needed = max(2048, 4 * (kernel_size + window_size), kernel_size - 1 + stride)
  return 2**math.ceil(math.log2(needed))


class _Geometry:
  """Where clips, chunks and blocks lie for a batch of clips of `length` samples.

  The clips are laid end to end in one signal, `span` blocks of S samples
  each: clip b's sample t lies at b span S + left + t, so that its energy
  block i (samples [i S - left, (i + 1) S - left) of the clip) is block
  b span + i of the signal. `span` covers the clip's `blocks` needed blocks
  and leaves at least K // 2 zeros after each clip, so that no filter output
  inside a clip reads a sample of its neighbours. Chunk c holds the signal's
  blocks [c Q, (c + 1) Q) and reads its samples from c Q S - (K - 1) // 2 on.
  Packing the batch this way, rather than chunking each clip alone, spares
  the partly empty last chunk of every clip (10% of the chunks of 1 s clips).
  """

  def __init__(self, batch, length, kernel_size, window_size, stride, padding,
               size):
    self.batch = batch
    self.length = length
    self.stride = stride
    self.size = size
    self.frames, self.left, _ = framing.frames_and_padding(
        length, window_size, stride, padding)
    self.pieces = blocks.num_pieces(window_size, stride)
    self.blocks_per_chunk = (size - kernel_size + 1) // stride
    if self.blocks_per_chunk < 1:
      raise ValueError(
          f'fft_size={size} is too short for kernel_size={kernel_size} and '
          f'stride={stride}; it needs at least {kernel_size - 1 + stride}.')
    self.hop = self.blocks_per_chunk * stride
    self.blocks = self.frames - 1 + self.pieces
    self.span = tf.maximum(
        self.blocks,
        (length + self.left + kernel_size // 2 + stride - 1) // stride)
    self.span_samples = self.span * stride
    self.chunks = tf.maximum(
        (batch - 1) * self.span + self.blocks + self.blocks_per_chunk - 1,
        0) // self.blocks_per_chunk
    self.input_offset = (kernel_size - 1) // 2

  def chunk_rows(self, waveform):
    """The overlapping input chunks [chunks, N] of waveform [batch, T]."""
    packed = tf.reshape(
        tf.pad(waveform,
               [[0, 0], [self.left, self.span_samples - self.left - self.length]]),
        [-1])
    needed = self.hop * (self.chunks - 1) + self.size
    right = tf.maximum(
        needed - self.batch * self.span_samples - self.input_offset, 0)
    padded = tf.pad(packed, [[self.input_offset, right]])
    return tf.signal.frame(padded[:needed], self.size, self.hop)

  def energy_mask(self, row_ids):
    """1 where a chunk's energies lie inside a clip, else 0: [rows, Q S]."""
    sample = (row_ids[:, tf.newaxis] * self.hop +
              tf.range(self.hop)[tf.newaxis, :])
    clip = sample // self.span_samples
    inside = sample - clip * self.span_samples - self.left
    return tf.cast((inside >= 0) & (inside < self.length) &
                   (clip < self.batch), tf.float32)

  def clip_blocks(self, products):
    """[C, batch, blocks, P] of the chunks' products [C, chunks Q, P]."""
    total = self.batch * self.span
    products = tf.pad(
        products,
        [[0, 0], [0, tf.maximum(total - tf.shape(products)[1], 0)], [0, 0]])
    products = tf.reshape(products[:, :total],
                          [products.shape[0], self.batch, self.span,
                           products.shape[2]])
    return products[:, :, :self.blocks]


# The small steps around the FFTs (a complex product broadcast over the
# filters, squares pooled by a few window pieces, their gradients) are each
# compiled with XLA into one pass: as TensorFlow kernels (complex broadcasting,
# tiny batched matrix products) they cost more than the FFTs. The FFTs stay
# TensorFlow kernels, in a loop whose iterations run in parallel.


def _spectral_product_impl(spectra, chunk_spectrum):
  """spectra [2 C, N / 2 + 1] times a chunk's spectrum [N / 2 + 1]."""
  return spectra * chunk_spectrum[tf.newaxis]


def _energy_blocks(filtered, mask, stride):
  """Squared modulus of filter outputs [2 C, N] in blocks [C, Q, S].

  `mask` [Q S] is 1 where the chunk's samples lie inside the input, else 0;
  samples from Q S on belong to the next chunk and are left out.
  """
  channels = filtered.shape[0] // 2
  filtered = filtered[:, :mask.shape[0]]
  energies = (tf.square(filtered[:channels]) +
              tf.square(filtered[channels:])) * mask
  return tf.reshape(energies, [channels, -1, stride])


def _pooled_blocks_impl(filtered, mask, pieces):
  """Energy blocks times window pieces [C or 1, S, P]: [C, Q, P]."""
  blocks = _energy_blocks(filtered, mask, pieces.shape[1])
  return tf.reduce_sum(blocks[..., tf.newaxis] * pieces[:, tf.newaxis], axis=2)


def _pooled_blocks_backward_impl(filtered, mask, upstream, pieces):
  """Gradients of `_pooled_blocks_impl` for upstream [C, Q, P].

  Returns:
    (pieces [C, S, P], filtered [2 C, N]) gradients.
  """
  channels, size = filtered.shape[0] // 2, filtered.shape[1]
  hop = mask.shape[0]
  blocks = _energy_blocks(filtered, mask, pieces.shape[1])
  piece_grad = tf.reduce_sum(
      blocks[..., tf.newaxis] * upstream[:, :, tf.newaxis, :], axis=1)
  energy_grad = tf.reduce_sum(
      upstream[:, :, tf.newaxis, :] * pieces[:, tf.newaxis], axis=-1)
  energy_grad = tf.reshape(energy_grad, [channels, hop]) * (2. * mask)
  energy_grad = tf.pad(energy_grad, [[0, 0], [0, size - hop]])
  # Real and imaginary parts [2, C, N] share the energies' gradient.
  filtered_grad = tf.reshape(filtered, [2, channels, size]) * energy_grad
  return piece_grad, tf.reshape(filtered_grad, [2 * channels, size])


def _accumulate_impl(total, product_grad, chunk_spectrum):
  """total + the spectra's gradient from one chunk: [2 C, N / 2 + 1]."""
  return total + product_grad * tf.math.conj(chunk_spectrum)[tf.newaxis]


def _compiled(function):
  return tf.function(function, jit_compile=True, autograph=False)


_spectral_product = _compiled(_spectral_product_impl)
_pooled_blocks = _compiled(_pooled_blocks_impl)
_pooled_blocks_backward = _compiled(_pooled_blocks_backward_impl)
_accumulate = _compiled(_accumulate_impl)


def _filtered(row, spectra, size):
  """Spectrum [N / 2 + 1] of an input chunk [N] and its filter outputs [2 C, N]."""
  chunk_spectrum = tf.signal.rfft(row)
  filtered = tf.signal.irfft(_spectral_product(spectra, chunk_spectrum), [size])
  return chunk_spectrum, filtered


def _loop(body, start, stop, state):
  """state = body(row, *state) for row in [start, stop); returns the state.

  TensorFlow runs up to `_PARALLEL_CHUNKS` iterations at once.
  """
  return tf.while_loop(
      lambda row, *_: row < stop,
      lambda row, *state: (row + 1,) + tuple(body(row, *state)),
      (start,) + tuple(state), parallel_iterations=_PARALLEL_CHUNKS)[1:]


class _Chunks:
  """Forward and backward passes over the input chunks, one chunk per step.

  The forward pass keeps the filter outputs of the first `kept` chunks (at
  most `kept_bytes` of them) in a TensorArray for the backward pass, which
  filters the other chunks again.

  Attributes:
    rows: [rows, N] input chunks.
    spectra: complex64 [2 C, N / 2 + 1], the conjugated spectra of the real
      parts (first C) and imaginary parts (last C) of the filters.
    pieces: [C or 1, S, P], piece p of each window along the last axis.
    geometry: `_Geometry`.
  """

  def __init__(self, rows, spectra, pieces, geometry, kept_bytes):
    self.rows = rows
    self.spectra = spectra
    self.pieces = pieces
    self.geometry = geometry
    self.channels = spectra.shape[0] // 2
    self.num_rows = tf.shape(rows)[0]
    row_bytes = 4 * 2 * self.channels * geometry.size
    # With nothing to keep no TensorArray is made, so the gradient function
    # captures none and a SavedModel can hold it.
    self.keeps = kept_bytes >= row_bytes
    self.kept = (tf.minimum(self.num_rows, kept_bytes // row_bytes)
                 if self.keeps else 0)

  def _mask(self, row):
    return self.geometry.energy_mask(row[tf.newaxis])[0]

  def forward(self):
    """(outputs [rows, C, Q, P], kept filter outputs: a TensorArray or None).

    Entry [r, c, q, p] of the outputs is block q of chunk r times piece p.
    """
    shape = [self.channels, self.geometry.blocks_per_chunk,
             self.pieces.shape[-1]]
    outputs = tf.TensorArray(tf.float32, size=self.num_rows,
                             element_shape=shape)

    def product(row):
      _, filtered = _filtered(self.rows[row], self.spectra, self.geometry.size)
      return filtered, _pooled_blocks(filtered, self._mask(row), self.pieces)

    def keeping(row, outputs, kept):
      filtered, output = product(row)
      return outputs.write(row, output), kept.write(row, filtered)

    def recomputing(row, outputs):
      return (outputs.write(row, product(row)[1]),)

    kept = None
    if self.keeps:
      kept = tf.TensorArray(
          tf.float32, size=self.kept,
          element_shape=[2 * self.channels, self.geometry.size])
      outputs, kept = _loop(keeping, 0, self.kept, (outputs, kept))
    outputs, = _loop(recomputing, self.kept, self.num_rows, (outputs,))
    return outputs.stack(), kept

  def backward(self, upstream, kept):
    """Gradients of `forward` for the upstream gradient [rows, C, Q, P].

    Follows the forward pass back by hand: TF's generic gradients of
    rfft/irfft allocate several full-size complex tensors per step, which
    costs more than the FFTs themselves.

    Returns:
      (rows [rows, N], spectra [2 C, N / 2 + 1] complex64 (d/dRe + i d/dIm),
      pieces [C or 1, S, P]) gradients.
    """
    size = self.geometry.size
    conjugate_spectra = tf.math.conj(self.spectra)

    def step(row, chunk_spectrum, filtered, row_grads, spectra_grad,
             piece_grad):
      row_piece_grad, filtered_grad = _pooled_blocks_backward(
          filtered, self._mask(row), upstream[row], self.pieces)
      # The adjoint of irfft is rfft scaled by (1 or 2) / N per bin (the
      # bins that stand for two conjugate frequencies count twice), applied
      # once to the sum after the loop; the adjoint of rfft undoes that
      # scaling, so the input gradient needs none.
      product_grad = tf.signal.rfft(filtered_grad)
      row_grad = tf.signal.irfft(
          tf.reduce_sum(conjugate_spectra * product_grad, axis=0), [size])
      return (row_grads.write(row, row_grad),
              _accumulate(spectra_grad, product_grad, chunk_spectrum),
              piece_grad + row_piece_grad)

    def keeping(row, *state):
      chunk_spectrum = tf.signal.rfft(self.rows[row])
      return step(row, chunk_spectrum, kept.read(row), *state)

    def recomputing(row, *state):
      return step(row, *_filtered(self.rows[row], self.spectra, size), *state)

    state = (tf.TensorArray(tf.float32, size=self.num_rows,
                            element_shape=[size]),
             tf.zeros_like(self.spectra),
             tf.zeros([self.channels, self.geometry.stride,
                       self.pieces.shape[-1]]))
    if self.keeps:
      state = _loop(keeping, 0, self.kept, state)
    row_grads, spectra_grad, piece_grad = _loop(recomputing, self.kept,
                                                self.num_rows, state)
    if self.pieces.shape[0] == 1:
      piece_grad = tf.reduce_sum(piece_grad, axis=0, keepdims=True)
    bins = size // 2 + 1
    weights = tf.concat([[1.], tf.fill([bins - 2], 2.), [1.]], 0) / size
    spectra_grad *= tf.complex(weights, tf.zeros_like(weights))
    return row_grads.stack(), spectra_grad, piece_grad


def _products(rows, spectra_real, spectra_imag, pieces, geometry, kept_bytes):
  """`_Chunks.forward` as [C, rows * Q, P], with its gradient."""
  channels = spectra_real.shape[0] // 2
  num_pieces = pieces.shape[-1]

  @tf.custom_gradient
  def products(rows, spectra_real, spectra_imag, pieces):
    chunks = _Chunks(rows, tf.complex(spectra_real, spectra_imag), pieces,
                     geometry, kept_bytes)
    outputs, kept = chunks.forward()

    def gradient(upstream):
      upstream = tf.transpose(
          tf.reshape(upstream, [channels, chunks.num_rows, -1, num_pieces]),
          (1, 0, 2, 3))
      row_grads, spectra_grad, piece_grad = chunks.backward(upstream, kept)
      return (row_grads, tf.math.real(spectra_grad),
              tf.math.imag(spectra_grad), piece_grad)

    # [rows, C, Q, P] -> [C, rows * Q, P].
    outputs = tf.reshape(tf.transpose(outputs, (1, 0, 2, 3)),
                         [channels, -1, num_pieces])
    return outputs, gradient

  return products(rows, spectra_real, spectra_imag, pieces)


def pooled_energy(waveform, real, imag, windows, stride: int, padding: str,
                  size=None, kept_bytes: int = KEPT_BYTES):
  """Pooled squared modulus of a complex filterbank, computed with FFTs.

  Equals SquaredModulus -> lowpass pooling of a stride-1 'same' convolution
  with the interleaved filters (channel 2c real_c, 2c + 1 imag_c), the
  computation of `GaborConv1D` -> `SquaredModulus` -> `GaussianLowpassPooling`
  (or `LearnablePooling1D`), to float32 rounding; see the module docstring.

  Args:
    waveform: float32 [batch, samples].
    real, imag: float32 [C, K], the filters' real and imaginary parts.
    windows: float32 [W, C], one pooling window per channel, or [W, 1], one
      window shared by all channels.
    stride: int, the pooling hop S in samples.
    padding: the pooling's padding, 'same' or 'valid'.
    size: FFT length N, default `fft_size(K, W, S)`.
    kept_bytes: int, how many bytes of filter outputs the forward pass may
      keep for the backward pass (a TensorArray); the backward pass filters
      the chunks beyond them again. Default `KEPT_BYTES`. With 0, the default
      of the frontends except in training, nothing is kept: the gradient
      function then captures no TensorArray, which `tf.saved_model.save`
      cannot write, so pass 0 in functions that will be exported.

  Returns:
    float32 [batch, frames, C]; frames = ceil(samples / S) for 'same' and
    (samples - W) // S + 1 for 'valid'. A clip with a NaN or inf sample gets
    NaN at every frame; the other clips are computed as if alone (to float
    rounding at their own scale).
  """
  if (not isinstance(kept_bytes, numbers.Integral) or
      isinstance(kept_bytes, bool) or kept_bytes < 0):
    raise ValueError(
        'pooled_energy: kept_bytes must be an int >= 0, the bytes of filter '
        f'outputs the forward pass may keep; got {kept_bytes!r}.')
  kernel_size = real.shape[1]
  size = size or fft_size(kernel_size, windows.shape[0], stride)
  return _pooled_energy_graph(waveform, real, imag, windows, stride, padding,
                              size, kept_bytes)


def clip_scales(waveform):
  """Per clip, a power of two near its peak and whether it is finite.

  A clip gets the largest power of two s <= its peak |x|, so that x / s has
  its peak in [1, 2); silence gets 1 (as does a subnormal peak, which
  TensorFlow's CPU kernels flush to zero). Dividing by a power of two and
  multiplying back is exact in float (barring underflow below 2**-126 s), so
  `pooled_energy` computes each clip at the same scale whatever its
  neighbours' scale and undoes it exactly.

  Args:
    waveform: float32 [batch, samples].

  Returns:
    (scales float32 [batch], finite bool [batch]); the scale of a clip with a
    NaN or inf sample is that of its finite samples (none: 1).
  """
  finite = tf.reduce_all(tf.math.is_finite(waveform), axis=1)
  peaks = tf.reduce_max(
      tf.abs(tf.where(tf.math.is_finite(waveform), waveform, 0.)), axis=1)
  peaks = tf.stop_gradient(peaks)
  # The float32 exponent field of a finite peak, 0..254: s = 2**(field - 127).
  exponent = tf.bitwise.right_shift(tf.bitcast(peaks, tf.int32), 23)
  exponent = tf.where(peaks > 0., tf.maximum(exponent, 1), 127)
  scales = tf.bitcast(tf.bitwise.left_shift(exponent, 23), tf.float32)
  return scales, finite


def _pooled_energy(waveform, real, imag, windows, stride, padding, size,
                   kept_bytes):
  """`pooled_energy` of each clip at its own scale, non-finite clips isolated.

  The batch is packed end to end and filtered in shared chunks, so float
  rounding of one clip spreads over the chunk, into its neighbours (relative
  to the chunk's largest values). Each clip is therefore divided by its
  `clip_scales` power of two before packing, its energies multiplied back
  by the square, and a clip holding NaN or inf is filtered as silence and
  its frames set to NaN, so that it cannot reach its neighbours at all.
  Measured on 1 s clips at 16 kHz (a 0.01-amplitude 440 Hz tone with noise
  beside uniform noise of peak 1, 32768 or 1e6), the quiet clip's features
  moved, against the clip computed alone, by at most 1.5e-6, 0.56 and 2.8
  (Leaf) and 7e-5, 2.4 and 8.9 (TimeDomainFilterbanks) without the
  scaling; with it by at most 2.4e-7 (Leaf) and 1.9e-6
  (TimeDomainFilterbanks), the size of the direct method's own 2.4e-7 and
  9.5e-7 (tests/test_input_safety.py checks 1e-4).
  """
  scales, finite = clip_scales(waveform)
  waveform = tf.where(finite[:, tf.newaxis], waveform, 0.)
  energies = _pooled_energy_of_scaled(waveform / scales[:, tf.newaxis], real,
                                      imag, windows, stride, padding, size,
                                      kept_bytes)
  # (e s) s: neither product overflows or underflows unless e s**2 does.
  scales = scales[:, tf.newaxis, tf.newaxis]
  energies = energies * scales * scales
  return tf.where(finite[:, tf.newaxis, tf.newaxis], energies, float('nan'))


def _pooled_energy_of_scaled(waveform, real, imag, windows, stride, padding,
                             size, kept_bytes):
  """`pooled_energy` of a batch packed end to end, without per-clip scaling."""
  channels, kernel_size = real.shape
  window_size = windows.shape[0]
  geometry = _Geometry(tf.shape(waveform)[0], tf.shape(waveform)[1],
                       kernel_size, window_size, stride, padding, size)
  taps = tf.pad(tf.concat([real, imag], axis=0),
                [[0, 0], [0, size - kernel_size]])
  # Correlation with h is multiplication by the conjugate of its spectrum.
  spectra = tf.math.conj(tf.signal.rfft(taps))
  pieces = tf.transpose(blocks.window_pieces(windows, stride), (2, 1, 0))
  products = _products(geometry.chunk_rows(waveform), tf.math.real(spectra),
                       tf.math.imag(spectra), pieces, geometry, kept_bytes)
  products = geometry.clip_blocks(products)
  return tf.transpose(blocks.diagonal_sum(products, geometry.frames),
                      (1, 2, 0))


# A graph function also when called eagerly (an eager while loop steps through
# Python); inside another graph it is inlined. It is not compiled with XLA:
# XLA ran these loops on about one core on CPU, where TensorFlow's executor
# runs several iterations at once on all of them (benchmarks/README.md). A
# caller may still compile a whole step with XLA, as Keras does on GPU.
_pooled_energy_graph = tf.function(_pooled_energy, autograph=False)
