"""Argument and input checks shared by the layers, with messages that name the
layer, the argument, what was expected and what came."""

import numbers

import keras

MAX_WINDOW_MS = 1000.


def check_positive_int(owner: str, name: str, value) -> int:
  if (isinstance(value, bool) or not isinstance(value, numbers.Integral) or
      value <= 0):
    raise ValueError(f'{owner}: {name} must be a positive integer; got '
                     f'{value!r}.')
  return int(value)


def check_positive_number(owner: str, name: str, value) -> float:
  if (isinstance(value, bool) or not isinstance(value, numbers.Real) or
      not value > 0):
    raise ValueError(f'{owner}: {name} must be a positive number; got '
                     f'{value!r}.')
  return value


def check_duration_ms(owner: str, name: str, value) -> float:
  """A window length or stride in ms: positive and at most 1 s."""
  check_positive_number(owner, name, value)
  if value > MAX_WINDOW_MS:
    raise ValueError(f'{owner}: {name} is in milliseconds and must be at most '
                     f'{MAX_WINDOW_MS:g} ms (1 s); got {value!r}.')
  return value


def check_padding(owner: str, name: str, value) -> str:
  if not isinstance(value, str) or value.lower() not in ('same', 'valid'):
    raise ValueError(f"{owner}: {name} must be 'same' or 'valid'; got "
                     f'{value!r}.')
  return value.lower()


def check_choice(owner: str, name: str, value, choices):
  if value not in choices:
    raise ValueError(f'{owner}: {name} must be one of {sorted(choices)}; got '
                     f'{value!r}.')
  return value


def waveform_shape(owner: str, input_shape):
  """Checks a waveform shape and returns it as [batch, samples, 1].

  Accepts [batch, samples] or [batch, samples, 1].
  """
  shape = tuple(input_shape)
  if len(shape) == 3 and shape[-1] not in (1, None):
    raise ValueError(
        f'{owner} expects mono audio of shape [batch, samples] or [batch, '
        f'samples, 1]; got shape {shape} with {shape[-1]} channels. Downmix '
        'to one channel first (for example, average the channels).')
  if len(shape) not in (2, 3):
    raise ValueError(
        f'{owner} expects audio of shape [batch, samples] or [batch, samples,'
        f' 1]; got shape {shape} (rank {len(shape)}).')
  if shape[1] is not None and shape[1] < 1:
    raise ValueError(f'{owner} expects at least one sample; got shape {shape}.')
  return (shape[0], shape[1], 1)


def check_float_waveform(owner: str, dtype) -> None:
  """Rejects integer PCM and other non-float audio."""
  dtype = keras.backend.standardize_dtype(dtype)
  if 'float' not in dtype:
    raise TypeError(
        f'{owner} expects floating-point audio in [-1, 1]; got dtype {dtype}.'
        ' Integer PCM must be scaled first, e.g. int16 samples / 32768.0.')
