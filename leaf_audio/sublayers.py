"""Every Keras layer inside a layer, the way Keras tracks sub-layers.

Keras 3 has no public walk over the layers inside any layer
(`keras.Model.layers` lists one level of a model only); `within` is that
walk, for code that looks for layers of a kind (`methods.computed_with`'s
frontends, precise BatchNorm's BatchNormalization layers).
"""

from typing import List

import keras


def within(layer) -> List[keras.layers.Layer]:
  """`layer` and every layer inside it, each once, in attribute order.

  Walks the layers' attributes: layers, and lists, tuples and dicts of
  layers, as Keras tracks sub-layers.

  Args:
    layer: a Keras layer or model.

  Returns:
    The layers, `layer` first.
  """
  found, seen = [], set()

  def visit(value):
    if isinstance(value, keras.layers.Layer):
      if id(value) in seen:
        return
      seen.add(id(value))
      found.append(value)
      for attribute in vars(value).values():
        visit(attribute)
    elif isinstance(value, (list, tuple)):
      for item in value:
        visit(item)
    elif isinstance(value, dict):
      for item in value.values():
        visit(item)

  visit(layer)
  return found
