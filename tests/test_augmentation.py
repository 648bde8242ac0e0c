"""WaveformAugmentation (experiments/data/augmentation.py): each transform
against its closed form, seeding, and the training stream with augmentation
(labels and shapes kept, exact restarts, shared batches across workers)."""

import numpy as np
import pytest
import tensorflow as tf

from experiments.data import augmentation
from experiments.data import pipeline
from experiments.data import wav

RATE = 16000
SAMPLES = 16000
TRANSFORMS = ('gain', 'shift', 'noise', 'speed', 'microphone', 'room')


def only(name, **kwargs):
  """An augmentation that applies transform `name` to every crop."""
  return augmentation.WaveformAugmentation(
      **{f'{name}_probability': 1.0}, **kwargs)


def seed(index):
  return tf.constant([7, index], tf.int64)


def chirp():
  t = np.arange(SAMPLES) / RATE
  return (0.3 * np.sin(2 * np.pi * (200 + 1500 * t) * t)).astype(np.float32)


def peak_hz(audio):
  return float(np.argmax(np.abs(np.fft.rfft(audio)))) * RATE / len(audio)


@pytest.mark.parametrize('name', TRANSFORMS)
def test_each_transform_keeps_the_shape_and_is_a_function_of_its_seed(name):
  augment = tf.function(only(name))
  audio = chirp()
  first = augment(audio, seed(1)).numpy()
  assert first.shape == (SAMPLES,) and first.dtype == np.float32
  assert np.isfinite(first).all()
  np.testing.assert_array_equal(augment(audio, seed(1)).numpy(), first)
  others = [augment(audio, seed(i)).numpy() for i in range(2, 6)]
  assert any(np.abs(other - first).max() > 1e-4 for other in others)
  assert np.abs(first - audio).max() > 1e-4


def test_all_off_is_the_identity_and_inactive():
  augment = augmentation.WaveformAugmentation()
  assert not augment.active
  audio = chirp()
  np.testing.assert_array_equal(augment(audio, seed(0)).numpy(), audio)


def test_gain_is_a_constant_factor_within_the_range():
  augment = only('gain', max_gain_db=12.0)
  audio = chirp()
  gains = []
  for index in range(40):
    out = augment(audio, seed(index)).numpy()
    ratio = out[audio != 0] / audio[audio != 0]
    np.testing.assert_allclose(ratio, ratio[0], rtol=1e-5)
    gains.append(20 * np.log10(ratio[0]))
  assert -12.0 - 1e-4 <= min(gains) < -6 and 6 < max(gains) <= 12.0 + 1e-4


def test_shift_delays_or_advances_with_zeros_shifted_in():
  augment = only('shift', max_shift_ms=10.0)  # At most 160 samples.
  audio = np.random.default_rng(0).standard_normal(SAMPLES).astype(np.float32)
  shifts = []
  for index in range(20):
    out = augment(audio, seed(index)).numpy()
    shift = next(k for k in range(-160, 161)
                 if np.array_equal(np.roll(audio, k)[max(k, 0):SAMPLES +
                                                     min(k, 0)],
                                   out[max(k, 0):SAMPLES + min(k, 0)]))
    zeros = out[:shift] if shift > 0 else out[SAMPLES + shift:]
    assert not np.any(zeros)
    shifts.append(shift)
  assert min(shifts) < 0 < max(shifts)


def test_noise_is_added_at_an_snr_within_the_range():
  augment = only('noise', snr_db=(3.0, 9.0))
  audio = chirp()
  snrs = []
  for index in range(20):
    noise = augment(audio, seed(index)).numpy() - audio
    snrs.append(10 * np.log10(np.mean(audio**2) / np.mean(noise**2)))
  assert 3.0 - 0.05 <= min(snrs) and max(snrs) <= 9.0 + 0.05
  assert max(snrs) - min(snrs) > 2.0


def test_coloured_noise_runs_from_white_to_brown():
  # Power of the 4-8 kHz band over the 100-500 Hz band: about 10 for white
  # noise (band widths 4000 / 400), far below 1 for brown (1 / f^2).
  augment = only('noise', snr_db=(0.0, 0.0))
  silence_free = np.full(SAMPLES, 0.1, np.float32)
  ratios = []
  for index in range(30):
    noise = augment(silence_free, seed(index)).numpy() - silence_free
    power = np.abs(np.fft.rfft(noise))**2
    ratios.append(power[4000:8000].sum() / power[100:500].sum())
  assert max(ratios) > 3.0 and min(ratios) < 0.1


def test_noise_from_a_folder_is_an_excerpt_of_its_files(tmp_path):
  t = np.arange(3 * RATE) / RATE
  wav.write_wav(tmp_path / 'hum.wav',
                (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), RATE)
  augment = only('noise', noise_folder=str(tmp_path), snr_db=(10.0, 10.0))
  audio = chirp()
  noise = augment(audio, seed(3)).numpy() - audio
  assert abs(peak_hz(noise) - 440) <= 1
  np.testing.assert_allclose(10 * np.log10(np.mean(audio**2) /
                                           np.mean(noise**2)), 10.0, atol=0.05)


