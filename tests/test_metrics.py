"""experiments/training/metrics.py against numpy and scipy references."""

import keras
import numpy as np
import pytest
import scipy.stats

from experiments.training import metrics


def logit(probability):
  probability = np.asarray(probability, np.float64)
  return np.log(probability / (1 - probability)).astype(np.float32)


def update(metric, labels, logits):
  metric.update_state(labels, logits)
  return float(metric.result())


def by_name(metric_list):
  return {metric.name: metric for metric in metric_list}


def average_precision(labels, scores):
  """Mean over positives of the precision at their rank (no interpolation)."""
  order = np.argsort(-scores, kind='stable')
  hits = labels[order]
  precision_at_rank = np.cumsum(hits) / np.arange(1, len(hits) + 1)
  return float(np.sum(precision_at_rank * hits) / np.sum(hits))


def roc_auc(labels, scores):
  """Probability that a positive outscores a negative (ties count 1/2)."""
  positives = scores[labels == 1][:, np.newaxis]
  negatives = scores[labels == 0][np.newaxis, :]
  ties = positives == negatives
  return float(np.mean((positives > negatives) + 0.5 * ties))


# Single-label metrics.


def test_accuracy_and_top5_accuracy_match_numpy():
  rng = np.random.default_rng(0)
  logits = rng.standard_normal((64, 10)).astype(np.float32)
  labels = rng.integers(0, 10, size=64)
  found = by_name(metrics.single_label_metrics(10))
  assert set(found) == {'accuracy', 'top5_accuracy'}
  top5 = np.argsort(-logits, axis=1)[:, :5]
  expected_top5 = np.mean(np.any(top5 == labels[:, np.newaxis], axis=1))
  expected_accuracy = np.mean(np.argmax(logits, axis=1) == labels)
  assert 0 < expected_accuracy < expected_top5 < 1  # The example discriminates.
  assert update(found['top5_accuracy'], labels, logits) == pytest.approx(
      expected_top5)
  assert update(found['accuracy'], labels, logits) == pytest.approx(
      expected_accuracy)


def test_top5_accuracy_with_fewer_than_five_classes_is_top_k():
  found = by_name(metrics.single_label_metrics(3))
  assert found['top5_accuracy'].get_config()['k'] == 3
  logits = np.array([[3., 2., 1.], [1., 2., 3.]], np.float32)
  assert update(found['top5_accuracy'], np.array([2, 0]), logits) == 1.0


def test_metric_functions_reject_bad_num_classes():
  for function in (metrics.single_label_metrics, metrics.multi_label_metrics):
    with pytest.raises(ValueError, match='num_classes must be a positive '
                       'integer; got 0'):
      function(0)


# Multi-label metrics.


def test_map_approximates_average_precision():
  rng = np.random.default_rng(1)
  labels = (rng.random((200, 3)) < [0.2, 0.4, 0.6]).astype(np.float32)
  probabilities = np.clip(0.3 * labels + 0.7 * rng.random(labels.shape), 0.01,
                          0.99)
  expected = np.mean([average_precision(labels[:, c], probabilities[:, c])
                      for c in range(3)])
  found = update(by_name(metrics.multi_label_metrics(3))['map'], labels,
                 logit(probabilities))
  assert 0.6 < expected < 0.95  # Neither trivial nor perfect.
  # PR-AUC on 200 thresholds interpolates between them; not exact AP.
  assert found == pytest.approx(expected, abs=0.01)


def test_map_is_exact_when_precision_is_constant():
  # Perfect ranking: precision 1 at every recall, AP = PR-AUC = 1.
  labels = np.array([[1], [1], [0], [0]], np.float32)
  scores = logit([[0.9], [0.8], [0.2], [0.1]])
  assert update(metrics.multi_label_metrics(1)[0], labels, scores) == (
      pytest.approx(1.0, abs=1e-6))


def test_auc_and_d_prime_on_a_known_auc():
  # 13 of the 16 positive-negative pairs are ordered: AUC 0.8125 exactly, and
  # every score sits between different thresholds so Keras' AUC is exact.
  labels = np.array([0, 0, 0, 0, 1, 1, 1, 1], np.float32)[:, np.newaxis]
  probabilities = np.array([0.1, 0.3, 0.5, 0.7, 0.4, 0.6, 0.8, 0.9])
  scores = logit(probabilities)[:, np.newaxis]
  assert roc_auc(labels[:, 0], probabilities) == 13 / 16
  found = by_name(metrics.multi_label_metrics(1))
  assert update(found['auc'], labels, scores) == pytest.approx(13 / 16,
                                                               abs=1e-6)
  assert update(found['d_prime'], labels, scores) == pytest.approx(
      np.sqrt(2) * scipy.stats.norm.ppf(13 / 16), abs=1e-5)


def test_d_prime_of_perfect_and_random_scores():
  labels = np.array([0, 0, 0, 1, 1, 1], np.float32)[:, np.newaxis]
  separated = logit([[0.1], [0.2], [0.3], [0.7], [0.8], [0.9]])
  assert update(metrics.DPrime(), labels, separated) == (
      np.sqrt(2) * scipy.stats.norm.ppf(1.0))  # +inf.
  same_scores = np.zeros_like(labels)  # AUC 0.5: no better than chance.
  assert update(metrics.DPrime(), labels, same_scores) == pytest.approx(
      np.sqrt(2) * scipy.stats.norm.ppf(0.5), abs=1e-6)


def test_d_prime_uses_the_class_averaged_auc():
  labels = np.array([[0, 1], [0, 0], [1, 1], [1, 0]], np.float32)
  probabilities = np.array([[0.2, 0.3], [0.3, 0.6], [0.8, 0.9], [0.6, 0.1]])
  aucs = [roc_auc(labels[:, c], probabilities[:, c]) for c in range(2)]
  assert aucs == [1.0, 0.75]  # Mean 0.875, d' 1.63; per-class mean: inf.
  d_prime = metrics.DPrime(num_labels=2)
  assert update(d_prime, labels, logit(probabilities)) == pytest.approx(
      np.sqrt(2) * scipy.stats.norm.ppf(np.mean(aucs)), abs=1e-5)


def test_d_prime_serializes_and_keeps_roc():
  d_prime = metrics.DPrime(num_labels=4, num_thresholds=50)
  restored = keras.saving.deserialize_keras_object(
      keras.saving.serialize_keras_object(d_prime))
  assert isinstance(restored, metrics.DPrime)
  assert restored.get_config() == d_prime.get_config()
  with pytest.raises(ValueError, match="curve must be 'ROC'.*got 'PR'"):
    metrics.DPrime(curve='PR')


def test_metrics_work_in_compile_and_evaluate():
  rng = np.random.default_rng(2)
  features = rng.standard_normal((32, 4)).astype(np.float32)
  labels = (features[:, :3] > 0).astype(np.float32)
  model = keras.Sequential([
      keras.Input((4,)),
      keras.layers.Dense(3, kernel_initializer='identity', use_bias=False)
  ])
  model.compile(loss=keras.losses.BinaryCrossentropy(from_logits=True),
                metrics=metrics.multi_label_metrics(3))
  results = model.evaluate(features, labels, batch_size=8, return_dict=True,
                           verbose=0)
  # The logits are the features, which rank the labels perfectly.
  assert results['map'] == pytest.approx(1.0, abs=1e-6)
  assert results['auc'] == pytest.approx(1.0, abs=1e-6)
  assert results['d_prime'] > 5
