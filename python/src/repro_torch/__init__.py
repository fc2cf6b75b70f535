"""repro-torch: hold a PyTorch implementation of the notebook's LeNet-5 to a repro golden.

`repro-torch verify GOLDEN.h5…` replays each window of a golden in PyTorch — from the window's checkpoint, on
the batches the golden's data order gives (re-derived from its seed by a port of repro's Philox streams and
checked against the stored orders or their digests) — and judges what it observes by the golden's round-off
envelope, with repro's verdict words and exit codes. Modules: `record` (the golden), `philox` and `orders`
(the data order), `data` (MNIST and the notebook's transform), `model` (the notebook's LeNet and loading a
user's), `plan`, `replay`, `judge`, `cli`.
"""