def test_a_noise_folder_without_wav_files_is_refused(tmp_path):
  with pytest.raises(ValueError, match='holds no WAV file'):
    only('noise', noise_folder=str(tmp_path))


def test_speed_scales_frequencies_by_the_factor():
  t = np.arange(SAMPLES) / RATE
  tone = np.sin(2 * np.pi * 1000 * t).astype(np.float32)
  for factor in (0.9, 1.05):
    out = only('speed', speed_range=(factor, factor))(tone, seed(0)).numpy()
    assert abs(peak_hz(out) - 1000 * factor) <= 1.0
    middle = (SAMPLES - 1) // 2
    # The centre stays in place (interpolated within one sample).
    assert abs(out[middle] - tone[middle]) < 0.1


def test_microphone_response_is_the_butterworth_magnitude_and_tilt():
  augment = only('microphone', highpass_hz=(400.0, 400.0),
                 lowpass_hz=(2000.0, 2000.0),
                 tilt_db_per_octave=(3.0, 3.0))
  audio = np.random.default_rng(1).standard_normal(SAMPLES).astype(np.float32)
  out = augment(audio, seed(0)).numpy()
  frequencies = np.array([100.0, 400.0, 1000.0, 2000.0, 4000.0])
  bins = frequencies.astype(int)  # 1 Hz per bin at 16000 samples.
  measured = np.abs(np.fft.rfft(out)[bins] / np.fft.rfft(audio)[bins])
  expected = (1 / np.sqrt(1 + (400 / frequencies)**4) /
              np.sqrt(1 + (frequencies / 2000)**8) *
              10**(3.0 * np.log2(frequencies / 1000) / 20))
  np.testing.assert_allclose(measured, expected, rtol=1e-3)


def test_room_response_is_a_direct_path_and_a_decaying_tail():
  augment = only('room', rt60_seconds=(0.3, 0.3),
                 direct_to_reverberant_db=(6.0, 6.0))
  impulse = np.zeros(SAMPLES, np.float32)
  impulse[0] = 1.0
  response = augment(impulse, seed(0)).numpy()
  np.testing.assert_allclose(response[0], 1.0, atol=1e-4)
  tail = response[1:]
  np.testing.assert_allclose(np.sum(tail**2), 10**(-6.0 / 10), rtol=1e-3)
  # 60 dB of decay in 0.3 s: 20 dB per 0.1 s (1600 samples).
  early = np.sum(tail[:1600]**2)
  late = np.sum(tail[1600:3200]**2)
  assert 10 < early / late < 1000
  assert np.abs(response[int(0.3 * RATE) + 1:]).max() < 1e-5
  # Linear: a delayed impulse gives the delayed response.
  delayed = np.roll(impulse, 100)
  np.testing.assert_allclose(augment(delayed, seed(0)).numpy()[100:],
                             response[:-100], atol=1e-5)


def test_a_probability_applies_the_transform_to_that_share_of_crops():
  augment = augmentation.WaveformAugmentation(gain_probability=0.5)
  audio = chirp()
  changed = [not np.array_equal(augment(audio, seed(i)).numpy(), audio)
             for i in range(200)]
  assert 0.38 < np.mean(changed) < 0.62


@pytest.mark.parametrize('argument, value, message', [
    ('gain_probability', 1.5, 'gain_probability must be a probability'),
    ('snr_db', (30.0, 5.0), 'snr_db must be a pair'),
    ('speed_range', (0.0, 1.1), 'speed_range must be a pair'),
    ('lowpass_hz', (3000.0, 9000.0), 'lowpass_hz must be a pair'),
    ('max_gain_db', -1.0, 'max_gain_db must be a number >= 0'),
])
def test_bad_arguments_are_named(argument, value, message):
  with pytest.raises(ValueError, match=message) as error:
    augmentation.WaveformAugmentation(**{argument: value})
  assert repr(value) in str(error.value)


def examples(n, length=4000):
  rng = np.random.default_rng(5)
  audio = rng.uniform(-0.5, 0.5, (n, length)).astype(np.float32)
  return tf.data.Dataset.from_tensor_slices(
      {'audio': audio, 'label': np.arange(n, dtype=np.int32)})


ALL_ON = dict(gain_probability=1.0, shift_probability=0.5,
              noise_probability=0.5, speed_probability=0.5,
              microphone_probability=0.5, room_probability=0.5,
              rt60_seconds=(0.05, 0.1))


def stream(first_batch=0, count=8, augment=True, **kwargs):
  return list(pipeline.training_stream(
      examples(7), batch_size=3, crop_samples=2000, shuffle_buffer=7, seed=4,
      first_batch=first_batch,
      augmentation=augmentation.WaveformAugmentation(**ALL_ON)
      if augment else None, **kwargs).take(count).as_numpy_iterator())


