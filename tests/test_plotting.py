"""Tests for leaf_audio/plotting.py: figures drawn from a trained model show
the layers' actual parameters, in Hz, ms and seconds."""

import math
import sys

import keras
import numpy as np
import pytest

import leaf_audio
from leaf_audio import plotting

SAMPLE_RATE = 16000
PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'
FWHM_PER_STD = 2 * math.sqrt(2 * math.log(2))


def tones(count, seconds, rng):
  """Clips of 300 Hz (label 0) and 3 kHz (label 1) tones in noise."""
  t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
  labels = np.arange(count) % 2
  clips = [0.5 * np.sin(2 * np.pi * (300., 3000.)[label] * t +
                        rng.uniform(0, 6.28)) +
           0.05 * rng.standard_normal(t.size) for label in labels]
  return np.stack(clips).astype(np.float32), labels


@pytest.fixture(scope='module')
def trained():
  """A Leaf and a TimeDomainFilterbanks trained together for two steps.

  One model holds both frontends side by side, so one fit (and one graph
  trace) trains both.
  """
  keras.utils.set_random_seed(0)
  leaf = leaf_audio.Leaf(name='leaf')
  tdfbanks = leaf_audio.TimeDomainFilterbanks(name='tdfbanks')
  inputs = keras.Input((4000,))
  pooled = [keras.layers.GlobalAveragePooling1D()(frontend(inputs))
            for frontend in (leaf, tdfbanks)]
  outputs = keras.layers.Dense(2)(keras.layers.Concatenate()(pooled))
  model = keras.Model(inputs, outputs)
  model.compile(optimizer=keras.optimizers.Adam(0.01),
                loss=keras.losses.SparseCategoricalCrossentropy(
                    from_logits=True),
                run_eagerly=True)  # Two steps: cheaper than tracing them.
  waveforms, labels = tones(8, 0.25, np.random.default_rng(0))
  model.fit(waveforms, labels, batch_size=4, epochs=1, verbose=0)
  return {'leaf': leaf, 'tdfbanks': tdfbanks}


