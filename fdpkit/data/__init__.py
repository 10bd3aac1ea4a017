"""Data: vendor corpora and SynthME -> manifest -> aligned clip cache -> ClipDataset."""