def test_the_stream_keeps_labels_and_shapes_and_changes_audio():
  plain, augmented = stream(augment=False), stream()
  for (audio, label), (want_audio, want_label) in zip(augmented, plain):
    np.testing.assert_array_equal(label, want_label)
    assert audio.shape == want_audio.shape == (3, 2000)
    assert audio.dtype == np.float32
  assert max(np.abs(a - b).max() for (a, _), (b, _) in zip(augmented, plain)
             ) > 1e-3


def test_an_augmented_stream_restarts_exactly_at_any_batch():
  whole = stream(count=10)
  for first_batch in (1, 6):
    for (audio, label), (want_audio, want_label) in zip(
        stream(first_batch, count=10 - first_batch), whole[first_batch:]):
      np.testing.assert_array_equal(label, want_label)
      np.testing.assert_array_equal(audio, want_audio)


def test_two_input_pipelines_augment_each_example_as_one_pipeline_does():
  whole = stream(count=4)
  shares = []
  for pipeline_id in range(2):
    context = tf.distribute.InputContext(
        num_input_pipelines=2, input_pipeline_id=pipeline_id,
        num_replicas_in_sync=2)
    shares.append(list(pipeline.training_stream(
        examples(7), batch_size=4, crop_samples=2000, shuffle_buffer=7,
        seed=4, input_context=context,
        augmentation=augmentation.WaveformAugmentation(**ALL_ON)).take(
            2).as_numpy_iterator()))
  one_pipeline = list(pipeline.training_stream(
      examples(7), batch_size=4, crop_samples=2000, shuffle_buffer=7, seed=4,
      augmentation=augmentation.WaveformAugmentation(**ALL_ON)).take(
          2).as_numpy_iterator())
  del whole
  for step, (audio, label) in enumerate(one_pipeline):
    # Pipeline k holds examples k, k + 2 of the global batch.
    for k in range(2):
      np.testing.assert_array_equal(shares[k][step][1], label[k::2])
      np.testing.assert_array_equal(shares[k][step][0], audio[k::2])


def train_in_process(model_dir, bindings):
  """A tiny run of the augmentation recipe, with mel: augmentation acts on
  the waveform before any frontend (LEAF's runs resume exactly in
  tests/test_training_loop.py), and mel traces in a fraction of the time."""
  import gin  # pylint: disable=g-import-not-at-top
  from conftest import REPO_ROOT  # pylint: disable=g-import-not-at-top
  from experiments import configurables  # pylint: disable=g-import-not-at-top,unused-import
  from experiments import gin_files  # pylint: disable=g-import-not-at-top
  from experiments.training import job  # pylint: disable=g-import-not-at-top
  gin.clear_config()
  try:
    gin_files.parse([str(REPO_ROOT / 'gin_configs' / name) for name in (
        'common.gin', 'mel.gin', 'convnet.gin', 'augmentation.gin')],
                    bindings)
    return job.train(model_dir=str(model_dir))
  finally:
    gin.clear_config()


@pytest.mark.slow
def test_an_augmented_run_resumes_exactly_and_evaluates_clean_clips(
    tmp_path, tone_folder, data_dir, monkeypatch):
  import json  # pylint: disable=g-import-not-at-top
  import keras  # pylint: disable=g-import-not-at-top
  import experiments_helpers as helpers  # pylint: disable=g-import-not-at-top
  calls = {'training_stream': [], 'eval_clips': []}
  for name in calls:
    original = getattr(pipeline, name)

    def spy(*args, _original=original, _name=name, **kwargs):
      calls[_name].append(kwargs)
      return _original(*args, **kwargs)

    monkeypatch.setattr(pipeline, name, spy)

  def bindings(epochs):
    return helpers.tiny_bindings(tone_folder, data_dir, **{
        'ConvNet.filters': '[4, 8]', 'train.num_epochs': epochs,
        'AudioClassifier.normalization': 'None'})

  train_in_process(tmp_path / 'whole', bindings(2))
  # Killed after epoch 1 (its checkpoint), then rerun to 2 epochs.
  train_in_process(tmp_path / 'resumed', bindings(1))
  train_in_process(tmp_path / 'resumed', bindings(2))
  assert ((tmp_path / 'resumed' / 'metrics.csv').read_text() ==
          (tmp_path / 'whole' / 'metrics.csv').read_text())
  for got, want in zip(
      keras.saving.load_model(tmp_path / 'resumed' / 'last.keras').weights,
      keras.saving.load_model(tmp_path / 'whole' / 'last.keras').weights):
    np.testing.assert_array_equal(got.numpy(), want.numpy())
  # Training batches (also precise BatchNorm's) are augmented; evaluation
  # clips never are.
  streams = calls['training_stream']
  assert streams and all(
      isinstance(kwargs['augmentation'], augmentation.WaveformAugmentation)
      and kwargs['augmentation'].room_probability == 0.3
      for kwargs in streams)
  assert calls['eval_clips'] and all(
      'augmentation' not in kwargs for kwargs in calls['eval_clips'])
  recorded = json.loads((tmp_path / 'whole' / 'run.json').read_text())
  assert recorded['bindings']['WaveformAugmentation.room_probability'] == (
      '0.3')
  assert recorded['bindings']['WaveformAugmentation.max_gain_db'] == '20.0'
