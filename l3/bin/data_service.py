"""l3-data-service: a tf.data service dispatcher or input worker for `l3-train`.

  l3-data-service --role=dispatcher --port=5050 --work_dir=/shared/l3/dispatcher
  l3-data-service --role=worker --dispatcher_address=dispatcher-host:5050 --port=5051 \
      --worker_address=$(hostname):%port%
  l3-train ... --data_service_address=grpc://dispatcher-host:5050

One dispatcher per run (or per cluster), any number of CPU workers; workers
may come and go. The dispatcher logs how many workers are registered whenever
that changes. With --work_dir it journals its state there, so a dispatcher
restarted with the same --work_dir and --port resumes its jobs. Runs until
killed. The logic lives in `l3.pairs.data_service`; this is only flags.
"""

import time

from absl import flags
from absl import logging

from l3.pairs import data_service
from l3.core import errors
from l3.core import cli

flags.DEFINE_enum("role", None, ["dispatcher", "worker"], "Which server to run.", required=True)
flags.DEFINE_integer("port", None, "Port to serve on (default: dispatcher "
                     f"{data_service.DEFAULT_DISPATCHER_PORT}, worker any free port).")
flags.DEFINE_string("dispatcher_address", None, "Worker: the dispatcher, host:port or grpc://host:port.")
flags.DEFINE_string("worker_address", None,
                    "Worker: the address trainers dial, host:%port% (%port% = the bound port; "
                    "default localhost:%port%, enough only when trainers run on this host).")
flags.DEFINE_string("work_dir", None,
                    "Dispatcher: journal directory; a restarted dispatcher resumes from it.")
flags.DEFINE_float("report_every_s", 5.0, "Dispatcher: seconds between worker-count checks.")
flags.DEFINE_float("connect_timeout_s", data_service.CONNECT_TIMEOUT_S,
                   "Worker: seconds to wait for the dispatcher to answer.")

FLAGS = flags.FLAGS


def _check_flags():
    """Raises `errors.UsageError` (one line, exit 2) for flags that cannot work together."""
    port = FLAGS.port
    if port is not None and not 0 <= port < 65536:
        raise errors.UsageError(f"--port={port}: must be in 0..65535")
    if FLAGS.role == "dispatcher":
        for name in ("dispatcher_address", "worker_address"):
            if FLAGS[name].value is not None:
                raise errors.UsageError(f"--{name} is for --role=worker")
        if FLAGS.report_every_s <= 0:
            raise errors.UsageError(f"--report_every_s={FLAGS.report_every_s}: must be > 0")
        cli.check_output_dir("work_dir")
    else:
        if FLAGS.work_dir is not None:
            raise errors.UsageError("--work_dir is for --role=dispatcher (the journal)")
        if not FLAGS.dispatcher_address:
            raise errors.UsageError("--role=worker needs --dispatcher_address=host:port")
        try:
            data_service.parse_address(FLAGS.dispatcher_address, "--dispatcher_address")
        except ValueError as e:
            raise errors.UsageError(str(e)) from None


def _run_dispatcher():
    port = data_service.DEFAULT_DISPATCHER_PORT if FLAGS.port is None else FLAGS.port
    server = data_service.start_dispatcher(port, FLAGS.work_dir)
    logging.info("dispatcher serving %s%s", server.target,
                 f", journal in {FLAGS.work_dir}" if FLAGS.work_dir else " (no journal)")
    last = None
    while True:
        count = data_service.num_workers(server)
        if count != last:
            logging.info("dispatcher %s: %d worker(s) registered", server.target, count)
            last = count
        time.sleep(FLAGS.report_every_s)


def _run_worker():
    address = FLAGS.dispatcher_address
    data_service.check_dispatcher(address, FLAGS.connect_timeout_s)
    server = data_service.start_worker(address, FLAGS.port or 0, FLAGS.worker_address)
    # `_address` (host:port as bound) has no public equivalent.
    logging.info("worker %s serving dispatcher %s", server._address, address)  # pylint: disable=protected-access
    server.join()


def main(argv):
    if len(argv) > 1:
        raise errors.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    _check_flags()
    try:
        if FLAGS.role == "dispatcher":
            _run_dispatcher()
        else:
            _run_worker()
    except data_service.DataServiceError as e:  # dispatcher unreachable: the cluster's, not a bug
        cli.fail("l3-data-service", str(e), 1)


def run():
    cli.run(main, "l3-data-service")


if __name__ == "__main__":
    run()
