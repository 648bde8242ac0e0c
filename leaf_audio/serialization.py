"""Turning frontend building blocks into Keras configs and back.

Frontends take layer classes (`conv1d_cls`, `pooling_cls`), layer instances
and plain functions as constructor arguments, like the original release. Keras
serializes instances and registered functions itself; this module adds classes
and keeps one place where `leaf_audio` objects are registered.
"""

import functools
import inspect

import keras

PACKAGE = 'leaf_audio'

register = functools.partial(
    keras.saving.register_keras_serializable, package=PACKAGE)

_KERAS_LAYERS_PREFIX = 'keras.layers.'


def serialize_class(cls, owner: str, argument: str) -> str:
  """Returns a name from which `deserialize_class` rebuilds `cls`.

  Classes of `keras.layers` are named 'keras.layers.<Name>'; others must be
  registered with `keras.saving.register_keras_serializable`.
  """
  if not inspect.isclass(cls):
    raise TypeError(f'{owner}: {argument} must be a class; got {cls!r}.')
  if getattr(keras.layers, cls.__name__, None) is cls:
    return _KERAS_LAYERS_PREFIX + cls.__name__
  name = keras.saving.get_registered_name(cls)
  if keras.saving.get_registered_object(name) is not cls:
    raise ValueError(
        f'{owner}: cannot save {argument}={cls.__module__}.{cls.__qualname__}'
        ' in a config because it is not registered; decorate it with '
        '@keras.saving.register_keras_serializable().')
  return name


def deserialize_class(name, owner: str, argument: str):
  """Inverse of `serialize_class`; classes pass through unchanged."""
  if inspect.isclass(name):
    return name
  if not isinstance(name, str):
    raise TypeError(f'{owner}: {argument} must be a class or a registered '
                    f'class name; got {name!r}.')
  if name.startswith(_KERAS_LAYERS_PREFIX):
    cls = getattr(keras.layers, name[len(_KERAS_LAYERS_PREFIX):], None)
  else:
    cls = keras.saving.get_registered_object(name)
  if cls is None:
    raise ValueError(f'{owner}: unknown {argument} {name!r}; register the '
                     'class or import the module that defines it first.')
  return cls


def serialize(obj):
  """`keras.saving.serialize_keras_object`, with None passed through."""
  return None if obj is None else keras.saving.serialize_keras_object(obj)


def deserialize(config):
  """`keras.saving.deserialize_keras_object`, with None and objects passed through."""
  if config is None or not isinstance(config, (dict, str)):
    return config
  return keras.saving.deserialize_keras_object(config)
