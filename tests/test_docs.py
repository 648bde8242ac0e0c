"""The docs cannot go stale: every code block in docs/ runs here.

Blocks run in page order, in one scratch folder per page (gin_configs/
linked into it). ```python blocks run in-process. ```sh blocks run line by
line: `python -m experiments.<binary> ARGS` lines run that module's main
in-process with those arguments (as `python -m` would, without paying for a
TensorFlow import per command), anything else in bash. A block preceded by
`<!-- docs-test: network -->` is only syntax-checked; ```gin blocks are
parsed on top of default.gin; ```text blocks are not code (layouts,
signatures). Two things differ from a user's run, to keep the suite fast:
`experiments.train` gets TINY_TRAINING appended (later bindings win), and
TensorFlow Datasets reads a prepared LeafSynthetic of a few clips from a
scratch data dir.
"""

import doctest
import importlib.util
import json
import os
import re
import shlex
import subprocess
import sys

import gin
import pytest
from tensorflow_datasets.core import constants as tfds_constants

from conftest import REPO_ROOT
from experiments import configurables  # pylint: disable=unused-import
from experiments import gin_files as configuration
from experiments.training import job as training  # pylint: disable=unused-import
from experiments.data import synthetic
import experiments_helpers as helpers

DOCS = REPO_ROOT / 'docs'
NETWORK_MARK = '<!-- docs-test: network -->'
# The tutorial tests exporting on its own (experiments.export).
TINY_TRAINING = ['--gin_bindings=train.num_epochs = 1',
                 '--gin_bindings=train.steps_per_epoch = 2',
                 '--gin_bindings=train.batch_size = 4',
                 '--gin_bindings=train.export = False',
                 '--gin_bindings=train.verbose = 0']
TINY_SPLITS = {'train': 8, 'validation': 4, 'test': 4}
FENCE = re.compile(r'^```(\S*)[^\n]*\n(.*?)^```[ \t]*$', re.M | re.S)


def code_blocks(path):
  """[(language, code, needs_network, line)] of a markdown page, in order."""
  text = path.read_text()
  blocks = []
  for match in FENCE.finditer(text):
    before = text[:match.start()].rstrip().splitlines()
    network = bool(before) and before[-1].strip() == NETWORK_MARK
    line = text.count('\n', 0, match.start()) + 1
    blocks.append((match.group(1), match.group(2), network, line))
  return blocks


def doc_pages():
  return sorted(p.name for p in DOCS.glob('*.md') if p.name != 'api.md')


def load_generator():
  spec = importlib.util.spec_from_file_location('generate_api',
                                                DOCS / 'generate_api.py')
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


@pytest.fixture(scope='module')
def tiny_tfds(tmp_path_factory):
  """A TFDS data dir holding LeafSynthetic with a few clips per split."""
  data_dir = tmp_path_factory.mktemp('tfds')
  with pytest.MonkeyPatch.context() as patch:
    patch.setattr(synthetic, 'SPLIT_SIZES', TINY_SPLITS)
    synthetic.LeafSynthetic(data_dir=str(data_dir)).download_and_prepare()
  return data_dir


class PageRunner:
  """Runs a page's blocks in order in one scratch folder (the cwd)."""

  def __init__(self, page, workdir):
    self.page = page
    self.workdir = workdir
    (workdir / 'gin_configs').symlink_to(REPO_ROOT / 'gin_configs')
    self.namespace = {'__name__': '__docs__'}
    self.outputs = []

  def run(self, language, code, network, line):
    where = f'docs/{self.page}:{line}'
    if language == 'text':
      return
    if language == 'python':
      compiled = compile(code, where, 'exec')
      if not network:
        exec(compiled, self.namespace)  # pylint: disable=exec-used
    elif language in ('sh', 'bash'):
      check = subprocess.run(['bash', '-n', '-c', code], capture_output=True,
                             text=True)
      assert check.returncode == 0, f'{where}: {check.stderr}'
      if not network:
        self.outputs.append(self._run_shell(code, where))
    elif language == 'gin':
      gin.clear_config()
      try:
        configuration.parse([str(REPO_ROOT / 'gin_configs' / 'default.gin')],
                            [code])
      finally:
        gin.clear_config()
    else:
      pytest.fail(f'{where}: code block in {language or "no language"}; use '
                  'python, sh, gin or text (and mark blocks that need the '
                  f'network with {NETWORK_MARK}).')

  def _run_shell(self, code, where):
    """Runs a sh block; returns what it printed on stdout."""
    commands = [line for line in code.replace('\\\n', ' ').splitlines()
                if line.strip() and not line.strip().startswith('#')]
    argvs = [shlex.split(line) for line in commands]
    plain = all(argv[:2] == ['python', '-m'] and
                argv[2].startswith('experiments.') and
                not set(line) & set('|&;<>()$`') for argv, line in zip(
                    argvs, commands))
    if not plain:
      result = subprocess.run(['bash', '-e', '-o', 'pipefail', '-c', code],
                              cwd=self.workdir, capture_output=True,
                              text=True, timeout=600, env=dict(
                                  os.environ, PYTHONPATH=str(REPO_ROOT)))
      assert result.returncode == 0, (
          f'{where} failed:\n{code}\n--- stderr\n{result.stderr[-5000:]}')
      return result.stdout
    return ''.join(run_module_main(argv[2], argv[3:], where)
                   for argv in argvs)


