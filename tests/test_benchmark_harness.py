"""benchmarks/frontends.py: how rounds become the table's numbers (no timing)."""

import argparse
import importlib.util

import pytest

from conftest import REPO_ROOT


def load_benchmark():
  spec = importlib.util.spec_from_file_location(
      'frontends_benchmark', REPO_ROOT / 'benchmarks' / 'frontends.py')
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def test_ratios_are_medians_of_per_round_ratios():
  benchmark = load_benchmark()
  # Round 3 is slow for both rows (load): per-round ratios are 2, 2, 2, 3;
  # the ratio of the medians would be 4 / 1.5 = 2.67.
  leaf = [2., 2., 10., 6.]
  mel = [1., 1., 5., 2.]
  assert benchmark.median_ratio(leaf, mel) == pytest.approx(2.)
  round_times = {
      ('MelFilterbanks', 'forward'): mel,
      ('MelFilterbanks', 'forward_backward'): mel,
      ('MelFilterbanks', 'train_step'): [10., 10., 30., 12.],
      ('Leaf', 'forward'): leaf,
      ('Leaf', 'forward_backward'): leaf,
      ('Leaf', 'train_step'): [15., 16., 60., 17.],
  }
  args = argparse.Namespace(frontends=['MelFilterbanks', 'Leaf'],
                            train_step=True)
  text = benchmark.table(args, round_times, {'MelFilterbanks': 1., 'Leaf': 2.})
  leaf_row = [line for line in text.splitlines() if line.startswith('| Leaf')]
  cells = [cell.strip() for cell in leaf_row[0].strip('|').split('|')]
  # forward ms (median), fwd+bwd ms, fwd / mel fwd, RSS, step ms, step ratio
  # (step: per-round 1.5, 1.6, 2, 1.42; the ratio of medians would be 1.5).
  assert cells[1:] == ['4000.0', '4000.0', '2.0x', '2', '16500', '1.55x']


def test_median_ratio_refuses_rounds_that_do_not_pair():
  benchmark = load_benchmark()
  with pytest.raises(ValueError, match='equally long, non-empty'):
    benchmark.median_ratio([1., 2.], [1.])
  with pytest.raises(ValueError, match='equally long, non-empty'):
    benchmark.median_ratio([], [])


@pytest.mark.parametrize('seconds, min_ms, repeats', [
    (0.006, 50., 9), (0.2, 50., 1), (0.05, 50., 1), (0.0, 50., 100)])
def test_short_jobs_repeat_until_min_ms(seconds, min_ms, repeats):
  assert load_benchmark()._repeats(seconds, min_ms) == repeats
