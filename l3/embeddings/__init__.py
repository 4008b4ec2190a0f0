"""L3 embeddings of audio, images and video: the openl3-style API, l3-embed's engine, HEAR glue.

Modules: `timeline` (window positions and drift-free timestamps, numpy),
`inputs` (checking and preparing arrays and image files), `runner` (model
loading, batches across inputs), `files` (files to `.npz`), `api` (the
functions re-exported at the package top), `tool` (l3-embed). Importing this
package imports no TensorFlow; the first call that runs an encoder does.
"""
