"""Mel filterbank energies from a short-time Fourier transform: a filterbank stage.

`STFTMelFilterbank` is the filterbank stage of `MelFilterbanks`: frames the
waveform (left-aligned windows, the end zero-padded), applies a periodic Hann
window, takes the power of an n_fft-point real FFT and weights it with a
triangular HTK mel matrix. It sets the frames itself (`pools_itself`) and
learns nothing (no `stage_parameters`); the plots measure its filters from
`amplitude_responses()`.
"""

import keras
import numpy as np
import tensorflow as tf

from leaf_audio import framing
from leaf_audio import melfilters
from leaf_audio import serialization
from leaf_audio import stages
from leaf_audio import validation


@serialization.register()
class STFTMelFilterbank(stages.Stage, keras.layers.Layer):
  """|STFT|^2 times a mel matrix: power mel filterbank energies per frame.

  Frame f covers samples [f * hop, f * hop + window_size) (left-aligned, as
  `tf.signal.stft` frames them; samples past the end read as 0), so a clip of
  n samples gives ceil(n / hop) frames. Each frame is multiplied by a
  periodic Hann window, transformed by an n_fft-point real FFT, squared, and
  weighted by `mel_matrix` (`melfilters.mel_filterbank`,
  `tf.signal.linear_to_mel_weight_matrix`'s values).

  Args:
    n_filters: int, number of mel filters (output channels).
    window_size: int, window length in samples (401 for 25 ms at 16 kHz).
    hop: int, hop between frames in samples (160 for 10 ms at 16 kHz).
    n_fft: int, FFT size, at least `window_size`.
    sample_rate: Hz, the waveform's sampling rate.
    min_freq: Hz, the lowest mel edge.
    max_freq: Hz, the highest mel edge, at most sample_rate / 2.
    **kwargs: Keras layer arguments (name, dtype).

  Input shape: [batch, samples, 1].
  Output shape: [batch, ceil(samples / hop), n_filters], non-negative
    energies.

  Example:
    >>> bank = STFTMelFilterbank(40, window_size=401, hop=160, n_fft=512,
    ...                          sample_rate=16000, min_freq=60.,
    ...                          max_freq=7800.)
    >>> bank(tf.zeros([2, 16000, 1])).shape
    TensorShape([2, 100, 40])
  """

  def __init__(self, n_filters: int, window_size: int, hop: int, n_fft: int,
               sample_rate: float, min_freq: float, max_freq: float,
               **kwargs):
    super().__init__(**kwargs)
    owner = type(self).__name__
    self.n_filters = validation.check_positive_int(owner, 'n_filters',
                                                   n_filters)
    self.window_size = validation.check_positive_int(owner, 'window_size',
                                                     window_size)
    self.hop = validation.check_positive_int(owner, 'hop', hop)
    self.n_fft = validation.check_positive_int(owner, 'n_fft', n_fft)
    if self.n_fft < self.window_size:
      raise ValueError(
          f'{owner}: n_fft={n_fft} is shorter than the window of '
          f'{self.window_size} samples; the STFT would drop the end of every '
          f'window. Use n_fft >= {self.window_size}.')
    self.sample_rate = validation.check_positive_number(owner, 'sample_rate',
                                                        sample_rate)
    melfilters.check_frequency_range(owner, sample_rate, min_freq, max_freq)
    self.min_freq = min_freq
    self.max_freq = max_freq
    # float32 [n_fft // 2 + 1, n_filters]; column j is filter j.
    self.mel_matrix = melfilters.mel_filterbank(
        n_filters=self.n_filters, n_fft=self.n_fft, sample_rate=sample_rate,
        min_freq=min_freq, max_freq=max_freq)

  def build(self, input_shape):
    if len(input_shape) != 3 or input_shape[-1] != 1:
      raise ValueError(
          f'{type(self).__name__} expects a waveform of shape [batch, samples,'
          f' 1]; got shape {tuple(input_shape)}.')

  def _mel_energies(self, frames):
    """Frames [..., window_size] -> mel energies [..., n_filters]."""
    window = tf.signal.hann_window(self.window_size, periodic=True,
                                   dtype=frames.dtype)
    stft = tf.signal.rfft(frames * window, [self.n_fft])
    power = tf.square(tf.abs(stft))
    return tf.matmul(power, tf.constant(self.mel_matrix, power.dtype))

  def call(self, inputs):
    # tf.signal.stft's computation, with frames built without its gather.
    frames = framing.overlapping_frames(inputs[:, :, 0], self.window_size,
                                        self.hop, pad_end=True)
    return self._mel_energies(frames)

  def compute_output_shape(self, input_shape):
    return (input_shape[0],
            framing.num_frames(input_shape[1], self.window_size, self.hop,
                               'same'), self.n_filters)

  def amplitude_responses(self):
    """(frequencies_hz float64 [bins], amplitudes float64 [n_filters, bins]).

    The square root of the mel matrix (it weights power) on the FFT's bins.
    """
    amplitudes = np.sqrt(np.asarray(self.mel_matrix, np.float64).T)
    return (np.linspace(0., self.sample_rate / 2., amplitudes.shape[1]),
            amplitudes)

  # The stage interface (`stages.Stage`): a fixed filterbank that sets the
  # frames, left-aligned ('end' padding).
  pools_itself = True

  def stage_geometry(self):
    return stages.Geometry(self.window_size, self.hop, 'end')

  def stream_kind(self):
    return 'pools_itself'

  def stream_lead(self) -> int:
    """A frame reads nothing before its window's first sample."""
    return 0

  def stream_reach(self) -> int:
    """The last sample a frame reads, from its window's first sample."""
    return self.window_size - 1

  def stream_pooled(self, state, buffer, inside, hops):
    """The mel energies of `hops` new frames (no state of its own).

    Args:
      state: {} (`stream_initial_state`).
      buffer: float32 [batch, samples], sample i at offset i from the first
        new frame's window start, samples = (hops - 1) * hop + window_size
        rounded up to whole hops.
      inside: unused: samples outside the stream are zeros in the buffer
        already, which is what the offline frames read there.
      hops: int or int32 [], the number of new frames.

    Returns:
      (energies [batch, hops, n_filters], {}).
    """
    del state, inside
    frames = framing.overlapping_frames(buffer, self.window_size, self.hop)
    return self._mel_energies(frames[:, :hops]), {}

  def get_config(self):
    config = super().get_config()
    config.update({name: getattr(self, name) for name in (
        'n_filters', 'window_size', 'hop', 'n_fft', 'sample_rate', 'min_freq',
        'max_freq')})
    return config
