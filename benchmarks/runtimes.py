"""One exported classifier in TensorFlow, LiteRT and onnxruntime: time per
1 s clip offline, and per 10 ms hop streamed.

  python benchmarks/runtimes.py
  python benchmarks/runtimes.py --rounds 7 --calls 20 --threads 1 2

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
            LiteRT and the .onnx in onnxruntime (direct method); ms per clip
  stream    `stream` over 1 s of audio (100 hops of 160 samples, the
            classifier on its 1 s window after every hop, k = 1): per hop, in
            microseconds and as a fraction of the hop's 10 ms (real time)
  frontend  the frontend alone on the 1 s clip: TF's `Leaf` (FFT method) and
            the direct method converted to LiteRT, where the offline
            .tflite spends its time (a stride-1 convolution with 401 taps
            and 80 outputs at 16 kHz: 513 M multiply-adds per second of audio)
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


def export(folder):
  import keras  # pylint: disable=g-import-not-at-top
  import leaf_audio  # pylint: disable=g-import-not-at-top
  from experiments.serving import exporting as export_cli  # pylint: disable=g-import-not-at-top
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
  written = export_cli.export_run(
      run, **{flag: os.path.join(folder, name) for flag, name in FILES.items()})
  _export_ten_hops(model, os.path.join(folder, 'k10'))
  _export_frontend(model, folder)
  return written


def _export_frontend(model, folder):
  """The frontend alone, direct method, as frontend.tflite ([1, 16000])."""
  import keras  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from leaf_audio import methods  # pylint: disable=g-import-not-at-top
  direct = methods.with_method(model.frontend, 'direct')
  archive = keras.export.ExportArchive()
  archive.track(direct)
  archive.add_endpoint('frontend', tf.function(
      lambda waveform: {'frames': direct(waveform)},
      input_signature=[tf.TensorSpec([1, 16000], tf.float32,
                                     name='waveform')]))
  saved = os.path.join(folder, 'frontend_saved_model')
  archive.write_out(saved, verbose=False)
  converter = tf.lite.TFLiteConverter.from_saved_model(
      saved, signature_keys=['frontend'])
  with open(os.path.join(folder, 'frontend.tflite'), 'wb') as file:
    file.write(converter.convert())


def _frontend_jobs(folder, threads, clip, calls):
  """{('frontend', runtime): job}: the frontend alone, TF (its 'auto'
  method: FFT for Leaf) and LiteRT (direct convolution)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from ai_edge_litert import interpreter as litert  # pylint: disable=g-import-not-at-top
  import leaf_audio  # pylint: disable=g-import-not-at-top,unused-import
  from experiments import models  # pylint: disable=g-import-not-at-top,unused-import
  from experiments.training import model_files  # pylint: disable=g-import-not-at-top
  # (Importing leaf_audio and experiments.models registers the classes.)
  model = model_files.load_keras_file(os.path.join(folder, 'run',
                                                   'best.keras'))
  frontend = tf.function(model.frontend)
  with open(os.path.join(folder, 'frontend.tflite'), 'rb') as file:
    interpreter = litert.Interpreter(model_content=file.read(),
                                     num_threads=threads)
  runner = interpreter.get_signature_runner('frontend')
  tensor = tf.constant(clip)

  def timed(call):
    def job():
      start = time.perf_counter()
      for _ in range(calls):
        call()
      return (time.perf_counter() - start) / calls
    return job

  return {('frontend', 'TF'): timed(lambda: frontend(tensor).numpy()),
          ('frontend', 'LiteRT'): timed(lambda: runner(waveform=clip))}


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


def measure(folder, threads, rounds, calls):
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
  jobs.update(_frontend_jobs(folder, threads, clip, calls))
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
  parser.add_argument('--measure', help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.measure:
    print(json.dumps(measure(args.measure, args.threads[0], args.rounds,
                             args.calls)))
    return
  with tempfile.TemporaryDirectory() as folder:
    export(folder)
    results = {}
    for threads in args.threads:
      output = subprocess.run(
          [sys.executable, __file__, '--measure', folder, '--threads',
           str(threads), '--rounds', str(args.rounds), '--calls',
           str(args.calls)], check=False, capture_output=True, text=True)
      if output.returncode:
        sys.exit(f'the {threads}-thread measurement failed:\n'
                 f'{output.stderr[-3000:]}')
      results[threads] = json.loads(output.stdout.strip().splitlines()[-1])
  print(f'main recipe model (Leaf 40 filters, ConvNet 16-32-64), batch 1; '
        f'median of {args.rounds} interleaved rounds\n')
  header = ''.join(f'{f"{t} thread" + ("s" if t > 1 else ""):>14}'
                   for t in args.threads)
  print(f'{"offline, ms per 1 s clip":<32}{header}')
  for name in ('TF', 'LiteRT', 'onnxruntime'):
    cells = ''.join(f'{results[t][f"offline|{name}"] * 1e3:>14.1f}'
                    for t in args.threads)
    print(f'{name:<32}{cells}')
  for name in ('LiteRT', 'onnxruntime'):
    cells = ''.join(
        f'{results[t][f"offline|{name}"] / results[t]["offline|TF"]:>13.1f}x'
        for t in args.threads)
    print(f'{name + " / TF":<32}{cells}')
  for name, title in (('TF', 'frontend alone, TF (FFT)'),
                      ('LiteRT', 'frontend alone, LiteRT (direct)')):
    cells = ''.join(f'{results[t][f"frontend|{name}"] * 1e3:>14.1f}'
                    for t in args.threads)
    print(f'{title:<32}{cells}')
  for mode, title in (('stream', 'stream k=1, us per 10 ms hop'),
                      ('k10', 'stream k=10, us per 10 ms hop')):
    print(f'\n{title:<32}{header}')
    for name in ('TF', 'LiteRT', 'onnxruntime'):
      cells = ''.join(
          f'{results[t][f"{mode}|{name}"] * 1e6:>7.0f} '
          f'({results[t][f"{mode}|{name}"] / HOP_SECONDS:>4.1%})'
          if f'{mode}|{name}' in results[t] else f'{"not converted":>14}'
          for t in args.threads)
      print(f'{name:<32}{cells}')


if __name__ == '__main__':
  main()
