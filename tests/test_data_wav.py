"""Tests for experiments/data/wav.py: read, write, downmix, resample."""

import struct

import numpy as np
import pytest
import scipy.io.wavfile

from experiments.data import wav


def write_pcm24(path, pcm, sample_rate):
  """Writes int32 values in [-2^23, 2^23) as a 24-bit PCM WAV, by hand.

  scipy cannot write 24-bit files; this is an independent writer following
  the RIFF/WAVE layout. pcm: int [samples] or [samples, channels].
  """
  pcm = np.asarray(pcm, np.int32)
  if pcm.ndim == 1:
    pcm = pcm[:, np.newaxis]
  channels = pcm.shape[1]
  little_endian = pcm.astype('<i4').reshape(-1, 1).view(np.uint8)
  data = little_endian[:, :3].tobytes()  # Drop the top byte of each int32.
  fmt = struct.pack('<HHIIHH', 1, channels, sample_rate,
                    sample_rate * channels * 3, channels * 3, 24)
  with open(path, 'wb') as f:
    f.write(b'RIFF' + struct.pack('<I', 4 + 8 + len(fmt) + 8 + len(data)) +
            b'WAVE' + b'fmt ' + struct.pack('<I', len(fmt)) + fmt + b'data' +
            struct.pack('<I', len(data)) + data)


def test_int16_round_trip_is_exact_at_full_scale(tmp_path):
  pcm = np.array([-32768, -1, 0, 1, 12345, 32767], np.int16)
  scipy.io.wavfile.write(tmp_path / 'a.wav', 8000, pcm)
  samples, rate = wav.read_wav(tmp_path / 'a.wav')
  assert rate == 8000
  assert samples.dtype == np.float32 and samples.shape == (6, 1)
  np.testing.assert_array_equal(samples[:, 0], pcm / 32768.)


def test_uint8_is_centred_on_128(tmp_path):
  pcm = np.array([0, 64, 128, 255], np.uint8)
  scipy.io.wavfile.write(tmp_path / 'a.wav', 8000, pcm)
  samples, _ = wav.read_wav(tmp_path / 'a.wav')
  np.testing.assert_array_equal(samples[:, 0], [-1., -0.5, 0., 127 / 128])


def test_24_bit_is_divided_by_2_to_the_23(tmp_path):
  pcm = np.array([[-2**23, 0], [1, -1], [2**23 - 1, 4096]], np.int32)
  write_pcm24(tmp_path / 'a.wav', pcm, 48000)
  samples, rate = wav.read_wav(tmp_path / 'a.wav')
  assert rate == 48000 and samples.shape == (3, 2)
  np.testing.assert_allclose(samples, pcm / 2.**23, rtol=0, atol=1e-7)


def test_int32_and_float_files(tmp_path):
  pcm = np.array([-2**31, 0, 2**30, 2**31 - 1], np.int32)
  scipy.io.wavfile.write(tmp_path / 'i.wav', 16000, pcm)
  np.testing.assert_allclose(wav.read_wav(tmp_path / 'i.wav')[0][:, 0],
                             pcm / 2.**31, rtol=1e-7)
  floats = np.array([-1., -0.25, 0., 0.75], np.float32)
  scipy.io.wavfile.write(tmp_path / 'f.wav', 16000, floats)
  np.testing.assert_array_equal(wav.read_wav(tmp_path / 'f.wav')[0][:, 0],
                                floats)


def test_write_wav_round_trips_within_one_step(tmp_path):
  samples = np.random.default_rng(0).uniform(-1, 1, (1000, 2))
  wav.write_wav(tmp_path / 'a.wav', samples, 22050)
  read, rate = wav.read_wav(tmp_path / 'a.wav')
  assert rate == 22050 and read.shape == (1000, 2)
  np.testing.assert_allclose(read, samples, rtol=0, atol=0.5 / 32768 + 1e-9)
  assert scipy.io.wavfile.read(tmp_path / 'a.wav')[1].dtype == np.int16


