"""Tiny datasets and runners shared by the training-binary tests."""

import contextlib
import io
import os
import pathlib
import runpy
import subprocess
import sys

from absl import flags
import numpy as np

from conftest import REPO_ROOT
from experiments.data import wav

SAMPLE_RATE = 16000


def tone(frequency, seconds, rng):
  t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
  clip = 0.5 * np.sin(2 * np.pi * frequency * t + rng.uniform(0, 6.28))
  return (clip + 0.05 * rng.standard_normal(t.size)).astype(np.float32)


def make_tone_folder(root, clips_per_class=8, seconds=0.6):
  """root/{low,high}/*.wav: 300 Hz and 3 kHz tones in noise, 16 kHz mono."""
  rng = np.random.default_rng(0)
  root = pathlib.Path(root)
  for label, frequency in (('low', 300.), ('high', 3000.)):
    (root / label).mkdir(parents=True, exist_ok=True)
    for i in range(clips_per_class):
      wav.write_wav(root / label / f'{i}.wav',
                    tone(frequency * rng.uniform(0.9, 1.1), seconds, rng),
                    SAMPLE_RATE)
  return root


def tiny_bindings(folder, data_dir, **overrides):
  """Gin bindings for a run of a few seconds on a tone folder."""
  bindings = {
      'load_dataset.name': "'folder'",
      'load_dataset.folder': repr(str(folder)),
      'load_dataset.data_dir': repr(str(data_dir)),
      'train.num_epochs': '1',
      'train.steps_per_epoch': '2',
      'train.batch_size': '4',
      'train.window_seconds': '0.3',
      'train.shuffle_buffer': '16',
      # Two batches exercise precise BatchNorm; the default 16 cost seconds
      # of forward passes in every run.
      'train.precise_batch_norm_batches': '2',
      'train.export': 'False',
      'train.verbose': '0',
  }
  bindings.update({key: str(value) for key, value in overrides.items()})
  return [f'{key} = {value}' for key, value in bindings.items()]


def run_module(module, *args, env=None, timeout=600, **popen_kwargs):
  """Runs `python -m module args` from the repository root."""
  environment = dict(os.environ, PYTHONPATH=str(REPO_ROOT),
                     TF_CPP_MIN_LOG_LEVEL='2')
  environment.update(env or {})
  return subprocess.run([sys.executable, '-m', module, *args],
                        cwd=REPO_ROOT, env=environment, capture_output=True,
                        text=True, timeout=timeout, **popen_kwargs)


def _forget_module(module):
  """Drops `module` from sys.modules and from its package's attributes
  (`from package import module` reads the attribute first)."""
  sys.modules.pop(module, None)
  parent, _, name = module.rpartition('.')
  if parent in sys.modules and hasattr(sys.modules[parent], name):
    delattr(sys.modules[parent], name)


@contextlib.contextmanager
def only_absl_flags():
  """Hides every flag but absl's own while a binary runs, then restores them.

  A binary defines its flags (--model_dir, ...) when its module runs, and
  binaries imported as modules (experiments.inspect in test_inspect) have
  defined theirs already. The modules that defined the hidden flags (e.g.
  experiments.run_flags, shared by several binaries) are imported afresh
  while the binary runs, so that they define their flags again.
  """
  registry = flags.FLAGS
  hidden = [(module, flag)
            for module, module_flags in registry.flags_by_module_dict().items()
            if not module.startswith('absl.') for flag in module_flags]
  for _, flag in hidden:
    if flag.name in registry:
      delattr(registry, flag.name)
  # Only this project's modules: TensorFlow's must not be imported twice.
  defining = {module for module, _ in hidden
              if module in sys.modules and module.startswith('experiments.')}
  saved_modules = {module: sys.modules[module] for module in defining}
  for module in defining:
    _forget_module(module)
  try:
    yield
  finally:
    # Modules that defined flags while the binary ran are forgotten too, so
    # that the next binary that imports them defines their flags again.
    defined = {module for module in registry.flags_by_module_dict()
               if module in sys.modules and module.startswith('experiments.')}
    for module in defining | defined:
      _forget_module(module)
    for module, loaded in saved_modules.items():
      sys.modules[module] = loaded
      parent, _, name = module.rpartition('.')
      if parent in sys.modules:
        setattr(sys.modules[parent], name, loaded)
    for name in list(registry):
      module = registry.find_module_defining_flag(name, default='')
      if not module.startswith('absl.'):
        delattr(registry, name)
    for module, flag in hidden:
      registry[flag.name] = flag
      registry.register_flag_by_module(module, flag)


def run_module_in_process(module, *args):
  """`python -m module args`, run in this process without a TensorFlow
  import to pay (about 7 s of CPU per process on a 2-core machine).

  As `python -m` would: sys.argv is the module and args, absl's flags are
  the binary's own (only_absl_flags), gin starts empty. An exit with a
  message (sys.exit('error: ...')) prints it on stderr with status 1, as
  Python does. What the binary prints through sys.stdout and sys.stderr is
  captured; absl's log handler keeps the stream it was made with.

  Returns:
    subprocess.CompletedProcess(args, returncode, stdout, stderr), like
    run_module's.
  """
  import gin  # pylint: disable=g-import-not-at-top
  saved_argv = sys.argv
  sys.argv = [module, *args]
  gin.clear_config()
  stdout, stderr = io.StringIO(), io.StringIO()
  code = 0
  try:
    with only_absl_flags(), contextlib.redirect_stdout(stdout), \
        contextlib.redirect_stderr(stderr):
      runpy.run_module(module, run_name='__main__', alter_sys=True)
  except SystemExit as exit_:
    code = exit_.code
  finally:
    sys.argv = saved_argv
    gin.clear_config()
  if isinstance(code, str):
    stderr.write(code + '\n')
    code = 1
  return subprocess.CompletedProcess([module, *args], code or 0,
                                     stdout.getvalue(), stderr.getvalue())


