"""Every frontend configuration the repository offers works everywhere.

The configurations are discovered, not listed: every frontend gin file in
gin_configs/, every named `compression` of `EfficientLeaf`
(`efficient_leaf.COMPRESSIONS`) and the same choices on `Leaf`, every
composed `Frontend` that a Python block of README.md or docs/ builds, and
compositions of public stages. Each one, through the stage interface only:

  geometry   sample_rate, hop_samples, window_samples (ints) and the frame
             count they imply
  streaming  frames equal the offline ones to 1e-5, or a ValueError whose
             reason is one of REFUSALS
  plots      every figure draws, or raises a ValueError saying what the
             frontend lacks (never an AttributeError or TypeError)
  training   two steps in a classifier with the TensorBoard summaries on
             (figures, histograms of every declared parameter, drift)
  export     the trained model saves as .keras and reloads with equal outputs

Run: python -m pytest tests/test_conformance.py -q  (slow tier).
"""

import pathlib
import re

import gin
import keras
import numpy as np
import pytest
import tensorflow as tf

import leaf_audio
from conftest import REPO_ROOT
from experiments import models
from experiments.training import job  # pylint: disable=unused-import  (gin: train)
from experiments.training import tensorboard_figures
from leaf_audio import efficient_leaf
from leaf_audio import plotting
from leaf_audio import stages
from leaf_audio import streaming

# The stated refusals: what cannot stream, and why.
REFUSALS = {
    'valid pooling': "'valid' padding",
    "LogTBN's median over the clip": 'median over all the frames',
    'per-clip mean/variance normalisation': 'normalises each clip',
}
PLOTS = ('plot_filter_responses', 'plot_centre_frequencies', 'plot_pooling',
         'plot_pcen', 'plot_parameters')


def gin_frontends():
  """{'gin:<file>': factory} for every gin file that sets train.frontend."""
  found = {}
  for path in sorted((REPO_ROOT / 'gin_configs').glob('*.gin')):
    if not re.search(r'^train\.frontend\s*=', path.read_text(), re.M):
      continue

    def factory(path=path):
      with gin.unlock_config():
        gin.clear_config()
        gin.parse_config_files_and_bindings(
            [str(REPO_ROOT / 'gin_configs' / 'common.gin'), str(path)], [],
            skip_unknown=True)
        made = gin.query_parameter('train.frontend').scoped_configurable_fn()
        gin.clear_config()
      return made

    found[f'gin:{path.stem}'] = factory
  return found


def compression_choices():
  """Each named compression of EfficientLeaf, on EfficientLeaf and Leaf.

  Small (8 filters, 2 groups): what is checked is the compression; the
  full-size frontends are the gin files'.
  """
  found = {}
  for choice in efficient_leaf.COMPRESSIONS:
    found[f'EfficientLeaf:{choice}'] = (
        lambda c=choice: leaf_audio.EfficientLeaf(n_filters=8, num_groups=2,
                                                  compression=c))
    found[f'Leaf:{choice}'] = lambda c=choice: leaf_audio.Leaf(
        n_filters=8, compression=efficient_leaf._named_compression(  # pylint: disable=protected-access
            c, keras.dtype_policies.get('float32')))
  return found


def documented_compositions():
  """Every composed Frontend a Python block of README.md or docs/ builds."""
  found = {}
  pages = [REPO_ROOT / 'README.md'] + sorted(
      (REPO_ROOT / 'docs').glob('*.md'))
  fence = re.compile(r'^```python\n(.*?)^```', re.M | re.S)
  for page in pages:
    if page.name == 'api.md':
      continue
    for index, block in enumerate(fence.findall(page.read_text())):
      if not re.search(r'(?<!Streaming)Frontend\(', block):
        continue

      def factory(block=block):
        namespace = {}
        exec(compile(block, str(page), 'exec'), namespace)  # pylint: disable=exec-used
        built = [value for value in namespace.values()
                 if type(value) is leaf_audio.Frontend]  # pylint: disable=unidiomatic-typecheck
        assert len(built) == 1, built
        # A fresh copy: the block may have called (and built) it.
        layer = built[0]
        return type(layer).from_config(layer.get_config())

      found[f'docs:{page.name}:{index}'] = factory
  return found


