"""What earlier versions wrote keeps working: gin files that import
experiments.configurables, `python -m experiments.<binary>` commands, run
folders (tests/data/legacy_run) and the messages about defaults that changed.
(.keras files of earlier versions: tests/test_legacy_keras.py.)
"""

import json
import shutil

import gin
import pytest
import tensorflow as tf

from conftest import REPO_ROOT
from experiments import configurables  # pylint: disable=unused-import
from experiments import gin_files
from experiments.data import synthetic
from experiments.training import job
from experiments.training import run_files
import experiments_helpers as helpers

LEGACY_RUN = REPO_ROOT / 'tests' / 'data' / 'legacy_run' / 'mel_convnet'
# The command that made LEGACY_RUN (tests/data/legacy_run/README.md).
LEGACY_CONFIGS = [str(REPO_ROOT / 'gin_configs' / name) for name in (
    'common.gin', 'mel.gin', 'convnet.gin', 'tasks/leaf_synthetic.gin')]
LEGACY_BINDINGS = [
    'train.num_epochs = 1', 'train.steps_per_epoch = 2',
    'train.batch_size = 4', 'train.window_seconds = 0.3',
    'ConvNet.filters = [4, 8]', 'train.precise_batch_norm_batches = 2',
    'train.export = False', 'train.verbose = 0']
# Each binary and one of its own flags.
# A flag each binary's --helpshort lists (the shared ones are declared key
# flags of every binary that takes them).
ENTRY_POINTS = {'train': '--model_dir', 'export': '--export_dir',
                'predict': '--model', 'stream': '--model',
                'inspect': '--model_dir', 'compare_frontends': '--runs_dir'}


def test_an_old_gin_file_importing_configurables_still_parses(tmp_path):
  old = tmp_path / 'my_run.gin'
  old.write_text('import experiments.configurables\n'
                 "include 'gin_configs/common.gin'\n"
                 'train.frontend = @leaf_audio.Leaf\n'
                 'train.encoder = @ConvNet\n'
                 'leaf_audio.Leaf.n_filters = 20\n')
  gin.clear_config()
  try:
    gin_files.parse([str(old)])
    assert gin.query_parameter('train.frontend').selector == (
        'leaf_audio.Leaf')
    assert gin.query_parameter('leaf_audio.Leaf.n_filters') == 20
    assert gin.get_bindings('leaf_audio.Leaf')['n_filters'] == 20
    assert gin.query_parameter('train.batch_size') == 64  # From common.gin.
  finally:
    gin.clear_config()


def test_a_changed_default_is_named_with_how_to_pin_it(tmp_path):
  identity = {'frontend': 'Leaf', 'bindings': {
      'leaf_audio.Leaf.n_filters': '40', 'train.seed': '0',
      'train.new_parameter': "'off'"}}
  (tmp_path / 'run.json').write_text(json.dumps({
      'frontend': 'Leaf', 'bindings': {'leaf_audio.Leaf.n_filters': '80',
                                       'train.seed': '0'}}))
  # n_filters is at today's default (40) and differs from the run's (80);
  # train.new_parameter is at its default and unknown to the old run.json.
  defaults = {'leaf_audio.Leaf.n_filters', 'train.new_parameter'}
  with pytest.raises(run_files.RunMismatchError) as error:
    run_files.check_run_identity(tmp_path, identity, defaults)
  message = str(error.value)
  assert ('bindings: leaf_audio.Leaf.n_filters: 80 there, 40 now (the '
          'default of leaf_audio.Leaf.n_filters changed since this run was '
          "made; to continue it, pin the old value: --gin_bindings="
          "'leaf_audio.Leaf.n_filters = 80')") in message
  assert 'new_parameter' not in message
  # The suggested pin is a binding gin takes, and with it the run is the same.
  gin.clear_config()
  try:
    gin.parse_config('leaf_audio.Leaf.n_filters = 80')
    assert gin.query_parameter('leaf_audio.Leaf.n_filters') == 80
  finally:
    gin.clear_config()
  identity['bindings']['leaf_audio.Leaf.n_filters'] = '80'
  assert run_files.check_run_identity(tmp_path, identity, {
      'train.new_parameter'})
  # A value the user set is not a default: no pin is suggested.
  identity['bindings']['leaf_audio.Leaf.n_filters'] = '20'
  with pytest.raises(run_files.RunMismatchError,
                     match=r'n_filters: 80 there, 20 now\. Use a new'):
    run_files.check_run_identity(tmp_path, identity, {'train.new_parameter'})


