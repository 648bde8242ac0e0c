"""Every encoder and task config trains; runs leave the documented files; bad configs fail
clearly. Runs here are tiny (a tone folder, 2 steps) and in-process."""

import json

import gin
import keras
import numpy as np
import pytest
import tensorflow_datasets as tfds

from conftest import REPO_ROOT
from experiments.training import run_files as checkpoints
from experiments import configurables  # pylint: disable=unused-import
from experiments import gin_files as configuration
from experiments.training import job as training
import experiments_helpers as helpers

# Each test trains or exports a model: minutes in all (make test-fast skips).
pytestmark = pytest.mark.slow

GIN_DIR = REPO_ROOT / 'gin_configs'
# Every frontend gin file trains in tests/test_training_loop.py
# (test_frontend_files_compose_on_default_gin_without_warnings).




def train_in_process(model_dir, configs, bindings):
  gin.clear_config()
  try:
    configuration.parse([str(c) for c in configs], bindings)
    return training.train(model_dir=str(model_dir))
  finally:
    gin.clear_config()


def gin_file(name):
  return GIN_DIR / f'{name}.gin'


@pytest.mark.parametrize('encoder, overrides', [
    ('efficientnet_b0', {'train.window_seconds': '0.5'}),
    ('pann', {'PANNEncoder.depth': '2'}),
    ('convnet', {'ConvNet.filters': '[4, 8, 8]'}),
])
def test_every_encoder_config_trains(tmp_path, tone_folder, data_dir, encoder,
                                     overrides):
  configs = [gin_file('common'), gin_file('mel'), gin_file(encoder)]
  train_in_process(tmp_path, configs,
                   helpers.tiny_bindings(tone_folder, data_dir, **overrides))
  run = json.loads((tmp_path / 'run.json').read_text())
  assert run['encoder'] == {
      'efficientnet_b0': 'EfficientNetB0Encoder',
      'pann': 'PANNEncoder',
      'convnet': 'ConvNet'
  }[encoder]


def task_files():
  return sorted((GIN_DIR / 'tasks').glob('*.gin'))


@pytest.mark.parametrize('task', task_files(), ids=lambda p: p.stem)
def test_task_configs_parse_and_name_a_known_dataset(task):
  gin.clear_config()
  try:
    configuration.parse([str(gin_file('common')), str(task)], [])
    name = gin.query_parameter('load_dataset.name')
  finally:
    gin.clear_config()
  if name not in ('folder', 'leaf_synthetic'):
    # The builder's code ships with TFDS, so this needs no network.
    assert tfds.builder_cls(name) is not None


def test_a_run_with_another_identity_is_refused_and_left_intact(
    tmp_path, tone_folder, data_dir):
  bindings = helpers.tiny_bindings(tone_folder, data_dir)
  configs = [gin_file('common'), gin_file('mel')]
  train_in_process(tmp_path, configs, bindings)
  before = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
  with pytest.raises(checkpoints.RunMismatchError,
                     match="frontend: 'MelFilterbanks' there, 'Leaf' now"):
    train_in_process(tmp_path, [gin_file('common'), gin_file('leaf')],
                     bindings)
  after = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
  assert after == before


def test_more_epochs_continue_a_finished_run(tmp_path, tone_folder, data_dir):
  configs = [gin_file('common'), gin_file('mel')]
  train_in_process(tmp_path, configs,
                   helpers.tiny_bindings(tone_folder, data_dir))
  train_in_process(tmp_path, configs,
                   helpers.tiny_bindings(tone_folder, data_dir,
                                         **{'train.num_epochs': '2'}))
  epochs = [
      line.split(',')[0]
      for line in (tmp_path / 'metrics.csv').read_text().splitlines()[1:]
  ]
  assert epochs == ['0', '1']
  assert json.loads((tmp_path / 'last.keras.json').read_text())['epoch'] == 2


def test_multi_label_tasks_report_map_auc_and_d_prime(tmp_path, data_dir):
  metrics = train_in_process(
      tmp_path, [gin_file('common'), gin_file('mel')],
      helpers.tiny_bindings(
          'unused', data_dir, **{
              'load_dataset.name': "'tiny_tags'",
              'load_dataset.folder': 'None'
          }))
  assert set(metrics) == {'map', 'auc', 'd_prime'}
  assert all(np.isfinite(list(metrics.values())))
  assert json.loads((tmp_path / 'run.json').read_text())['multi_label']