def public_compositions():
  return {
      'gabor+gaussian+pcen': lambda: leaf_audio.Frontend(
          filterbank=leaf_audio.GaborConv1D(filters=16, kernel_size=401),
          activation=leaf_audio.SquaredModulus(),
          pooling=leaf_audio.GaussianLowpassPooling(401, 160),
          compression=leaf_audio.PCENCompression(trainable=True)),
      'sinc+gaussian+log': lambda: leaf_audio.Frontend(
          filterbank=leaf_audio.SincConv1D(filters=16, kernel_size=401),
          activation=keras.layers.LeakyReLU(0.2),
          pooling=leaf_audio.GaussianLowpassPooling(401, 160),
          compression=leaf_audio.LogCompression()),
      'grouped+pcen': lambda: leaf_audio.Frontend(
          filterbank=leaf_audio.GroupedGaborFilterbank(
              n_filters=8, window_size=401, hop=160, num_groups=2),
          compression=leaf_audio.PCENCompression(
              trainable=True, parameterization='log')),
  }


def configurations():
  found = {}
  for source in (gin_frontends(), compression_choices(),
                 documented_compositions(), public_compositions()):
    found.update(source)
  return found


CONFIGURATIONS = configurations()


def test_the_discovery_finds_every_configuration():
  names = sorted(CONFIGURATIONS)
  # 6 frontend gin files (efficient_leaf, leaf, mel, sincnet, sincnet_plus,
  # tfbanks), 3 compressions x 2 frontends, the README's and
  # docs/extending.md's compositions, 3 compositions of public stages.
  assert len([n for n in names if n.startswith('gin:')]) == 6, names
  assert len([n for n in names if ':' in n and n.split(':')[0] in (
      'EfficientLeaf', 'Leaf')]) == 6, names
  assert len([n for n in names if n.startswith('docs:')]) == 2, names
  assert len(names) == 17, names


