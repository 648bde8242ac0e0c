"""leaf-audio: learnable audio frontends (LEAF and baselines) as Keras 3 layers.

    import keras
    import leaf_audio
    model = keras.Sequential([keras.Input((None,)), leaf_audio.Leaf(), ...])

The package depends only on TensorFlow, Keras 3 and numpy; the training
binaries (gin, absl, TFDS) live in `experiments/`.
"""

import keras

if keras.backend.backend() != 'tensorflow':
  raise ImportError(
      'leaf_audio needs the TensorFlow backend of Keras, but Keras is running '
      f'on {keras.backend.backend()!r}. Set the environment variable '
      'KERAS_BACKEND=tensorflow before importing keras.')

# pylint: disable=g-import-not-at-top,wrong-import-position
from leaf_audio.augment import SpecAugment
from leaf_audio.compression import ExponentialMovingAverage
from leaf_audio.compression import log_compression
from leaf_audio.compression import LogCompression
from leaf_audio.compression import PCENCompression
from leaf_audio.convolution import GaborConstraint
from leaf_audio.convolution import GaborConv1D
from leaf_audio.convolution import SincConv1D
from leaf_audio.efficient_leaf import EfficientLeaf
from leaf_audio.frontend import DEFAULT
from leaf_audio.frontend import Frontend
from leaf_audio.frontend import Leaf
from leaf_audio.frontend import MelFilterbanks
from leaf_audio.frontend import SincNet
from leaf_audio.frontend import SincNetPlus
from leaf_audio.frontend import TimeDomainFilterbanks
from leaf_audio.grouped_filterbank import GroupedGaborFilterbank
from leaf_audio.initializers import GaborInit
from leaf_audio.initializers import LowpassInit
from leaf_audio.initializers import PreempInit
from leaf_audio.initializers import SincInit
from leaf_audio.logtbn import LogTBN
from leaf_audio.modulus import SquaredModulus
from leaf_audio.pooling import GaussianLowpassPooling
from leaf_audio.pooling import LearnablePooling1D
from leaf_audio.pooling import MaxPooling1D
from leaf_audio.stft_filterbank import STFTMelFilterbank
from leaf_audio.validation import check_waveform

__version__ = '0.1.0'
