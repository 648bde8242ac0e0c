"""Adam with a learning-rate multiplier for a chosen group of variables.

Scaling a group's gradients would not change Adam's steps (Adam divides by
the gradients' running RMS, so it is invariant to their scale); the
multiplier has to act on the step itself. `GroupScaledAdam` is Keras' Adam
whose update of the chosen variables uses `learning_rate * multiplier`: one
optimizer, one iteration counter and one set of slots, so that checkpoints,
loss scaling (mixed precision) and tf.distribute work as with plain Adam.

Used by experiments/training/job.py for `train.frontend_learning_rate_multiplier`
(the frontend's variables are the group).
"""

from typing import Iterable

import keras


class GroupScaledAdam(keras.optimizers.Adam):
  """Keras Adam; the variables in `scaled_variables` step `multiplier` times
  as far.

  Args:
    learning_rate: Adam's learning rate for every other variable (float or
      schedule).
    scaled_variables: the variables whose learning rate is multiplied
      (e.g. a frontend layer's trainable_variables).
    multiplier: float >= 0; 0 freezes the group (its weights never move,
      its Adam moments still accumulate), 1 is plain Adam.
    **kwargs: passed to keras.optimizers.Adam.

  Example:
    >>> dense = keras.layers.Dense(2)
    >>> dense.build((None, 3))
    >>> optimizer = GroupScaledAdam(1e-3, [dense.kernel], 0.1)
  """

  def __init__(self, learning_rate, scaled_variables: Iterable,
               multiplier: float, **kwargs):
    super().__init__(learning_rate=learning_rate, **kwargs)
    multiplier = float(multiplier)
    if not multiplier >= 0.0:
      raise ValueError('GroupScaledAdam expects multiplier >= 0; got '
                       f'{multiplier!r}.')
    self.multiplier = multiplier
    self._scaled_keys = frozenset(
        self._var_key(variable) for variable in scaled_variables)

  def update_step(self, gradient, variable, learning_rate):
    if self._var_key(variable) in self._scaled_keys:
      learning_rate = learning_rate * self.multiplier
    super().update_step(gradient, variable, learning_rate)
