"""Impulse responses against closed forms in numpy and the original release."""

import math

import numpy as np
import pytest
import tensorflow as tf

from leaf_audio import impulse_responses


def numpy_gabor(mu, sigma, size):
  t = np.arange(-(size // 2), (size + 1) // 2, dtype=np.float64)
  envelope = np.exp(-t**2 / (2 * sigma[:, None]**2)) / (
      np.sqrt(2 * np.pi) * sigma[:, None])
  return envelope * np.exp(1j * mu[:, None] * t)


@pytest.mark.parametrize('size', [401, 552, 25])
def test_gabor_filters_match_closed_form(size):
  mu = np.array([0.0, 0.3, 1.5, math.pi], np.float32)
  sigma = np.array([1.5, 10., 96., 150.], np.float32)
  filters = impulse_responses.gabor_filters(np.stack([mu, sigma], 1), size)
  assert filters.shape == (4, size)
  expected = numpy_gabor(mu.astype(np.float64), sigma.astype(np.float64), size)
  np.testing.assert_allclose(filters.numpy(), expected, atol=2e-6)


def test_gabor_filters_match_original_release(reference):
  kernel = reference['leaf_init_gabor_kernel_constrained']
  filters = impulse_responses.gabor_filters(kernel, 401).numpy()
  np.testing.assert_allclose(
      filters.real, reference['leaf_init_gabor_filters_real'], atol=1e-6)
  np.testing.assert_allclose(
      filters.imag, reference['leaf_init_gabor_filters_imag'], atol=1e-6)


def test_gabor_filter_peaks_at_its_centre_frequency():
  mu = 0.8
  real, imag = impulse_responses.gabor_filters_real_imag([[mu, 40.]], 401)
  spectrum = np.abs(np.fft.fft(real.numpy()[0] + 1j * imag.numpy()[0], 4096))
  peak = np.argmax(spectrum) * 2 * np.pi / 4096
  assert abs(peak - mu) < 2 * np.pi / 4096


@pytest.mark.parametrize('size', [401, 552])
def test_sinc_filters_match_numpy_band_pass(size):
  low = np.array([[50., 300., 3000.]], np.float32)
  high = np.array([[150., 700., 7900.]], np.float32)
  sample_rate = 16000.
  filters = impulse_responses.sinc_filters(low, high, size, sample_rate)
  assert filters.shape == (size, 3)
  t = np.arange(-(size // 2), (size + 1) // 2)[:, None] / sample_rate
  # np.sinc(x) = sin(pi x) / (pi x).
  band = 2 * high * np.sinc(2 * high * t) - 2 * low * np.sinc(2 * low * t)
  expected = band / band.max(axis=0, keepdims=True)
  np.testing.assert_allclose(filters.numpy(), expected, atol=2e-5)
  np.testing.assert_allclose(filters.numpy().max(axis=0), 1.0, rtol=1e-6)


def test_sinc_filters_gradient_is_finite_at_the_centre_tap():
  low = tf.Variable([[100.]])
  high = tf.Variable([[1000.]])
  with tf.GradientTape() as tape:
    loss = tf.reduce_sum(impulse_responses.sinc_filters(low, high, 401)**2)
  grads = tape.gradient(loss, [low, high])
  assert all(np.isfinite(g.numpy()).all() for g in grads)


def test_gaussian_lowpass_matches_closed_form_and_clips_sigma():
  size = 401
  sigma = np.array([0.001, 0.1, 0.4, 0.9], np.float32).reshape(1, 1, 4, 1)
  windows = impulse_responses.gaussian_lowpass(sigma, size).numpy()
  assert windows.shape == (1, size, 4, 1)
  clipped = np.clip(sigma.ravel().astype(np.float64), 2 / size, 0.5)
  t = np.arange(size)[:, None]
  half = (size - 1) / 2
  expected = np.exp(-0.5 * ((t - half) / (clipped * half))**2)
  np.testing.assert_allclose(windows[0, :, :, 0], expected, atol=1e-6)


def test_windows():
  n = 400
  # A periodic Hamming window is the symmetric one of n + 1 points, cut.
  np.testing.assert_allclose(
      impulse_responses.hamming_window(n), np.hamming(n + 1)[:-1], atol=1e-12)
  # The original's Hann window is numpy's symmetric Hann shifted by one.
  np.testing.assert_allclose(
      impulse_responses.hann_window(n)[1:], np.hanning(n)[:-1], atol=1e-12)
  np.testing.assert_allclose(
      impulse_responses.squared_hann_window(n),
      impulse_responses.hann_window(n)**2)


def test_squared_hann_matches_original_lowpass_init(reference):
  np.testing.assert_allclose(
      impulse_responses.squared_hann_window(401),
      reference['tfbanks_init_lowpass_kernel'].ravel(),
      atol=1e-7)
