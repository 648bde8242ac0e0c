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
    times its piece of the window (see `pooling.strided_window_sum`).
  * Chunks of Q whole blocks are filtered with FFTs of `fft_size` N samples
    (overlap-save: a chunk reads Q S + K - 1 input samples and Q S <= N - K +
    1), by multiplying the chunk's spectrum with the spectra of the truncated
    K-tap filters themselves. Nothing is band-limited, so the result is the
    direct convolution's, whatever the filters are.
  * Chunks are processed a few at a time in a loop, so the largest
    intermediate ([2 C, chunks, N / 2 + 1] spectra) has a bounded size
    whatever the input length; the backward pass recomputes each group's
    forward pass instead of storing it. Memory grows only with the input, the
    framed input and the output.

All arguments are float32 tensors; the result is float32.
"""

import math

import tensorflow as tf

from leaf_audio import framing

# Upper bound of the per-group spectra [2 C, rows, N / 2 + 1] in bytes: two
# chunks of LEAF (N = 4096, 80 channels). Small groups stay in cache and in
# reusable allocations (glibc maps buffers above 32 MiB afresh on every call,
# which costs more than the FFT). On a 2-core CPU, forward + backward at batch
# 8 x 1 s took 226-245 ms with 1-3 chunks per group, 278 ms with 6 and 469 ms
# with 24 (benchmarks/README.md).
_GROUP_BYTES = 3 * 2**20


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


def _group_rows(n_filters: int, size: int) -> int:
  """How many chunks one loop iteration filters."""
  bytes_per_row = 2 * n_filters * (size // 2 + 1) * 8
  return max(1, _GROUP_BYTES // bytes_per_row)


class _Geometry:
  """Where chunks and blocks lie for an input of `length` samples.

  Block b holds the energies at samples [b S - left, (b + 1) S - left); chunk c
  holds blocks [c Q, (c + 1) Q) and reads the input samples from
  c Q S - left - (K - 1) // 2 on.
  """

  def __init__(self, length, kernel_size, window_size, stride, padding, size):
    self.length = length
    self.stride = stride
    self.size = size
    self.frames, self.left, _ = framing.frames_and_padding(
        length, window_size, stride, padding)
    self.pieces = -(-window_size // stride)
    self.blocks_per_chunk = (size - kernel_size + 1) // stride
    if self.blocks_per_chunk < 1:
      raise ValueError(
          f'fft_size={size} is too short for kernel_size={kernel_size} and '
          f'stride={stride}; it needs at least {kernel_size - 1 + stride}.')
    self.hop = self.blocks_per_chunk * stride
    blocks = self.frames - 1 + self.pieces
    self.chunks = (blocks + self.blocks_per_chunk - 1) // self.blocks_per_chunk
    self.input_offset = self.left + (kernel_size - 1) // 2

  def chunk_rows(self, waveform):
    """The overlapping input chunks [batch * chunks, N] of waveform [batch, T]."""
    needed = self.hop * (self.chunks - 1) + self.size
    right = tf.maximum(needed - self.length - self.input_offset, 0)
    padded = tf.pad(waveform, [[0, 0], [self.input_offset, right]])
    rows = tf.signal.frame(padded[:, :needed], self.size, self.hop)
    return tf.reshape(rows, [-1, self.size])

  def energy_mask(self, row_ids):
    """1 where a chunk's energies lie inside the input, else 0: [rows, Q S]."""
    chunk = row_ids % self.chunks
    sample = (chunk[:, tf.newaxis] * self.hop - self.left +
              tf.range(self.hop)[tf.newaxis, :])
    return tf.cast((sample >= 0) & (sample < self.length), tf.float32)


def _filtered(rows, spectra, geometry):
  """Spectra [G, N / 2 + 1] of the chunks and the filter outputs [2 C, G, Q S]."""
  chunk_spectra = tf.signal.rfft(rows)
  filtered = tf.signal.irfft(chunk_spectra[tf.newaxis] * spectra[:, tf.newaxis],
                             [geometry.size])
  return chunk_spectra, filtered[..., :geometry.hop]


