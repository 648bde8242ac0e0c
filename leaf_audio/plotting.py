"""Figures of what a frontend learned: filters, pooling, compression, features.

Everything is read through the stage interface (`leaf_audio.stages`), so a
composed `Frontend` and a stage written outside the package plot alike.

What is measured (numpy arrays, no matplotlib needed):
  initial_frontend     a fresh copy of a frontend, at its initialisation
  stage_parameters     every stage's learned parameters in physical units
  parameter_drift      how far each of them moved from its initialisation
  filterbank_summary   centre frequency and bandwidth (Hz) of every filter
  mel_curve            the same for triangular mel filters, the starting point
  frequency_responses  amplitude response |H(f)| of every filter, f in Hz
  measure_peaks        peak frequency and FWHM of such responses
  pooling_widths_ms    width of every channel's lowpass pooling window, ms
  pcen_parameters      alpha, delta, root and smoothing of every channel
  frame_times          the time (s) of the centre of every output frame
  filterbank_layer, gabor_parameters, filter_taps, pooling_layer,
  gaussian_pooling_sigma, pcen_layer: the stages and their raw parameters

What is drawn (each returns a `matplotlib.figure.Figure`):
  plot_filter_responses    initial and learned responses on a Hz axis
  plot_centre_frequencies  centre frequency vs bandwidth against the mel curve
  plot_pooling             per-channel pooling widths, or the shared window
  plot_pcen                per-channel PCEN parameters
  plot_parameters          every learned parameter of every stage
  plot_representation      a clip through the frontend, next to its log mel

Parametric filters report their parameters: Gabor filters (`Leaf`) their
centre frequency mu * sample_rate / (2 pi) and the full width at half maximum
(FWHM) of their amplitude response, 2 sqrt(2 ln 2) / sigma radians/sample;
sinc filters (`SincNet`, `SincNetPlus`) the middle and width of their band;
`MelFilterbanks` the mel scale's. Free kernels (`TimeDomainFilterbanks`) are
measured: the peak of each kernel's amplitude response and its FWHM.

matplotlib is optional (`pip install leaf-audio[plot]`) and imported only when
a figure is drawn. Figures are plain `Figure` objects drawn by the Agg canvas:
no pyplot window and no global backend change, so this works on servers and
leaves a notebook's backend alone. Save with `figure.savefig('x.png')`.

Example:
  import leaf_audio
  from leaf_audio import plotting
  leaf = leaf_audio.Leaf()
  leaf.build((None, 16000))
  plotting.plot_centre_frequencies(leaf).savefig('filters.png')
"""

import dataclasses
import importlib
import io
import math
from typing import Optional

import keras
import numpy as np

from leaf_audio import convolution
from leaf_audio import framing
from leaf_audio import frontend as frontend_lib
from leaf_audio import grouped_filterbank
from leaf_audio import melfilters
from leaf_audio import pooling
from leaf_audio import stages

_INSTALL_HINT = 'pip install leaf-audio[plot]'
# FWHM of exp(-x**2 / 2) is 2 sqrt(2 ln 2) x-units.
_FWHM_PER_STD = 2. * math.sqrt(2. * math.log(2.))


@dataclasses.dataclass(frozen=True)
class FilterbankSummary:
  """Centre frequencies and bandwidths of a frontend's filters.

  Attributes:
    centre_hz: float64 [n_filters], centre frequency of each filter in Hz, in
      output channel order.
    bandwidth_hz: float64 [n_filters], full width at half maximum of each
      filter's amplitude response in Hz (for sinc filters: the pass band).
    method: how they were obtained: '<stage class> parameters' (what the
      filterbank stage declares) or 'measured' (peak of each filter's
      amplitude response: a free kernel's, or MelFilterbanks' mel filters).
  """
  centre_hz: np.ndarray
  bandwidth_hz: np.ndarray
  method: str


def _check_frontend(frontend, needs_weights: bool = True):
  if not isinstance(frontend, frontend_lib.Frontend):
    raise TypeError('leaf_audio.plotting expects a leaf_audio frontend layer '
                    '(Leaf, a composed Frontend, MelFilterbanks, ...); got '
                    f'{frontend!r}.')
  if needs_weights and not frontend.built:
    raise ValueError(
        f'{type(frontend).__name__} is not built, so it has no filters yet; '
        'call it on audio or call frontend.build((None, samples)) first.')


