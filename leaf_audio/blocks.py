"""Stride blocks: a window applied every S samples, one piece at a time.

A window of W taps applied every S samples reads samples [f S, f S + W) for
frame f. Cut the signal into blocks of S samples and the window into P =
ceil(W / S) pieces of S taps (the last one zero-padded): frame f is the sum
over p of piece p applied to block f + p. Pooling, the FFT method and the
grouped filterbank apply every piece to every block in one matrix product and
add the products with `diagonal_sum`; framing concatenates the blocks.
"""

import tensorflow as tf

# Windows spanning more pieces than this are computed otherwise (a strided
# convolution): `diagonal_sum` is a Python loop over the pieces.
MAX_PIECES = 8


def num_pieces(window_size: int, stride: int) -> int:
  """P = ceil(window_size / stride), the blocks a window spans."""
  return -(-window_size // stride)


def uses_blocks(window_size: int, stride: int) -> bool:
  """Whether a window applied every `stride` samples is summed block by block."""
  return stride > 1 and num_pieces(window_size, stride) <= MAX_PIECES


def window_pieces(windows, stride: int):
  """windows [W, C] -> [P, S, C]; piece p holds taps p S .. p S + S - 1 (0 past W)."""
  size, channels = windows.shape
  pieces = num_pieces(size, stride)
  return tf.reshape(tf.pad(windows, [[0, pieces * stride - size], [0, 0]]),
                    [pieces, stride, channels])


def to_blocks(signal, start, count, stride: int):
  """Blocks [..., count, stride] of signal[..., start + i], zeros outside it.

  `start` (negative: zeros in front) and `count` are ints or int32 scalars;
  with ints and a static length the shape stays static.
  """
  length, maximum = signal.shape[-1], max
  if length is None or tf.is_tensor(start) or tf.is_tensor(count):
    length, maximum = tf.shape(signal)[-1], tf.maximum
  begin, needed = maximum(start, 0), count * stride
  padded = tf.pad(signal, [[0, 0]] * (signal.shape.rank - 1) + [
      [maximum(-start, 0), maximum(start + needed - length, 0)]])
  leading = [size if size is not None else tf.shape(signal)[axis]
             for axis, size in enumerate(signal.shape[:-1])]
  return tf.reshape(padded[..., begin:begin + needed],
                    leading + [count, stride])


def diagonal_sum(products, frames, block_axis: int = -2, piece_axis: int = -1):
  """out[..., f, ...] = sum_p products[..., f + p, ..., p, ...] for f < frames.

  `products` holds piece p applied to block n at index n on `block_axis` and
  p on `piece_axis`; the result drops `piece_axis` and keeps `frames` entries
  on `block_axis`. The gradient is written out: piece p's is the upstream
  gradient shifted by p blocks (TensorFlow's own pads and adds one full-size
  tensor per piece).
  """
  rank = products.shape.rank
  block_axis, piece_axis = block_axis % rank, piece_axis % rank
  out_axis = block_axis - (piece_axis < block_axis)
  pieces = products.shape[piece_axis]

  @tf.custom_gradient
  def total(products):
    outputs = 0.
    for piece in range(pieces):
      begin, size = [0] * rank, [-1] * rank
      begin[block_axis], begin[piece_axis] = piece, piece
      size[block_axis], size[piece_axis] = frames, 1
      outputs += tf.squeeze(tf.slice(products, tf.stack(begin),
                                     tf.stack(size)), piece_axis)

    def gradient(upstream):
      extra = tf.shape(products)[block_axis] - frames
      padding = [[0, 0]] * (rank - 1)
      shifted = []
      for piece in range(pieces):
        padding[out_axis] = [piece, extra - piece]
        shifted.append(tf.pad(upstream, padding))
      return tf.stack(shifted, axis=piece_axis)

    return outputs, gradient

  return total(products)
