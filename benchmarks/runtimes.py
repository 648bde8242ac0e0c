"""One exported classifier in TensorFlow, LiteRT and onnxruntime: time per
1 s clip offline, and per 10 ms hop streamed.

  python benchmarks/runtimes.py
  python benchmarks/runtimes.py --rounds 7 --calls 20 --threads 1 2
  python benchmarks/runtimes.py --modes offline frontend   # no streaming

The model is the README's main recipe (default.gin: `Leaf()` with 40
filters, `ConvNet((16, 32, 64))`, mean pooling, 10 classes, no loudness
normalisation, so that it streams), untrained: the cost does not depend on
the weights. It is exported once with `experiments.export.export_run`
(SavedModel, --tflite, --onnx, --streaming_tflite, --streaming_onnx) into a
temporary folder; then,
for each thread count, a fresh process (TensorFlow's thread pools are fixed
per process) opens the three runtimes with `runtimes.open_runtime(path,
num_threads)` and times them in interleaved rounds:

  offline   `classify` on one 1 s clip (batch 1): the SavedModel's
            serving_default (FFT method where it applies), the .tflite in
            LiteRT and the .onnx in onnxruntime as `experiments.export`
            writes them (.tflite: the FFT method with TFLite builtins,
            'fft_builtin'; .onnx: the direct method), and, side by side, both
            converted from the direct method (what the export wrote before
            'fft_builtin'); ms per clip
  stream    `stream` over 1 s of audio (100 hops of 160 samples, the
            classifier on its 1 s window after every hop, k = 1): per hop, in
            microseconds and as a fraction of the hop's 10 ms (real time)
  frontend  the frontend alone on the 1 s clip: TF's `Leaf` (FFT method),
            and converted to LiteRT with the direct method (a stride-1
            convolution with 401 taps and 80 outputs at 16 kHz: 513 M
            multiply-adds per second of audio) and with 'fft_builtin'
            (`leaf_audio.real_fft_filterbank`)
  transforms  the real FFTs alone that 'fft_builtin' runs on a 1 s clip
            (880 of 2048 samples): TF's rfft and LiteRT's RFFT2D with one
            and with four rows per transform; where LiteRT's time goes
  k = 10    the same with the export's stream_step at cadence k = 10 (one
            hop per call; the classifier runs after every 10th hop, the
            steps in between return the last probabilities): per hop

Each cell is the median over rounds of the mean time per call. Python's
call overhead of each runtime is included (it is what a Python client pays).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # pylint: disable=g-import-not-at-top,wrong-import-position

FILES = {'tflite': 'offline.tflite', 'onnx': 'offline.onnx',
         'streaming_tflite': 'streaming.tflite',
         'streaming_onnx': 'streaming.onnx'}
HOP_SECONDS = 0.01
MODES = ('offline', 'frontend', 'stream', 'k10', 'transforms')
# The inverse transforms of LEAF's 'fft_builtin' on a 1 s clip: 2 C = 80
# filter outputs times 11 chunks of N = 2048 samples.
TRANSFORM_ROWS, TRANSFORM_SIZE = 880, 2048


def save_main_recipe_run(folder):
  """The main recipe's model (untrained), saved as a training run in
  folder/run (best.keras, run.json): (model, run folder)."""
  import keras  # pylint: disable=g-import-not-at-top
  import leaf_audio  # pylint: disable=g-import-not-at-top
  from experiments import models  # pylint: disable=g-import-not-at-top
  keras.utils.set_random_seed(0)
  model = models.AudioClassifier(
      leaf_audio.Leaf(), models.ConvNet((16, 32, 64), dropout=0.0),
      num_outputs=10, pooling='mean', normalization=None)
  model.build((None, 16000))
  run = os.path.join(folder, 'run')
  os.makedirs(run)
  model.save(os.path.join(run, 'best.keras'))
  with open(os.path.join(run, 'run.json'), 'w') as file:
    json.dump({'window_samples': 16000, 'sample_rate': 16000,
               'multi_label': False,
               'label_names': [f'class_{i}' for i in range(10)]}, file)
  return model, run


def export(folder, modes=MODES):
  from experiments.serving import exporting as export_cli  # pylint: disable=g-import-not-at-top
  model, run = save_main_recipe_run(folder)
  written = export_cli.export_run(
      run, **{flag: os.path.join(folder, name) for flag, name in FILES.items()
               if 'stream' in modes or not flag.startswith('streaming')})
  if 'k10' in modes:
    _export_ten_hops(model, os.path.join(folder, 'k10'))
  _export_direct(model, os.path.join(folder, 'direct'))
  for method in ('direct', 'fft_builtin'):
    _export_frontend(model, folder, method)
  return written


def _export_direct(model, folder):
  """The offline .tflite and .onnx converted from the direct method (what
  the export wrote before 'fft_builtin'): a SavedModel whose 'tflite'
  signature computes the frontend directly, converted by `converters`."""
  import keras  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from experiments import models  # pylint: disable=g-import-not-at-top
  from experiments.serving import converters  # pylint: disable=g-import-not-at-top
  from leaf_audio import methods  # pylint: disable=g-import-not-at-top
  direct = methods.with_method(models.WindowedClassifier(model, 16000),
                               'direct')
  archive = keras.export.ExportArchive()
  archive.track(direct)

  def classify(waveform):
    return {'probabilities': tf.nn.softmax(direct(waveform)),
            'valid': tf.ones(tf.shape(waveform)[:1], tf.bool)}

  @tf.function(input_signature=[])
  def metadata():
    return {'sample_rate': tf.constant(16000),
            'label_names': tf.constant([f'class_{i}' for i in range(10)]),
            'window_samples': tf.constant(16000)}

  # A plain function with the signature given here: a tf.function named
  # like the export's own 'tflite' failed to trace in this process.
  archive.add_endpoint('tflite', classify, input_signature=[
      tf.TensorSpec([None, None], tf.float32, name='waveform')])
  archive.add_endpoint('metadata', metadata)
  archive.write_out(os.path.join(folder, 'export'), verbose=False)
  try:
    converters.write_offline_tflite(os.path.join(folder, 'export'),
                                    os.path.join(folder, 'offline.tflite'))
  except ValueError as error:
    # With TF 2.21 the converter rejects this function: a strided slice in
    # PCEN's smoother that adds an axis ([?, ?] -> [?, ?, 1]) needs TF
    # Select ops. The export's own .tflite ('fft_builtin') converts.
    print(f'the direct method has no LiteRT row: {error}'[:300],
          file=sys.stderr)
  converters.write_offline_onnx(os.path.join(folder, 'export'),
                                os.path.join(folder, 'offline.onnx'))


def _export_frontend(model, folder, method):
  """The frontend alone with `method` as frontend_<method>.tflite ([1, 16000])."""
  import keras  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from leaf_audio import methods  # pylint: disable=g-import-not-at-top
  frontend = methods.with_method(model.frontend, method)
  archive = keras.export.ExportArchive()
  archive.track(frontend)
  archive.add_endpoint('frontend', tf.function(
      lambda waveform: {'frames': frontend(waveform)},
      input_signature=[tf.TensorSpec([1, 16000], tf.float32,
                                     name='waveform')]))
  saved = os.path.join(folder, f'frontend_{method}_saved_model')
  archive.write_out(saved, verbose=False)
  converter = tf.lite.TFLiteConverter.from_saved_model(
      saved, signature_keys=['frontend'])
  converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
  with open(os.path.join(folder, f'frontend_{method}.tflite'), 'wb') as file:
    file.write(converter.convert())


def _timed(calls, call):
  """A job: `call()` `calls` times in a row; returns seconds per call."""
  def job():
    start = time.perf_counter()
    for _ in range(calls):
      call()
    return (time.perf_counter() - start) / calls
  return job


def _frontend_jobs(folder, threads, clip, calls):
  """{('frontend', runtime): job}: the frontend alone, TF (its 'auto'
  method: FFT for Leaf) and LiteRT (direct convolution, 'fft_builtin')."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from ai_edge_litert import interpreter as litert  # pylint: disable=g-import-not-at-top
  import leaf_audio  # pylint: disable=g-import-not-at-top,unused-import
  from experiments import models  # pylint: disable=g-import-not-at-top,unused-import
  from experiments.training import model_files  # pylint: disable=g-import-not-at-top
  # (Importing leaf_audio and experiments.models registers the classes.)
  model = model_files.load_keras_file(os.path.join(folder, 'run',
                                                   'best.keras'))
  frontend = tf.function(model.frontend)
  runners = {}
  for method in ('direct', 'fft_builtin'):
    with open(os.path.join(folder, f'frontend_{method}.tflite'), 'rb') as file:
      interpreter = litert.Interpreter(model_content=file.read(),
                                       num_threads=threads)
    runners[method] = interpreter.get_signature_runner('frontend')
  tensor = tf.constant(clip)

  jobs = {('frontend', 'TF'): _timed(calls,
                                     lambda: frontend(tensor).numpy())}
  for method, runner in runners.items():
    jobs[('frontend', f'LiteRT {method}')] = _timed(
        calls, lambda runner=runner: runner(waveform=clip))
  return jobs


