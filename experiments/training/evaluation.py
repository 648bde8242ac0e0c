"""Evaluation on full clips: 1 s windows, logits averaged per clip (the paper's
protocol), for validation after each epoch and for the final test."""

from typing import Dict, Sequence

import keras
import tensorflow as tf

from experiments.training import metrics as metrics_lib
from experiments import models


def clip_metrics(num_classes: int, multi_label: bool):
  """Fresh metric objects for a task: accuracy and top-5, or mAP, AUC, d'."""
  if multi_label:
    return metrics_lib.multi_label_metrics(num_classes)
  return metrics_lib.single_label_metrics(num_classes)


def clip_predictor(windowed_model):
  """A tf.function mapping waveforms [batch, samples] (any length) to logits.

  Traced once for every clip length; keep it to evaluate the same model
  again (each new function traces the model again, seconds for LEAF).
  """
  return tf.function(
      lambda waveform: windowed_model(waveform, training=False),
      input_signature=[tf.TensorSpec([None, None], tf.float32)])


def evaluate_clips(windowed_model, clips: tf.data.Dataset,
                   metrics: Sequence[keras.metrics.Metric],
                   predict=None) -> Dict[str, float]:
  """Runs a WindowedClassifier over full clips and returns metric values.

  Args:
    windowed_model: maps float waveforms [batch, samples] (any length) to
      logits [batch, classes].
    clips: (waveform [1, samples], label [1] or [1, classes]) pairs.
    metrics: Keras metrics updated with (labels, logits); reset first.
    predict: `clip_predictor(windowed_model)` made earlier, or None for a
      new one.
  """
  predict = predict or clip_predictor(windowed_model)
  for metric in metrics:
    metric.reset_state()
  for waveform, label in clips:
    logits = predict(tf.cast(waveform, tf.float32))
    for metric in metrics:
      metric.update_state(label, logits)
  return {metric.name: float(metric.result()) for metric in metrics}


class ClipEvaluation(keras.callbacks.Callback):
  """Adds 'val_<metric>' for full-clip evaluation to each epoch's logs.

  Place it before callbacks that read those logs (checkpoints, CSV logger).

  Args:
    clips: the validation clips, as for `evaluate_clips`.
    num_classes: number of classes.
    multi_label: whether the task is multi-label.
    window_samples: window length in samples (1 s).
  """

  def __init__(self, clips, num_classes, multi_label, window_samples):
    super().__init__()
    self.clips = clips
    self.metrics = clip_metrics(num_classes, multi_label)
    self.window_samples = window_samples
    self._windowed = None
    self._predict = None

  def on_epoch_end(self, epoch, logs=None):
    # One traced function for every epoch: the model object stays the same.
    if self._windowed is None or self._windowed.classifier is not self.model:
      self._windowed = models.WindowedClassifier(self.model,
                                                 self.window_samples)
      self._predict = clip_predictor(self._windowed)
    results = evaluate_clips(self._windowed, self.clips, self.metrics,
                             self._predict)
    if logs is not None:
      logs.update({f'val_{name}': value for name, value in results.items()})
