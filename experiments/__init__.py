"""Training binaries for leaf_audio: gin + absl + TFDS live here and only here."""