def run_module_main(module, args, where):
  """`python -m module args`, in this process; returns its stdout."""
  if module == 'experiments.train':
    args = args + TINY_TRAINING
  result = helpers.run_module_in_process(module, *args)
  assert result.returncode == 0, (
      f'{where}: python -m {module} {shlex.join(args)} exited with '
      f'{result.returncode!r}; it printed:\n{result.stdout[-3000:]}\n'
      f'--- stderr\n{result.stderr[-3000:]}')
  return result.stdout


def run_page(page, workdir, tfds_dir, monkeypatch):
  monkeypatch.chdir(workdir)
  # What TFDS_DATA_DIR sets, for a process that has imported TFDS already.
  monkeypatch.setattr(tfds_constants, 'DATA_DIR', str(tfds_dir))
  runner = PageRunner(page, workdir)
  for block in code_blocks(DOCS / page):
    runner.run(*block)
  return runner


def test_every_page_is_linked_from_the_index_and_the_readme():
  index = (DOCS / 'README.md').read_text()
  for page in doc_pages() + ['api.md']:
    if page != 'README.md':
      assert f']({page})' in index, page
  assert '](docs/README.md)' in (REPO_ROOT / 'README.md').read_text()


def test_blocks_are_marked_and_named_files_exist():
  for page in doc_pages():
    text = (DOCS / page).read_text()
    assert text.count('```') % 2 == 0, f'{page}: unbalanced code fences'
    for language, code, network, line in code_blocks(DOCS / page):
      assert language in ('python', 'sh', 'gin', 'text'), (page, line)
      assert not (network and language in ('text', 'gin')), (page, line)
    for name in re.findall(r'gin_configs/[\w/]+\.gin', text):
      assert (REPO_ROOT / name).exists(), (page, name)


# Pages that train models have their own tests below, with a tiny dataset.
END_TO_END_PAGES = ('tutorial.md', 'own_data.md')


@pytest.mark.parametrize(
    'page', [p for p in doc_pages() if p not in END_TO_END_PAGES])
@pytest.mark.slow
def test_other_pages_run(page, tmp_path, monkeypatch):
  runner = run_page(page, tmp_path, tmp_path / 'no_tfds', monkeypatch)
  if page == 'keras_model.md':
    for name in ('classifier.keras', 'filter_responses.png',
                 'centre_frequencies.png', 'pooling.png', 'pcen.png',
                 'representation.png'):
      assert (tmp_path / name).stat().st_size > 1000, name
    assert runner.namespace['moved'].max() > 0, 'the fit moved no filter'


@pytest.mark.slow
def test_tutorial_runs_end_to_end(tmp_path, tiny_tfds, monkeypatch):
  runner = run_page('tutorial.md', tmp_path, tiny_tfds, monkeypatch)
  run = tmp_path / 'runs' / 'tutorial'
  for name in ('best.keras', 'config.gin', 'run.json', 'test_metrics.json',
               'export/1/saved_model.pb', 'inspect/summary.txt'):
    assert (run / name).exists(), name
  for name in ('filter_responses', 'centre_frequencies', 'pooling', 'pcen',
               'representation'):
    assert (run / 'inspect' / f'{name}.png').stat().st_size > 10_000, name
  _, inspected, exported, predicted = runner.outputs  # One per sh block.
  assert 'centre frequencies moved' in inspected
  assert 'At a constraint' in inspected
  assert 'SavedModel written to' in exported
  assert re.search(r'chirp\.wav: \w+ \(\d\.\d{3}\)', predicted), predicted
  assert 'Clip: chirp.wav' in (run / 'inspect' / 'summary.txt').read_text()
  # The training binary logged the frontend to TensorBoard.
  events = b''.join(p.read_bytes() for p in
                    (run / 'tensorboard' / 'frontend').glob('events.*'))
  assert b'filter_responses' in events and b'filters/centre_hz' in events


