"""Installs leaf_audio (the Keras layers) and experiments (the training binaries).

`pip install .` brings only what the layers need (TensorFlow, Keras, numpy);
`pip install '.[experiments]'` adds what training needs (gin, absl, TFDS,
scipy, TensorBoard, matplotlib for the figures), `'.[deploy]'` the exporters
and runtimes of the `.tflite` and `.onnx` files (tf2onnx, onnx, LiteRT,
onnxruntime), and `'.[test]'` both, with pytest on top.

TensorFlow comes as the `tensorflow` package by default. On a machine without
a GPU, `LEAF_AUDIO_TENSORFLOW=tensorflow-cpu pip install -e .` installs the
smaller CPU build instead (the Makefile does this when it finds no GPU).
"""

import os

import setuptools

TENSORFLOW = os.environ.get('LEAF_AUDIO_TENSORFLOW', 'tensorflow')

BASE_REQUIREMENTS = [
    f'{TENSORFLOW}>=2.16',
    'keras>=3.0',
    'numpy>=1.23',
]
# What the training binaries (experiments/) import on top of the library.
EXPERIMENTS_REQUIREMENTS = [
    'tensorflow-datasets>=4.9',
    'gin-config>=0.5',
    'absl-py>=1.0',
    'tensorboard>=2.16',
    # TFDS 4.9 imports it to prepare catalogue datasets but does not
    # declare it for Python >= 3.9 (tensorflow/datasets#11212).
    'importlib_resources',
    'scipy>=1.9',  # WAV reading and resampling in experiments/.
    # Filter-response figures in TensorBoard and experiments.inspect.
    'matplotlib>=3.5',
]
# What `experiments.export --tflite/--onnx/...` and the runtime runners
# (experiments/serving/runtimes.py) import: converters and the two runtimes.
DEPLOY_REQUIREMENTS = [
    'tf2onnx>=1.16',
    'onnx>=1.15',
    'ai-edge-litert>=1.2',
    'onnxruntime>=1.17',
]

setuptools.setup(
    name='leaf-audio',
    version='0.1.0',
    description=('LEAF, a learnable audio frontend, and its baselines as '
                 'Keras 3 layers, with gin/absl training binaries.'),
    long_description=open('README.md', encoding='utf-8').read(),
    long_description_content_type='text/markdown',
    packages=setuptools.find_packages(include=['leaf_audio', 'leaf_audio.*',
                                               'experiments', 'experiments.*']),
    python_requires='>=3.10',
    # The library (leaf_audio) needs only these; training needs the
    # `experiments` extra, the tests the `test` extra.
    install_requires=BASE_REQUIREMENTS,
    extras_require={
        'experiments': EXPERIMENTS_REQUIREMENTS,
        'deploy': DEPLOY_REQUIREMENTS,
        'plot': ['matplotlib>=3.5'],
        # deploy: every runtime is tested; pytest-xdist runs test files in
        # parallel processes (make test).
        'test': EXPERIMENTS_REQUIREMENTS + DEPLOY_REQUIREMENTS + [
            'pytest>=7', 'pytest-xdist>=3'],
    },
    license='Apache 2.0',
)
