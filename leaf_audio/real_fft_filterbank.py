"""The FFT method with forward real FFTs only: what TFLite's builtins run.

`pooled_energy` computes the function of `fft_filterbank.pooled_energy`
(complex filterbank -> squared modulus -> lowpass pooling at the kept
frames, see that module) with operations that the TFLite converter maps to
its builtins (LiteRT runs them without the Flex delegate): TFLite has a
forward real FFT (RFFT2D) but no inverse FFT, no complex multiplication and
no loops over tensor lists. So:

  * Each clip is cut into overlapping chunks of `size` N samples on its own
    (overlap-save, as in `fft_filterbank`), all chunks of all clips at once:
    no while loop, no packing of the batch end to end and no per-clip
    scaling (a clip's rounding depends on its own values only). A clip
    holding NaN or inf gets NaN at every frame, as in `fft_filterbank`.
  * Complex numbers live only between an RFFT and the REAL/IMAG that follow
    it; everything else is real arithmetic on float32 tensors.
  * Inverse by forward. Filter j's output on a chunk is the real y_j with
    half spectrum P_j = A_j + i B_j = X conj(H_j) / N (k = 0..N / 2; X the
    chunk's spectrum, H_j the filter's). A (extended evenly to N bins) has
    a real DFT and B (extended oddly) an imaginary one, and y_j = DFT(A -
    i B) / N; so the real sequence z_j with z_j[k] = A_j[k] + B_j[k] and
    z_j[N - k] = A_j[k] - B_j[k] (0 < k < N / 2; z_j[0] = A_j[0] and
    z_j[N / 2] = A_j[N / 2], as an inverse real FFT ignores the imaginary
    parts there) has the spectrum Z_j with, for 0 <= n <= N / 2,

        y_j[n]     = Re Z_j[n] + Im Z_j[n]
        y_j[N - n] = Re Z_j[n] - Im Z_j[n].

    z_j is linear in the chunk's spectrum: z_j = Re X' U_j + Im X' V_j,
    with X' the spectrum extended by X'[N - k] = X[k] and U_j, V_j [N] made
    from the filter's spectrum once per call (`_filter_terms`).
  * Four filters per transform. TFLite's RFFT2D pays a large fixed cost per
    2-D transform (benchmarks/README.md: 880 rows of 2048 samples took
    65.5 ms as [1, N] transforms, 45.2 ms as [4, N] ones). A 2-D
    transform of four rows u_q is F[p] = sum_q (-i)^(pq) DFT(u_q): with the
    real mixture u = M z of four filters' sequences (`_MIX`),

        F[0] = Z_0,   F[2] = Z_2,   F[1] = (Z_1 - i Z_3) / 2,
        F[3] = (Z_1 + i Z_3) / 2,

    from which each output, and so each squared modulus, is a sum of real
    and imaginary parts (`_group_energies`). The mixture is folded into
    U and V, so it costs nothing per chunk. A group holds the real and
    imaginary filters of two channels (channel 2 g: Z_0 and Z_2, channel
    2 g + 1: Z_1 and Z_3); an odd channel count gets a zero channel.
  * The squared moduli of the kept samples are pooled block by block
    (`blocks`): one batched matrix product with the window pieces and a
    sum over the pieces.

The chunks of the whole input are in memory at once: [batch, chunks, 2 C, N]
float32 (about 1.3x the input's samples times 2 C for LEAF), which suits
inference on clips of seconds; training and long inputs use
`fft_filterbank`.
"""

import math

import numpy as np
import tensorflow as tf

from leaf_audio import blocks
from leaf_audio import framing

_FLOAT32_MAX = float(np.finfo(np.float32).max)

# u_q = sum_j _MIX[q, j] z_j for the four sequences z_j of a group (j = 0: the
# real filter of channel 2 g, 1: the real filter of 2 g + 1, 2: the imaginary
# filter of 2 g, 3: the imaginary filter of 2 g + 1). Column j is the real
# inverse DFT (length 4) of the column spectrum that puts Z_j where the
# module docstring says: the 2-D RFFT then gives F[0] = Z_0, F[2] = Z_2,
# F[1] = (Z_1 - i Z_3) / 2 and F[3] = (Z_1 + i Z_3) / 2.
_MIX = np.array([[1, 1, 1, 0],
                 [1, 0, -1, 1],
                 [1, -1, 1, 0],
                 [1, 0, -1, -1]], np.float32) / 4