def test_the_tutorial_trains_what_make_train_trains():
  # So that the inspector, run on the tutorial's run, is run on what the
  # README's main command (`make train`, runs/default) writes.
  makefile = (REPO_ROOT / 'Makefile').read_text()
  assert re.search(r'^GIN_CONFIGS \?= gin_configs/default\.gin$', makefile,
                   re.M)
  assert re.search(r'^RUN_DIR \?= runs/default$', makefile, re.M)
  assert '--gin_config=gin_configs/default.gin' in (
      DOCS / 'tutorial.md').read_text()
  assert 'python -m experiments.inspect --model_dir=runs/default' in (
      REPO_ROOT / 'README.md').read_text()


@pytest.mark.slow
def test_own_data_page_runs_end_to_end(tmp_path, tiny_tfds, monkeypatch):
  runner = run_page('own_data.md', tmp_path, tiny_tfds, monkeypatch)
  run = tmp_path / 'runs' / 'my_sounds'
  assert json.loads((run / 'run.json').read_text())['label_names'] == [
      'high', 'low']
  assert json.loads((run / 'run.json').read_text())['dataset'].startswith(
      'wav_folder')
  assert 'Clip: my_sounds/test/high/0.wav' in runner.outputs[-1]
  assert (run / 'inspect' / 'representation.png').exists()


def test_api_reference_is_generated_from_the_current_docstrings():
  generator = load_generator()
  current = (DOCS / 'api.md').read_text() if (DOCS / 'api.md').exists() else ''
  assert current == generator.generate(), (
      'docs/api.md does not match the docstrings and signatures of '
      'leaf_audio; regenerate it with `python docs/generate_api.py`.')


def test_api_reference_covers_every_public_name_and_its_examples_run():
  import keras  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  import leaf_audio  # pylint: disable=g-import-not-at-top
  from leaf_audio import plotting  # pylint: disable=g-import-not-at-top
  generator = load_generator()
  text = generator.generate()
  layers = [name for name, obj in generator.public_names(leaf_audio)
            if isinstance(obj, type) and issubclass(obj, keras.layers.Layer)]
  assert {'Leaf', 'TimeDomainFilterbanks', 'SincNet', 'SincNetPlus',
          'MelFilterbanks'} <= set(layers)
  documented = [('leaf_audio', item)
                for item in generator.public_names(leaf_audio)]
  documented += [('leaf_audio.plotting', item)
                 for item in generator.public_names(plotting)]
  for prefix, (name, obj) in documented:
    assert f'### `{prefix}.{name}`' in text, name
    if isinstance(obj, type) or callable(obj):
      assert (obj.__doc__ or '').strip(), f'{prefix}.{name} has no docstring'
  # The >>> examples, as api.md shows them.
  parser = doctest.DocTestParser()
  runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
  examples = 0
  for name, obj in generator.public_names(leaf_audio):
    doc = getattr(obj, '__doc__', None) if isinstance(obj, type) else None
    if not doc or '>>>' not in doc:
      continue
    module = sys.modules[obj.__module__]
    globs = dict(vars(module), **vars(leaf_audio), tf=tf)
    test = parser.get_doctest(doc, globs, name, None, 0)
    examples += len(test.examples)
    runner.run(test)
  assert examples >= 5
  assert runner.failures == 0, f'{runner.failures} api.md example(s) failed'


def test_readme_numbers_of_the_default_run_match_default_gin():
  """The README quotes default.gin's learning rate, epochs, steps and batch."""
  gin.clear_config()
  try:
    configuration.parse([str(REPO_ROOT / 'gin_configs' / 'default.gin')], [])
    values = {name: gin.query_parameter(f'train.{name}') for name in (
        'learning_rate', 'num_epochs', 'steps_per_epoch', 'batch_size')}
  finally:
    gin.clear_config()
  readme = ' '.join((REPO_ROOT / 'README.md').read_text().split())
  quoted = re.search(
      r'default\.gin` is tuned to finish quickly on a CPU \(a small encoder, '
      r'learning rate (\S+), (\d+) epochs x (\d+) steps of (\d+) clips\)',
      readme)
  assert quoted, 'README no longer describes gin_configs/default.gin'
  rate, epochs, steps, batch = quoted.groups()
  assert float(rate) == values['learning_rate']
  assert (int(epochs), int(steps), int(batch)) == (
      values['num_epochs'], values['steps_per_epoch'], values['batch_size'])
  total = re.search(r'\((\d+) training steps of about', readme)
  assert total and int(total.group(1)) == (values['num_epochs'] *
                                           values['steps_per_epoch'])
