"""Tests for experiments/errors.py: typed errors, one line, stable statuses."""

import io

import gin
import pytest

from experiments import errors
from experiments import gin_files
from experiments.serving import export_directory
from experiments.training import model_files
from experiments.training import run_files


@pytest.mark.parametrize('error, status', [
    (gin_files.GinConfigError('x'), 2),
    (errors.ConfigurationError('x'), 2),
    (run_files.RunMismatchError('x'), 3),
    (run_files.RunDirectoryError('x'), 3),
    (run_files.RunFileError('x'), 4),
    (model_files.DamagedModelFileError('x'), 4),
    (errors.DataError('x'), 5),
    (export_directory.ExportDirectoryError('x'), 6),
    (errors.StorageError('x'), 7),
    (KeyboardInterrupt(), 130),
    (ValueError('x'), 1),
    (OSError('x'), 1),
])
def test_each_kind_has_its_exit_status(error, status):
  assert errors.exit_status(error) == status
  assert errors.is_reported(error) == (status not in (1, 130))


def test_the_cause_of_an_error_gin_wraps_is_one_line():

  @gin.configurable('Frontendish', module='errors_test')
  def frontendish(n_filters=40):
    if n_filters <= 0:
      raise ValueError(f'Frontendish: n_filters must be positive; got '
                       f'{n_filters}.')

  gin.clear_config()
  try:
    gin.parse_config('errors_test.Frontendish.n_filters = 0')
    with pytest.raises(ValueError) as caught:
      frontendish()  # pylint: disable=no-value-for-parameter
  finally:
    gin.clear_config()
  assert 'In call to configurable' in str(caught.value)  # gin's wrapping.
  error = errors.from_configurable(caught.value, 'building the model')
  assert isinstance(error, errors.ConfigurationError)
  assert str(error) == ('building the model (Frontendish): Frontendish: '
                        'n_filters must be positive; got 0.')
  stream = io.StringIO()
  with pytest.raises(SystemExit) as exit_:
    errors.report_and_exit(error, stream)
  assert exit_.value.code == 2
  assert stream.getvalue() == f'error: {error}\n'


def test_an_os_error_names_its_file():
  error = FileNotFoundError(2, 'No such file or directory', '/nowhere/x')
  assert errors.one_line(error) == 'No such file or directory (/nowhere/x)'
  assert errors.one_line(OSError('disk full')) == 'disk full'
