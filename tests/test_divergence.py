"""experiments/training/divergence.py: a diverged run stops non-zero, writes
nothing of the diverged epoch and exports nothing."""

import gin
import pytest

from conftest import REPO_ROOT
from experiments import configurables  # pylint: disable=unused-import
from experiments import gin_files as configuration
from experiments.training import divergence
from experiments.training import job as training
from experiments.training import run_files
import experiments_helpers as helpers

MEL = [REPO_ROOT / 'gin_configs' / n for n in ('common.gin', 'mel.gin',
                                               'convnet.gin')]


def train_in_process(model_dir, bindings):
  gin.clear_config()
  try:
    configuration.parse([str(c) for c in MEL], bindings)
    return training.train(model_dir=str(model_dir))
  finally:
    gin.clear_config()


def test_check_accepts_finite_losses_up_to_max_loss():
  divergence.check(0, 1, 2.3, 10., 'run')
  divergence.check(0, 1, 1e300, None, 'run')
  for loss, what in ((float('nan'), 'is not finite'),
                     (float('inf'), 'is not finite'),
                     (1e18, r'exceeds train.max_loss = 1e\+06')):
    with pytest.raises(divergence.RunDivergedError,
                       match=rf'epoch 3 after 7 steps is .*, which {what}'):
      divergence.check(2, 7, loss, 1e6, 'run')
  with pytest.raises(ValueError, match='train.max_loss'):
    divergence.check_max_loss(-1.)


@pytest.mark.slow
@pytest.mark.parametrize('overrides, match', [
    ({'train.learning_rate': 1e38}, 'is not finite'),
    ({'train.max_loss': 1e-3}, 'exceeds train.max_loss = 0.001'),
])
def test_a_diverged_run_ends_without_writing_the_epoch_or_exporting(
    tmp_path, tone_folder, data_dir, overrides, match):
  bindings = helpers.tiny_bindings(tone_folder, data_dir, **{
      'ConvNet.filters': '[4, 8]', 'train.num_epochs': 2,
      'train.steps_per_epoch': 3, 'train.export': True, **overrides})
  with pytest.raises(divergence.RunDivergedError, match=match):
    train_in_process(tmp_path / 'run', bindings)
  left = {path.name for path in (tmp_path / 'run').iterdir()}
  assert left <= {'run.json', 'config.gin', 'tensorboard'}, left
  assert not run_files.read_metrics_rows(tmp_path / 'run' / 'metrics.csv')