def _transform_jobs(threads, calls):
  """{('transforms', name): job}: the real FFTs that 'fft_builtin' runs for a
  1 s clip, alone: TF's RFFT, and LiteRT's RFFT2D one row per transform
  ([rows, 1, N], what tf.signal.rfft converts to) and four rows per
  transform ([rows / 4, 4, N], what 'fft_builtin' uses)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from ai_edge_litert import interpreter as litert  # pylint: disable=g-import-not-at-top
  rows, size = TRANSFORM_ROWS, TRANSFORM_SIZE
  signal = np.random.default_rng(1).standard_normal(
      (rows, size)).astype(np.float32)

  def converted(transform):
    def real_imag(rows_in):
      spectrum = transform(rows_in)
      return {'real': tf.math.real(spectrum), 'imag': tf.math.imag(spectrum)}

    function = tf.function(
        real_imag,
        input_signature=[tf.TensorSpec([rows, size], tf.float32,
                                       name='rows')])
    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [function.get_concrete_function()], tf.Module())
    interpreter = litert.Interpreter(model_content=converter.convert(),
                                     num_threads=threads)
    return interpreter.get_signature_runner()

  one_row = converted(tf.signal.rfft)
  four_rows = converted(
      lambda x: tf.signal.rfft2d(tf.reshape(x, [rows // 4, 4, size])))

  def spectrum_in_tf(x):
    spectrum = tf.signal.rfft(x)
    return tf.math.real(spectrum), tf.math.imag(spectrum)

  in_tf = tf.function(spectrum_in_tf)
  tensor = tf.constant(signal)

  return {('transforms', 'TF'): _timed(
              calls, lambda: [t.numpy() for t in in_tf(tensor)]),
          ('transforms', 'LiteRT 1 row'): _timed(
              calls, lambda: one_row(rows=signal)),
          ('transforms', 'LiteRT 4 rows'): _timed(
              calls, lambda: four_rows(rows=signal))}


def _export_ten_hops(model, folder):
  """The export with a cadence k = 10 stream_step (one hop per call, the
  classifier after every 10th hop, the last probabilities in between), and
  its streaming .tflite and .onnx."""
  from experiments import models  # pylint: disable=g-import-not-at-top
  from experiments.serving import converters  # pylint: disable=g-import-not-at-top
  from experiments.serving import signatures  # pylint: disable=g-import-not-at-top
  windowed = models.WindowedClassifier(model, 16000)
  export_dir = os.path.join(folder, 'export')
  signatures.export_saved_model(
      windowed, [f'class_{i}' for i in range(10)], 16000, 16000, False,
      export_dir, cadence=10)
  converters.write_streaming_tflite(export_dir,
                                    os.path.join(folder, 'streaming.tflite'))
  try:
    converters.write_streaming_onnx(export_dir,
                                    os.path.join(folder, 'streaming.onnx'))
  except ValueError as error:
    # tf2onnx converts the cadence's tf.cond branch without its tensors'
    # shapes and then fails on the encoder's 'same' convolutions.
    print(f'k = 10 has no onnxruntime row: {error}', file=sys.stderr)


def measure(folder, threads, rounds, calls, modes):
  """Runs in its own process: {(mode, runtime): median seconds per call}."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  tf.config.threading.set_intra_op_parallelism_threads(threads)
  tf.config.threading.set_inter_op_parallelism_threads(1)
  from experiments.serving import runtimes  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  clip = (0.1 * rng.standard_normal((1, 16000))).astype(np.float32)
  audio = clip[0]
  paths = {
      ('offline', 'TF'): os.path.join(folder, 'run', 'export'),
      ('offline', 'LiteRT'): os.path.join(folder, FILES['tflite']),
      ('offline', 'onnxruntime'): os.path.join(folder, FILES['onnx']),
      ('offline', 'LiteRT direct'): os.path.join(folder, 'direct',
                                                 'offline.tflite'),
      ('offline', 'onnxruntime direct'): os.path.join(folder, 'direct',
                                                      'offline.onnx'),
      ('stream', 'TF'): os.path.join(folder, 'run', 'export'),
      ('stream', 'LiteRT'): os.path.join(folder, FILES['streaming_tflite']),
      ('stream', 'onnxruntime'): os.path.join(folder,
                                              FILES['streaming_onnx']),
      ('k10', 'TF'): os.path.join(folder, 'k10', 'export'),
      ('k10', 'LiteRT'): os.path.join(folder, 'k10', 'streaming.tflite'),
      ('k10', 'onnxruntime'): os.path.join(folder, 'k10', 'streaming.onnx'),
  }
  jobs = {}
  for (mode, name), path in paths.items():
    if mode not in modes:
      continue
    if not os.path.exists(path):
      continue  # A conversion that failed (said when it was exported).
    runtime = runtimes.open_runtime(path, threads)
    if mode == 'offline':
      def job(runtime=runtime):
        start = time.perf_counter()
        for _ in range(calls):
          runtime.classify(clip)
        return (time.perf_counter() - start) / calls
    else:
      def job(runtime=runtime):
        start = time.perf_counter()
        rows, _ = runtime.stream(audio)
        hops = len(rows) * runtime.metadata['hop_samples'] // 160
        return (time.perf_counter() - start) / hops
    jobs[(mode, name)] = job
  if 'frontend' in modes:
    jobs.update(_frontend_jobs(folder, threads, clip, calls))
  if 'transforms' in modes:
    jobs.update(_transform_jobs(threads, calls))
  for job in jobs.values():
    job()  # warm-up (tracing, allocation)
  times = {key: [] for key in jobs}
  for _ in range(rounds):
    for key, job in jobs.items():
      times[key].append(job())
  return {f'{mode}|{name}': statistics.median(values)
          for (mode, name), values in times.items()}


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--rounds', type=int, default=5)
  parser.add_argument('--calls', type=int, default=10,
                      help='offline calls per round and runtime')
  parser.add_argument('--threads', type=int, nargs='+', default=[1, 2])
  parser.add_argument('--modes', nargs='+', default=list(MODES),
                      choices=MODES, help='what to time (default: all)')
  parser.add_argument('--measure', help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.measure:
    print(json.dumps(measure(args.measure, args.threads[0], args.rounds,
                             args.calls, args.modes)))
    return
  with tempfile.TemporaryDirectory() as folder:
    export(folder, args.modes)
    results = {}
    for threads in args.threads:
      output = subprocess.run(
          [sys.executable, __file__, '--measure', folder, '--threads',
           str(threads), '--rounds', str(args.rounds), '--calls',
           str(args.calls), '--modes', *args.modes], check=False,
          capture_output=True, text=True)
      if output.returncode:
        sys.exit(f'the {threads}-thread measurement failed:\n'
                 f'{output.stderr[-3000:]}')
      results[threads] = json.loads(output.stdout.strip().splitlines()[-1])
  print(f'main recipe model (Leaf 40 filters, ConvNet 16-32-64), batch 1; '
        f'median of {args.rounds} interleaved rounds\n')
  header = ''.join(f'{f"{t} thread" + ("s" if t > 1 else ""):>14}'
                   for t in args.threads)
  def cells(key, scale=1e3, digits=1):
    return ''.join(f'{results[t][key] * scale:>14.{digits}f}'
                   for t in args.threads)

  def ratios(key, reference):
    return ''.join(f'{results[t][key] / results[t][reference]:>13.1f}x'
                   for t in args.threads)

  if 'offline' in args.modes:
    print(f'{"offline, ms per 1 s clip":<40}{header}')
    for name, title in (('TF', 'TF serving_default (fft)'),
                        ('LiteRT', 'LiteRT --tflite (fft_builtin)'),
                        ('onnxruntime', 'onnxruntime --onnx (direct)'),
                        ('LiteRT direct', 'LiteRT, direct (before)'),
                        ('onnxruntime direct', 'onnxruntime, direct (before)')):
      print(f'{title:<40}{cells(f"offline|{name}")}')
    for name in ('LiteRT', 'onnxruntime', 'LiteRT direct',
                 'onnxruntime direct'):
      print(f'{name + " / TF":<40}'
            f'{ratios(f"offline|{name}", "offline|TF")}')
  if 'frontend' in args.modes:
    print(f'\n{"frontend alone, ms per 1 s clip":<40}{header}')
    for name, title in (('TF', 'TF (fft)'),
                        ('LiteRT fft_builtin', 'LiteRT (fft_builtin)'),
                        ('LiteRT direct', 'LiteRT (direct)')):
      print(f'{title:<40}{cells(f"frontend|{name}")}')
    print(f'{"LiteRT fft_builtin / TF":<40}'
          f'{ratios("frontend|LiteRT fft_builtin", "frontend|TF")}')
  if 'transforms' in args.modes:
    print(f'\n{f"{TRANSFORM_ROWS} real FFTs of {TRANSFORM_SIZE}, ms":<40}'
          f'{header}')
    for name, title in (('TF', 'TF rfft'),
                        ('LiteRT 1 row', 'LiteRT RFFT2D [rows, 1, N]'),
                        ('LiteRT 4 rows', 'LiteRT RFFT2D [rows / 4, 4, N]')):
      print(f'{title:<40}{cells(f"transforms|{name}")}')
  for mode, title in (('stream', 'stream k=1, us per 10 ms hop'),
                      ('k10', 'stream k=10, us per 10 ms hop')):
    if mode not in args.modes:
      continue
    print(f'\n{title:<40}{header}')
    for name in ('TF', 'LiteRT', 'onnxruntime'):
      row = ''.join(
          f'{results[t][f"{mode}|{name}"] * 1e6:>7.0f} '
          f'({results[t][f"{mode}|{name}"] / HOP_SECONDS:>4.1%})'
          if f'{mode}|{name}' in results[t] else f'{"not converted":>14}'
          for t in args.threads)
      print(f'{name:<40}{row}')


if __name__ == '__main__':
  main()
