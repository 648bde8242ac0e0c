"""What streaming a frontend costs per hop: TF and TFLite, batch 1, one thread.

  python benchmarks/streaming.py
  python benchmarks/streaming.py --hops 500 --rounds 5

Rows: `Leaf`, `EfficientLeaf(compression='pcen')` and `MelFilterbanks`
with their 16 kHz defaults (hop 160 samples = 10 ms). Each job streams
`--hops` hops of noise one hop at a time through
`leaf_audio.streaming.StreamingFrontend`: "TF" calls the step as a
`tf.function` (fixed shapes [1, 160], state fed back as tensors); "TFLite"
runs the step converted with builtin ops (`to_tflite()`) in
`tf.lite.Interpreter(num_threads=1)`, feeding the state back as numpy
arrays. TensorFlow runs with one intra-op and one inter-op thread. Rounds
are interleaved (every job once per round) and the table shows the median
over rounds of the mean time per hop, in microseconds and as a fraction of
the hop's duration (real time).

`Leaf x10 direct` / `Leaf x10 fft` step over 10 hops per call (what a
cadence k = 10 stream runs once per 10 hops), filtering by direct
convolution or by FFT (`StreamingFrontend(filter_method=...)`); their times
are per hop (per call / 10).
"""

import argparse
import os
import statistics
import time

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import numpy as np  # pylint: disable=g-import-not-at-top,wrong-import-position
import tensorflow as tf  # pylint: disable=g-import-not-at-top,wrong-import-position

import leaf_audio  # pylint: disable=g-import-not-at-top,wrong-import-position
from leaf_audio import streaming  # pylint: disable=g-import-not-at-top,wrong-import-position

FRONTENDS = {
    'Leaf': leaf_audio.Leaf,
    "EfficientLeaf('pcen')": lambda: leaf_audio.EfficientLeaf(
        compression='pcen'),
    'MelFilterbanks': leaf_audio.MelFilterbanks,
}


def tf_job(stream, audio, hops_per_step=1):
  samples = hops_per_step * stream.hop_samples
  step = tf.function(stream.step, input_signature=[
      {key: tf.TensorSpec(value.shape, value.dtype)
       for key, value in stream.initial_state(1).items()},
      tf.TensorSpec([1, samples], tf.float32)])
  hops = [tf.constant(audio[np.newaxis, i:i + samples])
          for i in range(0, len(audio) - samples + 1, samples)]

  def run():
    state = stream.initial_state(1)
    start = time.perf_counter()
    for hop in hops:
      state, frames = step(state, hop)
    frames.numpy()
    return (time.perf_counter() - start) / len(hops) / hops_per_step

  return run


def tflite_job(stream, audio, hops_per_step=1):
  samples = hops_per_step * stream.hop_samples
  interpreter = tf.lite.Interpreter(
      model_content=stream.to_tflite(hops=hops_per_step), num_threads=1)
  runner = interpreter.get_signature_runner('step')
  hops = [audio[np.newaxis, i:i + samples]
          for i in range(0, len(audio) - samples + 1, samples)]
  initial = {'state_' + key: value.numpy()
             for key, value in stream.initial_state(1).items()}

  def run():
    state = dict(initial)
    start = time.perf_counter()
    for hop in hops:
      outputs = runner(samples=hop, **state)
      state = {key: outputs[key] for key in state}
    return (time.perf_counter() - start) / len(hops) / hops_per_step

  return run


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--hops', type=int, default=300)
  parser.add_argument('--rounds', type=int, default=5)
  args = parser.parse_args()
  tf.config.threading.set_intra_op_parallelism_threads(1)
  tf.config.threading.set_inter_op_parallelism_threads(1)
  audio = (0.1 * np.random.default_rng(0).standard_normal(
      args.hops * 160)).astype(np.float32)
  jobs = {}
  for name, make in FRONTENDS.items():
    frontend = make()
    frontend.build((None, None))
    stream = streaming.StreamingFrontend(frontend)
    jobs[(name, 'TF')] = tf_job(stream, audio)
    jobs[(name, 'TFLite')] = tflite_job(stream, audio)
    if name == 'Leaf':
      for method in ('direct', 'fft'):
        ten = streaming.StreamingFrontend(frontend, filter_method=method)
        jobs[(f'Leaf x10 {method}', 'TF')] = tf_job(ten, audio, 10)
        jobs[(f'Leaf x10 {method}', 'TFLite')] = tflite_job(ten, audio, 10)
  hop_seconds = 160 / 16000
  for job in jobs.values():  # warm-up: traces, allocations
    job()
  times = {key: [] for key in jobs}
  for _ in range(args.rounds):
    for key, job in jobs.items():
      times[key].append(job())
  print(f'{args.hops} hops of 10 ms, batch 1, one thread; median of '
        f'{args.rounds} rounds')
  print(f'{"frontend":<24}{"engine":<8}{"us / hop":>10}{"real time":>11}')
  for (name, engine), values in times.items():
    median = statistics.median(values)
    print(f'{name:<24}{engine:<8}{median * 1e6:>10.0f}'
          f'{median / hop_seconds:>10.1%}')


if __name__ == '__main__':
  main()
