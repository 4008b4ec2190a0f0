"""Measuring what the networks learnt: AVC accuracy on fixed pairs (`avc`), linear
transfer (`transfer/`: ESC-50, DCASE, ImageNet probe, Kinetics baselines) and the
section 3.5 analyses (`analysis/`)."""
