"""Flags shared by l3-esc50 and l3-dcase (defined once on import; read only by the binaries)."""

from absl import app, flags, logging
from threadpoolctl import threadpool_limits

from l3.core import fileio
from l3.core import cli
from l3.eval.transfer import encoders
from l3.eval.transfer.protocol_config import SvmProtocolConfig

_D = SvmProtocolConfig()  # defaults live in one place

FLAGS = flags.FLAGS

flags.DEFINE_string("data_dir", None, "Dataset root in its released layout.")
flags.DEFINE_string("export_dir", None, "An l3-export directory (its audio_encoder is used).")
flags.DEFINE_bool("random_encoder", False, "Use the audio network with random weights instead "
                  "of an export (the paper's 'Ours random'); sized by --preset.")
flags.DEFINE_string("preset", "paper", "Preset of --random_encoder.")
flags.DEFINE_string("output_json", None, "Where to write the results JSON.")
flags.DEFINE_string("cache_dir", None, "Feature cache directory (keyed by weights and files); "
                    "reruns with another C grid skip feature extraction.")
flags.DEFINE_list("c_grid", [f"{c:g}" for c in _D.c_grid],
                  "SVM C values; chosen by CV inside the training folds (one value: no CV).")
flags.DEFINE_integer("c_extensions", _D.c_extensions,
                     "Times C-selection may step one grid ratio past an end of --c_grid while "
                     "the best C is strictly best there (0: never).")
flags.DEFINE_integer("inner_folds", _D.inner_folds, "Splits of the C-selection CV.")
flags.DEFINE_float("tol", _D.tol,
                   "SVM stopping tolerance (relative objective decrease of a Newton step).")
flags.DEFINE_integer("num_subclips", None, "1 s subclips per clip (default: the paper's, "
                     "10 for ESC-50, 60 for DCASE).")
flags.DEFINE_integer("workers", _D.workers, "Audio decoding threads.")
flags.DEFINE_integer("batch_size", _D.batch_size, "Encoder batch size (subclips).")
flags.DEFINE_integer("seed", _D.seed,
                     "Seed of the C-selection CV splits (and of --random_encoder).")
flags.DEFINE_bool("progress", True, "Show a progress bar while extracting features.")
flags.DEFINE_integer("blas_threads", None, "Limit numpy's BLAS threads (the SVM's GEMMs); on a "
                     "machine shared with other jobs 1 can be much faster than oversubscribing.")
flags.mark_flag_as_required("data_dir")


def encoder():
    """The encoder the flags ask for (an export directory or a random network)."""
    if FLAGS.random_encoder:
        return encoders.random_encoder(FLAGS.preset, seed=FLAGS.seed, batch_size=FLAGS.batch_size)
    if not FLAGS.export_dir:
        raise app.UsageError("give --export_dir (or --random_encoder)")
    return encoders.exported_encoder(FLAGS.export_dir, batch_size=FLAGS.batch_size)


def protocol_config() -> SvmProtocolConfig:
    """The `SvmProtocolConfig` of the flags (num_subclips None: the benchmark's default)."""
    return SvmProtocolConfig(
        c_grid=tuple(float(c) for c in FLAGS.c_grid), c_extensions=FLAGS.c_extensions,
        inner_folds=FLAGS.inner_folds,
        tol=FLAGS.tol, seed=FLAGS.seed, num_subclips=FLAGS.num_subclips,
        batch_size=FLAGS.batch_size, workers=FLAGS.workers, cache_dir=FLAGS.cache_dir,
        progress=FLAGS.progress, blas_threads=FLAGS.blas_threads)


def run_and_report(run_fn, format_table, **kwargs) -> dict:
    """Runs a benchmark's `run(data_dir, encoder, ..., config=...)` under the flags, prints
    its table and writes --output_json; shared by l3-esc50 and l3-dcase."""
    logging.set_verbosity(logging.INFO)
    cli.check_exists("data_dir", kind="dir")
    cli.check_exists("export_dir", kind="dir")
    cli.check_output_dir("cache_dir")
    config = protocol_config()
    # BLAS threads limited around the encoder too: its numpy work shares the cores.
    with threadpool_limits(limits=config.blas_threads, user_api="blas"):
        result = run_fn(FLAGS.data_dir, encoder(), **kwargs, config=config)
    print(format_table(result))
    if FLAGS.output_json:
        fileio.write_json(FLAGS.output_json, result)
        print(f"wrote {FLAGS.output_json}")
    return result