def train_args(model_dir, configs, bindings):
  return ([f'--gin_config={c}' for c in configs] +
          [f'--gin_bindings={b}' for b in bindings] +
          [f'--model_dir={model_dir}'])


def train_in_process(model_dir, configs, bindings):
  """What `python -m experiments.train` with these gin files (paths relative
  to the repository root) and bindings trains, run in this process: for a
  reference run whose process the test does not watch (no import of
  TensorFlow to pay again). Returns train()'s test metrics."""
  import gin  # pylint: disable=g-import-not-at-top
  from experiments import configurables  # pylint: disable=g-import-not-at-top,unused-import
  from experiments import gin_files  # pylint: disable=g-import-not-at-top
  from experiments.training import job  # pylint: disable=g-import-not-at-top
  gin.clear_config()
  try:
    gin_files.parse([str(REPO_ROOT / config) for config in configs],
                    bindings)
    return job.train(model_dir=str(model_dir))
  finally:
    gin.clear_config()


def built_once(folder, build):
  """What `build(folder)` returned (JSON-able), built once per test run.

  pytest-xdist runs test files in separate processes, and a session fixture
  runs once in each. A fixture that should build something once per test
  run gives a folder that every process of the run shares
  (`shared_temp_root`) and its builder here: the first process to take the
  folder's lock builds it, the others wait for the lock and then read what
  it built. A build that fails leaves nothing behind, so the next process
  that asks builds again (and fails alike, with its own error).
  """
  import fcntl  # pylint: disable=g-import-not-at-top
  import json  # pylint: disable=g-import-not-at-top
  import shutil  # pylint: disable=g-import-not-at-top
  folder = pathlib.Path(folder)
  folder.parent.mkdir(parents=True, exist_ok=True)
  done = folder.parent / f'{folder.name}.built.json'
  with open(folder.parent / f'{folder.name}.lock', 'w') as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    try:
      if not done.exists():
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir()
        try:
          result = json.dumps(build(folder))
        except BaseException:
          shutil.rmtree(folder, ignore_errors=True)
          raise
        done.write_text(result)
      return json.loads(done.read_text())
    finally:
      fcntl.flock(lock, fcntl.LOCK_UN)


def shared_temp_root(tmp_path_factory):
  """A folder of this test run that all its processes share: the parent of
  a pytest-xdist worker's temporary folder, or the run's own when there are
  no workers (the parent then holds earlier runs too)."""
  root = tmp_path_factory.getbasetemp()
  return root.parent if os.environ.get('PYTEST_XDIST_WORKER') else root


TINY_LABELS = ['zero', 'one', 'two', 'three']
TINY_WINDOW = 16000
# experiments.export's flag -> the file it writes, beside the run folder.
TINY_FILES = {'tflite': 'offline.tflite', 'onnx': 'offline.onnx',
              'streaming_tflite': 'streaming.tflite',
              'streaming_onnx': 'streaming.onnx'}


def export_tiny_run(root):
  """A tiny untrained LEAF classifier as a training run, exported.

  The classifier (`Leaf(n_filters=8)`, `ConvNet((4, 8))`, len(TINY_LABELS)
  classes, no loudness normalisation, so that it streams and its stream can
  equal the offline model) is saved as a run in root/run (best.keras,
  run.json), then `python -m experiments.export`'s main (in this process)
  writes root/run/export and the four converted files of TINY_FILES in root.

  Returns:
    {'model_dir', 'saved_model' (the export's version folder), each flag of
    TINY_FILES: its file, as strings; 'label_names'; 'stdout' of the export}.

  Raises:
    RuntimeError: the export failed (its stderr).
  """
  import json  # pylint: disable=g-import-not-at-top
  import keras  # pylint: disable=g-import-not-at-top
  import leaf_audio  # pylint: disable=g-import-not-at-top
  from experiments import models  # pylint: disable=g-import-not-at-top
  from experiments.serving import export_directory  # pylint: disable=g-import-not-at-top
  root = pathlib.Path(root)
  model_dir = root / 'run'
  model_dir.mkdir(parents=True)
  keras.utils.set_random_seed(0)
  model = models.AudioClassifier(leaf_audio.Leaf(n_filters=8),
                                 models.ConvNet((4, 8)),
                                 num_outputs=len(TINY_LABELS),
                                 normalization=None)
  model.build((None, TINY_WINDOW))
  model.save(model_dir / 'best.keras')
  (model_dir / 'run.json').write_text(json.dumps({
      'window_samples': TINY_WINDOW, 'sample_rate': SAMPLE_RATE,
      'multi_label': False, 'label_names': TINY_LABELS}))
  # The binary's main, in this process (which has TensorFlow already).
  result = run_module_in_process(
      'experiments.export', f'--model_dir={model_dir}',
      *[f'--{flag}={root / name}' for flag, name in TINY_FILES.items()])
  if result.returncode != 0:
    raise RuntimeError(f'python -m experiments.export failed:\n'
                       f'{result.stderr[-3000:]}')
  written = {flag: str(root / name) for flag, name in TINY_FILES.items()}
  written.update(
      model_dir=str(model_dir),
      saved_model=export_directory.saved_model_path(model_dir / 'export'),
      label_names=TINY_LABELS, stdout=result.stdout)
  return written