def filterbank_layer(frontend):
  """The filterbank stage of a frontend.

  `GaborConv1D`, EfficientLeaf's grouped filterbank, a `SincConv1D`,
  MelFilterbanks' `STFTMelFilterbank` or, for TimeDomainFilterbanks, a keras
  Conv1D with 2 * n_filters channels.
  """
  return getattr(frontend, 'filterbank', None)


def gabor_parameters(frontend) -> Optional[np.ndarray]:
  """Constrained Gabor parameters, float64 [n_filters, 2], or None.

  Column 0: centre frequencies mu in radians/sample; column 1: widths sigma
  in samples; rows in output channel order. None for frontends without
  Gabor filters.
  """
  _check_frontend(frontend)
  layer = filterbank_layer(frontend)
  if not hasattr(layer, 'gabor_parameters'):
    return None
  return np.asarray(layer.gabor_parameters(), np.float64)


def pooling_layer(frontend):
  """The pooling stage (Gaussian, shared window or max), or None.

  EfficientLeaf pools inside its grouped filterbank: see
  `gaussian_pooling_sigma`.
  """
  return getattr(frontend, 'pooling', None)


def gaussian_pooling_sigma(frontend):
  """(sigma float64 [channels], window taps) of Gaussian pooling, or None.

  The raw parameter of `GaussianLowpassPooling` (or EfficientLeaf's
  `pooling_width`) as stored, relative to half the window; the forward pass
  clips it to [2 / taps, 0.5]. Physical widths of any pooling:
  `pooling_widths_ms`.
  """
  layer = pooling_layer(frontend)
  if isinstance(layer, pooling.GaussianLowpassPooling):
    return np.asarray(layer.kernel, np.float64).reshape(-1), layer.kernel_size
  layer = filterbank_layer(frontend)
  if isinstance(layer, grouped_filterbank.GroupedGaborFilterbank):
    return (np.asarray(layer.pooling_width, np.float64).reshape(-1),
            layer.window_size)
  return None


_PCEN = ('alpha', 'delta', 'root', 'smoothing')


def pcen_layer(frontend):
  """The compression stage if it declares PCEN's parameters, or None."""
  layer = getattr(frontend, 'compression', None)
  if layer is None:
    return None
  names = stages.of(layer).stage_parameters(frontend.sample_rate)
  return layer if all(name in names for name in _PCEN) else None


def stage_layers(frontend) -> dict:
  """{stage name: layer} of the stages a frontend has, in order."""
  return {name: getattr(frontend, name) for name in frontend_lib.STAGES
          if getattr(frontend, name) is not None}


def stage_parameters(frontend) -> dict:
  """{stage name: {parameter name: `stages.Parameter`}} of what it learns.

  In physical units whatever the parameterisation (centre frequencies and
  bandwidths in Hz, pooling widths in ms, PCEN's parameters as numbers);
  only stages that declare parameters appear.
  """
  _check_frontend(frontend)
  values = {}
  for name, layer in stage_layers(frontend).items():
    declared = stages.of(layer).stage_parameters(frontend.sample_rate)
    if declared:
      values[name] = declared
  return values


def parameter_drift(frontend, initial) -> dict:
  """How far each learned parameter moved from `initial`, and per stage.

  A parameter on a 'log' scale (widths, gains, PCEN's) moves by
  |log(learned / initial)| (0.1: about 10 %), one on a 'linear' scale
  (centre frequencies) by |learned - initial| / max(|initial|), i.e.
  relative to its range. Non-positive values of a 'log' parameter fall
  back to the linear measure.

  Returns:
    {stage: {'moved': float, parameter: float}}: each parameter's median
    over channels and each stage's largest ('moved'); 0 when unchanged.
  """
  learned, start = stage_parameters(frontend), stage_parameters(initial)
  drift = {}
  for stage, parameters in learned.items():
    moved = {}
    for name, value in parameters.items():
      before = start.get(stage, {}).get(name)
      if before is None:
        continue
      new, old = np.broadcast_arrays(value.values, before.values)
      if value.scale == 'log' and np.all(new > 0) and np.all(old > 0):
        change = np.abs(np.log(new / old))
      else:
        change = np.abs(new - old) / max(np.max(np.abs(old)), 1e-12)
      moved[name] = float(np.median(change))
    drift[stage] = dict(moved=max(moved.values(), default=0.), **moved)
  return drift


