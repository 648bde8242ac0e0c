"""First-order recursive smoothing along time, computed with matrix products.

PCEN's smoother m[t] = s x[t] + (1 - s) m[t - 1] is a linear recurrence. A
sequential scan over frames is slow (one small step per frame, also in the
backward pass), cannot be converted by TFLite with a dynamic batch, and
`tf.scan` steps through Python when called eagerly. Written with the decay
a = 1 - s, the recurrence has the closed form

  m[t] = sum_{u <= t} a^(t - u) s x[u] + a^(t + 1) m[-1],

which this module evaluates in two levels of blocks of L ~ sqrt(frames)
frames: a lower-triangular [L, L] matrix of powers of a smooths inside every
block at once, and the state carried from block to block is the same
recurrence over the blocks' last frames, with decay a^L, solved by one more
triangular matrix. Work is O(frames * L) per channel, memory O(L^2) for the
matrices; every power of a is a^k with 0 <= k, so nothing overflows for any
s in [0, 1].
"""

import tensorflow as tf


def _decay_matrix(decay, size):
  """[channels, size, size] with decay^(i - j) below the diagonal, else 0.

  Args:
    decay: float [channels], in [0, 1].
    size: int scalar tensor.
  """
  steps = tf.range(size)
  lags = steps[:, tf.newaxis] - steps[tf.newaxis, :]
  below = lags > 0
  # tf.where keeps both branches' gradients finite: 0^0 and 0^-1 never occur.
  base = tf.where(below[tf.newaxis], decay[:, tf.newaxis, tf.newaxis], 1.)
  powers = tf.pow(base, tf.cast(tf.maximum(lags, 0), decay.dtype))
  return tf.where((lags >= 0)[tf.newaxis], powers, tf.zeros_like(powers))


def _powers(decay, exponents):
  """decay^exponents for decay [channels] and int exponents [n] >= 1: [channels, n]."""
  return tf.pow(decay[:, tf.newaxis],
                tf.cast(exponents, decay.dtype)[tf.newaxis, :])


def exponential_smoothing(inputs, coeff, initial_state):
  """m[t] = coeff x[t] + (1 - coeff) m[t - 1], with m[-1] = initial_state.

  Args:
    inputs: float [batch, frames, channels].
    coeff: float [channels] or [1], smoothing coefficients in [0, 1].
    initial_state: float [batch, channels], the state before frame 0.

  Returns:
    float [batch, frames, channels].
  """
  inputs = tf.convert_to_tensor(inputs)
  dtype = inputs.dtype
  coeff = tf.cast(coeff, dtype)
  decay = 1. - coeff
  batch = tf.shape(inputs)[0]
  frames = tf.shape(inputs)[1]
  channels = tf.shape(inputs)[2]
  # Blocks of size ~ sqrt(frames), so that both levels are about as long.
  size = tf.maximum(
      tf.cast(tf.math.ceil(tf.sqrt(tf.cast(frames, tf.float32))), tf.int32), 1)
  blocks = (frames + size - 1) // size
  padded = tf.pad(inputs * coeff, [[0, 0], [0, blocks * size - frames], [0, 0]])
  # [channels, batch, blocks, size]: channels lead, for one matmul per channel.
  padded = tf.transpose(tf.reshape(padded, [batch, blocks, size, channels]),
                        (3, 0, 1, 2))
  within = tf.matmul(
      tf.reshape(padded, [channels, batch * blocks, size]),
      _decay_matrix(decay, size),
      transpose_b=True)
  within = tf.reshape(within, [channels, batch, blocks, size])
  # State at the end of each block: the same recurrence over blocks.
  block_decay = tf.pow(decay, tf.cast(size, dtype))
  initial = tf.transpose(initial_state)[:, :, tf.newaxis]  # [channels, batch, 1]
  ends = tf.matmul(within[..., -1], _decay_matrix(block_decay, blocks),
                   transpose_b=True)
  ends += initial * _powers(block_decay, tf.range(1, blocks + 1))[:, tf.newaxis]
  before = tf.concat([initial, ends[..., :-1]], axis=2)  # [channels, batch, blocks]
  smoothed = within + before[..., tf.newaxis] * _powers(
      decay, tf.range(1, size + 1))[:, tf.newaxis, tf.newaxis, :]
  smoothed = tf.reshape(smoothed, [channels, batch, blocks * size])[:, :, :frames]
  return tf.transpose(smoothed, (1, 2, 0))
