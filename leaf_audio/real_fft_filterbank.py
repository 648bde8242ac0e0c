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
  * The spectra of a chunk and of the 2 C real filters (real parts, then
    imaginary parts) are multiplied in real arithmetic: real and imaginary
    parts are separate float32 tensors right after the forward RFFT.
  * The inverse transform of each product P = A + i B (bins k = 0..N / 2)
    is one more forward RFFT. A (extended evenly to N bins) has a real DFT
    and B (extended oddly) an imaginary one, and the real filter output is
    y = DFT(A - i B) / N; so the real sequence z with z[k] = A[k] + B[k],
    z[N - k] = A[k] - B[k] (0 < k < N / 2; z[0] = A[0], z[N / 2] = A[N / 2],
    as an inverse real FFT ignores the imaginary parts there) has the
    spectrum Z with, for 0 <= n <= N / 2,

        N y[n]     = Re Z[n] + Im Z[n]
        N y[N - n] = Re Z[n] - Im Z[n].

    (The factor 1 / N is folded into the filters' spectra.)
  * The squared moduli of the kept samples are pooled block by block
    (`blocks`): one batched matrix product with the window pieces and a
    sum over the pieces.

The chunks of the whole input are in memory at once: [batch, chunks, 2 C, N]
float32 (about 1.5x the input's samples times 2 C), which suits inference on
clips of seconds; training and long inputs use `fft_filterbank`.
"""

import tensorflow as tf

from leaf_audio import blocks
from leaf_audio import fft_filterbank
from leaf_audio import framing

_FLOAT32_MAX = 3.4028234663852886e38


def _real_spectra(taps, size):
  """Real and imaginary parts [rows, N / 2 + 1] of the RFFT of taps [rows, N]."""
  spectrum = tf.signal.rfft(taps)
  return tf.math.real(spectrum), tf.math.imag(spectrum)


def _inverse_by_forward(real, imag, size):
  """Real sequences [..., N] whose half spectra are real + i imag [..., N / 2 + 1],
  times N, computed with one forward RFFT (see the module docstring)."""
  half = size // 2
  plus, minus = real + imag, real - imag
  z = tf.concat([real[..., :1], plus[..., 1:half], real[..., half:],
                 tf.reverse(minus[..., 1:half], axis=[-1])], axis=-1)
  spectrum_real, spectrum_imag = _real_spectra(z, size)
  first = spectrum_real + spectrum_imag          # n = 0 .. N / 2
  second = spectrum_real - spectrum_imag         # N - n for n = 0 .. N / 2
  return tf.concat(
      [first, tf.reverse(second[..., 1:half], axis=[-1])], axis=-1)


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
      `fft_filterbank.fft_size(K, W, S)`.

  Returns:
    float32 [batch, frames, C]; frames = ceil(samples / S) for 'same' and
    (samples - W) // S + 1 for 'valid'. A clip with a NaN or inf sample gets
    NaN at every frame.
  """
  channels, kernel_size = real.shape
  window_size = windows.shape[0]
  size = size or fft_filterbank.fft_size(kernel_size, window_size, stride)
  if size & (size - 1) or size < kernel_size - 1 + stride:
    raise ValueError(
        'real_fft_filterbank.pooled_energy: size must be a power of two >= '
        f'kernel_size - 1 + stride = {kernel_size - 1 + stride}; got {size}.')
  batch, length = tf.shape(waveform)[0], tf.shape(waveform)[1]
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
  padded = tf.pad(waveform, [[0, 0], [start, 0]])
  total = (chunks - 1) * hop + size
  padded = tf.pad(padded, [[0, 0], [0, tf.maximum(
      total - length - start, 0)]])[:, :total]
  rows = framing.overlapping_frames(padded, size, hop)   # [B, R, N]

  taps = tf.pad(tf.concat([real, imag], axis=0),
                [[0, 0], [0, size - kernel_size]])
  # Correlation with h is multiplication by the conjugate of its spectrum.
  filter_real, filter_imag = _real_spectra(taps / size, size)
  filter_imag = -filter_imag
  chunk_real, chunk_imag = _real_spectra(rows, size)
  chunk_real = chunk_real[:, :, tf.newaxis]             # [B, R, 1, F]
  chunk_imag = chunk_imag[:, :, tf.newaxis]
  product_real = chunk_real * filter_real - chunk_imag * filter_imag
  product_imag = chunk_real * filter_imag + chunk_imag * filter_real
  filtered = _inverse_by_forward(product_real, product_imag, size)
  filtered = filtered[..., :hop]                        # [B, R, 2 C, hop]
  energies = (tf.square(filtered[:, :, :channels]) +
              tf.square(filtered[:, :, channels:]))     # [B, R, C, hop]
  # Energies outside the clip are zeros of the pooling's padding.
  sample = tf.range(chunks * hop) - left
  inside = tf.cast((sample >= 0) & (sample < length), tf.float32)
  energies = energies * tf.reshape(inside, [1, chunks, 1, hop])
  energies = tf.reshape(energies,
                        [batch, chunks, channels, blocks_per_chunk, stride])
  energies = tf.reshape(tf.transpose(energies, (2, 0, 1, 3, 4)),
                        [channels, -1, stride])          # [C, B R Q, S]
  window_pieces = tf.transpose(blocks.window_pieces(windows, stride),
                               (2, 1, 0))               # [C or 1, S, P]
  if window_pieces.shape[0] == 1:
    products = tf.reshape(
        tf.matmul(tf.reshape(energies, [-1, stride]), window_pieces[0]),
        [channels, -1, pieces])
  else:
    products = tf.matmul(energies, window_pieces)       # [C, B R Q, P]
  products = tf.reshape(products,
                        [channels, batch, chunks * blocks_per_chunk, pieces])
  pooled = blocks.diagonal_sum(products[:, :, :needed_blocks], frames)
  pooled = tf.transpose(pooled, (1, 2, 0))              # [B, frames, C]
  finite = tf.reduce_all(tf.abs(waveform) <= _FLOAT32_MAX, axis=1)
  return tf.where(finite[:, tf.newaxis, tf.newaxis], pooled, float('nan'))