def initial_frontend(frontend):
  """A fresh, built copy of `frontend` with its initial weights.

  Rebuilt from `get_config()`, so the initializers run again: exactly the
  initial filters for the deterministic initializers every frontend uses by
  default (mel Gabor, sinc, Gaussian 0.4, squared Hann, PCEN constants).
  """
  _check_frontend(frontend)
  copy = type(frontend).from_config(frontend.get_config())
  copy.build((None, None))
  return copy


gabor_bandwidth_hz = convolution.gabor_bandwidth_hz


def filter_taps(frontend) -> np.ndarray:
  """Impulse responses of the filterbank, [n_filters, taps].

  Complex for filterbanks with complex filters (real + 1j imaginary part:
  the two channels that the squared modulus adds), real otherwise. Raises
  ValueError for frontends without a time-domain filterbank.
  """
  _check_frontend(frontend)
  conv = filterbank_layer(frontend)
  stage = stages.of(conv) if conv is not None else None
  if stage is not None and hasattr(stage, 'complex_filters'):
    real, imag = stage.complex_filters()
    return np.asarray(real, np.float64) + 1j * np.asarray(imag, np.float64)
  if conv is not None and hasattr(conv, 'impulse_responses'):
    return np.asarray(conv.impulse_responses(), np.float64).T
  raise ValueError(f'{type(frontend).__name__} has no time-domain filterbank '
                   'whose taps could be shown (its filterbank offers neither '
                   'complex_filters() nor impulse_responses()).')


def _fft_size(taps: int, minimum: int) -> int:
  return max(minimum, 1 << (4 * taps - 1).bit_length())


