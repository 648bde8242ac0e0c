"""One custom training loop for every tf.distribute strategy.

`TrainStep` is the step that Keras' `fit` would run, written with the
tf.distribute primitives so that it also runs where `fit` cannot
(MultiWorkerMirroredStrategy, keras-team/keras#20585):

  strategy.run(replica step) on each replica's share of the global batch
    loss = tf.nn.compute_average_loss(per-example loss, global batch)
           + tf.nn.scale_regularization_loss(model.losses)
    gradients of optimizer.scale_loss(loss)   (loss scaling under
                                               mixed_float16)
    optimizer.apply_gradients (all-reduced over replicas by tf.distribute)
  strategy.reduce(SUM) of the loss sum, example count and correct count.

`run_epoch` drives it over one epoch of a distributed dataset with a Keras
progress bar. Checkpointing, evaluation and the files of a run are the
caller's (experiments/training/job.py).
"""

from typing import Callable, Optional

import keras
import tensorflow as tf


def per_example_loss(multi_label: bool):
  """The loss of each example (not reduced): [batch] from (labels, logits)."""
  if multi_label:
    return keras.losses.BinaryCrossentropy(from_logits=True, reduction=None)
  return keras.losses.SparseCategoricalCrossentropy(from_logits=True,
                                                    reduction=None)


class TrainStep:
  """A distributed training step: (audio, labels) -> summed loss statistics.

  Args:
    strategy: the tf.distribute strategy the model and optimizer were built
      under.
    model: a built Keras model returning logits.
    optimizer: a Keras optimizer (a LossScaleOptimizer under mixed
      precision), built on model.trainable_variables.
    multi_label: whether labels are multi-hot [batch, classes] (binary
      cross-entropy) or class indices [batch] (softmax cross-entropy).
    global_batch_size: examples per step over all replicas; the loss is the
      sum of per-example losses divided by it, as `fit` would average.

  Calling it with one element of `strategy.distribute_datasets_from_function`
  runs one optimizer step and returns (loss_sum, examples, correct): float32
  scalars summed over replicas; `correct` counts top-1 hits (0 for
  multi-label tasks).
  """

  def __init__(self, strategy, model, optimizer, multi_label: bool,
               global_batch_size: int):
    self.strategy = strategy
    self.model = model
    self.optimizer = optimizer
    self.multi_label = multi_label
    self.global_batch_size = global_batch_size
    self._loss = per_example_loss(multi_label)
    self._function = tf.function(self._distributed_step)

  def _replica_step(self, audio, labels):
    variables = self.model.trainable_variables
    with tf.GradientTape() as tape:
      logits = self.model(audio, training=True)
      losses = tf.cast(self._loss(labels, logits), tf.float32)
      loss = tf.nn.compute_average_loss(
          losses, global_batch_size=self.global_batch_size)
      if self.model.losses:
        loss += tf.nn.scale_regularization_loss(
            tf.add_n([tf.cast(l, tf.float32) for l in self.model.losses]))
      scaled_loss = self.optimizer.scale_loss(loss)
    gradients = tape.gradient(scaled_loss, variables)
    self.optimizer.apply_gradients(zip(gradients, variables))
    if self.multi_label:
      correct = tf.constant(0., tf.float32)
    else:
      predicted = tf.argmax(logits, axis=-1, output_type=tf.int32)
      correct = tf.reduce_sum(
          tf.cast(tf.equal(predicted, tf.cast(labels, tf.int32)), tf.float32))
    examples = tf.cast(tf.shape(audio)[0], tf.float32)
    return tf.reduce_sum(losses), examples, correct

  def _distributed_step(self, batch):
    audio, labels = batch
    results = self.strategy.run(self._replica_step, args=(audio, labels))
    return tuple(
        self.strategy.reduce(tf.distribute.ReduceOp.SUM, value, axis=None)
        for value in results)

  def __call__(self, batch):
    return self._function(batch)


class EpochTotals:
  """Running sums of one epoch's training statistics, kept in variables so a
  checkpoint taken mid-epoch restores them.

  Attributes:
    loss_sum, examples, correct: float64 tf.Variables.
  """

  def __init__(self):
    self.loss_sum = tf.Variable(0., dtype=tf.float64, trainable=False)
    self.examples = tf.Variable(0., dtype=tf.float64, trainable=False)
    self.correct = tf.Variable(0., dtype=tf.float64, trainable=False)

  def reset(self):
    for variable in (self.loss_sum, self.examples, self.correct):
      variable.assign(0.)

  def add(self, loss_sum, examples, correct):
    self.loss_sum.assign_add(tf.cast(loss_sum, tf.float64))
    self.examples.assign_add(tf.cast(examples, tf.float64))
    self.correct.assign_add(tf.cast(correct, tf.float64))

  def logs(self, multi_label: bool) -> dict:
    """{'loss': mean loss, 'accuracy': top-1 accuracy (single-label only)}."""
    examples = max(float(self.examples.numpy()), 1.)
    logs = {'loss': float(self.loss_sum.numpy()) / examples}
    if not multi_label:
      logs['accuracy'] = float(self.correct.numpy()) / examples
    return logs


def run_epoch(step: TrainStep, iterator, first_step: int, num_steps: int,
              totals: EpochTotals, verbose: int = 1,
              after_step: Optional[Callable[[int], None]] = None) -> dict:
  """Runs steps first_step .. num_steps - 1 of an epoch.

  Args:
    step: the TrainStep.
    iterator: an iterator over the distributed dataset positioned at
      `first_step` of this epoch.
    first_step: steps of this epoch already done (restored from a
      checkpoint), whose statistics are in `totals`.
    num_steps: steps per epoch.
    totals: the epoch's running sums (updated in place).
    verbose: 0 silent, 1 progress bar, 2 one line per epoch.
    after_step: called with the number of steps done after each step (for
      mid-epoch checkpoints).

  Returns:
    The epoch's training logs (see EpochTotals.logs).
  """
  progress = keras.utils.Progbar(
      num_steps, verbose=verbose, stateful_metrics=['loss', 'accuracy'])
  if first_step:
    progress.update(first_step, list(totals.logs(step.multi_label).items()))
  for index in range(first_step, num_steps):
    totals.add(*step(next(iterator)))
    progress.update(index + 1, list(totals.logs(step.multi_label).items()))
    if after_step is not None:
      after_step(index + 1)
  return totals.logs(step.multi_label)
