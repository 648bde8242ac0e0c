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


def test_leaf_audio_imports_with_optional_packages_missing():
  blocked = OPTIONAL_PACKAGES[:2] + OPTIONAL_PACKAGES[3:]
  code = f"""
import importlib.abc, sys
BLOCKED = {blocked!r}
class Block(importlib.abc.MetaPathFinder):
  def find_spec(self, name, path, target=None):
    if name.split('.')[0] in BLOCKED:
      raise ModuleNotFoundError(name)
sys.meta_path.insert(0, Block())
import leaf_audio
layer = leaf_audio.Leaf()
print(sorted(set(m.split('.')[0] for m in sys.modules) & set(BLOCKED)))
"""
  result = run_python(code)
  assert result.returncode == 0, result.stderr[-2000:]
  assert result.stdout.strip().splitlines()[-1] == '[]'


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
