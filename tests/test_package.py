"""The package's promises: light imports, a clear backend error, a README that runs."""

import ast
import os
import re
import subprocess
import sys

import pytest

from conftest import REPO_ROOT

ALLOWED_IMPORTS = {'keras', 'tensorflow', 'numpy', 'leaf_audio'}
OPTIONAL_PACKAGES = ['gin', 'tensorflow_datasets', 'absl.flags', 'matplotlib',
                     'lingvo', 'tensorflow_addons']


def imported_top_level_packages(path):
  tree = ast.parse(path.read_text())
  names = set()
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      names.update(alias.name.split('.')[0] for alias in node.names)
    elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
      names.add(node.module.split('.')[0])
  return names


def test_leaf_audio_imports_only_tensorflow_keras_numpy():
  for path in sorted((REPO_ROOT / 'leaf_audio').glob('*.py')):
    third_party = {
        name for name in imported_top_level_packages(path)
        if name not in sys.stdlib_module_names
    }
    assert third_party <= ALLOWED_IMPORTS, (path.name, third_party)


def run_python(code, **env):
  environment = dict(os.environ, PYTHONPATH=str(REPO_ROOT), **env)
  return subprocess.run([sys.executable, '-c', code], env=environment,
                        capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_leaf_audio_imports_and_runs_with_optional_packages_missing():
  # absl is a dependency of TensorFlow itself (tf imports absl.flags), so it
  # cannot be uninstalled; any import of it from leaf_audio's own modules
  # fails (an import hook, since TensorFlow has already loaded it).
  blocked = OPTIONAL_PACKAGES[:2] + OPTIONAL_PACKAGES[3:]
  code = f"""
import builtins, importlib.abc, sys
BLOCKED = {blocked!r}
class Block(importlib.abc.MetaPathFinder):
  def find_spec(self, name, path, target=None):
    if name.split('.')[0] in BLOCKED:
      raise ModuleNotFoundError(name)
sys.meta_path.insert(0, Block())
original_import = builtins.__import__
def guarded_import(name, globals=None, *args, **kwargs):
  importer = (globals or {{}}).get('__name__', '')
  if name.split('.')[0] == 'absl' and importer.startswith('leaf_audio'):
    raise ModuleNotFoundError(f'{{importer}} imports {{name}}')
  return original_import(name, globals, *args, **kwargs)
builtins.__import__ = guarded_import
import numpy as np
import leaf_audio
waveform = np.sin(2 * np.pi * 440 * np.arange(3200) / 16000)[None]
for layer in (leaf_audio.Leaf(), leaf_audio.EfficientLeaf()):
  features = np.asarray(layer(waveform.astype('float32')))
  assert features.shape == (1, 20, 40), features.shape
  assert np.all(np.isfinite(features))
print(sorted(set(m.split('.')[0] for m in sys.modules) & set(BLOCKED)))
"""
  result = run_python(code)
  assert result.returncode == 0, result.stderr[-2000:]
  assert result.stdout.strip().splitlines()[-1] == '[]'


def setup_arguments(monkeypatch):
  """The keyword arguments setup.py passes to setuptools.setup."""
  import runpy  # pylint: disable=g-import-not-at-top
  import setuptools  # pylint: disable=g-import-not-at-top
  captured = {}
  monkeypatch.setattr(setuptools, 'setup', captured.update)
  monkeypatch.chdir(REPO_ROOT)
  monkeypatch.delenv('LEAF_AUDIO_TENSORFLOW', raising=False)
  runpy.run_path(str(REPO_ROOT / 'setup.py'))
  return captured


def requirement_names(requirements):
  return {re.split(r'[<>=!~\[ ;]', requirement, maxsplit=1)[0].lower()
          for requirement in requirements}


def test_base_requirements_are_tensorflow_keras_numpy_only(monkeypatch):
  arguments = setup_arguments(monkeypatch)
  assert requirement_names(arguments['install_requires']) == {
      'tensorflow', 'keras', 'numpy'}
  extras = arguments['extras_require']
  training = {'tensorflow-datasets', 'gin-config', 'absl-py', 'tensorboard',
              'importlib_resources', 'scipy', 'matplotlib'}
  deploy = {'tf2onnx', 'onnx', 'ai-edge-litert', 'onnxruntime'}
  assert requirement_names(extras['experiments']) == training
  assert requirement_names(extras['deploy']) == deploy
  assert requirement_names(extras['test']) == training | deploy | {
      'pytest', 'pytest-xdist'}


def test_cpu_build_is_chosen_by_the_environment(monkeypatch):
  monkeypatch.setenv('LEAF_AUDIO_TENSORFLOW', 'tensorflow-cpu')
  import runpy  # pylint: disable=g-import-not-at-top
  import setuptools  # pylint: disable=g-import-not-at-top
  captured = {}
  monkeypatch.setattr(setuptools, 'setup', captured.update)
  monkeypatch.chdir(REPO_ROOT)
  runpy.run_path(str(REPO_ROOT / 'setup.py'))
  assert requirement_names(captured['install_requires']) == {
      'tensorflow-cpu', 'keras', 'numpy'}


@pytest.mark.slow
def test_non_tensorflow_backend_fails_with_a_clear_message():
  # Other backends need their own frameworks (jax, torch), which this
  # environment lacks, so report one through keras.backend.backend().
  result = run_python(
      "import keras; keras.backend.backend = lambda: 'jax'; import leaf_audio")
  assert result.returncode != 0
  assert 'needs the TensorFlow backend of Keras' in result.stderr
  assert "running on 'jax'" in result.stderr
  assert 'KERAS_BACKEND=tensorflow' in result.stderr


def readme_python_blocks():
  text = (REPO_ROOT / 'README.md').read_text()
  return re.findall(r'```python\n(.*?)```', text, flags=re.S)


def test_readme_examples_run():
  blocks = readme_python_blocks()
  assert blocks, 'README.md has no python example'
  for block in blocks:
    namespace = {}
    exec(compile(block, 'README.md', 'exec'), namespace)  # pylint: disable=exec-used


def test_frontend_docstring_examples_hold():
  import doctest  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  import leaf_audio  # pylint: disable=g-import-not-at-top
  from leaf_audio import convolution, frontend, modulus, pooling  # pylint: disable=g-import-not-at-top
  for module in (frontend, convolution, modulus, pooling):
    globs = dict(vars(leaf_audio), tf=tf)
    globs.update(vars(module))
    failures, tried = doctest.testmod(module, globs=globs, verbose=False)
    assert tried > 0 and failures == 0, module.__name__


@pytest.mark.skipif(not (REPO_ROOT / '.ci' / 'run').exists(), reason='no CI')
def test_ci_runs_the_readme_test_command():
  readme = (REPO_ROOT / 'README.md').read_text()
  ci = (REPO_ROOT / '.ci' / 'run').read_text()
  assert 'make test' in readme and 'make test' in ci