def test_write_wav_clips_out_of_range_values(tmp_path):
  wav.write_wav(tmp_path / 'a.wav', np.array([-2., 1., 3.]), 8000)
  _, pcm = scipy.io.wavfile.read(tmp_path / 'a.wav')
  np.testing.assert_array_equal(pcm, [-32768, 32767, 32767])


def test_write_wav_rejects_integer_samples(tmp_path):
  with pytest.raises(ValueError, match='floats'):
    wav.write_wav(tmp_path / 'a.wav', np.zeros(4, np.int16), 8000)


@pytest.mark.parametrize('content, problem', [
    (None, 'no file'),
    (b'', 'empty'),
    (b'just some text, not audio at all', 'could not read'),
    (b'RIFF\x10\x00\x00\x00WAVEfmt \x10\x00', 'could not read'),  # Truncated.
])
def test_unreadable_files_name_the_path(tmp_path, content, problem):
  path = tmp_path / 'broken.wav'
  if content is not None:
    path.write_bytes(content)
  with pytest.raises(ValueError, match=problem) as error:
    wav.read_wav(path)
  assert str(path) in str(error.value)


def test_a_directory_is_not_a_wav_file(tmp_path):
  with pytest.raises(ValueError, match='not a regular file'):
    wav.read_wav(tmp_path)


def test_a_wav_without_samples_is_an_error(tmp_path):
  scipy.io.wavfile.write(tmp_path / 'a.wav', 8000, np.zeros(0, np.int16))
  with pytest.raises(ValueError, match='no samples'):
    wav.read_wav(tmp_path / 'a.wav')


def test_to_mono_averages_channels():
  stereo = np.random.default_rng(1).uniform(-1, 1, (50, 2))
  mono = wav.to_mono(stereo)
  assert mono.dtype == np.float32 and mono.shape == (50,)
  np.testing.assert_allclose(mono, stereo.mean(axis=1), rtol=1e-6)
  np.testing.assert_array_equal(wav.to_mono(stereo[:, 0]),
                                stereo[:, 0].astype(np.float32))


def test_resample_is_identity_at_equal_rates():
  samples = np.random.default_rng(2).uniform(-1, 1, 100)
  out = wav.resample(samples, 16000, 16000)
  assert out.dtype == np.float32
  np.testing.assert_array_equal(out, samples.astype(np.float32))


