"""Writes docs/api.md, the API reference, from leaf_audio's docstrings.

  python docs/generate_api.py           # rewrite docs/api.md
  python docs/generate_api.py --check   # exit 1 if docs/api.md is stale

Every public name that `leaf_audio/__init__.py` exports is documented, and
the functions and classes of `leaf_audio.plotting`: its signature, its
docstring as written, and the public methods and properties its own classes
define. A name added to `leaf_audio/__init__.py` therefore appears here on
the next run; tests/test_docs.py fails until docs/api.md is regenerated.
"""

import inspect
import pathlib
import sys

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
API_FILE = REPO_ROOT / 'docs' / 'api.md'
REGENERATE_COMMAND = 'python docs/generate_api.py'

# Keras' own layer protocol: documented by Keras, not repeated here.
_KERAS_METHODS = frozenset({
    'build', 'call', 'compute_output_shape', 'get_config', 'from_config',
    'compute_output_spec', 'get_build_config', 'build_from_config'
})

_SECTIONS = (
    ('frontends', 'Frontends',
     'Waveform [batch, samples] in, features [batch, frames, n_filters] out.'),
    ('layers', 'Stages and other layers',
     'The building blocks the frontends compose; each usable on its own.'),
    ('initializers', 'Initializers', ''),
    ('constraints', 'Constraints', ''),
    ('functions', 'Functions', ''),
    ('constants', 'Constants', ''),
)


def _kind(obj) -> str:
  import keras  # pylint: disable=g-import-not-at-top
  if inspect.isclass(obj):
    if issubclass(obj, keras.layers.Layer):
      parameters = inspect.signature(obj).parameters
      if ('n_filters' in parameters and 'sample_rate' in parameters or
          'filterbank' in parameters):
        return 'frontends'
      return 'layers'
    if issubclass(obj, keras.initializers.Initializer):
      return 'initializers'
    if issubclass(obj, keras.constraints.Constraint):
      return 'constraints'
    return 'layers'
  if inspect.isfunction(obj):
    return 'functions'
  return 'constants'


def public_names(module):
  """(name, object) of a module's public API, in a stable order.

  For the package: what its __init__ imports from leaf_audio modules (not
  the submodules themselves, nor `keras`). For other modules: the classes
  and functions they define, in source order.
  """
  names = []
  for name, obj in vars(module).items():
    if name.startswith('_') or inspect.ismodule(obj):
      continue
    defined_in = getattr(obj, '__module__', None) or type(obj).__module__
    if module.__name__ == 'leaf_audio':
      if defined_in.startswith('leaf_audio'):
        names.append((name, obj))
    elif defined_in == module.__name__ and (inspect.isclass(obj) or
                                            inspect.isfunction(obj)):
      names.append((name, obj))
  if module.__name__ == 'leaf_audio':
    names.sort(key=lambda item: item[0].lower())
  return names


def _signature(qualified_name, obj) -> str:
  if not callable(obj) or not (inspect.isclass(obj) or inspect.isfunction(obj)):
    return f'{qualified_name} = {obj!r}'
  try:
    parameters = list(inspect.signature(obj).parameters.values())
  except (TypeError, ValueError):
    return qualified_name
  one_line = f'{qualified_name}({", ".join(str(p) for p in parameters)})'
  if len(one_line) <= 80:
    return one_line
  lines = [f'{qualified_name}(']
  lines += [f'    {p},' for p in parameters]
  lines[-1] = lines[-1].rstrip(',') + ')'
  return '\n'.join(lines)


def _members(cls):
  """Public methods and properties that leaf_audio classes define."""
  members = {}
  for klass in reversed(cls.__mro__):
    if not klass.__module__.startswith('leaf_audio'):
      continue
    for name, member in vars(klass).items():
      if name.startswith('_') or name in _KERAS_METHODS:
        continue
      if isinstance(member, (staticmethod, classmethod)):
        member = member.__func__
      if isinstance(member, property) or inspect.isfunction(member):
        members[name] = member
  lines = []
  for name in sorted(members):
    member = members[name]
    doc = inspect.getdoc(member) or ''
    summary = doc.split('\n\n')[0].replace('\n', ' ')
    if isinstance(member, property):
      title = f'`{name}` (property)'
    else:
      parameters = list(inspect.signature(member).parameters.values())[1:]
      title = f'`{name}({", ".join(str(p) for p in parameters)})`'
    lines.append(f'- {title}' + (f': {summary}' if summary else ''))
  return lines


def _entry(prefix, name, obj):
  qualified = f'{prefix}.{name}'
  doc = inspect.getdoc(obj if (inspect.isclass(obj) or
                               inspect.isfunction(obj)) else type(obj))
  lines = [f'### `{qualified}`', '', '```text', _signature(qualified, obj),
           '```', '']
  if doc:
    lines += ['```text', doc, '```', '']
  if inspect.isclass(obj):
    members = _members(obj)
    if members:
      lines += ['Methods and properties:', ''] + members + ['']
  return lines


def generate() -> str:
  """The text of docs/api.md."""
  if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))
  # pylint: disable=g-import-not-at-top
  import leaf_audio
  from leaf_audio import plotting
  from leaf_audio import stages
  # pylint: enable=g-import-not-at-top
  lines = [
      '<!-- Generated by docs/generate_api.py from the docstrings; do not '
      f'edit. Regenerate with `{REGENERATE_COMMAND}`. -->',
      '',
      '# API reference',
      '',
      'Every public name of `leaf_audio` (what `import leaf_audio` gives), '
      'then `leaf_audio.stages` and `leaf_audio.plotting`. Signatures and docstrings are the code\'s '
      'own; the `>>>` examples run in the tests.',
      '',
  ]
  by_kind = {}
  for name, obj in public_names(leaf_audio):
    by_kind.setdefault(_kind(obj), []).append((name, obj))
  for kind, title, blurb in _SECTIONS:
    if kind not in by_kind:
      continue
    lines += [f'## {title}', '']
    if blurb:
      lines += [blurb, '']
    for name, obj in by_kind[kind]:
      lines += _entry('leaf_audio', name, obj)
  lines += ['## `leaf_audio.stages`', '',
            'The interface every stage implements and every consumer reads '
            '(see docs/extending.md): `from leaf_audio import stages`.', '']
  for name, obj in public_names(stages):
    lines += _entry('leaf_audio.stages', name, obj)
  lines += ['## `leaf_audio.plotting`', '',
            'Needs matplotlib: `pip install leaf-audio[plot]`. Import it '
            'explicitly (`from leaf_audio import plotting`); '
            '`import leaf_audio` does not load it.', '']
  for name, obj in public_names(plotting):
    lines += _entry('leaf_audio.plotting', name, obj)
  return '\n'.join(lines).rstrip('\n') + '\n'


def main(argv):
  text = generate()
  if '--check' in argv:
    if not API_FILE.exists() or API_FILE.read_text() != text:
      print(f'{API_FILE} is out of date; regenerate it with '
            f'`{REGENERATE_COMMAND}`.', file=sys.stderr)
      return 1
    return 0
  API_FILE.write_text(text)
  print(f'Wrote {API_FILE}')
  return 0


if __name__ == '__main__':
  sys.exit(main(sys.argv[1:]))