@pytest.fixture(scope='module')
def clip():
  t = np.arange(SAMPLE_RATE // 2) / SAMPLE_RATE
  return (0.5 * np.sin(2 * np.pi * (200 * t + 3000 * t**2))).astype(
      np.float32)


def collection(ax, label):
  matches = [c for c in ax.collections if c.get_label() == label]
  assert len(matches) == 1, label
  return np.asarray(matches[0].get_offsets())


def line(ax, label):
  matches = [l for l in ax.get_lines() if l.get_label() == label]
  assert len(matches) == 1, label
  return matches[0]


def check_png(path):
  data = path.read_bytes()
  assert data.startswith(PNG_SIGNATURE), path
  assert len(data) > 10_000, (path, len(data))
  image = __import__('matplotlib.image').image.imread(path)
  assert image.shape[0] > 200 and image.shape[1] > 300, image.shape
  # Not a blank canvas: a real figure has ink over a good part of it.
  assert np.mean(image[..., :3] < 0.9) > 0.02, path


def gabor_kernel(leaf):
  conv = plotting.filterbank_layer(leaf)
  return np.asarray(conv.kernel.constraint(conv.kernel), np.float64)


@pytest.mark.slow
def test_every_figure_renders_from_a_trained_model(trained, clip, tmp_path):
  drawn = {
      'leaf': ['filter_responses', 'centre_frequencies', 'pooling', 'pcen',
               'representation'],
      'tdfbanks': ['filter_responses', 'centre_frequencies', 'pooling',
                   'representation'],
  }
  for name, frontend in trained.items():
    initial = plotting.initial_frontend(frontend)
    figures = {
        'filter_responses': lambda f=frontend, i=initial:
                            plotting.plot_filter_responses(f, i),
        'centre_frequencies': lambda f=frontend, i=initial:
                              plotting.plot_centre_frequencies(f, i),
        'pooling': lambda f=frontend, i=initial: plotting.plot_pooling(f, i),
        'pcen': lambda f=frontend, i=initial: plotting.plot_pcen(f, i),
        'representation': lambda f=frontend: plotting.plot_representation(
            f, clip, 'chirp'),
    }
    for figure_name, draw in figures.items():
      if figure_name not in drawn[name]:
        with pytest.raises(ValueError, match='has no PCEN'):
          draw()
        continue
      path = tmp_path / f'{name}_{figure_name}.png'
      draw().savefig(path, dpi=80)
      check_png(path)


def test_plotted_gabor_centres_are_the_layer_parameters_in_hz(trained):
  leaf = trained['leaf']
  initial = plotting.initial_frontend(leaf)
  ax = plotting.plot_centre_frequencies(leaf, initial).axes[0]
  kernel = gabor_kernel(leaf)
  learned = collection(ax, 'learned')
  np.testing.assert_allclose(learned[:, 0],
                             kernel[:, 0] * SAMPLE_RATE / (2 * np.pi),
                             rtol=1e-6)
  # FWHM of exp(-sigma^2 w^2 / 2) is 2 sqrt(2 ln 2) / sigma rad/sample.
  np.testing.assert_allclose(
      learned[:, 1], FWHM_PER_STD / kernel[:, 1] * SAMPLE_RATE / (2 * np.pi),
      rtol=1e-6)
  init = leaf_audio.GaborInit(sample_rate=SAMPLE_RATE, min_freq=60.,
                              max_freq=7800.)((40, 2))
  np.testing.assert_allclose(collection(ax, 'initial')[:, 0],
                             np.asarray(init)[:, 0] * SAMPLE_RATE / (2 * np.pi),
                             rtol=1e-6)
  assert not np.allclose(learned, collection(ax, 'initial')), (
      'training moved no filter')
  mel_line = line(ax, 'mel')
  centres, widths = plotting.mel_curve(40, SAMPLE_RATE, 60., 7800.)
  np.testing.assert_allclose(mel_line.get_xdata(), centres)
  # The mel initialisation lies on the mel curve, up to FFT bins.
  np.testing.assert_allclose(np.asarray(init)[:, 0] * SAMPLE_RATE / (2 * np.pi),
                             centres, atol=SAMPLE_RATE / 512)


def test_response_lines_peak_at_the_centre_frequencies(trained):
  leaf = trained['leaf']
  figure = plotting.plot_filter_responses(leaf)
  centres = plotting.filterbank_summary(leaf).centre_hz
  learned_ax = figure.axes[1]
  step = SAMPLE_RATE / 2048
  for channel, centre in enumerate(centres):
    (drawn,) = [l for l in learned_ax.get_lines()
                if l.get_gid() == f'learned_{channel}']
    peak = drawn.get_xdata()[np.nanargmax(drawn.get_ydata())]
    assert abs(peak - centre) <= step, (channel, peak, centre)
  assert learned_ax.get_xlabel() == 'frequency (Hz)'


def test_sinc_centres_are_the_middles_of_the_bands():
  sincnet = leaf_audio.SincNetPlus()
  sincnet.build((None, None))
  low, high = (np.asarray(edge) for edge in
               plotting.filterbank_layer(sincnet).band_edges_hz())
  ax = plotting.plot_centre_frequencies(sincnet).axes[0]
  np.testing.assert_allclose(collection(ax, 'learned'),
                             np.stack([(low + high) / 2, high - low], 1),
                             rtol=1e-6)


def test_free_kernels_are_measured(trained):
  tdfbanks = trained['tdfbanks']
  # A trained kernel: the plotted centre is the peak of its spectrum.
  kernel = np.asarray(plotting.filterbank_layer(tdfbanks).kernel)[:, 0, :]
  spectra = np.abs(np.fft.fft(kernel[:, 0::2] + 1j * kernel[:, 1::2],
                              65536, axis=0))[:32769]
  peaks = np.argmax(spectra, axis=0) * SAMPLE_RATE / 65536
  ax = plotting.plot_centre_frequencies(tdfbanks).axes[0]
  np.testing.assert_allclose(collection(ax, 'learned')[:, 0], peaks, atol=1.)
  # Initialised as Gabor filters: they peak at LEAF's centre frequencies and
  # have the same widths as LEAF's (truncated) Gabor filters.
  initial = plotting.initial_frontend(tdfbanks)
  leaf = plotting.initial_frontend(trained['leaf'])
  measured = plotting.filterbank_summary(initial)
  assert measured.method == 'measured'
  np.testing.assert_allclose(measured.centre_hz,
                             plotting.filterbank_summary(leaf).centre_hz,
                             atol=0.5)
  leaf_measured = plotting.measure_peaks(
      *plotting.frequency_responses(leaf, min_fft=16384))[1]
  np.testing.assert_allclose(measured.bandwidth_hz, leaf_measured, rtol=1e-3)


def test_measured_peak_and_width_of_a_hann_windowed_tone():
  # A Hann window's amplitude response is 2 bins wide at half maximum.
  taps = 401
  n = np.arange(taps)
  tone = np.hanning(taps) * np.exp(2j * np.pi * 1234.5 * n / SAMPLE_RATE)
  frequencies = np.arange(32769) * SAMPLE_RATE / 65536
  response = np.abs(np.fft.fft(tone, 65536))[:32769]
  peak, width = plotting.measure_peaks(frequencies, response[np.newaxis])
  assert abs(peak[0] - 1234.5) < 0.1
  np.testing.assert_allclose(width[0], 2 * SAMPLE_RATE / (taps - 1), rtol=0.01)


def test_pooling_and_pcen_figures_show_the_layer_values(trained):
  leaf = trained['leaf']
  pooling_ax = plotting.plot_pooling(leaf).axes[0]
  sigma = np.asarray(plotting.pooling_layer(leaf).kernel).reshape(-1)
  # Gaussian of std sigma * (401 - 1) / 2 samples; FWHM in ms at 16 kHz.
  expected_ms = FWHM_PER_STD * np.clip(sigma, 2 / 401, 0.5) * 200 / 16
  np.testing.assert_allclose(line(pooling_ax, 'learned').get_ydata(),
                             expected_ms, rtol=1e-6)
  np.testing.assert_allclose(line(pooling_ax, 'initial').get_ydata(),
                             FWHM_PER_STD * 0.4 * 200 / 16, rtol=1e-6)
  assert 'ms' in pooling_ax.get_ylabel()
  pcen = plotting.pcen_layer(leaf)
  axes = {ax.get_title(): ax for ax in plotting.plot_pcen(leaf).axes}
  for name, variable in (('alpha', pcen.alpha), ('delta', pcen.delta),
                         ('root', pcen.root), ('smooth', pcen.ema.smooth)):
    np.testing.assert_allclose(line(axes[name], 'learned').get_ydata(),
                               np.asarray(variable), rtol=1e-6)
  assert not np.allclose(line(axes['alpha'], 'learned').get_ydata(), 0.96)


def test_shared_pooling_window_is_drawn_in_ms(trained):
  tdfbanks = trained['tdfbanks']
  ax = plotting.plot_pooling(tdfbanks).axes[0]
  window = np.asarray(plotting.pooling_layer(tdfbanks).kernel).reshape(-1)
  drawn = line(ax, 'learned')
  np.testing.assert_allclose(drawn.get_ydata(), window)
  np.testing.assert_allclose(drawn.get_xdata()[[0, -1]], [-12.5, 12.5])


def test_representation_is_the_frontend_output_next_to_log_mel(trained, clip):
  leaf = trained['leaf']
  figure = plotting.plot_representation(leaf, clip, title='chirp')
  learned_ax, mel_ax = [ax for ax in figure.axes if ax.images]
  np.testing.assert_allclose(learned_ax.images[0].get_array(),
                             np.asarray(leaf(clip[np.newaxis]))[0].T,
                             rtol=1e-5, atol=1e-5)
  mel = leaf_audio.MelFilterbanks()
  np.testing.assert_allclose(mel_ax.images[0].get_array(),
                             np.asarray(mel(clip[np.newaxis]))[0].T,
                             rtol=1e-5, atol=1e-4)
  times = plotting.frame_times(leaf, clip.size)
  left, right, _, _ = learned_ax.images[0].get_extent()
  np.testing.assert_allclose([left, right], [times[0] - 0.005,
                                             times[-1] + 0.005])
  assert learned_ax.get_xlabel() == 'time (s)'
  centres = plotting.filterbank_summary(leaf).centre_hz
  ticks = learned_ax.get_yticks().astype(int)
  assert [t.get_text() for t in learned_ax.get_yticklabels()] == [
      f'{centres[i]:.0f}' for i in ticks]
  assert 'Hz' in learned_ax.get_ylabel()


def frontends_for_timing():
  cases = [
      (leaf_audio.Leaf, 16000, 16000), (leaf_audio.Leaf, 16000, 16001),
      (leaf_audio.Leaf, 16000, 16080), (leaf_audio.Leaf, 22050, 22050),
      (leaf_audio.SincNet, 16000, 16050),
      (leaf_audio.TimeDomainFilterbanks, 16000, 16000),
      (leaf_audio.MelFilterbanks, 16000, 16000),
      (leaf_audio.MelFilterbanks, 22050, 22051),
  ]
  if hasattr(leaf_audio, 'EfficientLeaf'):
    cases.append((leaf_audio.EfficientLeaf, 16000, 16000))
  return cases


@pytest.mark.parametrize('cls, sample_rate, samples', frontends_for_timing(),
                         ids=lambda value: getattr(value, '__name__',
                                                   str(value)))
def test_frame_times_match_the_layer_output(cls, sample_rate, samples):
  kwargs = {'compression': None, 'sample_rate': sample_rate}
  if cls is not leaf_audio.MelFilterbanks:
    kwargs['pre_compression_floor'] = None
  frontend = cls(**kwargs)
  times = plotting.frame_times(frontend, samples)
  silence = np.zeros((1, samples), np.float32)
  assert frontend(silence).shape[1] == len(times)
  # A click (two samples when the centre falls between samples) at the
  # centre of frame f gives frames f - 1 and f + 1 the same energy.
  frame = len(times) // 2
  centre = times[frame] * sample_rate
  click = silence.copy()
  click[0, int(math.floor(centre + 1e-6))] += 1
  click[0, int(math.ceil(centre - 1e-6))] += 1
  energy = np.asarray(frontend(click))[0].sum(axis=1)
  assert np.argmax(energy) in (frame - 1, frame)  # Max pooling ties.
  # TimeDomainFilterbanks' squared Hann window peaks one sample late (it is
  # the original release's, zero at n = 1).
  tolerance = 0.15 if cls is leaf_audio.TimeDomainFilterbanks else 2e-3
  np.testing.assert_allclose(energy[frame - 1], energy[frame + 1],
                             rtol=tolerance)


def test_valid_padding_needs_a_whole_window():
  with pytest.raises(ValueError, match='at least 401 samples'):
    plotting.frame_times(leaf_audio.TimeDomainFilterbanks(), 400)


def test_figures_without_matplotlib_say_how_to_install_it(monkeypatch):
  leaf = leaf_audio.Leaf()
  leaf.build((None, None))
  monkeypatch.setitem(sys.modules, 'matplotlib.figure', None)
  assert plotting.filterbank_summary(leaf).centre_hz.shape == (40,)
  with pytest.raises(ImportError, match=r'pip install leaf-audio\[plot\]'):
    plotting.plot_centre_frequencies(leaf)


def test_unbuilt_frontends_and_other_layers_are_refused():
  with pytest.raises(ValueError, match='not built'):
    plotting.filterbank_summary(leaf_audio.Leaf())
  with pytest.raises(TypeError, match='frontend layer'):
    plotting.filterbank_summary(keras.layers.Dense(3))