@pytest.mark.parametrize('from_rate', [44100, 48000, 22050, 8000])
def test_resampled_tone_stays_the_same_tone(from_rate):
  """A 1 kHz sine at any rate becomes the 1 kHz sine sampled at 16 kHz."""
  samples = 0.5 * np.sin(2 * np.pi * 1000 * np.arange(from_rate // 2) /
                         from_rate)
  out = wav.resample(samples, from_rate, 16000)
  assert out.dtype == np.float32
  assert out.shape == (int(np.ceil(len(samples) * 16000 / from_rate)),)
  expected = 0.5 * np.sin(2 * np.pi * 1000 * np.arange(len(out)) / 16000)
  # The filter's edge transients aside, the waveform is reproduced.
  np.testing.assert_allclose(out[200:-200], expected[200:-200], atol=2e-3)


def test_resample_works_per_channel():
  stereo = np.stack([np.sin(np.arange(4410) / 7.), np.zeros(4410)], axis=1)
  out = wav.resample(stereo, 44100, 16000)
  assert out.shape == (1600, 2)
  np.testing.assert_array_equal(out[:, 1], 0.)
  np.testing.assert_allclose(out[:, 0], wav.resample(stereo[:, 0], 44100,
                                                     16000))


@pytest.mark.parametrize('rate', [0, -16000, 16000.5, True])
def test_resample_rejects_bad_rates(rate):
  with pytest.raises(ValueError, match='from_rate'):
    wav.resample(np.zeros(10), rate, 16000)


def test_a_truncated_file_is_refused_with_both_sizes(tmp_path):
  pcm = (np.arange(24000) % 200 - 100).astype(np.int16)
  scipy.io.wavfile.write(tmp_path / 'whole.wav', 16000, pcm)
  content = (tmp_path / 'whole.wav').read_bytes()
  (tmp_path / 'cut.wav').write_bytes(content[:44 + 2 * 11989])
  with pytest.raises(ValueError, match=(
      r"'.*cut\.wav' is truncated: its header declares 48000 bytes of audio "
      r'but the file holds only 23978')):
    wav.read_wav(tmp_path / 'cut.wav')
  # Half a sample short is truncated too; the whole file reads.
  (tmp_path / 'odd.wav').write_bytes(content[:-1])
  with pytest.raises(ValueError, match='truncated'):
    wav.read_wav(tmp_path / 'odd.wav')
  assert wav.read_wav(tmp_path / 'whole.wav')[0].shape == (24000, 1)


def test_chunks_before_and_after_the_data_are_not_truncation(tmp_path):
  pcm = np.arange(10, dtype=np.int16)
  data = pcm.tobytes()
  fmt = struct.pack('<HHIIHH', 1, 1, 8000, 16000, 2, 16)
  chunks = (b'fmt ' + struct.pack('<I', 16) + fmt +
            b'LIST' + struct.pack('<I', 3) + b'abc\0' +  # Odd size: padded.
            b'data' + struct.pack('<I', len(data)) + data +
            b'cue ' + struct.pack('<I', 4) + b'\0\0\0\0')
  (tmp_path / 'a.wav').write_bytes(
      b'RIFF' + struct.pack('<I', 4 + len(chunks)) + b'WAVE' + chunks)
  samples, rate = wav.read_wav(tmp_path / 'a.wav')
  assert rate == 8000
  np.testing.assert_array_equal(samples[:, 0], pcm / 32768.)


def test_non_finite_float_samples_are_refused(tmp_path):
  clip = np.zeros(100, np.float32)
  clip[[3, 50]] = [np.nan, np.inf]
  scipy.io.wavfile.write(tmp_path / 'nan.wav', 16000, clip)
  with pytest.raises(ValueError, match=(
      r"'.*nan\.wav' is damaged: 2 of its 100 float samples are not finite")):
    wav.read_wav(tmp_path / 'nan.wav')


def write_header_rate(path, sample_rate, samples=100):
  """A 16-bit mono PCM WAV whose header says `sample_rate`, written by hand."""
  data = np.zeros(samples, '<i2').tobytes()
  fmt = struct.pack('<HHIIHH', 1, 1, sample_rate, (sample_rate * 2) % 2**32,
                    2, 16)
  with open(path, 'wb') as f:
    f.write(b'RIFF' + struct.pack('<I', 36 + len(data)) + b'WAVE' + b'fmt ' +
            struct.pack('<I', 16) + fmt + b'data' +
            struct.pack('<I', len(data)) + data)


@pytest.mark.parametrize('rate', [0, wav.MAX_SAMPLE_RATE + 1, 2**31 - 1])
def test_an_absurd_header_sample_rate_is_a_damaged_file(tmp_path, rate):
  path = tmp_path / 'odd.wav'
  write_header_rate(path, rate)
  with pytest.raises(wav.DamagedWavError,
                     match=f'sample rate of {rate} Hz') as error:
    wav.read_wav(path)
  assert str(path) in str(error.value)
  write_header_rate(path, wav.MAX_SAMPLE_RATE)
  samples, got = wav.read_wav(path)
  assert got == wav.MAX_SAMPLE_RATE and samples.shape == (100, 1)


@pytest.mark.parametrize('content', [
    b'', b'just some text, not audio at all',
    b'RIFF\x10\x00\x00\x00WAVEfmt \x10\x00'])
def test_damaged_files_raise_the_typed_error(tmp_path, content):
  path = tmp_path / 'broken.wav'
  path.write_bytes(content)
  with pytest.raises(wav.DamagedWavError, match='broken.wav'):
    wav.read_wav(path)
