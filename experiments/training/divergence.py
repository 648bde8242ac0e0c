"""A run whose training loss is non-finite or explodes stops, non-zero.

Training on past a NaN or inf loss only spreads it into every weight, and an
exploded loss (1e18 for a cross-entropy that starts near ln(classes)) means
the weights are useless: exporting either as if the run had succeeded would
serve garbage. `check` is called at the end of every epoch and before every
mid-epoch checkpoint, so a diverged model never reaches a checkpoint,
metrics.csv, best.keras, last.keras or the export; the files of the epochs
before stay as they were.
"""

import math
import numbers
from typing import Optional

from experiments import errors

# train.max_loss's default: far above any sane mean cross-entropy (2.3 at
# chance for 10 classes) yet far below an explosion.
DEFAULT_MAX_LOSS = 1e6


class RunDivergedError(errors.DivergedError):
  """The mean training loss of an epoch is non-finite or above max_loss."""


def check_max_loss(max_loss) -> Optional[float]:
  """train.max_loss: a positive number, or None (only non-finite stops)."""
  if max_loss is None:
    return None
  if (isinstance(max_loss, bool) or not isinstance(max_loss, numbers.Real) or
      not 0 < max_loss < math.inf):
    raise ValueError('train.max_loss must be a positive number or None; got '
                     f'{max_loss!r}.')
  return float(max_loss)


def check(epoch: int, step: int, loss: float, max_loss: Optional[float],
          model_dir) -> None:
  """Raises RunDivergedError if `loss` is non-finite or above max_loss.

  Args:
    epoch: 0-based epoch of the loss.
    step: steps of that epoch done.
    loss: the mean training loss so far in that epoch.
    max_loss: the largest acceptable mean loss, or None.
    model_dir: the run's folder, named in the message.
  """
  loss = float(loss)
  if math.isfinite(loss) and (max_loss is None or loss <= max_loss):
    return
  what = ('is not finite' if not math.isfinite(loss) else
          f'exceeds train.max_loss = {max_loss:g}')
  raise RunDivergedError(
      f'training diverged: the mean loss of epoch {epoch + 1} after {step} '
      f'steps is {loss:g}, which {what}. The run stops without writing this '
      f'epoch or exporting; {model_dir} keeps the files of the epochs '
      'before. Start again in a new --model_dir with a lower '
      'train.learning_rate (or mixed precision off, or a larger '
      'train.max_loss if such losses are expected).')
