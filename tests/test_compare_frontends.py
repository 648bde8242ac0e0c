"""experiments/compare_frontends.py: what it runs and how it tabulates."""

from conftest import REPO_ROOT
from experiments import compare_frontends


def record(frontend, task, seed, accuracy, seconds=60.):
  return {'settings': {'frontend': frontend, 'task': task, 'seed': seed,
                       'epochs': 2, 'steps_per_epoch': 40},
          'seconds': seconds, 'test_metrics': {'accuracy': accuracy}}


def test_every_frontend_and_task_has_its_gin_file():
  for frontend in compare_frontends.FRONTENDS:
    assert (REPO_ROOT / 'gin_configs' / f'{frontend}.gin').exists()
  for task in compare_frontends.TASKS:
    assert (REPO_ROOT / 'gin_configs' / 'tasks' / f'{task}.gin').exists()


def test_results_table_gives_mean_spread_and_range_over_seeds():
  records = [record('mel', 'leaf_synthetic_fine', seed, accuracy)
             for seed, accuracy in enumerate((0.90, 0.94, 0.92))]
  records.append(record('leaf', 'leaf_synthetic', 0, 0.5, seconds=180.))
  lines = compare_frontends.results_table(records).splitlines()
  assert lines[0] == ('| frontend | leaf_synthetic: test accuracy | '
                      'leaf_synthetic_fine: test accuracy | median run time |')
  # Rows in the order of FRONTENDS; a missing task shows a dash.
  assert lines[2] == '| LEAF | 50.0 ± 0.0 (50.0-50.0; seeds 0) | — | 3.0 min |'
  assert lines[3] == ('| mel filterbanks | — | 92.0 ± 2.0 (90.0-94.0; seeds '
                      '0,1,2) | 1.0 min |')
