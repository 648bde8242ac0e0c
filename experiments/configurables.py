"""Registers leaf_audio and experiments classes with gin.

`leaf_audio` stays free of gin: its layers are registered here, after their
definition, with `gin.external_configurable` (decorating a Keras 3 layer class
with `@gin.configurable` breaks layer construction). Importing this module is
what makes names like `@leaf_audio.Leaf` or `@ConvNet` valid in .gin files.
"""

import gin
import keras

import leaf_audio
from experiments import models

_LEAF_AUDIO_CLASSES = (
    # Frontends.
    leaf_audio.Leaf,
    leaf_audio.TimeDomainFilterbanks,
    leaf_audio.SincNet,
    leaf_audio.SincNetPlus,
    leaf_audio.MelFilterbanks,
    leaf_audio.EfficientLeaf,
    # Stages.
    leaf_audio.GaborConv1D,
    leaf_audio.GroupedGaborFilterbank,
    leaf_audio.SincConv1D,
    leaf_audio.STFTMelFilterbank,
    leaf_audio.SquaredModulus,
    leaf_audio.GaussianLowpassPooling,
    leaf_audio.LearnablePooling1D,
    leaf_audio.MaxPooling1D,
    leaf_audio.PCENCompression,
    leaf_audio.LogCompression,
    leaf_audio.LogTBN,
    leaf_audio.SpecAugment,
    # Initializers.
    leaf_audio.GaborInit,
    leaf_audio.SincInit,
    leaf_audio.LowpassInit,
    leaf_audio.PreempInit,
)

_MODEL_CLASSES = (
    models.AudioClassifier,
    models.ConvNet,
    models.PANNEncoder,
    models.EfficientNetB0Encoder,
    models.LoudnessNormalization,
)

_KERAS_CLASSES = (
    keras.layers.Conv1D,
    keras.layers.LayerNormalization,
    keras.layers.LeakyReLU,
    keras.initializers.Constant,
    keras.regularizers.L1L2,
)


def _register_all():
  for cls in _LEAF_AUDIO_CLASSES:
    gin.external_configurable(cls, module='leaf_audio')
  for cls in _MODEL_CLASSES:
    gin.external_configurable(cls, module='experiments.models')
  for cls in _KERAS_CLASSES:
    module = cls.__module__.replace('keras.src.', 'keras.').rsplit('.', 1)[0]
    gin.external_configurable(cls, module=module)
  gin.external_configurable(leaf_audio.log_compression, module='leaf_audio')


def configured(cls):
  """`cls` with its gin bindings applied, for code that builds it directly."""
  return gin.get_configurable(cls)


def is_bound(cls, parameter: str) -> bool:
  """True when the gin configuration binds `parameter` of `cls` (unscoped)."""
  try:
    gin.query_parameter(f'{cls.__name__}.{parameter}')
  except ValueError:
    return False
  return True


_register_all()
