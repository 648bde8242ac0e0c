"""Datasets for the experiments: audio in, float waveforms and labels out.

  wav            read_wav / write_wav / to_mono / resample: files as numpy
  audio_feature  PcmAudio: how the builders store int16 audio (raw bytes)
  synthetic      LeafSynthetic, the embedded ten-class default dataset
  folder         WavFolder, a TFDS builder over the user's root/<label>/*.wav
  pipeline       load_dataset, train_batches, eval_clips

Builders store int16 audio; `pipeline.load_dataset` turns every source into
float32 waveforms in [-1, 1] with int32 (or multi-hot) labels.
"""
