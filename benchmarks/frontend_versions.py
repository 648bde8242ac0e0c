"""Two versions of leaf_audio side by side: frontend cost ratios to mel.

  python benchmarks/frontend_versions.py --code before=/path/to/old --code after=.
  python benchmarks/frontend_versions.py --rounds 5 --frontends Leaf EfficientLeaf

Rounds are interleaved: each round runs every version once, each in a fresh
process whose `leaf_audio` comes from that version's folder, timing the
harness of `benchmarks/frontends.py` (this checkout's, so only the package
differs) for `--repeats` inner rounds after `--warmup` untimed ones: forward
and (`--train_step`) a whole AudioClassifier training step, for each
frontend and MelFilterbanks. A process's ratio is the median over its inner
rounds of frontend time / mel time measured in the same inner round, a
second apart; the table shows each version's median over processes of that
ratio and the change of that median from the first version. A process
costs mostly its start and tracing, so inner rounds are cheap and steady a
ratio that one timed call per process leaves to chance.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import frontends  # pylint: disable=g-import-not-at-top,wrong-import-position

_ROUND = r'''
import argparse, json, sys
sys.path.insert(1, sys.argv[1])
import frontends
args = argparse.Namespace(
    batch=int(sys.argv[2]), seconds=float(sys.argv[3]),
    rounds=int(sys.argv[5]), warmup=int(sys.argv[4]), min_ms=50.,
    train_step=sys.argv[6] == 'true',
    frontends=['MelFilterbanks'] + sys.argv[7:])
times = frontends.measure_times(args)
print(json.dumps({f'{name}|{job}': values
                  for (name, job), values in times.items()}))
'''


def one_round(path, args):
  env = dict(os.environ, PYTHONPATH=os.path.abspath(path),
             TF_CPP_MIN_LOG_LEVEL='3')
  result = subprocess.run(
      [sys.executable, '-c', _ROUND, HERE, str(args.batch), str(args.seconds),
       str(args.warmup), str(args.repeats), args.train_step,
       *args.frontends],
      env=env, capture_output=True, text=True, check=True)
  return json.loads(result.stdout.strip().splitlines()[-1])


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--code', action='append', required=True,
                      help='name=path of a folder holding leaf_audio')
  parser.add_argument('--rounds', type=int, default=5)
  parser.add_argument('--warmup', type=int, default=2)
  parser.add_argument('--repeats', type=int, default=9,
                      help='timed inner rounds per process')
  parser.add_argument('--batch', type=int, default=8)
  parser.add_argument('--seconds', type=float, default=1.0)
  parser.add_argument('--train_step', default='true',
                      choices=('true', 'false'))
  parser.add_argument('--frontends', nargs='+',
                      default=['Leaf', 'EfficientLeaf'])
  args = parser.parse_args()
  codes = [item.split('=', 1) for item in args.code]
  jobs = ['forward'] + ['train_step'] * (args.train_step == 'true')
  ratios = {(version, name, job): [] for version, _ in codes
            for name in args.frontends for job in jobs}
  # Each version's times in ms, the denominator's too: a ratio also moves
  # when mel does.
  times_ms = {(version, name, job): [] for version, _ in codes
            for name in ['MelFilterbanks'] + args.frontends for job in jobs}
  for index in range(args.rounds):
    for version, path in codes:
      times = one_round(path, args)
      for name in args.frontends:
        for job in jobs:
          ratios[(version, name, job)].append(frontends.median_ratio(
              times[f'{name}|{job}'], times[f'MelFilterbanks|{job}']))
      for name in ['MelFilterbanks'] + args.frontends:
        for job in jobs:
          times_ms[(version, name, job)].append(
              1000 * statistics.median(times[f'{name}|{job}']))
    # The table so far, so that an interrupted run still tells something.
    print_table(args, codes, jobs, ratios, index + 1, times_ms)


def print_table(args, codes, jobs, ratios, rounds, times_ms=None):
  print(f'batch {args.batch} x {args.seconds:g} s, {rounds} interleaved '
        f'rounds (a process per version each), median over them of a '
        f"process's median of (frontend / mel) over {args.repeats} inner "
        'rounds')
  print('| frontend | job | ' + ' | '.join(v for v, _ in codes) +
        f' | change from {codes[0][0]} |')
  print('|---|---|' + '---|' * len(codes) + '---|')
  for name in args.frontends:
    for job in jobs:
      medians = [statistics.median(ratios[(version, name, job)])
                 for version, _ in codes]
      print(f'| {name} | {job} | ' + ' | '.join(f'{m:.2f}x' for m in medians)
            + f' | {100 * (medians[-1] / medians[0] - 1):+.1f}% |')
  for name in ['MelFilterbanks'] + args.frontends if times_ms else ():
    for job in jobs:
      medians = [statistics.median(times_ms[(version, name, job)])
                 for version, _ in codes]
      print(f'| {name} (ms, not a ratio) | {job} | ' + ' | '.join(
          f'{m:.2f} ms' for m in medians) +
            f' | {100 * (medians[-1] / medians[0] - 1):+.1f}% |')
  sys.stdout.flush()

if __name__ == '__main__':
  main()
