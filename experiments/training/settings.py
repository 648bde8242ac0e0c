"""The checked arguments of `train()`: one object the phases of a run read.

`Settings.checked` validates every argument of `train` (set from .gin files)
before anything is built or written, and raises a ConfigurationError naming
the binding, e.g. "train.num_epochs must be a positive integer; got 0."
"""

import dataclasses
import numbers
from typing import Any, Callable, Optional

import tensorflow as tf

from experiments import errors
from experiments import storage
from experiments.training import distribution
from experiments.training import divergence
from experiments.training import run_files


def _positive_int(name, value, allow_none=False):
  if allow_none and value is None:
    return None
  if (isinstance(value, bool) or not isinstance(value, numbers.Integral) or
      value <= 0):
    expected = 'a positive integer' + (' or None' if allow_none else '')
    raise errors.ConfigurationError(
        f'train.{name} must be {expected}; got {value!r}.')
  return int(value)


def _non_negative_int(name, value):
  if (isinstance(value, bool) or not isinstance(value, numbers.Integral) or
      value < 0):
    raise errors.ConfigurationError(
        f'train.{name} must be an integer >= 0; got {value!r}.')
  return int(value)


def _positive_number(name, value):
  if (isinstance(value, bool) or not isinstance(value, numbers.Real) or
      not value > 0 or value == float('inf')):
    raise errors.ConfigurationError(
        f'train.{name} must be a positive number; got {value!r}.')
  return float(value)


def _non_negative_number(name, value):
  if (isinstance(value, bool) or not isinstance(value, numbers.Real) or
      not value >= 0):
    raise errors.ConfigurationError(
        f'train.{name} must be a number >= 0; got {value!r}.')
  return float(value)


def _boolean(name, value):
  if not isinstance(value, bool):
    raise errors.ConfigurationError(
        f'train.{name} must be True or False; got {value!r}.')
  return value


def _resume_from(name):
  if name is not None and name not in run_files.KERAS_FILES:
    raise errors.ConfigurationError(
        f'train.resume_from must be None or one of {run_files.KERAS_FILES}; '
        f'got {name!r}.')
  return name


def _max_loss(value):
  try:
    return divergence.check_max_loss(value)
  except ValueError as error:
    raise errors.ConfigurationError(str(error)) from error


def _verbosity(verbose) -> int:
  if verbose == 'auto':
    return 1
  if verbose in (0, 1, 2) and not isinstance(verbose, bool):
    return int(verbose)
  raise errors.ConfigurationError(
      f"train.verbose must be 'auto', 0, 1 or 2; got {verbose!r}.")


@dataclasses.dataclass(frozen=True)
class Settings:
  """What a run is asked to do; see `train` for each argument.

  Attributes:
    model_dir: str, the run folder: `~` expanded, absolute when local, a URL
      (gs://...) as given.
    strategy: the tf.distribute strategy.
    chief: whether this process writes the run (see distribution.is_chief).
    verbosity: 0 silent, 1 progress bar, 2 one line per epoch.
    The others as the arguments of `train` of the same names, checked.
  """
  model_dir: str
  strategy: Any
  chief: bool
  frontend: Callable
  encoder: Optional[Callable]
  batch_size: int
  learning_rate: float
  frontend_learning_rate_multiplier: float
  frontend_stage_learning_rates: Optional[dict]
  num_epochs: int
  steps_per_epoch: Optional[int]
  window_seconds: float
  shuffle_buffer: int
  seed: int
  mixed_precision: bool
  precise_batch_norm_batches: int
  checkpoint_steps: Optional[int]
  export: bool
  verbosity: int
  resume_from: Optional[str]
  max_loss: Optional[float]

  @classmethod
  def checked(cls, *, model_dir, strategy, frontend, encoder, batch_size,
              learning_rate, frontend_learning_rate_multiplier, num_epochs,
              steps_per_epoch, window_seconds, shuffle_buffer, seed,
              mixed_precision, precise_batch_norm_batches, checkpoint_steps,
              export, verbose, frontend_stage_learning_rates=None,
              resume_from=None,
              max_loss=divergence.DEFAULT_MAX_LOSS) -> 'Settings':
    """Checks every argument; raises errors.ConfigurationError naming it."""
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
      raise errors.ConfigurationError(
          f'train.seed must be an integer; got {seed!r}.')
    if not isinstance(model_dir, (str, bytes)) and not hasattr(
        model_dir, '__fspath__'):
      raise errors.ConfigurationError(
          f'model_dir must be a path or URL; got {model_dir!r}.')
    strategy = strategy or tf.distribute.get_strategy()
    settings = cls(
        model_dir=storage.expand(model_dir),
        strategy=strategy,
        chief=distribution.is_chief(strategy),
        frontend=frontend,
        encoder=encoder,
        batch_size=_positive_int('batch_size', batch_size),
        learning_rate=_positive_number('learning_rate', learning_rate),
        frontend_learning_rate_multiplier=_non_negative_number(
            'frontend_learning_rate_multiplier',
            frontend_learning_rate_multiplier),
        frontend_stage_learning_rates=frontend_stage_learning_rates,
        num_epochs=_positive_int('num_epochs', num_epochs),
        steps_per_epoch=_positive_int('steps_per_epoch', steps_per_epoch,
                                      allow_none=True),
        window_seconds=_positive_number('window_seconds', window_seconds),
        shuffle_buffer=_non_negative_int('shuffle_buffer', shuffle_buffer),
        seed=int(seed),
        mixed_precision=_boolean('mixed_precision', mixed_precision),
        precise_batch_norm_batches=_non_negative_int(
            'precise_batch_norm_batches', precise_batch_norm_batches),
        checkpoint_steps=_positive_int('checkpoint_steps', checkpoint_steps,
                                       allow_none=True),
        export=_boolean('export', export),
        verbosity=_verbosity(verbose),
        resume_from=_resume_from(resume_from),
        max_loss=_max_loss(max_loss))
    replicas = strategy.num_replicas_in_sync
    if settings.batch_size % replicas:
      raise errors.ConfigurationError(
          f'train.batch_size must be a multiple of the {replicas} replicas '
          'of the strategy (each replica gets an equal share); got '
          f'{settings.batch_size}.')
    return settings

  def path(self, *names) -> str:
    """A path inside model_dir: settings.path('checkpoints')."""
    return storage.join(self.model_dir, *names)
