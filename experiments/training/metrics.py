"""Keras metrics of the LEAF paper's tasks, computed from logits.

Single-label tasks (one class per clip, integer labels [batch]): accuracy and
top-5 accuracy. Multi-label tasks (e.g. AudioSet, multi-hot labels [batch,
num_classes]): mean average precision, ROC AUC and d-prime, the numbers
reported for AudioSet by the paper and by PANNs (Kong et al., 2020).

Every function returns new metric objects, to pass to `model.compile` or to
update by hand; models output logits [batch, num_classes].
"""

import math

import keras
import tensorflow as tf

from experiments.models import register  # One Keras package for experiments.
from leaf_audio import validation


def single_label_metrics(num_classes: int):
  """Accuracy and top-5 accuracy of logits against integer labels.

  Top-k accuracy ranks the logits directly: softmax keeps their order.

  Args:
    num_classes: positive int; the number of logits. With fewer than 5
      classes, 'top5_accuracy' is top-`num_classes` accuracy (always 1).

  Returns:
    [SparseCategoricalAccuracy named 'accuracy',
     SparseTopKCategoricalAccuracy(k=min(5, num_classes)) named
     'top5_accuracy'], updated with (labels [batch] int, logits [batch,
    num_classes]).
  """
  num_classes = validation.check_positive_int('single_label_metrics',
                                              'num_classes', num_classes)
  return [
      keras.metrics.SparseCategoricalAccuracy(name='accuracy'),
      keras.metrics.SparseTopKCategoricalAccuracy(
          k=min(5, num_classes), name='top5_accuracy'),
  ]


def multi_label_metrics(num_classes: int):
  """Mean average precision, ROC AUC and d-prime of logits, per class averaged.

  All three pass the logits through a sigmoid (`from_logits=True`) and
  average over classes (`multi_label=True`, the macro average of AudioSet
  papers).

  'map' is the area under the precision-recall curve built on 200 fixed
  thresholds of the sigmoid outputs with Davis & Goadrich's interpolation
  (`keras.metrics.AUC(curve='PR')`): an approximation of average precision
  (the step-wise sum over every ranked example, as scikit-learn computes it);
  expect differences of the order of 0.01, larger with few positives or
  scores crowded between two thresholds.

  Args:
    num_classes: positive int; the number of logits and labels per example.

  Returns:
    [AUC(curve='PR') named 'map', AUC(curve='ROC') named 'auc', DPrime named
    'd_prime'], updated with (multi-hot labels [batch, num_classes], logits
    [batch, num_classes]).
  """
  num_classes = validation.check_positive_int('multi_label_metrics',
                                              'num_classes', num_classes)
  return [
      keras.metrics.AUC(curve='PR', multi_label=True, num_labels=num_classes,
                        from_logits=True, name='map'),
      keras.metrics.AUC(curve='ROC', multi_label=True, num_labels=num_classes,
                        from_logits=True, name='auc'),
      DPrime(num_labels=num_classes, name='d_prime'),
  ]


@register()
class DPrime(keras.metrics.AUC):
  """Sensitivity index d' = sqrt(2) * Phi^-1(ROC AUC).

  Phi^-1 is the inverse of the standard normal CDF; d' is the distance, in
  standard deviations, between the means of two equal-variance Gaussian score
  distributions (positives and negatives) that have this ROC AUC. With
  `multi_label=True` it is d' of the class-averaged AUC, as reported for
  AudioSet (Hershey et al., 2017; PANNs). AUC 0.5 gives 0, AUC 1 gives +inf.

  This is `keras.metrics.AUC` with curve='ROC' (same state, same update) and
  a different `result()`.

  Args:
    num_thresholds: int, default 200; see `keras.metrics.AUC`.
    multi_label: bool, default True; average the AUC over labels.
    num_labels: int or None; number of labels when multi_label (None: taken
      from the first update).
    from_logits: bool, default True; pass predictions through a sigmoid.
    name: default 'd_prime'.
    **kwargs: other `keras.metrics.AUC` arguments (dtype, thresholds,
      label_weights, summation_method); curve must be 'ROC'.
  """

  def __init__(self,
               num_thresholds: int = 200,
               multi_label: bool = True,
               num_labels=None,
               from_logits: bool = True,
               name: str = 'd_prime',
               **kwargs):
    curve = kwargs.pop('curve', 'ROC')
    if curve != 'ROC':
      raise ValueError(f"DPrime: curve must be 'ROC' (d' is defined from the "
                       f'ROC AUC); got {curve!r}.')
    super().__init__(
        num_thresholds=num_thresholds,
        curve='ROC',
        multi_label=multi_label,
        num_labels=num_labels,
        from_logits=from_logits,
        name=name,
        **kwargs)

  def result(self):
    auc = super().result()
    return math.sqrt(2.0) * tf.math.ndtri(auc)
