import numpy as np
import pytest
import tensorflow as tf

from leaf_audio import modulus


def test_squared_modulus_of_interleaved_channels():
  x = np.random.default_rng(0).standard_normal((2, 7, 10)).astype(np.float32)
  expected = x[..., 0::2]**2 + x[..., 1::2]**2
  out = modulus.SquaredModulus()(x)
  assert out.shape == (2, 7, 5)
  np.testing.assert_allclose(out, expected, rtol=1e-6)


def test_squared_modulus_needs_pairs_of_channels():
  with pytest.raises(ValueError, match='even number of channels'):
    modulus.SquaredModulus()(tf.zeros([1, 4, 3]))
