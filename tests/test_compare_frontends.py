"""experiments/compare_frontends.py: what it runs and how it tabulates."""

from conftest import REPO_ROOT
from experiments import compare_frontends


def record(frontend, task, seed, accuracy, seconds=60., last=None,
           validation=None):
  test_metrics = {'accuracy': accuracy}
  if last is not None:
    test_metrics['last'] = {'accuracy': last}
  result = {'settings': {'frontend': frontend, 'task': task, 'seed': seed,
                         'epochs': 2, 'steps_per_epoch': 40},
            'seconds': seconds, 'test_metrics': test_metrics}
  if validation is not None:
    result['validation'] = validation
  return result


def test_every_frontend_and_task_has_its_gin_file():
  for frontend in compare_frontends.FRONTENDS:
    assert (REPO_ROOT / 'gin_configs' / f'{frontend}.gin').exists()
  for task in compare_frontends.TASKS:
    assert (REPO_ROOT / 'gin_configs' / 'tasks' / f'{task}.gin').exists()


def test_results_table_gives_mean_spread_and_range_over_seeds():
  records = [
      record('mel', 'leaf_synthetic_fine', seed, accuracy, last=last,
             validation={'last': v_last, 'chosen': v_chosen,
                         'chosen_epoch': 2})
      for seed, accuracy, last, v_last, v_chosen in (
          (0, 0.90, 0.80, 0.70, 0.75), (1, 0.94, 0.94, 0.80, 0.80),
          (2, 0.92, 0.86, 0.75, 0.85))]
  records.append(record('leaf', 'leaf_synthetic', 0, 0.5, seconds=180.))
  lines = compare_frontends.results_table(records).splitlines()
  assert lines[0] == ('| task | frontend | seeds | validation, last epoch | '
                      'validation, chosen epoch | test, chosen model | '
                      'test, last model | median run time |')
  # Tasks in the order of TASKS; a run without a number shows a dash.
  assert lines[2] == ('| leaf_synthetic | LEAF | 0 | — | — | '
                      '50.0 ± 0.0 (50.0-50.0) | — | 3.0 min |')
  assert lines[3] == ('| leaf_synthetic_fine | mel filterbanks | 0,1,2 | '
                      '75.0 ± 5.0 (70.0-80.0) | 80.0 ± 5.0 (75.0-85.0) | '
                      '92.0 ± 2.0 (90.0-94.0) | 86.7 ± 7.0 (80.0-94.0) | '
                      '1.0 min |')


def test_validation_accuracies_read_the_last_and_the_best_epoch(tmp_path):
  path = tmp_path / 'metrics.csv'
  path.write_text('epoch,loss,val_accuracy\n0,1.0,0.5\n1,0.8,0.7\n'
                  '2,0.7,0.7\n3,0.6,0.6\n')
  assert compare_frontends.validation_accuracies(path) == {
      'last': 0.6, 'chosen': 0.7, 'chosen_epoch': 2}
