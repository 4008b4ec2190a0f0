"""What the networks learnt (section 3.5 of the paper), for an exported model.

  run         `analyze(export_dir, data_pattern, output_dir, ...)`: everything below,
              writing figures and analysis.json (the `l3-analyze` binary wraps it)
  data        held-out items from labelled TFRecords: centre frame + the 1 s around it
  encoders    the exported (trained) encoders and an untrained twin, as `Probe`s
  clustering  k-means NMI vs classes (Table 4)
  units       pool4 unit preference (3.5.3)
  figures     top-k grids, conv4_2 heatmaps, t-SNE, summary (Figures 3, 4, 7, 9, 10)
  projector   TensorBoard Embedding Projector files
  synthetic   a random-weight export and labelled synthetic shards (stand-ins)
"""
