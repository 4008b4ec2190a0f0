"""Transfer benchmarks of the learnt features (sections 3.1, 3.3 and 3.4).

Audio (section 3.3): `protocol` (the z-score / linear-SVM protocol shared by
ESC-50 and DCASE, and `evaluate_clips` for clips held in memory), configured
by one `protocol_config.SvmProtocolConfig`; `subclips`, `encoders`,
`features` (extraction and the feature cache); `linear_svm` (the batched
one-vs-all SVM solver); `esc50`, `dcase`.
Vision and baselines: `imagenet`, `supervised`, `kinetics_baselines`.
"""
