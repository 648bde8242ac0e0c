"""`.keras` files saved before the frontends became presets still load and match.

The files in tests/data/legacy_keras/ were written by make_legacy_keras.py
with the code of 6362f62 (weights moved away from their initial values).
"""

import keras
import numpy as np
import pytest

import leaf_audio  # pylint: disable=unused-import  (registers the classes)
from conftest import REPO_ROOT

DATA = REPO_ROOT / 'tests' / 'data' / 'legacy_keras'
NAMES = ['leaf', 'tfbanks', 'sincnet', 'sincnet_plus', 'efficient_leaf',
         'leaf_custom', 'model']


@pytest.fixture(scope='module')
def saved_outputs():
  with np.load(DATA / 'outputs.npz') as data:
    return {key: data[key] for key in data.files}


@pytest.mark.parametrize('name', NAMES)
def test_saved_file_loads_and_gives_the_saved_outputs(name, saved_outputs):
  model = keras.saving.load_model(DATA / f'{name}.keras')
  outputs = np.asarray(model(saved_outputs['input']))
  assert outputs.shape == saved_outputs[name].shape
  np.testing.assert_allclose(outputs, saved_outputs[name], rtol=0, atol=1e-6)