def _frames(frontend, samples):
  framer = frontend.pooling or frontend.filterbank
  padding = stages.of(framer).stage_geometry().padding
  hop, window = frontend.hop_samples, frontend.window_samples
  if padding == 'valid':
    return (samples - window) // hop + 1
  return -(-samples // hop)


def _check_streaming(frontend, clip):
  try:
    stream = streaming.StreamingFrontend(frontend)
  except ValueError as error:
    reasons = [name for name, text in REFUSALS.items() if text in str(error)]
    assert reasons, f'unlisted refusal: {error}'
    return reasons[0]
  streamer = streaming.Streamer(stream)
  pushed = [streamer.push(clip[:, start:start + 700])
            for start in range(0, clip.shape[1], 700)]
  streamed = np.concatenate(pushed + [streamer.flush()], axis=1)
  np.testing.assert_allclose(streamed, frontend(clip), rtol=0, atol=1e-5)
  return 'streams'


def _check_plots(frontend, initial, clip):
  drawn = []
  for name in PLOTS:
    try:
      getattr(plotting, name)(frontend, initial)
    except ValueError as error:
      assert 'has no' in str(error), (name, error)
    else:
      drawn.append(name)
  plotting.plot_representation(frontend, clip[0])
  return drawn


@pytest.mark.slow
@pytest.mark.parametrize('name', sorted(CONFIGURATIONS))
def test_configuration_works_everywhere(name, tmp_path):
  frontend = CONFIGURATIONS[name]()
  rate = frontend.sample_rate
  rng = np.random.default_rng(0)
  samples = 20 * frontend.hop_samples  # whole hops: exact streaming
  clip = (0.1 * rng.standard_normal([2, samples])).astype(np.float32)

  # Geometry.
  for value in (frontend.hop_samples, frontend.window_samples):
    assert isinstance(value, int) and value > 0
  assert rate == 16000
  features = frontend(clip)
  assert features.shape[1] == _frames(frontend, samples)

  # Streaming, exact or a listed refusal.
  streams = _check_streaming(frontend, clip)
  if name in ('gin:tfbanks',):
    assert streams == 'valid pooling'
  if name.endswith(':logtbn') or name == 'gin:efficient_leaf':
    assert streams == "LogTBN's median over the clip"

  # Two training steps with the TensorBoard summaries, figures on.
  model = models.AudioClassifier(frontend=frontend, encoder=None,
                                 num_outputs=2)
  model.build((None, samples))
  initial = plotting.initial_frontend(frontend)
  # Graph mode without XLA: Keras' 'auto' would compile each configuration
  # with XLA on CPU, tens of seconds apiece, which is not what is checked.
  model.compile(optimizer=keras.optimizers.Adam(0.01),
                loss=keras.losses.SparseCategoricalCrossentropy(
                    from_logits=True), jit_compile=False)
  log_dir = tmp_path / 'tensorboard'
  # Two steps (a batch of one clip each), one epoch end: figures, histograms.
  model.fit(clip, np.array([0, 1]), batch_size=1, epochs=1, verbose=0,
            callbacks=[tensorboard_figures.FrontendSummaries(log_dir)])
  tags = set()
  for path in log_dir.glob('events*'):
    for event in tf.compat.v1.train.summary_iterator(str(path)):
      tags.update(value.tag for value in event.summary.value)
  for stage, parameters in plotting.stage_parameters(frontend).items():
    assert f'drift/{stage}' in tags, (stage, tags)
    for parameter in parameters:
      assert f'drift/{stage}/{parameter}' in tags, (stage, parameter)
  if frontend.trainable_weights:
    assert 'filter_responses' in tags or not hasattr(
        frontend.filterbank, 'impulse_responses'), tags

  # Plots: each draws or says what the frontend lacks.
  drawn = _check_plots(frontend, initial, clip)
  assert 'plot_filter_responses' in drawn, drawn

  # Export: the trained model saves and reloads.
  model.save(tmp_path / 'model.keras')
  reloaded = keras.saving.load_model(tmp_path / 'model.keras')
  np.testing.assert_allclose(reloaded(clip), model(clip), rtol=1e-5,
                             atol=1e-5)


def test_a_stage_built_for_another_rate_is_refused():
  with pytest.raises(ValueError, match='sample_rate=22050.*16000'):
    leaf_audio.Frontend(
        filterbank=leaf_audio.SincConv1D(filters=8, kernel_size=401,
                                         sample_rate=22050),
        sample_rate=16000)
  frontend = leaf_audio.Frontend(
      filterbank=leaf_audio.SincConv1D(filters=8, kernel_size=401,
                                       sample_rate=22050),
      pooling=leaf_audio.GaussianLowpassPooling(401, 220),
      sample_rate=22050)
  assert (frontend.sample_rate, frontend.hop_samples,
          frontend.window_samples) == (22050, 220, 401)
  restored = leaf_audio.Frontend.from_config(frontend.get_config())
  assert restored.sample_rate == 22050


def test_every_frontend_tells_its_geometry_in_samples():
  expected = {leaf_audio.Leaf: (160, 401), leaf_audio.SincNet: (160, 401),
              leaf_audio.SincNetPlus: (160, 401),
              leaf_audio.TimeDomainFilterbanks: (160, 401),
              leaf_audio.EfficientLeaf: (160, 401),
              leaf_audio.MelFilterbanks: (160, 401)}
  for cls, (hop, window) in expected.items():
    frontend = cls()
    assert (frontend.sample_rate, frontend.hop_samples,
            frontend.window_samples) == (16000, hop, window), cls
    assert (frontend.stride, frontend.window_size) == (hop, window), cls
  # Presets are Frontends, siblings rather than subclasses of Leaf.
  for cls in expected:
    assert issubclass(cls, leaf_audio.Frontend), cls
    assert cls is leaf_audio.Leaf or not issubclass(cls, leaf_audio.Leaf)
  assert not isinstance(leaf_audio.SincNetPlus(), leaf_audio.SincNet)
  at_22k = leaf_audio.Leaf(sample_rate=22050)
  assert (at_22k.hop_samples, at_22k.window_samples) == (220, 552)


def test_streaming_names_no_stage_class():
  source = pathlib.Path(streaming.__file__).read_text()
  for module in ('compression', 'convolution', 'grouped_filterbank',
                 'logtbn', 'modulus'):
    assert f'from leaf_audio import {module}\n' not in source, module
  # Its only isinstance checks are on frontends and plain Python types.
  checked = set(re.findall(r'isinstance\([^,]+,\s*([^)]+)\)', source))
  allowed = {'frontend_lib.Frontend', 'StreamingFrontend', 'dict', 'bool',
             'int',
             '(int, np.integer'}
  assert checked <= allowed, checked - allowed


def test_a_binding_of_the_former_name_compression_fn_still_works():
  # Runs and scripts written before `compression` was the one name bind
  # `compression_fn`; the gin file leaves the compression unbound for them.
  with gin.unlock_config():
    gin.clear_config()
    try:
      gin.parse_config_files_and_bindings(
          [str(REPO_ROOT / 'gin_configs' / 'common.gin'),
           str(REPO_ROOT / 'gin_configs' / 'efficient_leaf.gin')],
          ["leaf_audio.EfficientLeaf.compression_fn = 'log_pcen'",
           'leaf_audio.EfficientLeaf.n_filters = 8'], skip_unknown=True)
      with pytest.warns(DeprecationWarning, match='use compression='):
        frontend = gin.query_parameter(
            'train.frontend').scoped_configurable_fn()
    finally:
      gin.clear_config()
  frontend.build((None, None))
  declared = stages.of(frontend.compression).stage_parameters(16000)
  assert frontend.compression.parameterization == 'log'
  np.testing.assert_allclose(declared['alpha'].values, 0.96, rtol=1e-6)
