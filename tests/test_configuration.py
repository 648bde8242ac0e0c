"""Tests for experiments/gin_files.py: gin files with clear errors."""

import gin
import pytest

from experiments import configurables  # pylint: disable=unused-import
from experiments import gin_files as configuration
from experiments.training import job as training  # pylint: disable=unused-import  # Registers train.
import experiments_helpers as helpers


@pytest.fixture(autouse=True)
def clean_gin():
  gin.clear_config()
  yield
  gin.clear_config()


def test_a_missing_include_names_itself_and_the_including_file(tmp_path):
  inner = tmp_path / 'inner.gin'
  inner.write_text("# The task.\n\ninclude 'gin_configs/leaff.gin'\n")
  outer = tmp_path / 'outer.gin'
  outer.write_text(f"include 'gin_configs/common.gin'\ninclude '{inner}'\n")
  with pytest.raises(configuration.GinConfigError, match=(
      rf'file "{inner}", line 3: include \'gin_configs/leaff.gin\' names no '
      r'file.*Did you mean gin_configs/leaf.gin')):
    configuration.parse([str(outer)])


def test_includes_resolve_from_the_repository_root(tmp_path):
  config = tmp_path / 'mine.gin'
  config.write_text("include 'gin_configs/default.gin'\n"
                    'train.batch_size = 3\n')
  configuration.parse([str(config)])
  assert gin.query_parameter('train.batch_size') == 3


def test_the_train_cli_prints_one_line_for_a_missing_include(tmp_path):
  config = tmp_path / 'broken.gin'
  config.write_text("include 'nowhere/at_all.gin'\n")
  result = helpers.run_module_in_process('experiments.train',
                                         f'--gin_config={config}',
                                         f'--model_dir={tmp_path / "run"}')
  assert result.returncode != 0 and 'Traceback' not in result.stderr
  assert result.stderr.strip().splitlines()[-1] == (
      f'error: file "{config}", line 1: include \'nowhere/at_all.gin\' names '
      'no file (looked in the current directory and the repository root '
      f'{str(helpers.REPO_ROOT)!r}).')
  assert not (tmp_path / 'run').exists()


def _configured_classifier():
  """The classifier as training builds it, from the parsed configuration."""
  import leaf_audio  # pylint: disable=g-import-not-at-top
  from experiments import models  # pylint: disable=g-import-not-at-top
  return configurables.configured(models.AudioClassifier)(
      frontend=leaf_audio.MelFilterbanks(), encoder=None, num_outputs=2,
      **training._default_normalization())  # pylint: disable=protected-access


def test_a_gin_bound_normalization_takes_effect_and_unbound_runs_record_the_same():
  gin.clear_config()
  try:
    gin.parse_config('AudioClassifier.normalization = None')
    assert _configured_classifier().normalization is None
    gin.clear_config()
    gin.parse_config('LoudnessNormalization.target_db = 10.0')
    normalization = _configured_classifier().normalization
    assert normalization.target_db == 10.0
    # Unbound, training passes the configured layer as earlier versions did:
    # a run's recorded bindings (run.json) do not change, so it resumes.
    operative = gin.operative_config_str()
    assert 'LoudnessNormalization.target_db = 10.0' in operative
    assert 'AudioClassifier.normalization' not in operative
  finally:
    gin.clear_config()