def _energy_blocks(filtered, row_ids, geometry):
  """Squared modulus in blocks [C, G * Q, S], zero outside the input."""
  channels = filtered.shape[0] // 2
  energies = tf.square(filtered[:channels]) + tf.square(filtered[channels:])
  energies *= geometry.energy_mask(row_ids)[tf.newaxis]
  return tf.reshape(energies, [channels, -1, geometry.stride])


def _group_forward(rows, row_ids, spectra, pieces, geometry):
  """Window pieces applied to the energy blocks of G chunks.

  Args:
    rows: [G, N] input chunks.
    row_ids: int32 [G], their indices in the [batch * chunks] rows.
    spectra: complex64 [2 C, N / 2 + 1], the conjugated spectra of the real
      parts (first C) and imaginary parts (last C) of the filters.
    pieces: [C or 1, S, P], piece p of each window along the last axis.
    geometry: `_Geometry`.

  Returns:
    [C, G * Q, P]: entry [c, g Q + q, p] is block q of chunk g times piece p.
  """
  _, filtered = _filtered(rows, spectra, geometry)
  return tf.matmul(_energy_blocks(filtered, row_ids, geometry), pieces)


def _group_backward(rows, row_ids, spectra, pieces, upstream, geometry):
  """Gradients of `_group_forward` for the upstream gradient [C, G * Q, P].

  Recomputes the forward pass of the group, then follows it back by hand:
  TF's generic gradients of rfft/irfft allocate several full-size complex
  tensors per step, which costs more than the FFTs themselves.

  Returns:
    (rows [G, N], spectra [2 C, N / 2 + 1] complex64 (d/dRe + i d/dIm),
    pieces [C or 1, S, P]) gradients.
  """
  channels = spectra.shape[0] // 2
  chunk_spectra, filtered = _filtered(rows, spectra, geometry)
  blocks = _energy_blocks(filtered, row_ids, geometry)
  piece_grad = tf.matmul(blocks, upstream, transpose_a=True)
  if pieces.shape[0] == 1:
    piece_grad = tf.reduce_sum(piece_grad, axis=0, keepdims=True)
  energy_grad = tf.reshape(
      tf.matmul(upstream, pieces, transpose_b=True),
      [channels, -1, geometry.hop])
  energy_grad *= 2. * geometry.energy_mask(row_ids)[tf.newaxis]
  filtered_grad = filtered * tf.concat([energy_grad, energy_grad], axis=0)
  # The adjoint of irfft is rfft scaled by (1 or 2) / N per bin (the bins
  # that stand for two conjugate frequencies count twice); the adjoint of
  # rfft undoes that scaling, so the input gradient needs none.
  product_grad = tf.signal.rfft(filtered_grad, [geometry.size])
  bins = geometry.size // 2 + 1
  weights = tf.concat([[1.], tf.fill([bins - 2], 2.), [1.]], 0) / geometry.size
  spectra_grad = tf.reduce_sum(
      tf.math.conj(chunk_spectra)[tf.newaxis] * product_grad, axis=1)
  spectra_grad *= tf.complex(weights, tf.zeros_like(weights))
  row_grad = tf.signal.irfft(
      tf.reduce_sum(tf.math.conj(spectra)[:, tf.newaxis] * product_grad,
                    axis=0), [geometry.size])
  return row_grad, spectra_grad, piece_grad