_GROUP = 4
# The same for the chunks' sequences, with channel 2 g (j = 0, 2) scaled by
# 1 / sqrt(2), which gives both channels of a group one energy formula
# (`_group_energies`).
_DATA_MIX = _MIX * np.array([2**-0.5, 1, 2**-0.5, 1], np.float32)


def fft_size(kernel_size: int, stride: int) -> int:
  """The FFT length N for filters of `kernel_size` taps and a hop of `stride`.

  The smallest power of two (TFLite's RFFT2D takes no other lengths) that
  keeps at least half of each chunk: N >= 2 (K - 1 + S). Shorter than
  `fft_filterbank.fft_size` because here the filters' spectra are computed
  on every call and the last chunk of each clip is partly empty; for LEAF
  (K = 401, S = 160) N = 2048, measured faster in LiteRT than 4096
  (benchmarks/README.md).

  Returns:
    int, a power of two >= 2 (kernel_size - 1 + stride).
  """
  return 2**math.ceil(math.log2(2 * (kernel_size - 1 + stride)))


def _spectrum_parts(rows):
  """Real and imaginary parts [..., N / 2 + 1] of the RFFT of rows [..., N]."""
  spectrum = tf.signal.rfft(rows)
  return tf.math.real(spectrum), tf.math.imag(spectrum)


