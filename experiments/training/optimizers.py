"""Adam with a learning-rate multiplier for a chosen group of variables.

Scaling a group's gradients would not change Adam's steps (Adam divides by
the gradients' running RMS, so it is invariant to their scale); the
multiplier has to act on the step itself. `GroupScaledAdam` is Keras' Adam
whose update of the chosen variables uses `learning_rate * multiplier`: one
optimizer, one iteration counter and one set of slots, so that checkpoints,
loss scaling (mixed precision) and tf.distribute work as with plain Adam.

Used by experiments/training/job.py for `train.frontend_learning_rate_multiplier`
(the frontend's variables are the group) and, through `stage_groups`, for
`train.frontend_stage_learning_rates` (one group per stage of a
`leaf_audio.Frontend`; a stage at 0 is frozen outright, see
`freeze_stages`).
"""

from typing import Iterable, Mapping, Optional, Sequence, Tuple

import keras

from leaf_audio import frontend as frontend_lib

# The stages a rate may name: the attributes of leaf_audio.Frontend.
STAGE_NAMES = tuple(frontend_lib.STAGES)


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
    groups: optional more (variables, multiplier) pairs, each as
      scaled_variables and multiplier; a variable in several groups takes
      the last group's multiplier.
    **kwargs: passed to keras.optimizers.Adam.

  Example:
    >>> dense = keras.layers.Dense(2)
    >>> dense.build((None, 3))
    >>> optimizer = GroupScaledAdam(1e-3, [dense.kernel], 0.1)
  """

  def __init__(self, learning_rate, scaled_variables: Iterable,
               multiplier: float,
               groups: Optional[Sequence[Tuple[Iterable, float]]] = None,
               **kwargs):
    super().__init__(learning_rate=learning_rate, **kwargs)
    self.multiplier = _check_multiplier(multiplier)
    self._multipliers = {}
    for variables, value in [(scaled_variables, multiplier)] + list(
        groups or ()):
      value = _check_multiplier(value)
      for variable in variables:
        self._multipliers[self._var_key(variable)] = value

  def multiplier_of(self, variable) -> float:
    """The factor on `variable`'s learning rate (1 outside every group)."""
    return self._multipliers.get(self._var_key(variable), 1.0)

  def update_step(self, gradient, variable, learning_rate):
    multiplier = self._multipliers.get(self._var_key(variable))
    if multiplier is not None and multiplier != 1.0:
      learning_rate = learning_rate * multiplier
    super().update_step(gradient, variable, learning_rate)


def _check_multiplier(value) -> float:
  if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
      float(value) >= 0.0) or value == float('inf'):
    raise ValueError('GroupScaledAdam expects every multiplier >= 0; got '
                     f'{value!r} (multipliers must be finite numbers).')
  return float(value)


def check_stage_rates(frontend, stage_rates: Optional[Mapping]) -> dict:
  """Validates `train.frontend_stage_learning_rates` against `frontend`.

  Args:
    frontend: the frontend layer of the run.
    stage_rates: None or a dict stage name -> multiplier (finite, >= 0).

  Returns:
    {stage name: float multiplier}, only stages the frontend has ({} for
    None).

  Raises:
    ValueError: not a dict, an unknown stage name (the valid names are
      listed), a bad multiplier, or a frontend without stages (e.g.
      MelFilterbanks) given any rate.
  """
  if not stage_rates:
    return {}
  if not isinstance(stage_rates, Mapping):
    raise ValueError(
        'train.frontend_stage_learning_rates must be a dict stage name -> '
        f"multiplier, e.g. {{'filterbank': 0, 'compression': 1}}; got "
        f'{stage_rates!r}.')
  unknown = sorted(str(name) for name in stage_rates
                   if name not in STAGE_NAMES)
  if unknown:
    raise ValueError(
        f'train.frontend_stage_learning_rates: unknown stage name(s) '
        f'{unknown}; valid names are {list(STAGE_NAMES)}.')
  if not isinstance(frontend, frontend_lib.Frontend):
    raise ValueError(
        'train.frontend_stage_learning_rates needs a frontend composed of '
        f'stages (leaf_audio.Frontend, e.g. Leaf); {type(frontend).__name__} '
        'has none. Use train.frontend_learning_rate_multiplier instead.')
  rates = {}
  for name, value in stage_rates.items():
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
        0.0 <= float(value) < float('inf')):
      raise ValueError(
          f'train.frontend_stage_learning_rates[{name!r}] must be a finite '
          f'number >= 0; got {value!r}.')
    rates[name] = float(value)
  return rates


def freeze_stages(frontend, rates: Mapping[str, float]) -> list:
  """Sets trainable = False on every stage whose rate is 0.

  Frozen means nothing of the stage changes: its weights leave the
  trainable variables (no optimizer step, no Adam slots), and its
  non-trainable statistics stay too (a Keras BatchNormalization inside a
  non-trainable layer runs in inference mode; precise BatchNorm skips it).

  Returns:
    The names of the frozen stages that exist in `frontend`.
  """
  frozen = []
  for name, rate in rates.items():
    stage = getattr(frontend, name)
    if rate == 0.0 and stage is not None:
      stage.trainable = False
      frozen.append(name)
  return frozen


def stage_groups(frontend, rates: Mapping[str, float],
                 frontend_multiplier: float) -> list:
  """(variables, multiplier) per stage with a non-zero rate.

  A stage's multiplier is frontend_multiplier * its rate, so
  `train.frontend_learning_rate_multiplier` still scales the whole frontend.
  """
  groups = []
  for name, rate in rates.items():
    stage = getattr(frontend, name)
    if rate > 0.0 and stage is not None:
      groups.append((stage.trainable_variables, frontend_multiplier * rate))
  return groups
