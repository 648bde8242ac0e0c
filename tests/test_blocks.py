"""leaf_audio.blocks: stride blocks, window pieces and the diagonal sum."""

import numpy as np
import pytest
import tensorflow as tf

from leaf_audio import blocks


@pytest.mark.parametrize('start, count', [(0, 5), (-7, 6), (3, 4), (-2, 9)])
def test_to_blocks_reads_the_signal_with_zeros_outside(start, count):
  signal = np.arange(1., 31.).reshape(1, 30)
  cut = blocks.to_blocks(tf.constant(signal), start, count, 4)
  assert cut.shape == (1, count, 4)  # static for int arguments
  index = start + np.arange(count * 4)
  expected = np.where((index >= 0) & (index < 30),
                      signal[0, np.clip(index, 0, 29)], 0.)
  np.testing.assert_array_equal(cut.numpy().reshape(-1), expected)


def test_window_pieces_cut_the_window_in_stride_pieces():
  windows = np.arange(1., 11.).reshape(5, 2)
  pieces = blocks.window_pieces(tf.constant(windows), 2).numpy()
  assert pieces.shape == (3, 2, 2)
  np.testing.assert_array_equal(pieces.reshape(6, 2)[:5], windows)
  np.testing.assert_array_equal(pieces[2, 1], [0., 0.])


@pytest.mark.parametrize('block_axis, piece_axis', [(-2, -1), (3, 0), (1, 2)])
def test_diagonal_sum_and_its_gradient(block_axis, piece_axis):
  rng = np.random.default_rng(0)
  pieces, frames, num_blocks = 3, 5, 8
  shape = [2, 3, 4, 5]
  shape[block_axis], shape[piece_axis] = num_blocks, pieces
  products = tf.constant(rng.normal(size=shape))
  moved = np.moveaxis(products.numpy(), [block_axis, piece_axis], [-2, -1])
  expected = sum(moved[..., p:p + frames, p] for p in range(pieces))
  with tf.GradientTape(persistent=True) as tape:
    tape.watch(products)
    ours = blocks.diagonal_sum(products, frames, block_axis, piece_axis)
    out_axis = block_axis % 4 - (piece_axis % 4 < block_axis % 4)
    ours_moved = tf.experimental.numpy.moveaxis(ours, out_axis, -1)
    moved_tf = tf.experimental.numpy.moveaxis(
        products, [block_axis, piece_axis], [-2, -1])
    reference = tf.add_n([moved_tf[..., p:p + frames, p]
                          for p in range(pieces)])
    weights = tf.constant(rng.normal(size=reference.shape))
    loss, reference_loss = (tf.reduce_sum(x * weights)
                            for x in (ours_moved, reference))
  np.testing.assert_allclose(ours_moved, expected, rtol=1e-12)
  np.testing.assert_allclose(tape.gradient(loss, products),
                             tape.gradient(reference_loss, products),
                             rtol=1e-12)


def test_uses_blocks_only_for_strided_windows_of_few_pieces():
  assert blocks.uses_blocks(401, 160)
  assert not blocks.uses_blocks(401, 1)
  assert not blocks.uses_blocks(401, 40)  # 11 pieces > MAX_PIECES
  assert blocks.num_pieces(401, 160) == 3
