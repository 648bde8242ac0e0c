"""The pooled squared modulus of a complex filterbank, by its definition
(numpy loops): the independent reference of the FFT methods' tests."""

import numpy as np


def numpy_pooled_energy(waveform, real, imag, windows, stride, padding):
  """The definition, with numpy loops: an independent reference."""
  batch, samples = waveform.shape
  channels, taps = real.shape
  window = windows.shape[0]
  left_conv = (taps - 1) // 2
  padded = np.pad(waveform, [(0, 0), (left_conv, taps - 1 - left_conv)])
  filters = real + 1j * imag
  filtered = np.stack([
      np.stack([np.correlate(padded[b], filters[c].conj(), 'valid')
                for c in range(channels)], -1) for b in range(batch)])
  energy = np.abs(filtered)**2
  if padding == 'same':
    frames = -(-samples // stride)
    total = max((frames - 1) * stride + window - samples, 0)
    energy = np.pad(energy, [(0, 0), (total // 2, total - total // 2), (0, 0)])
  else:
    frames = (samples - window) // stride + 1
  windows = np.broadcast_to(windows, (window, channels))
  return np.stack([
      np.einsum('btc,tc->bc', energy[:, f * stride:f * stride + window],
                windows) for f in range(frames)], 1)