@pytest.mark.slow
def test_every_binary_still_runs_as_python_m():
  """Each entry point runs as `python -m experiments.<name>` (absl's
  --helpshort prints the module's flags and exits with status 1). The
  training binary starts as its own process; the others run as __main__ in
  this one (experiments_helpers.run_module_in_process), which is what
  `python -m` does after TensorFlow's import."""
  process = helpers.run_module('experiments.train', '--helpshort')
  assert process.returncode == 1 and 'Traceback' not in process.stderr, (
      process.stderr)
  assert f'{ENTRY_POINTS["train"]}:' in process.stdout, process.stdout
  for name in sorted(set(ENTRY_POINTS) - {'train'}):
    result = helpers.run_module_in_process(f'experiments.{name}',
                                           '--helpshort')
    assert result.returncode == 1, (name, result.stderr)
    assert f'{ENTRY_POINTS[name]}:' in result.stdout, (name, result.stdout)


@pytest.fixture(scope='module')
def tiny_synthetic(tmp_path_factory):
  """A TFDS data dir with LeafSynthetic of a few clips per split."""
  data_dir = tmp_path_factory.mktemp('tfds')
  with pytest.MonkeyPatch.context() as patch:
    patch.setattr(synthetic, 'SPLIT_SIZES',
                  {'train': 8, 'validation': 4, 'test': 4})
    synthetic.LeafSynthetic(data_dir=str(data_dir)).download_and_prepare()
  return data_dir


def _train(model_dir, data_dir, bindings=()):
  gin.clear_config()
  try:
    gin_files.parse(LEGACY_CONFIGS, LEGACY_BINDINGS + [
        f"load_dataset.data_dir = '{data_dir}'", *bindings])
    return job.train(model_dir=str(model_dir))
  finally:
    gin.clear_config()


@pytest.mark.slow
def test_a_run_folder_of_an_earlier_version_resumes(tmp_path, tiny_synthetic):
  model_dir = tmp_path / 'run'
  shutil.copytree(LEGACY_RUN, model_dir)
  old_row = (LEGACY_RUN / 'metrics.csv').read_text().splitlines()[1]
  # As if the run had been made when ConvNet's default momentum was 0.9.
  changed = tmp_path / 'changed'
  shutil.copytree(LEGACY_RUN, changed)
  run = json.loads((changed / 'run.json').read_text())
  run['bindings']['ConvNet.batch_norm_momentum'] = '0.9'
  (changed / 'run.json').write_text(json.dumps(run))
  with pytest.raises(run_files.RunMismatchError,
                     match=r"pin the old value: --gin_bindings="
                     r"'ConvNet.batch_norm_momentum = 0.9'"):
    _train(changed, tiny_synthetic)

  _train(model_dir, tiny_synthetic, ['train.num_epochs = 2'])
  rows = (model_dir / 'metrics.csv').read_text().splitlines()
  assert rows[1] == old_row  # The old epoch is kept as it was.
  assert [row.split(',')[0] for row in rows[1:]] == ['0', '1']
  reader = tf.train.load_checkpoint(str(model_dir / 'checkpoints'))
  assert [int(reader.get_tensor(key)) for key in
          reader.get_variable_to_shape_map() if key.startswith('epoch/')] == [2]
  assert json.loads((model_dir / 'last.keras.json').read_text()) == {
      'epoch': 2}
  assert (model_dir / 'run.json').read_text() == (
      LEGACY_RUN / 'run.json').read_text()