class TinyTags(tfds.core.GeneratorBasedBuilder):
  """A multi-label set: each clip holds a 300 Hz and/or a 3 kHz tone."""
  VERSION = tfds.core.Version('1.0.0')

  def _info(self):
    return tfds.core.DatasetInfo(
        builder=self,
        features=tfds.features.FeaturesDict({
            'audio': tfds.features.Audio(shape=(None,), dtype=np.int16,
                                         sample_rate=16000),
            'label': tfds.features.Sequence(
                tfds.features.ClassLabel(names=['low', 'high'])),
        }))

  def _split_generators(self, dl_manager):
    del dl_manager
    return {'train': self._generate_examples(0),
            'test': self._generate_examples(1)}

  def _generate_examples(self, seed):
    rng = np.random.default_rng(seed)
    for i in range(12):
      labels = [[0], [1], [0, 1]][i % 3]
      clip = sum(helpers.tone([300., 3000.][k], 0.5, rng) for k in labels)
      yield i, {'audio': (clip * 16000).astype(np.int16), 'label': labels}


@pytest.mark.parametrize('bindings, match', [
    (['train.batchsize = 4'], r"batchsize.*Did you mean 'batch_size'"),
    (['train.frontend = @leaf_audio.Leafx'],
     r"Leafx.*Did you mean 'leaf_audio.Leaf'"),
    (['train.batch_size = (4'], 'binding'),
])
def test_bad_bindings_get_clear_errors(bindings, match):
  gin.clear_config()
  with pytest.raises(configuration.GinConfigError, match=match):
    configuration.parse([str(gin_file('common'))], bindings)
  gin.clear_config()


def test_bad_gin_files_get_clear_errors(tmp_path):
  gin.clear_config()
  with pytest.raises(configuration.GinConfigError,
                     match=r"not found: 'gin_configs/lef.gin'.*leaf.gin"):
    configuration.parse(['gin_configs/lef.gin'])
  broken = tmp_path / 'broken.gin'
  broken.write_text('train.batch_size = 4\n\nConvNett.filters = [4]\n')
  with pytest.raises(configuration.GinConfigError,
                     match=r'(?s)broken.gin", line 3.*ConvNet'):
    configuration.parse([str(broken)])
  gin.clear_config()


def test_unknown_dataset_and_empty_folder_get_clear_errors(tmp_path, data_dir):
  with pytest.raises(ValueError, match="speech_commands"):
    train_in_process(tmp_path / 'a', [gin_file('common'), gin_file('mel')],
                     ["load_dataset.name = 'speech_comands'"])
  empty = tmp_path / 'empty'
  empty.mkdir()
  with pytest.raises(ValueError, match=str(empty)):
    train_in_process(tmp_path / 'b', [gin_file('common'), gin_file('mel')],
                     helpers.tiny_bindings(empty, data_dir))
  assert not (tmp_path / 'b').exists() or not any((tmp_path / 'b').iterdir())


def test_frontend_sample_rate_must_match_the_data(tmp_path, tone_folder,
                                                  data_dir):
  bindings = helpers.tiny_bindings(
      tone_folder, data_dir, **{'leaf_audio.MelFilterbanks.sample_rate': 8000})
  with pytest.raises(ValueError, match='8000 Hz.*16000 Hz'):
    train_in_process(tmp_path, [gin_file('common'), gin_file('mel')], bindings)


def test_mixed_precision_training_keeps_float32_frontend_and_finite_loss(
    tmp_path, tone_folder, data_dir):
  configs = [gin_file('common'), gin_file('leaf'), gin_file('convnet')]
  metrics = train_in_process(
      tmp_path, configs,
      helpers.tiny_bindings(tone_folder, data_dir, **{
          'train.mixed_precision': 'True',
          'ConvNet.filters': '[4, 8]'
      }))
  assert keras.mixed_precision.global_policy().name == 'float32'  # Restored.
  model = keras.saving.load_model(tmp_path / 'best.keras')
  assert model.frontend.compute_dtype == 'float32'
  assert model.encoder.compute_dtype == 'float16'
  losses = [float(line.split(',')[2]) for line in
            (tmp_path / 'metrics.csv').read_text().splitlines()[1:]]
  assert np.isfinite(losses).all() and np.isfinite(metrics['accuracy'])
