"""`.keras` files saved before the frontends became presets still load and match.

The files in tests/data/legacy_keras/ were written by make_legacy_keras.py
with the code of 6362f62 (weights moved away from their initial values).
outputs_clip_by_clip.npz holds what that code computed from the saved files
for each clip of `input` alone (a batch of one): since the FFT method filters
each clip at its own scale, a batch's float rounding differs from 6362f62's
(by up to 8e-6 after leaf_custom's log and instance norm), while one clip's
output is the same to 1e-6 on an idle machine. Under load TF's thread pool
splits reductions differently and a few values move by up to ~2e-6, so the
check allows 1e-5 (run-to-run float noise, not a change of the function).
"""

import json
import warnings
import zipfile

import keras
import numpy as np
import pytest

import leaf_audio  # pylint: disable=unused-import  (registers the classes)
from conftest import REPO_ROOT

DATA = REPO_ROOT / 'tests' / 'data' / 'legacy_keras'
NAMES = ['leaf', 'tfbanks', 'sincnet', 'sincnet_plus', 'efficient_leaf',
         'leaf_custom', 'model']
# leaf_custom's outputs come out in steps of 2**-12 (its normalisation divides
# by a spread that its floored log makes tiny on some channels), so a rounding
# change one ulp deep moves them by a step or two: seen 2.4e-4 on a loaded
# machine, on the parent commit of this tolerance too.
TOLERANCES = {'leaf_custom': 5e-4}


@pytest.fixture(scope='module')
def saved_outputs():
  with np.load(DATA / 'outputs_clip_by_clip.npz') as data:
    return {key: data[key] for key in data.files}


@pytest.mark.parametrize('name', NAMES)
def test_saved_file_loads_and_gives_the_saved_outputs(name, saved_outputs):
  model = keras.saving.load_model(DATA / f'{name}.keras')
  outputs = np.concatenate(
      [np.asarray(model(clip[np.newaxis])) for clip in saved_outputs['input']])
  assert outputs.shape == saved_outputs[name].shape
  np.testing.assert_allclose(outputs, saved_outputs[name], rtol=0,
                             atol=TOLERANCES.get(name, 1e-5))


# Written by make_stage_fixtures.py with the code of c432b2a, before the
# stages declared their own contract (`leaf_audio.stages`).
STAGE_NAMES = ['mel_filterbanks', 'composed_frontend', 'leaf_log_pcen']


@pytest.mark.parametrize('name', STAGE_NAMES)
def test_file_from_before_the_stage_interface_loads_and_matches(name):
  with np.load(DATA / 'outputs_stages.npz') as data:
    saved = {key: data[key] for key in data.files}
  model = keras.saving.load_model(DATA / f'{name}.keras')
  outputs = np.concatenate(
      [np.asarray(model(clip[np.newaxis])) for clip in saved['input']])
  assert outputs.shape == saved[name].shape
  np.testing.assert_allclose(outputs, saved[name], rtol=0, atol=1e-5)


def test_mel_filterbanks_with_weighted_compression_loads():
  # Written by make_mel_pcen_fixture.py with the code of 3a5301c, when
  # MelFilterbanks was a plain layer: its PCEN's weights sit under
  # `compression/...`, where the Frontend it is now must look for them.
  with np.load(DATA / 'outputs_mel_pcen.npz') as data:
    saved = {key: data[key] for key in data.files}
  model = keras.saving.load_model(DATA / 'mel_filterbanks_pcen.keras')
  assert isinstance(model.layers[0], leaf_audio.Frontend)
  outputs = np.concatenate(
      [np.asarray(model(clip[np.newaxis])) for clip in saved['input']])
  np.testing.assert_allclose(outputs, saved['mel_filterbanks_pcen'], rtol=0,
                             atol=1e-5)


@pytest.mark.parametrize('name', ['leaf', 'efficient_leaf', 'mel_filterbanks',
                                  'mel_filterbanks_pcen'])
def test_a_saved_compression_fn_loads_as_compression_without_warning(name):
  with zipfile.ZipFile(DATA / f'{name}.keras') as archive:
    saved = json.loads(archive.read('config.json'))
  frontend_config = next(layer['config'] for layer in saved['config']['layers']
                         if layer['module'].startswith('leaf_audio'))
  assert 'compression_fn' in frontend_config  # written by the old code
  with warnings.catch_warnings():
    # Loading an old file is not the user's deprecated call.
    warnings.simplefilter('error', DeprecationWarning)
    model = keras.saving.load_model(DATA / f'{name}.keras')
  config = model.layers[0].get_config()
  assert 'compression_fn' not in config
  assert (config['compression']['class_name'] ==
          frontend_config['compression_fn']['class_name'])