def _extend(half, size):
  """[..., N / 2 + 1] -> [..., N] with x[N - k] = x[k] for 0 < k < N / 2."""
  return tf.concat(
      [half, tf.reverse(half[..., 1:size // 2], axis=[-1])], axis=-1)


def _grouped_transforms(rows, u, v, groups: int, size: int):
  """The forward RFFT2D of each row's spectrum mixed with a group's terms.

  Args:
    rows: float32 [R, size], the signal's chunks.
    u, v: float32 [groups, 4, size], the terms the chunk's real and
      imaginary spectrum parts are multiplied by (`_filter_terms`).
    groups: filter groups of _GROUP channels.
    size: the FFT size N.

  Returns:
    complex64 [R groups, _GROUP, N / 2 + 1].
  """
  chunk_real, chunk_imag = _spectrum_parts(rows)          # [R, N / 2 + 1]
  chunk_real = _extend(chunk_real, size)[:, tf.newaxis]   # [R, 1, N]
  chunk_imag = _extend(chunk_imag, size)[:, tf.newaxis]
  mixed = (chunk_real * tf.reshape(u, [groups * _GROUP, size]) +
           chunk_imag * tf.reshape(v, [groups * _GROUP, size]))
  return tf.signal.rfft2d(tf.reshape(mixed, [-1, _GROUP, size]))


def _grouped(rows):
  """[2 C, ...] in the order (real parts, imaginary parts) -> [C / 2, 4, ...]
  in a group's order (real 2 g, real 2 g + 1, imaginary 2 g, imaginary 2 g + 1)."""
  channels = rows.shape[0] // 2
  rows = tf.reshape(rows, [2, channels // 2, 2] + rows.shape[1:].as_list())
  return tf.reshape(tf.transpose(rows, [1, 0, 2] + list(range(3, rows.shape.rank))),
                    [channels // 2, _GROUP] + rows.shape[3:].as_list())


def _mixed(rows, mix=_MIX):
  """`mix` [4, 4] applied on axis 1 of rows [G, 4, N]: [G, 4, N]."""
  return tf.matmul(tf.constant(mix), rows)


def _rows_of(parts, count):
  """parts [G, ...] cut along axis 1 into `count` tensors [G, size / count]
  (flattened). Slices on the last axis: TFLite's STRIDED_SLICE on another
  axis copies element by element, several times slower."""
  width = int(np.prod(parts.shape[1:])) // count
  flat = tf.reshape(parts, [-1, count * width])
  return [flat[:, index * width:(index + 1) * width]
          for index in range(count)]


def _filter_spectra(taps, size):
  """Real and imaginary parts [G, 4, N / 2 + 1] of the spectra of taps
  [G, 4, N], computed with the four-row transforms."""
  parts = tf.signal.rfft2d(_mixed(taps))
  real = _rows_of(tf.math.real(parts), _GROUP)
  imag = _rows_of(tf.math.imag(parts), _GROUP)
  # F[1] = (Z_1 - i Z_3) / 2, F[3] = (Z_1 + i Z_3) / 2.
  return (tf.stack([real[0], real[1] + real[3], real[2], imag[3] - imag[1]],
                   axis=1),
          tf.stack([imag[0], imag[1] + imag[3], imag[2], real[1] - real[3]],
                   axis=1))


def _filter_terms(real, imag, size):
  """U, V [G, 4, N] (mixed by _MIX) with z_j = Re X' U_j + Im X' V_j.

  With G_j = conj(H_j) / N = Gr + i Gi and the product P = X G:
  z[k] = Re P + Im P = Re X (Gr + Gi) + Im X (Gr - Gi) for 0 < k < N / 2,
  z[k] = Re P = Re X Gr - Im X Gi for k = 0, N / 2, and
  z[N - k] = Re P - Im P = Re X (Gr - Gi) - Im X (Gr + Gi).
  """
  kernel_size = real.shape[1]
  taps = tf.pad(tf.concat([real, imag], axis=0),
                [[0, 0], [0, size - kernel_size]]) / size
  return _group_terms(_grouped(taps), size, _DATA_MIX)


def _group_terms(taps, size, data_mix):
  """U, V [G, 4, N], mixed by `data_mix`, of the groups' taps [G, 4, N]
  (already divided by N); see `_filter_terms`."""
  spectrum_real, spectrum_imag = _filter_spectra(taps, size)
  conj_real, conj_imag = spectrum_real, -spectrum_imag
  half = size // 2
  edges = tf.reshape(tf.one_hot([0, half], half + 1), [2, half + 1])
  edge = tf.reduce_sum(edges, axis=0)             # 1 at k = 0 and N / 2
  inner = 1. - edge
  u_first = conj_real + inner * conj_imag
  v_first = inner * conj_real - conj_imag
  u = tf.concat([u_first, tf.reverse((conj_real - conj_imag)[..., 1:half],
                                     axis=[-1])], axis=-1)
  v = tf.concat([v_first, tf.reverse(-(conj_real + conj_imag)[..., 1:half],
                                     axis=[-1])], axis=-1)
  return _mixed(u, data_mix), _mixed(v, data_mix)


def _group_energies(parts_real, parts_imag, hop, size):
  """Squared moduli [rows, 2, hop] of the two channels of each group from
  the four-row spectra F = parts_real + i parts_imag [rows, 4, N / 2 + 1].

  Row q = 2 a + b of a group: b = 0 holds channel 2 g (F[0] = Z_0 / sqrt(2),
  F[2] = Z_2 / sqrt(2) with `_DATA_MIX`), b = 1 channel 2 g + 1 (F[1],
  F[3]). With S = F[a = 0] + F[a = 1] and D = F[a = 1] - F[a = 0] (real
  parts Sr, Dr, imaginary parts Si, Di), for 0 <= n <= N / 2,

      e[n]     = (Sr + Si)^2 + (Dr + s Di)^2
      e[N - n] = (Sr - Si)^2 + (Dr - s Di)^2

  with s = +1 for channel 2 g and -1 for 2 g + 1: for 2 g this is
  2 (y_0^2 + y_2^2) / 2, for 2 g + 1 the outputs of the module docstring
  (y_1[n] = Sr + Si, y_3[n] = Dr - Di up to sign).
  """
  half = size // 2
  bins = half + 1
  real_0, real_1 = _rows_of(parts_real, 2)            # a = 0, 1: [rows, 2 F]
  imag_0, imag_1 = _rows_of(parts_imag, 2)
  sum_real = tf.reshape(real_0 + real_1, [-1, 2, bins])   # [rows, 2 (b), F]
  sum_imag = tf.reshape(imag_0 + imag_1, [-1, 2, bins])
  diff_real = tf.reshape(real_1 - real_0, [-1, 2, bins])
  diff_imag = tf.reshape(imag_1 - imag_0, [-1, 2, bins]) * tf.constant(
      [[1.], [-1.]])
  first = (tf.square(sum_real + sum_imag) +
           tf.square(diff_real + diff_imag))          # n = 0 .. N / 2
  second = (tf.square(sum_real - sum_imag) +
            tf.square(diff_real - diff_imag))         # N - n
  energies = tf.concat(
      [first, tf.reverse(second[..., 1:half], axis=[-1])], axis=-1)
  return energies[..., :hop]


def pooled_energy(waveform, real, imag, windows, stride: int, padding: str,
                  size=None):
  """Pooled squared modulus of a complex filterbank, with TFLite builtins.

  The function of `fft_filterbank.pooled_energy` (to float32 rounding);
  see the module docstring for how it is computed.

  Args:
    waveform: float32 [batch, samples].
    real, imag: float32 [C, K], the filters' real and imaginary parts.
    windows: float32 [W, C], one pooling window per channel, or [W, 1], one
      window shared by all channels.
    stride: int, the pooling hop S in samples.
    padding: the pooling's padding, 'same' or 'valid'.
    size: FFT length N (a power of two, as TFLite's RFFT2D needs), default
      `fft_size(K, S)`.

  Returns:
    float32 [batch, frames, C]; frames = ceil(samples / S) for 'same' and
    (samples - W) // S + 1 for 'valid'. A clip with a NaN or inf sample gets
    NaN at every frame.
  """
  channels, kernel_size = real.shape
  window_size = windows.shape[0]
  size = size or fft_size(kernel_size, stride)
  if (not isinstance(size, int) or isinstance(size, bool) or size & (size - 1)
      or size < kernel_size - 1 + stride):
    raise ValueError(
        'real_fft_filterbank.pooled_energy: size must be a power of two >= '
        f'kernel_size - 1 + stride = {kernel_size - 1 + stride}; got {size!r}.')
  if channels % 2:  # A zero channel completes the last group.
    real = tf.pad(real, [[0, 1], [0, 0]])
    imag = tf.pad(imag, [[0, 1], [0, 0]])
    if windows.shape[1] != 1:
      windows = tf.pad(windows, [[0, 0], [0, 1]])
  padded_channels = real.shape[0]
  groups = padded_channels // 2
  # Python ints where the length is static (as in a converted model, whose
  # windows have a fixed length), so that TFLite plans every tensor once.
  length = waveform.shape[1]
  if length is None:
    length = tf.shape(waveform)[1]
  frames, left, _ = framing.frames_and_padding(length, window_size, stride,
                                               padding)
  pieces = blocks.num_pieces(window_size, stride)
  blocks_per_chunk = (size - kernel_size + 1) // stride
  hop = blocks_per_chunk * stride
  needed_blocks = frames - 1 + pieces
  chunks = (needed_blocks + blocks_per_chunk - 1) // blocks_per_chunk
  # Chunk r filters the clip's samples from r hop - left - (K - 1) // 2 on
  # and keeps its first `hop` outputs: energies from sample r hop - left.
  start = left + (kernel_size - 1) // 2
  total = (chunks - 1) * hop + size
  maximum = max if isinstance(length, int) else tf.maximum
  padded = tf.pad(waveform, [[0, 0], [start, maximum(
      total - length - start, 0)]])[:, :total]
  rows = tf.reshape(framing.overlapping_frames(padded, size, hop),
                    [-1, size])                          # [B R, N]

  u, v = _filter_terms(real, imag, size)                 # [G, 4, N]
  parts = _grouped_transforms(rows, u, v, groups, size)  # [B R G, 4, N/2+1]
  energies = _group_energies(tf.math.real(parts), tf.math.imag(parts), hop,
                             size)                       # [B R G, 2, hop]
  # Energies outside the clip are zeros of the pooling's padding.
  sample = tf.range(chunks * hop) - left
  inside = tf.cast((sample >= 0) & (sample < length), tf.float32)
  energies = (tf.reshape(energies, [-1, chunks, padded_channels, hop]) *
              tf.reshape(inside, [chunks, 1, hop]))      # [B, R, C, hop]
  energies = tf.transpose(
      tf.reshape(energies, [-1, padded_channels, hop]), (1, 0, 2))
  energies = tf.reshape(energies, [padded_channels, -1, stride])
  window_pieces = tf.transpose(blocks.window_pieces(windows, stride),
                               (2, 1, 0))               # [C or 1, S, P]
  if window_pieces.shape[0] == 1:
    products = tf.reshape(
        tf.matmul(tf.reshape(energies, [-1, stride]), window_pieces[0]),
        [padded_channels, -1, pieces])
  else:
    products = tf.matmul(energies, window_pieces)       # [C, B R Q, P]
  products = tf.reshape(
      products, [padded_channels, -1, chunks * blocks_per_chunk, pieces])
  pooled = blocks.diagonal_sum(products[:, :, :needed_blocks], frames)
  pooled = tf.transpose(pooled[:channels], (1, 2, 0))   # [B, frames, C]
  finite = tf.reduce_all(tf.abs(waveform) <= _FLOAT32_MAX, axis=1)
  return tf.where(finite[:, tf.newaxis, tf.newaxis], pooled, float('nan'))


def correlation_size(kernel_size: int, outputs: int) -> int:
  """The FFT length N that `correlate` uses by default: the smallest power of
  two whose chunk holds all `outputs` (N >= kernel_size - 1 + outputs), at
  most 4096 (longer inputs are cut into chunks of that length).

  For LEAF's 401 taps and 10 hops of 160 samples: 2048, one chunk.
  """
  needed = kernel_size - 1 + max(outputs, 1)
  return min(2**math.ceil(math.log2(needed)),
             max(4096, 2**math.ceil(math.log2(2 * (kernel_size - 1)))))


def correlation_terms(filters, size: int):
  """What `correlate` computes from the filters alone, for filters [K, C]
  and FFT length N: (U, V) [ceil(C / 4), 4, N]. Compute them once (e.g.
  eagerly, as constants of an exported graph) and pass them as `terms`."""
  kernel_size, channels = filters.shape
  groups = -(-channels // _GROUP)
  taps = tf.pad(tf.transpose(filters),
                [[0, groups * _GROUP - channels], [0, size - kernel_size]])
  return _group_terms(tf.reshape(taps / size, [groups, _GROUP, size]), size,
                      _MIX)


def correlate(signal, filters, size=None, terms=None):
  """'valid' cross-correlation of a signal with real filters, by FFT, with
  TFLite builtins only (forward RFFTs and real arithmetic).

  outputs[b, n, c] = sum_t signal[b, n + t] * filters[t, c], the function of
  `tf.nn.conv1d(signal[..., None], filters[:, None], 1, 'VALID')`, to
  float32 rounding. Overlap-save as in `pooled_energy`: chunks of N samples
  overlapping by K - 1, each chunk's spectrum times the filters' conjugate
  spectra, and each inverse transform one forward 2-D RFFT of four
  filters' real sequences (the module docstring). It pays when each chunk
  serves many outputs (a streaming step of several hops); the filters'
  spectra are computed on every call unless given (`terms`).

  Args:
    signal: float32 [batch, samples], samples static and >= K.
    filters: float32 [K, C], filter c's taps.
    size: FFT length N (a power of two >= K), default
      `correlation_size(K, samples - K + 1)`.
    terms: optional `correlation_terms(filters, N)`, computed here if None.

  Returns:
    float32 [batch, samples - K + 1, C].
  """
  kernel_size, channels = filters.shape
  length = signal.shape[1]
  if length is None or length < kernel_size:
    raise ValueError(
        'real_fft_filterbank.correlate: signal must have a static length >= '
        f'the filters\' {kernel_size} taps; got shape {signal.shape}.')
  outputs = length - kernel_size + 1
  size = size or correlation_size(kernel_size, outputs)
  if (not isinstance(size, int) or isinstance(size, bool) or size & (size - 1)
      or size < kernel_size):
    raise ValueError(
        'real_fft_filterbank.correlate: size must be a power of two >= the '
        f'filters\' {kernel_size} taps; got {size!r}.')
  keep = size - kernel_size + 1        # outputs per chunk
  chunks = -(-outputs // keep)
  total = (chunks - 1) * keep + size
  padded = tf.pad(signal, [[0, 0], [0, total - length]])
  rows = tf.reshape(framing.overlapping_frames(padded, size, keep),
                    [-1, size])                         # [B R, N]
  groups = -(-channels // _GROUP)
  u, v = terms if terms is not None else correlation_terms(filters, size)
  parts = _grouped_transforms(rows, u, v, groups, size)  # [B R G, 4, N/2+1]
  real = _rows_of(tf.math.real(parts), _GROUP)          # 4 x [B R G, N/2+1]
  imag = _rows_of(tf.math.imag(parts), _GROUP)
  # F[0] = Z_0, F[2] = Z_2, F[1] = (Z_1 - i Z_3) / 2, F[3] = (Z_1 + i Z_3) / 2.
  spectra = ((real[0], imag[0]), (real[1] + real[3], imag[1] + imag[3]),
             (real[2], imag[2]), (imag[3] - imag[1], real[1] - real[3]))
  half = size // 2
  sequences = []
  for spectrum_real, spectrum_imag in spectra:
    # y[n] = Re Z[n] + Im Z[n], y[N - n] = Re Z[n] - Im Z[n].
    sequence = tf.concat(
        [spectrum_real + spectrum_imag,
         tf.reverse((spectrum_real - spectrum_imag)[:, 1:half], axis=[-1])],
        axis=-1)
    sequences.append(sequence[:, :keep])
  result = tf.reshape(tf.stack(sequences, axis=-1),
                      [-1, chunks, groups, keep, _GROUP])
  result = tf.reshape(tf.transpose(result, (0, 1, 3, 2, 4)),
                      [-1, chunks * keep, groups * _GROUP])
  return result[:, :outputs, :channels]
