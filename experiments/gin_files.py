"""Parses gin files and bindings, with errors that say where and suggest fixes.

gin reports an unknown configurable or parameter with its file and line; this
module adds close matches ("did you mean ...?"), names the file of a syntax
error and checks that files exist, including the files they `include` (gin
0.5 reports a missing include as "expected str, bytes or os.PathLike object,
not NoneType" or an OSError).
"""

import difflib
import inspect
import os
import pathlib
import re
import tokenize
from typing import Sequence

import gin

from experiments import errors

# `include 'gin_configs/common.gin'` in a .gin file works from any directory.
REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
GIN_CONFIG_DIR = REPO_ROOT / 'gin_configs'


class GinConfigError(errors.ConfigurationError):
  """A gin file or binding that cannot be applied; the message says why."""


_INCLUDE = re.compile(r"""^\s*include\s+(['"])(.+?)\1""")


def _resolve_include(name):
  """The path gin opens for `include name`, or None when there is none."""
  if os.path.isabs(name):
    return name if os.path.isfile(name) else None
  for prefix in gin.config._LOCATION_PREFIXES:  # pylint: disable=protected-access
    candidate = os.path.join(prefix, name)
    if os.path.isfile(candidate):
      return candidate
  return None


def _close_config_files(path):
  candidates = [str(p.relative_to(REPO_ROOT))
                for p in GIN_CONFIG_DIR.rglob('*.gin')]
  matches = difflib.get_close_matches(path, candidates, n=3, cutoff=0.5)
  return f' Did you mean {", ".join(matches)}?' if matches else ''


def _check_includes(path, seen):
  """Raises GinConfigError for an `include` of path, or of the files it
  includes, that names no file."""
  if path in seen:
    return
  seen.add(path)
  with open(path, encoding='utf-8', errors='replace') as f:
    lines = f.read().splitlines()
  for number, line in enumerate(lines, start=1):
    match = _INCLUDE.match(line)
    if not match:
      continue
    included = _resolve_include(match.group(2))
    if included is None:
      raise GinConfigError(
          f'file "{path}", line {number}: include {match.group(2)!r} names no '
          'file (looked in the current directory and the repository root '
          f'{str(REPO_ROOT)!r}).{_close_config_files(match.group(2))}')
    _check_includes(os.path.abspath(included), seen)


def _registered_names():
  """Every name a .gin file may refer to: 'train', 'leaf_audio.Leaf', ..."""
  names = set()
  for selector, _ in gin.config._REGISTRY.items():  # pylint: disable=protected-access
    parts = selector.split('.')
    names.update('.'.join(parts[i:]) for i in range(len(parts)))
  return sorted(names)


def _parameters_of(configurable_name):
  try:
    configurable = gin.config._REGISTRY.get_match(configurable_name)  # pylint: disable=protected-access
  except (KeyError, ValueError):
    return []
  if configurable is None:
    return []
  target = configurable.wrapped
  if inspect.isclass(target):
    target = target.__init__
  try:
    return [p for p in inspect.signature(target).parameters if p != 'self']
  except (TypeError, ValueError):
    return []


def _suggestion(message):
  """' Did you mean ...?' for gin's unknown-name errors, or ''."""
  unknown = re.search(r"No configurable matching (?:reference )?'@?([^']+)'",
                      message)
  if unknown:
    name = unknown.group(1)
    matches = difflib.get_close_matches(name, _registered_names(), n=3,
                                        cutoff=0.6)
    hint = (f' Did you mean {", ".join(repr(m) for m in matches)}?'
            if matches else '')
    return hint + (' Configurables come from experiments.configurables and '
                   'the modules a .gin file imports.')
  parameter = re.search(
      r"Configurable '([^']+)' doesn't have a parameter named '([^']+)'",
      message)
  if parameter:
    configurable, name = parameter.groups()
    options = _parameters_of(configurable)
    matches = difflib.get_close_matches(name, options, n=3, cutoff=0.5)
    hint = (f' Did you mean {", ".join(repr(m) for m in matches)}?'
            if matches else '')
    return hint + (f' Parameters of {configurable}: {", ".join(options)}.'
                   if options else '')
  return ''


def _raise_with_context(error, where):
  message = str(error)
  if where not in message:
    message = f'{message}\n  In {where}'
  raise GinConfigError(message + _suggestion(message)) from error


def parse(config_files: Sequence[str] = (),
          bindings: Sequence[str] = ()) -> None:
  """Parses .gin files, then bindings (later ones override earlier ones).

  Raises:
    GinConfigError: a file is missing, does not parse, or names an unknown
      configurable or parameter. The message names the file (or binding) and
      line, and lists close matches.
  """
  if str(REPO_ROOT) not in gin.config._LOCATION_PREFIXES:  # pylint: disable=protected-access
    gin.add_config_file_search_path(str(REPO_ROOT))
  for path in config_files:
    if not os.path.isfile(path):
      raise GinConfigError(f'gin config file not found: {path!r}.'
                           f'{_close_config_files(path)}')
    _check_includes(os.path.abspath(path), set())
    try:
      gin.parse_config_file(path)
    except tokenize.TokenError as error:
      line = error.args[1][0] if len(error.args) > 1 else '?'
      _raise_with_context(
          SyntaxError(f'{error.args[0]} (unbalanced brackets or quotes?)'),
          f'file "{path}", near line {line}')
    except (ValueError, SyntaxError, TypeError, ImportError, OSError) as error:
      _raise_with_context(error, f'file "{path}"')
  for binding in bindings:
    try:
      gin.parse_config(binding)
    except tokenize.TokenError as error:
      _raise_with_context(SyntaxError(error.args[0]), f'binding {binding!r}')
    except (ValueError, SyntaxError, TypeError, ImportError) as error:
      _raise_with_context(error, f'binding {binding!r}')


def unused_bindings():
  """Bindings parsed but not (yet) used by any call: likely typos of intent,
  such as a parameter of a class this run never builds through gin."""
  parsed = gin.config._CONFIG  # pylint: disable=protected-access
  used = gin.config._OPERATIVE_CONFIG  # pylint: disable=protected-access
  unused = []
  for (scope, selector), parameters in parsed.items():
    for name in parameters:
      if name not in used.get((scope, selector), {}):
        unused.append('.'.join(filter(None, [scope, selector, name])))
  return sorted(unused)