def _products(rows, spectra_real, spectra_imag, pieces, geometry, group):
  """`_group_forward` of all rows, `group` rows per loop iteration.

  The gradient recomputes each group's forward pass, so no intermediate of
  the FFT filtering is kept between the passes.

  Returns:
    [C, rows * Q, P].
  """
  num_rows = tf.shape(rows)[0]
  num_groups = (num_rows + group - 1) // group
  rows = tf.pad(rows, [[0, num_groups * group - num_rows], [0, 0]])
  channels = spectra_real.shape[0] // 2
  num_pieces = pieces.shape[-1]

  def group_slice(i):
    start = i * group
    return (tf.slice(rows, [start, 0], [group, geometry.size]),
            start + tf.range(group))

  @tf.custom_gradient
  def forward(rows, spectra_real, spectra_imag, pieces):
    spectra = tf.complex(spectra_real, spectra_imag)

    def body(i, outputs):
      group_rows, row_ids = group_slice(i)
      return i + 1, outputs.write(
          i, _group_forward(group_rows, row_ids, spectra, pieces, geometry))

    _, outputs = tf.while_loop(
        lambda i, _: i < num_groups, body,
        (0, tf.TensorArray(tf.float32, size=num_groups)))
    # [groups, C, group * Q, P] -> [C, rows * Q, P].
    outputs = tf.reshape(tf.transpose(outputs.stack(), (1, 0, 2, 3)),
                         [channels, -1, num_pieces])
    outputs = outputs[:, :num_rows * geometry.blocks_per_chunk]

    def gradient(upstream):
      padding = (num_groups * group - num_rows) * geometry.blocks_per_chunk
      upstream = tf.reshape(
          tf.pad(upstream, [[0, 0], [0, padding], [0, 0]]),
          [channels, num_groups, -1, num_pieces])

      def body(i, row_grads, spectra_grad, piece_grad):
        group_rows, row_ids = group_slice(i)
        grads = _group_backward(group_rows, row_ids, spectra, pieces,
                                upstream[:, i], geometry)
        return (i + 1, row_grads.write(i, grads[0]),
                spectra_grad + grads[1], piece_grad + grads[2])

      _, row_grads, spectra_grad, piece_grad = tf.while_loop(
          lambda i, *_: i < num_groups, body,
          (0, tf.TensorArray(tf.float32, size=num_groups),
           tf.zeros_like(spectra), tf.zeros_like(pieces)))
      row_grads = tf.reshape(row_grads.stack(), [-1, geometry.size])
      return (row_grads[:num_rows], tf.math.real(spectra_grad),
              tf.math.imag(spectra_grad), piece_grad)

    return outputs, gradient

  return forward(rows, spectra_real, spectra_imag, pieces)


def pooled_energy(waveform, real, imag, windows, stride: int, padding: str,
                  size=None, jit_compile: bool = False):
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
    jit_compile: bool, default False; compile the computation (and its
      gradient) with XLA, which fuses the elementwise work around the FFTs:
      about twice as fast on CPU, but XLA compiles anew for every input shape
      (about a second), so it pays when the shapes repeat, as in training.

  Returns:
    float32 [batch, frames, C]; frames = ceil(samples / S) for 'same' and
    (samples - W) // S + 1 for 'valid'.
  """
  kernel_size = real.shape[1]
  size = size or fft_size(kernel_size, windows.shape[0], stride)
  compute = _pooled_energy_xla if jit_compile else _pooled_energy_graph
  return compute(waveform, real, imag, windows, stride, padding, size)


def _pooled_energy(waveform, real, imag, windows, stride, padding, size):
  """`pooled_energy` with all arguments given."""
  channels, kernel_size = real.shape
  window_size = windows.shape[0]
  geometry = _Geometry(tf.shape(waveform)[1], kernel_size, window_size,
                       stride, padding, size)
  taps = tf.pad(tf.concat([real, imag], axis=0),
                [[0, 0], [0, size - kernel_size]])
  # Correlation with h is multiplication by the conjugate of its spectrum.
  spectra = tf.math.conj(tf.signal.rfft(taps))
  pieces = tf.reshape(
      tf.pad(windows, [[0, geometry.pieces * stride - window_size], [0, 0]]),
      [geometry.pieces, stride, windows.shape[1]])
  pieces = tf.transpose(pieces, (2, 1, 0))
  products = _products(geometry.chunk_rows(waveform), tf.math.real(spectra),
                       tf.math.imag(spectra), pieces, geometry,
                       _group_rows(channels, size))
  products = tf.reshape(
      products, [channels, tf.shape(waveform)[0], -1, geometry.pieces])
  # Frame f adds piece p applied to block f + p.
  frames = geometry.frames
  outputs = 0.
  for piece in range(geometry.pieces):
    outputs += products[:, :, piece:piece + frames, piece]
  return tf.transpose(outputs, (1, 2, 0))


# Graph functions also when called eagerly (an eager while loop steps through
# Python); inside another graph they are inlined. The XLA one compiles once
# per (stride, padding, size) and input shape.
_pooled_energy_graph = tf.function(_pooled_energy, autograph=False)
_pooled_energy_xla = tf.function(_pooled_energy, jit_compile=True,
                                 autograph=False)
