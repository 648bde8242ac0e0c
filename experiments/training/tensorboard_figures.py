"""TensorBoard summaries of what the frontend learns, written every epoch.

`EpochScalars` writes each epoch's metrics (model_dir/tensorboard/train and
validation). `FrontendSummaries` writes into `<log_dir>` (training uses
model_dir/tensorboard/frontend), at step = epoch:
  images      'filter_responses': initial vs learned responses on a Hz axis
              (`leaf_audio.plotting.plot_filter_responses`)
  histograms  'filters/centre_hz', 'filters/bandwidth_hz', every parameter a
              stage declares through `leaf_audio.stages` in physical units
              ('pooling/pooling_width_ms', 'compression/alpha', ...; see
              `parameter_histograms`), and 'weights/<path in the frontend>'
              (e.g. 'weights/PCEN/alpha') for every frontend weight
  scalars     'drift/<stage>' and 'drift/<stage>/<parameter>': how far each
              moved from its initialisation (`drift_scalars`)

The figure needs matplotlib, which the `experiments` extra installs; without
it the histograms are still written and one line of the run's log (not the
console) says why the image is not.
"""

from absl import logging
import keras
import numpy as np
import tensorflow as tf

from leaf_audio import plotting


def _frontend_of(model):
  return getattr(model, 'frontend', None)


def parameter_histograms(frontend) -> dict:
  """Learned parameters in physical units: summary name -> float64 array.

  'filters/centre_hz' and 'filters/bandwidth_hz' (declared by the
  filterbank or measured from its taps), then every other parameter a stage
  declares through `leaf_audio.stages` as '<stage>/<name>[_<unit>]', e.g.
  'pooling/pooling_width_ms', 'compression/alpha' (any parameterisation),
  'filterbank/pooling_width_ms' for a filterbank that pools itself.
  """
  values = {}
  try:
    summary = plotting.filterbank_summary(frontend)
    values['filters/centre_hz'] = summary.centre_hz
    values['filters/bandwidth_hz'] = summary.bandwidth_hz
  except ValueError:
    pass  # no time-domain filters to measure
  for stage, parameters in plotting.stage_parameters(frontend).items():
    for name, parameter in parameters.items():
      if stage == 'filterbank' and name in ('centre_frequency', 'bandwidth'):
        continue  # filters/centre_hz, filters/bandwidth_hz
      unit = f'_{parameter.unit.lower()}' if parameter.unit else ''
      values[f'{stage}/{name}{unit}'] = parameter.values
  return values


def drift_scalars(frontend, initial) -> dict:
  """How far each stage and parameter moved from `initial`: name -> float.

  'drift/<stage>' (the stage's largest) and 'drift/<stage>/<parameter>'
  (see `leaf_audio.plotting.parameter_drift`: a relative change, 0.1 is
  about 10 %).
  """
  values = {}
  for stage, moved in plotting.parameter_drift(frontend, initial).items():
    values[f'drift/{stage}'] = moved['moved']
    values.update({f'drift/{stage}/{name}': value
                   for name, value in moved.items() if name != 'moved'})
  return values


class FrontendSummaries(keras.callbacks.Callback):
  """Logs the frontend's filter responses and parameters every epoch.

  Reads the model's `frontend` attribute (an `AudioClassifier`); does nothing
  for models without one.

  Args:
    log_dir: folder of the TensorBoard event files.
    figures: bool, default True; also draw the filter-response figure (the
      histograms are always written).
  """

  def __init__(self, log_dir, figures: bool = True):
    super().__init__()
    self.log_dir = str(log_dir)
    self.figures = figures
    self._writer = None
    self._initial = None

  def _summary_writer(self):
    if self._writer is None:
      self._writer = tf.summary.create_file_writer(self.log_dir)
    return self._writer

  def on_epoch_end(self, epoch, logs=None):
    frontend = _frontend_of(self.model)
    if frontend is None or not frontend.built:
      return
    with self._summary_writer().as_default(step=epoch):
      for weight in frontend.weights:
        # 'audio_classifier/leaf/PCEN/alpha' -> 'weights/PCEN/alpha'.
        name = weight.path.split(f'{frontend.name}/', 1)[-1]
        tf.summary.histogram(f'weights/{name}', np.asarray(weight.value))
      for name, values in parameter_histograms(frontend).items():
        tf.summary.histogram(name, values)
      if self._initial is None:
        self._initial = plotting.initial_frontend(frontend)
      for name, value in drift_scalars(frontend, self._initial).items():
        tf.summary.scalar(name, value)
      if self.figures:
        self._write_figure(frontend)
    self._writer.flush()

  def _write_figure(self, frontend):
    try:
      if self._initial is None:
        self._initial = plotting.initial_frontend(frontend)
      figure = plotting.plot_filter_responses(frontend, self._initial)
    except ImportError as error:
      logging.info('No filter-response images in TensorBoard: %s', error)
      self.figures = False
      return
    except (ValueError, TypeError) as error:
      # A frontend without time-domain filters (or one plotting does not
      # know): its histograms are still written.
      logging.info('No filter-response image for %s: %s',
                   type(frontend).__name__, error)
      self.figures = False
      return
    png = plotting.figure_to_png(figure, dpi=64)
    image = tf.image.decode_png(png, channels=4)[tf.newaxis]
    tf.summary.image('filter_responses', image)

  def on_train_end(self, logs=None):
    if self._writer is not None:
      self._writer.close()
      self._writer = None


class EpochScalars(keras.callbacks.Callback):
  """Writes each epoch's logs as TensorBoard scalars, as Keras' TensorBoard
  callback does: 'epoch_<name>' under <log_dir>/train, and the 'val_<name>'
  entries as 'epoch_<name>' under <log_dir>/validation, at step = epoch.

  Args:
    log_dir: str or path, the run's tensorboard folder.
  """

  def __init__(self, log_dir):
    super().__init__()
    self.log_dir = str(log_dir)
    self._writers = {}

  def _writer(self, kind):
    if kind not in self._writers:
      self._writers[kind] = tf.summary.create_file_writer(
          f'{self.log_dir}/{kind}')
    return self._writers[kind]

  def on_epoch_end(self, epoch, logs=None):
    for name, value in sorted((logs or {}).items()):
      kind, tag = (('validation', name[4:]) if name.startswith('val_') else
                   ('train', name))
      with self._writer(kind).as_default(step=epoch):
        tf.summary.scalar(f'epoch_{tag}', float(value))
    for writer in self._writers.values():
      writer.flush()

  def on_train_end(self, logs=None):
    for writer in self._writers.values():
      writer.close()
    self._writers = {}
