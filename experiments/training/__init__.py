"""Training: the job, the loop and what a run leaves in its model_dir.

  job.py                 train() as its phases: settings -> data -> model ->
                         run folder -> resume -> epochs -> test -> export
  settings.py            the checked arguments of train(), one object
  loop.py                one training step and epoch for every tf.distribute strategy
  distribution.py        the strategy from --strategy and TF_CONFIG; chief/worker roles
  optimizers.py          Adam with per-group learning-rate scales
  precise_batch_norm.py  recomputes BatchNorm statistics from training batches
  evaluation.py          full-clip metrics of a windowed classifier
  metrics.py             accuracy, mAP, d-prime
  run_files.py           run.json, metrics.csv, best/last .keras, and the checks
                         of model_dir (new, writable, this run)
  model_files.py         reading .keras archives with a clear error when damaged
  tensorboard_figures.py filter responses and learned parameters per epoch
  run_lock.py            one process at a time in a model_dir (a lock file)
  watchdog.py            SIGINT/SIGTERM and waits for workers end a run within seconds
"""