def frequency_responses(frontend, min_fft: int = 4096):
  """Amplitude response |H(f)| of every filter, on f = 0 .. sample_rate / 2.

  For filterbank kernels the DFT of the taps (zero-padded to at least
  `min_fft` points, a resolution of sample_rate / min_fft Hz); a filterbank
  that offers `amplitude_responses()` tells its own (MelFilterbanks' STFT
  stage: the square root of its mel matrix, which weights power).

  Returns:
    (frequencies_hz float64 [bins], amplitudes float64 [n_filters, bins]).
  """
  _check_frontend(frontend)
  stage = stages.of(filterbank_layer(frontend))
  if hasattr(stage, 'amplitude_responses'):
    return stage.amplitude_responses()
  taps = filter_taps(frontend)
  n_fft = _fft_size(taps.shape[1], min_fft)
  amplitudes = np.abs(np.fft.fft(taps, n_fft, axis=1))[:, :n_fft // 2 + 1]
  frequencies = np.arange(n_fft // 2 + 1) * frontend.sample_rate / n_fft
  return frequencies, amplitudes


def measure_peaks(frequencies_hz, amplitudes):
  """Peak frequency and FWHM of amplitude responses [n_filters, bins].

  The peak is refined by a parabola through the largest bin and its
  neighbours; the FWHM is the width of the band around the peak where the
  amplitude stays at or above half the peak, its edges interpolated linearly.

  Returns:
    (peak_hz float64 [n_filters], fwhm_hz float64 [n_filters]).
  """
  frequencies_hz = np.asarray(frequencies_hz, np.float64)
  amplitudes = np.asarray(amplitudes, np.float64)
  step = frequencies_hz[1] - frequencies_hz[0]
  peaks, widths = [], []
  for response in amplitudes:
    top = int(np.argmax(response))
    offset = 0.
    if 0 < top < len(response) - 1:
      left, centre, right = response[top - 1:top + 2]
      curvature = left - 2 * centre + right
      if curvature < 0:
        offset = 0.5 * (left - right) / curvature
    peaks.append(frequencies_hz[top] + offset * step)
    half = response[top] / 2.
    low = top
    while low > 0 and response[low - 1] >= half:
      low -= 1
    high = top
    while high < len(response) - 1 and response[high + 1] >= half:
      high += 1

    def crossing(inside, outside):
      # Where the line between an inside and an outside bin crosses `half`.
      if outside < 0 or outside >= len(response):
        return frequencies_hz[inside]
      fraction = (response[inside] - half) / (response[inside] -
                                              response[outside])
      return frequencies_hz[inside] + fraction * (
          frequencies_hz[outside] - frequencies_hz[inside])

    widths.append(crossing(high, high + 1) - crossing(low, low - 1))
  return np.array(peaks), np.array(widths)


def mel_curve(n_filters: int, sample_rate: float, min_freq: float,
              max_freq: float):
  """Centres and FWHM bandwidths (Hz) of a triangular mel filterbank.

  n_filters triangles evenly spaced on the HTK mel scale between min_freq and
  max_freq, each spanning two mel steps; the FWHM is that of the square root
  of the triangle (the amplitude of a filter that weights power), 1.5 mel
  steps: the widths `GaborInit` gives its Gabor filters, up to FFT bins.

  Returns:
    (centre_hz float64 [n_filters], bandwidth_hz float64 [n_filters]).
  """
  edges = np.linspace(melfilters.hz_to_mel(min_freq),
                      melfilters.hz_to_mel(max_freq), n_filters + 2)
  step = edges[1] - edges[0]
  centres = edges[1:-1]
  return (melfilters.mel_to_hz(centres),
          melfilters.mel_to_hz(centres + 0.75 * step) -
          melfilters.mel_to_hz(centres - 0.75 * step))


def _mel_range(frontend):
  """(min_freq, max_freq) in Hz that the frontend's filters start from."""
  init = getattr(frontend, 'complex_conv_init', None)
  low = getattr(frontend, 'min_freq', getattr(init, 'min_freq', None))
  high = getattr(frontend, 'max_freq', getattr(init, 'max_freq', None))
  if low is None or high is None:
    low = frontend_lib.DEFAULT_MIN_FREQ_HZ
    high = min(frontend_lib.DEFAULT_MAX_FREQ_HZ, frontend.sample_rate / 2.)
  return float(low), float(high)


def filterbank_summary(frontend) -> FilterbankSummary:
  """Centre frequency and bandwidth (Hz) of each of a frontend's filters.

  What the filterbank stage declares ('centre_frequency', 'bandwidth'),
  else measured from its taps.
  """
  _check_frontend(frontend)
  sample_rate = frontend.sample_rate
  conv = filterbank_layer(frontend)
  declared = stages.of(conv).stage_parameters(sample_rate)
  if 'centre_frequency' in declared and 'bandwidth' in declared:
    return FilterbankSummary(declared['centre_frequency'].values,
                             declared['bandwidth'].values,
                             f'{type(conv).__name__} parameters')
  peaks, widths = measure_peaks(*frequency_responses(frontend, min_fft=16384))
  return FilterbankSummary(peaks, widths, 'measured')


def _channels(frontend) -> int:
  return frontend.compute_output_shape((None, None))[-1]


def pooling_widths_ms(frontend) -> np.ndarray:
  """FWHM in ms of each channel's lowpass pooling window, float64 [channels].

  The 'pooling_width' the pooling stage (or a filterbank that pools itself)
  declares: for Gaussian pooling 2 sqrt(2 ln 2) sigma (kernel_size - 1) / 2
  samples, sigma clipped as in the forward pass; for a shared learned window
  (TimeDomainFilterbanks) its measured FWHM, repeated for every channel.
  Raises ValueError when no stage declares one (max pooling, no pooling).
  """
  _check_frontend(frontend)
  for name in ('pooling', 'filterbank'):
    layer = getattr(frontend, name, None)
    if layer is None:
      continue
    declared = stages.of(layer).stage_parameters(frontend.sample_rate)
    if 'pooling_width' in declared:
      return np.broadcast_to(declared['pooling_width'].values,
                             (_channels(frontend),)).copy()
  layer = pooling_layer(frontend)
  uses = f' (it uses {type(layer).__name__})' if layer is not None else ''
  raise ValueError(f'{type(frontend).__name__} has no learnable lowpass '
                   f'pooling{uses}: no stage declares a pooling_width.')


def pcen_parameters(frontend) -> dict:
  """Per-channel PCEN parameters, as the forward pass uses them.

  'alpha', 'delta', 'root' and 'smooth' (the smoother's coefficient; one
  value repeated when it is shared), float64 [channels], in linear space
  whatever the parameterisation (the compression stage's
  `stage_parameters`). Raises ValueError when the frontend has no PCEN.
  """
  _check_frontend(frontend)
  layer = pcen_layer(frontend)
  if layer is None:
    raise ValueError(f'{type(frontend).__name__} has no PCEN compression '
                     '(no compression stage declares alpha, delta, root and '
                     'smoothing).')
  declared = stages.of(layer).stage_parameters(frontend.sample_rate)
  channels = _channels(frontend)
  return {('smooth' if name == 'smoothing' else name): np.broadcast_to(
      declared[name].values, (channels,)).copy() for name in _PCEN}


def frame_times(frontend, num_samples: int) -> np.ndarray:
  """Time in seconds of the centre of each output frame, float64 [frames].

  For a clip of `num_samples` samples whose first sample is at t = 0, the
  centre is the input sample on which the frame's response to a click peaks.
  With window k and stride s in samples (401 and 160 by default):
    MelFilterbanks: ceil(n / s) left-aligned frames, frame f covers samples
      [f s, f s + k) under a Hann window centred on f s + k // 2.
    'same' pooling (Leaf, SincNet, SincNetPlus): ceil(n / s) frames. TF pads
      p = max((frames - 1) s + k - n, 0) samples, p // 2 of them in front, so
      frame f pools filter outputs centred on f s - p // 2 + (k - 1) / 2: the
      times depend on n mod s.
    'valid' pooling (TimeDomainFilterbanks): (n - k) // s + 1 frames, filter
      outputs centred on f s + (k - 1) / 2.
  The filters' taps are centred on tap k // 2 and their 'same' convolution
  pads (k - 1) // 2 samples in front, so a filter output at sample t peaks at
  t for odd k and at t + 1 for even k (e.g. 552 at 22.05 kHz).

  Raises ValueError for a 'valid' frontend and a clip shorter than k.
  """
  _check_frontend(frontend, needs_weights=False)
  size, stride = frontend.window_samples, frontend.hop_samples
  framer = frontend.pooling or frontend.filterbank
  padding = stages.of(framer).stage_geometry().padding
  if padding == 'end':
    frames = framing.num_frames(num_samples, size, stride, 'same')
    centres = np.arange(frames) * stride + size // 2
    return centres / frontend.sample_rate
  if padding not in ('same', 'valid') or (
      frontend.pooling is not None and
      stages.of(frontend.filterbank).stage_geometry().hop_samples != 1):
    raise ValueError('frame_times does not know how '
                     f'{type(frontend).__name__} frames its output (a '
                     "stride-1 filterbank then a 'same' or 'valid' pooling, "
                     'or a filterbank that pools itself).')
  filter_delay = size // 2 - (size - 1) // 2
  framing.check_enough_samples(type(frontend).__name__, num_samples, size,
                               padding, (num_samples,))
  frames, pad_front, _ = framing.frames_and_padding(num_samples, size, stride,
                                                    padding)
  centres = (np.arange(frames) * stride - pad_front + (size - 1) / 2 +
             filter_delay)
  return centres / frontend.sample_rate


# Drawing.


def _figure(**kwargs):
  """A matplotlib Figure on an Agg canvas (no pyplot, no global state)."""
  try:
    figure_module = importlib.import_module('matplotlib.figure')
    agg = importlib.import_module('matplotlib.backends.backend_agg')
  except ImportError as error:
    raise ImportError(
        'leaf_audio.plotting draws with matplotlib, which is not installed; '
        f'install it with `{_INSTALL_HINT}` (or `pip install matplotlib`).'
    ) from error
  figure = figure_module.Figure(**kwargs)
  agg.FigureCanvasAgg(figure)
  return figure


def figure_to_png(figure, dpi: int = 100) -> bytes:
  """The figure encoded as a PNG file."""
  buffer = io.BytesIO()
  figure.savefig(buffer, format='png', dpi=dpi)
  return buffer.getvalue()


def _title(frontend, what):
  return f'{type(frontend).__name__} ({frontend.name}): {what}'


def plot_filter_responses(frontend, initial=None, max_db: float = 60.):
  """Amplitude responses of the filters, initial (top) and learned (bottom).

  Args:
    frontend: a built frontend layer.
    initial: the frontend at initialisation; default `initial_frontend`.
    max_db: dynamic range shown below the largest response, in dB.

  Returns:
    A Figure with two axes sharing a frequency axis in Hz; responses in dB
    (20 log10 |H|).
  """
  initial = initial_frontend(frontend) if initial is None else initial
  # 2048 points resolve 401-tap filters (7.8 Hz at 16 kHz) and draw fast.
  frequencies, learned = frequency_responses(frontend, min_fft=2048)
  start_frequencies, start = frequency_responses(initial, min_fft=2048)
  figure = _figure(figsize=(9, 6), layout='constrained')
  axes = figure.subplots(2, 1, sharex=True, sharey=True)
  top = 20 * np.log10(max(learned.max(), start.max(), 1e-12))
  for ax, (freqs, amplitudes), label in ((axes[0], (start_frequencies, start),
                                          'initial'),
                                         (axes[1], (frequencies, learned),
                                          'learned')):
    db = 20 * np.log10(np.maximum(amplitudes, 1e-12))
    db[db < top - max_db] = np.nan  # Not drawn: quicker, and no floor lines.
    colours = _channel_colours(len(db))
    for channel, response in enumerate(db):
      ax.plot(freqs, response, color=colours[channel], linewidth=0.8,
              gid=f'{label}_{channel}')
    ax.set_ylim(top - max_db, top + 3)
    ax.set_ylabel('|H(f)| (dB)')
    ax.set_title(label)
    ax.grid(alpha=0.3)
  axes[1].set_xlabel('frequency (Hz)')
  axes[1].set_xlim(0, frontend.sample_rate / 2)
  figure.suptitle(_title(frontend, 'filter frequency responses'))
  return figure


def _channel_colours(count):
  cm = importlib.import_module('matplotlib.cm')
  return cm.viridis(np.linspace(0, 0.95, max(count, 1)))


def plot_centre_frequencies(frontend, initial=None):
  """Centre frequency vs bandwidth of each filter, against the mel curve.

  Scatter points labelled 'initial' and 'learned' (their x values are
  `filterbank_summary(...).centre_hz`), grey segments from each filter's
  initial to its learned position, and the line 'mel' of `mel_curve` for the
  frontend's number of filters and frequency range. Both axes in Hz, log
  scale.
  """
  initial = initial_frontend(frontend) if initial is None else initial
  learned = filterbank_summary(frontend)
  start = filterbank_summary(initial)
  figure = _figure(figsize=(7, 5.5), layout='constrained')
  ax = figure.subplots()
  mel_centres, mel_widths = mel_curve(_channels(frontend),
                                      frontend.sample_rate,
                                      *_mel_range(frontend))
  ax.plot(mel_centres, mel_widths, color='black', linewidth=1, label='mel')
  for x0, y0, x1, y1 in zip(start.centre_hz, start.bandwidth_hz,
                            learned.centre_hz, learned.bandwidth_hz):
    ax.plot([x0, x1], [y0, y1], color='grey', linewidth=0.6, alpha=0.6)
  ax.scatter(start.centre_hz, start.bandwidth_hz, s=18, facecolors='none',
             edgecolors='tab:blue', label='initial')
  ax.scatter(learned.centre_hz, learned.bandwidth_hz, s=18, color='tab:red',
             label='learned')
  positive = np.concatenate([learned.centre_hz, start.centre_hz])
  if np.all(positive > 0):
    ax.set_xscale('log')
  ax.set_yscale('log')
  ticker = importlib.import_module('matplotlib.ticker')
  plain = ticker.FuncFormatter(lambda value, _: f'{value:g}')
  for axis in (ax.xaxis, ax.yaxis):
    axis.set_major_formatter(plain)
    axis.set_minor_formatter(ticker.NullFormatter())
  ax.set_xlabel('centre frequency (Hz)')
  ax.set_ylabel('bandwidth, FWHM (Hz)')
  ax.grid(alpha=0.3, which='both')
  ax.legend()
  ax.set_title(_title(frontend, f'filters ({learned.method})'))
  return figure


def plot_pooling(frontend, initial=None):
  """The lowpass pooling, initial vs learned.

  Gaussian pooling (Leaf, SincNetPlus): the FWHM of each channel's window in
  ms (`pooling_widths_ms`), with dotted lines at the widths the forward pass
  clips to. A shared window (TimeDomainFilterbanks): the window itself over
  time in ms. Raises ValueError for frontends without learnable pooling.
  """
  initial = initial_frontend(frontend) if initial is None else initial
  to_ms = 1000. / frontend.sample_rate
  learned = pooling_widths_ms(frontend)  # Raises without a pooling width.
  layer = pooling_layer(frontend)
  windows = None
  if layer is not None and stages.of(layer).stage_parameters(
      frontend.sample_rate)['pooling_width'].values.size == 1:
    windows = stages.of(layer).stream_windows
  if windows is not None:  # one window shared by all channels
    figure = _figure(figsize=(8, 4), layout='constrained')
    ax = figure.subplots()
    for source, label, style in ((initial, 'initial', '--'),
                                 (frontend, 'learned', '-')):
      window = np.asarray(stages.of(pooling_layer(source)).stream_windows()
                          ).reshape(-1)
      ax.plot((np.arange(window.size) - (window.size - 1) / 2) * to_ms,
              window, style, label=label)
    ax.set_xlabel('time from the frame centre (ms)')
    ax.set_ylabel('window weight')
    ax.set_title(_title(frontend, 'shared pooling window'))
  else:
    start = pooling_widths_ms(initial)
    figure = _figure(figsize=(8, 4), layout='constrained')
    ax = figure.subplots()
    channels = np.arange(len(learned))
    ax.plot(channels, start, 'o', markerfacecolor='none', label='initial')
    ax.plot(channels, learned, 'o', label='learned')
    gaussian = gaussian_pooling_sigma(frontend)
    if gaussian is not None:  # the widths the forward pass clips to
      size = gaussian[1]
      for sigma in (2. / size, 0.5):
        ax.axhline(_FWHM_PER_STD * sigma * (size - 1) / 2 * to_ms,
                   color='grey', linestyle=':', linewidth=1)
    ax.set_xlabel('channel')
    ax.set_ylabel('pooling window FWHM (ms)')
    ax.set_title(_title(frontend, 'pooling widths'))
  ax.grid(alpha=0.3)
  ax.legend()
  return figure


def plot_pcen(frontend, initial=None):
  """PCEN's alpha, delta, root and smoothing per channel, initial vs learned.

  Raises ValueError for frontends without PCEN.
  """
  initial = initial_frontend(frontend) if initial is None else initial
  learned = pcen_parameters(frontend)
  start = pcen_parameters(initial)
  figure = _figure(figsize=(9, 6), layout='constrained')
  axes = figure.subplots(2, 2, sharex=True).reshape(-1)
  for ax, name in zip(axes, ('alpha', 'delta', 'root', 'smooth')):
    channels = np.arange(len(learned[name]))
    ax.plot(channels, start[name], 'o', markerfacecolor='none', markersize=4,
            label='initial')
    ax.plot(channels, learned[name], 'o', markersize=4, label='learned')
    ax.set_title(name)
    ax.grid(alpha=0.3)
  for ax in axes[2:]:
    ax.set_xlabel('channel')
  axes[0].legend()
  figure.suptitle(_title(frontend, 'PCEN parameters'))
  return figure


def plot_parameters(frontend, initial=None):
  """Every learned parameter of every stage, initial vs learned.

  One panel per parameter a stage declares (`stage_parameters`), titled
  '<stage>/<parameter> (<unit>)', with the values per channel: works for
  any stage that implements the interface, including one written outside
  the package. Raises ValueError when no stage declares a parameter.
  """
  initial = initial_frontend(frontend) if initial is None else initial
  learned, start = stage_parameters(frontend), stage_parameters(initial)
  panels = [(stage, name, value, start.get(stage, {}).get(name))
            for stage, parameters in learned.items()
            for name, value in parameters.items()]
  if not panels:
    raise ValueError(f'{type(frontend).__name__} has no stage that declares '
                     'learned parameters (stages.Stage.stage_parameters).')
  columns = min(3, len(panels))
  rows = -(-len(panels) // columns)
  figure = _figure(figsize=(4 * columns, 3 * rows), layout='constrained')
  axes = np.asarray(figure.subplots(rows, columns, squeeze=False)).reshape(-1)
  for ax, (stage, name, value, before) in zip(axes, panels):
    channels = np.arange(value.values.size)
    if before is not None:
      ax.plot(np.arange(before.values.size), before.values, 'o',
              markerfacecolor='none', markersize=4, label='initial')
    ax.plot(channels, value.values, 'o', markersize=4, label='learned')
    unit = f' ({value.unit})' if value.unit else ''
    ax.set_title(f'{stage}/{name}{unit}')
    ax.set_xlabel('channel')
    ax.grid(alpha=0.3)
  for ax in axes[len(panels):]:
    ax.set_visible(False)
  axes[0].legend()
  figure.suptitle(_title(frontend, 'learned parameters'))
  return figure


def _features(layer, waveform):
  outputs = layer(np.asarray(waveform, np.float32)[np.newaxis], training=False)
  return np.asarray(outputs)[0]


def plot_representation(frontend, waveform, title: Optional[str] = None):
  """A clip through the frontend, next to its log mel spectrogram.

  Args:
    frontend: a built frontend layer.
    waveform: float [samples] in [-1, 1] at `frontend.sample_rate`.
    title: optional figure title (e.g. the file name).

  Returns:
    A Figure with two images: the frontend's output and `MelFilterbanks` with
    the same number of filters, window and stride. Time in seconds (frame
    centres, `frame_times`); channels labelled by their centre frequency in
    Hz (`filterbank_summary`).
  """
  _check_frontend(frontend)
  waveform = np.asarray(waveform, np.float32).reshape(-1)
  # Half a sample more than the geometry, in ms: the frontends' rounding
  # down (framing.window_length_samples) gives back exactly these samples.
  rate = frontend.sample_rate
  mel = frontend_lib.MelFilterbanks(
      n_filters=_channels(frontend), sample_rate=rate,
      window_len=(frontend.window_samples - 0.5) * 1000. / rate,
      window_stride=(frontend.hop_samples + 0.5) * 1000. / rate)
  mel.build((None, None))
  figure = _figure(figsize=(12, 4.5), layout='constrained')
  axes = figure.subplots(1, 2)
  for ax, layer, name in ((axes[0], frontend, type(frontend).__name__),
                          (axes[1], mel, 'log mel filterbanks')):
    features = _features(layer, waveform)
    times = frame_times(layer, waveform.size)
    hop = layer.hop_samples / layer.sample_rate
    image = ax.imshow(
        features.T, origin='lower', aspect='auto', interpolation='nearest',
        extent=(times[0] - hop / 2, times[-1] + hop / 2, -0.5,
                features.shape[1] - 0.5))
    figure.colorbar(image, ax=ax)
    centres = filterbank_summary(layer).centre_hz
    ticks = np.unique(np.linspace(0, len(centres) - 1, 7).round().astype(int))
    ax.set_yticks(ticks)
    ax.set_yticklabels([f'{centres[i]:.0f}' for i in ticks])
    ax.set_xlabel('time (s)')
    ax.set_title(name)
    ax.set_ylabel('channel centre frequency (Hz)')
  if title:
    figure.suptitle(title)
  return figure
