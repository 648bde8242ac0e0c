"""Tests for experiments/training/tensorboard_figures.py: each epoch logs the filter
responses as an image and the learned parameters as histograms."""

import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

import leaf_audio
from experiments import models
from experiments.training import tensorboard_figures
from leaf_audio import plotting


def read_events(log_dir):
  """{tag: [(step, tensor)]} of the event files in log_dir."""
  events = {}
  for path in sorted(log_dir.glob('events.out.tfevents.*')):
    for event in tf.compat.v1.train.summary_iterator(str(path)):
      for value in event.summary.value:
        events.setdefault(value.tag, []).append(
            (event.step, tf.make_ndarray(value.tensor)))
  return events


def test_each_epoch_logs_the_filter_figure_and_parameter_histograms(tmp_path):
  frontend = leaf_audio.Leaf()
  model = models.AudioClassifier(frontend=frontend, encoder=None,
                                 num_outputs=2)
  model.build((None, 16000))
  callback = tensorboard_figures.FrontendSummaries(tmp_path)
  callback.set_model(model)
  callback.on_epoch_end(0)
  conv = plotting.filterbank_layer(frontend)
  conv.kernel.assign(conv.kernel + [[0.01, 0.]])  # "Training" moves filters.
  callback.on_epoch_end(1)
  callback.on_train_end()
  events = read_events(tmp_path)

  images = events['filter_responses']
  assert [step for step, _ in images] == [0, 1]
  # An image summary holds width, height and the encoded PNG.
  width, height, png = images[0][1]
  assert png.startswith(b'\x89PNG') and int(width) > 300 and int(height) > 200

  for tag in ('filters/centre_hz', 'filters/bandwidth_hz',
              'pooling/pooling_width_ms', 'compression/alpha',
              'compression/delta', 'compression/root',
              'compression/smoothing', 'weights/tfbanks_complex_conv/kernel',
              'drift/filterbank', 'drift/filterbank/centre_frequency',
              'drift/pooling', 'drift/compression/alpha'):
    assert [step for step, _ in events[tag]] == [0, 1], tag
  # A histogram is [buckets, 3]: left edge, right edge, count.
  (_, first), (_, second) = events['filters/centre_hz']
  assert first[:, 2].sum() == second[:, 2].sum() == 40
  centres = plotting.filterbank_summary(frontend).centre_hz
  assert second[:, 0].min() == np.float64(centres.min())
  assert first[:, 0].min() < second[:, 0].min()  # 0.01 rad = 25 Hz up.
  # Only the filters moved: 0.01 rad/sample of at most pi, from epoch 1 on.
  drift = dict(events['drift/filterbank/centre_frequency'])
  assert drift[0] == 0
  initial = np.asarray(plotting.initial_frontend(frontend).filterbank
                       .gabor_parameters())[:, 0]
  np.testing.assert_allclose(drift[1], 0.01 / initial.max(), rtol=1e-3)
  assert dict(events['drift/pooling'])[1] == 0
  assert dict(events['drift/filterbank'])[1] == drift[1]


def test_frontends_without_filters_still_log_histograms(tmp_path):
  model = models.AudioClassifier(frontend=leaf_audio.SincNet(), encoder=None,
                                 num_outputs=2)
  model.build((None, 16000))
  callback = tensorboard_figures.FrontendSummaries(tmp_path, figures=False)
  callback.set_model(model)
  callback.on_epoch_end(0)
  callback.on_train_end()
  events = read_events(tmp_path)
  assert 'filters/centre_hz' in events and not any(
      tag.startswith('pooling/') for tag in events)
  assert 'filter_responses' not in events


def test_a_model_without_a_frontend_is_ignored(tmp_path):
  model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
  callback = tensorboard_figures.FrontendSummaries(tmp_path)
  callback.set_model(model)
  callback.on_epoch_end(0)
  assert not list(tmp_path.iterdir())


def test_without_matplotlib_training_goes_on_with_histograms(tmp_path,
                                                              monkeypatch):
  monkeypatch.setitem(sys.modules, 'matplotlib.figure', None)
  model = models.AudioClassifier(frontend=leaf_audio.Leaf(), encoder=None,
                                 num_outputs=2)
  model.build((None, 16000))
  callback = tensorboard_figures.FrontendSummaries(tmp_path)
  callback.set_model(model)
  callback.on_epoch_end(0)
  callback.on_train_end()
  events = read_events(tmp_path)
  assert 'filters/centre_hz' in events and 'filter_responses' not in events
  assert not callback.figures  # Tried once, not every epoch.


@pytest.mark.parametrize('compression', ['log_pcen', 'pcen', 'logtbn'])
def test_every_efficient_leaf_compression_logs_its_parameters(tmp_path,
                                                               compression):
  # 'log_pcen' used to raise AttributeError ('PCENCompression' object has no
  # attribute 'alpha') at the end of the first epoch.
  frontend = leaf_audio.EfficientLeaf(n_filters=8, num_groups=2,
                                      compression=compression)
  model = models.AudioClassifier(frontend=frontend, encoder=None,
                                 num_outputs=2)
  model.build((None, 4000))
  callback = tensorboard_figures.FrontendSummaries(tmp_path, figures=False)
  callback.set_model(model)
  callback.on_epoch_end(0)
  callback.on_train_end()
  events = read_events(tmp_path)
  expected = {'pcen': 'compression/alpha', 'log_pcen': 'compression/alpha',
              'logtbn': 'compression/log10_gain'}[compression]
  (_, histogram), = events[expected]
  assert histogram[:, 2].sum() == 8
  # Alpha is 0.96 in linear space in either parameterisation.
  if 'pcen' in compression:
    assert histogram[:, 0].min() == pytest.approx(0.96, abs=1e-6)
  assert 'filterbank/pooling_width_ms' in events
