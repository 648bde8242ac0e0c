"""SpecAugment: masks of the documented sizes, seeded, training only."""

import numpy as np
import pytest
import tensorflow as tf

from leaf_audio import augment


def runs_of_true(mask):
  """Lengths of the runs of True in a 1-D boolean array."""
  padded = np.concatenate([[False], mask, [False]]).astype(int)
  edges = np.flatnonzero(np.diff(padded))
  return edges[1::2] - edges[0::2]


def features(batch=8, frames=100, channels=40):
  return tf.constant(
      np.random.default_rng(0).random((batch, frames, channels)) + 1.,
      tf.float32)


def test_inference_is_the_identity():
  x = features()
  np.testing.assert_array_equal(augment.SpecAugment(seed=1)(x), x)


def test_frequency_masks_zero_whole_bands_of_bounded_width():
  x = features()
  layer = augment.SpecAugment(freq_mask_max_bins=7, freq_mask_count=2,
                              time_mask_count=0, time_warp_max_frames=0, seed=3)
  out = layer(x, training=True).numpy()
  zero_channels = (out == 0).all(axis=1)  # [batch, channels]
  kept = ~zero_channels
  np.testing.assert_array_equal(out.transpose(0, 2, 1)[kept],
                                x.numpy().transpose(0, 2, 1)[kept])
  assert ((out == 0) == zero_channels[:, None, :]).all()
  masked_any = False
  for example in zero_channels:
    runs = runs_of_true(example)
    assert len(runs) <= 2 and (runs <= 14).all()
    masked_any |= len(runs) > 0
  assert masked_any


def test_time_masks_respect_the_ratio_limit():
  x = features(frames=20)
  layer = augment.SpecAugment(freq_mask_count=0, time_mask_max_frames=50,
                              time_mask_count=1, time_mask_max_ratio=0.2,
                              time_warp_max_frames=0, seed=4)
  out = layer(x, training=True).numpy()
  zero_frames = (out == 0).all(axis=2)
  for example in zero_frames:
    assert (runs_of_true(example) <= 4).all()


def test_time_warp_keeps_the_ends_and_constant_signals():
  ramp = np.tile(np.arange(100, dtype=np.float32)[None, :, None], (4, 1, 3))
  layer = augment.SpecAugment(freq_mask_count=0, time_mask_count=0,
                              time_warp_max_frames=8, seed=5)
  out = layer(ramp, training=True).numpy()
  np.testing.assert_allclose(out[:, 0], ramp[:, 0])
  np.testing.assert_allclose(out[:, -1], ramp[:, -1])
  # A piecewise-linear warp of a ramp is monotonic and moves frames <= 8.
  assert (np.diff(out[..., 0], axis=1) >= 0).all()
  assert np.abs(out - ramp).max() <= 8 + 1e-4
  constant = np.full((2, 50, 3), 2.5, np.float32)
  np.testing.assert_allclose(layer(constant, training=True), constant)


def test_same_seed_same_masks():
  x = features()
  first = augment.SpecAugment(seed=11)(x, training=True)
  second = augment.SpecAugment(seed=11)(x, training=True)
  np.testing.assert_array_equal(first, second)
  layer = augment.SpecAugment(seed=11)
  assert not np.array_equal(layer(x, training=True), layer(x, training=True))


def test_invalid_arguments():
  with pytest.raises(ValueError, match='freq_mask_count'):
    augment.SpecAugment(freq_mask_count=-1)
  with pytest.raises(ValueError, match='time_mask_max_ratio'):
    augment.SpecAugment(time_mask_max_ratio=2.)
