"""Peak memory of one long `Streamer.push` against the offline frontend.

  python benchmarks/streaming_memory.py
  python benchmarks/streaming_memory.py --seconds 60 300 \
      --code after=. --code before=/path/to/an/older/checkout

Each case runs in its own Python process (so that one case's allocations do
not hide another's): it builds `Leaf()` (16 kHz defaults), runs it once on
1 s of noise (tracing, weights), resets its peak resident memory
(/proc/self/clear_refs, Linux), then computes either the offline features of
`--seconds` s of noise (batch 1, one call) or the same audio through
`leaf_audio.streaming.Streamer` in ONE push plus a flush, and reports the
growth of its peak resident memory (VmHWM) over the memory before that
call, in MB. `--code name=path` runs the
cases with `leaf_audio` imported from `path` (e.g. a checkout of an older
commit), so that versions compare side by side in one run. The last column
is the ratio of the push to the offline frontend on the same audio and
code.
"""

import argparse
import os
import subprocess
import sys

_CASE = r'''
import os, sys
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
import numpy as np
import leaf_audio
from leaf_audio import streaming

def status_mb(field):
  with open('/proc/self/status') as status:
    for line in status:
      if line.startswith(field + ':'):
        return int(line.split()[1]) / 1024.

kind, seconds = sys.argv[1], float(sys.argv[2])
leaf = leaf_audio.Leaf()
rng = np.random.default_rng(0)
warm = (0.1 * rng.standard_normal([1, 16000])).astype(np.float32)
audio = (0.1 * rng.standard_normal([1, int(seconds * 16000)])).astype(
    np.float32)
leaf(warm)
if kind == 'push':
  streamer = streaming.Streamer(leaf)
  streamer.push(warm)
  streamer.flush()
  streamer = streaming.Streamer(streamer.stream)
# Resets the peak (VmHWM) to the current resident memory, so that the peak
# of the import and the warm-up does not hide the call's.
with open('/proc/self/clear_refs', 'w') as clear:
  clear.write('5')
before = status_mb('VmRSS')
if kind == 'offline':
  frames = np.asarray(leaf(audio))
else:
  frames = np.concatenate([streamer.push(audio), streamer.flush()], axis=1)
peak = status_mb('VmHWM')
print(max(peak - before, 0.), frames.shape[1])
'''


def run_case(code_path, kind, seconds):
  env = dict(os.environ, PYTHONPATH=os.path.abspath(code_path))
  result = subprocess.run([sys.executable, '-c', _CASE, kind, str(seconds)],
                          env=env, capture_output=True, text=True, check=False)
  if result.returncode:
    return None, result.stderr.strip().splitlines()[-1:]
  growth, frames = result.stdout.split()
  return float(growth), int(frames)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--seconds', type=float, nargs='+', default=[60, 300])
  parser.add_argument('--code', action='append', default=None,
                      help='name=path of a checkout whose leaf_audio to run '
                           '(default: after=. only)')
  args = parser.parse_args()
  codes = [item.split('=', 1) for item in (args.code or ['after=.'])]
  print('| code | audio (s) | offline Leaf (MB) | one push (MB) | '
        'push / offline |')
  print('|---|---|---|---|---|')
  for seconds in args.seconds:
    for name, path in codes:
      offline, _ = run_case(path, 'offline', seconds)
      push, detail = run_case(path, 'push', seconds)
      if offline is None or push is None:
        print(f'| {name} | {seconds:g} | {offline} | failed: {detail} | |')
        continue
      print(f'| {name} | {seconds:g} | {offline:.0f} | {push:.0f} | '
            f'{push / max(offline, 1.):.2f} |', flush=True)


if __name__ == '__main__':
  main()
