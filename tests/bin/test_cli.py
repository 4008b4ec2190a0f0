"""Every console script turns bad input into one line and exit status 2 (issue 17, item 4).

The scripts are read from setup.py's CONSOLE_SCRIPTS, so a new script without
a row in BAD_INPUTS fails `test_every_script_has_a_bad_input`. Each row: the
arguments of a bad call ({missing}: a path that does not exist, {file}: an
existing regular file, {tmp}: an empty folder) and a piece of the expected
message.
"""

import ast
import importlib.util
import json
import os
import re
import subprocess
import sys

import pytest

from l3.core import errors
from l3.train import run_dir
from tests.fixtures.processes import subprocess_env

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RUNNER = os.path.join(ROOT, "tests", "fixtures", "scripts_in_one_process.py")

BAD_INPUTS = {
    "l3-build-tfrecords": (["--input={missing}", "--output_dir={tmp}/out"],
                           "--input={missing} does not exist"),
    "l3-train": (["--train_pattern={missing}/train-*.tfrecord", "--model_dir={tmp}/run"],
                 "--train_pattern={missing}/train-*.tfrecord matches no files"),
    "l3-data-service": (["--role=worker"], "--role=worker needs --dispatcher_address=host:port"),
    "l3-eval-avc": (["--data_pattern={missing}/*.tfrecord", "--model_dir={tmp}"],
                    "--data_pattern={missing}/*.tfrecord matches no files"),
    "l3-export": (["--model_dir={missing}", "--output_dir={tmp}/export"],
                  "--model_dir={missing} does not exist"),
    "l3-embed": (["--export_dir={missing}", "--input={tmp}", "--output_dir={tmp}/emb"],
                 "--export_dir={missing} does not exist"),
    "l3-esc50": (["--data_dir={missing}", "--random_encoder", "--preset=small"],
                 "--data_dir={missing} does not exist"),
    "l3-dcase": (["--data_dir={file}", "--random_encoder", "--preset=small"],
                 "--data_dir={file} is a file, not a folder"),
    "l3-imagenet-probe": (["--export_dir={missing}"], "--export_dir={missing} does not exist"),
    "l3-kinetics-baselines": (["--train_pattern={missing}/*.tfrecord",
                               "--eval_pattern={missing}/*.tfrecord"],
                              "--train_pattern={missing}/*.tfrecord matches no files"),
    "l3-analyze": (["--export_dir={missing}", "--data_pattern={missing}/*.tfrecord",
                    "--output_dir={tmp}/analysis"], "--export_dir={missing} does not exist"),
    "l3-retrieval": (["--export_dir={missing}", "--data_pattern={missing}/*.tfrecord"],
                     "--export_dir={missing} does not exist"),
    "l3-localize": (["--export_dir={tmp}", "--data_pattern={missing}/*.tfrecord", "--boxes={file}",
                     "--output_dir={tmp}/loc"], "--data_pattern={missing}/*.tfrecord matches no files"),
    "l3-demo": (["--work_dir={file}"], "--work_dir={file} is a file, not a folder"),
    "l3-verify-tfrecords": (["--data_pattern={missing}/*.tfrecord"],
                            "--data_pattern={missing}/*.tfrecord matches no files"),
}


def console_scripts() -> dict:
    """setup.py's CONSOLE_SCRIPTS (read, not executed: setup() would run)."""
    with open(os.path.join(ROOT, "setup.py")) as f:
        tree = ast.parse(f.read())
    for node in tree.body:
        if isinstance(node, ast.Assign) and node.targets[0].id == "CONSOLE_SCRIPTS":
            return ast.literal_eval(node.value)
    raise AssertionError("setup.py has no CONSOLE_SCRIPTS")


# TensorFlow's C++ import banner (abseil logging before InitializeLog; TF_CPP_MIN_LOG_LEVEL
# does not reach it): printed while `import tensorflow` runs, before any l3 code.
TF_IMPORT_BANNER = re.compile(r"^(WARNING: All log messages before absl::InitializeLog|"
                              r"I0000 .*port\.cc:\d+\] oneDNN custom operations)")


def assert_one_line_error(proc, prog: str, expected: str, status: int = 2):
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [line for line in proc.stderr.splitlines()
             if line.strip() and not TF_IMPORT_BANNER.match(line)]
    assert len(lines) == 1 and lines[0].startswith(f"{prog}: error: "), proc.stderr
    assert expected in lines[0], (expected, proc.stderr)
    assert proc.returncode == status, (proc.returncode, proc.stderr)


def test_every_script_has_a_bad_input():
    assert sorted(console_scripts()) == sorted(BAD_INPUTS)


# Calls besides BAD_INPUTS that end in a one-line error, run in the same process:
# {case: (prog, args, expected piece of the message)}.
OTHER_BAD_CALLS = {
    "missing required flag": ("l3-export", ["--output_dir=x"], "--model_dir"),
    "folder of the wrong kind": ("l3-export", ["--model_dir={run}", "--output_dir={base}/e"],
                                 "no checkpoint in {run}"),
    "pairs_per_video=0": ("l3-train", [
        "--train_pattern={base}/train-*.tfrecord", "--model_dir={base}/run", "--preset=small",
        "--pairs_per_video=0"], "pairs_per_video must be >= 1, got 0"),
    "address without scheme": ("l3-train", [
        "--train_pattern={base}/train-*.tfrecord", "--model_dir={base}/run", "--preset=small",
        "--data_service_address=localhost"],
        "--data_service_address='localhost': expected grpc://host:port"),
}


@pytest.fixture(scope="module")
def bad_runs(tmp_path_factory):
    """Every script's bad call and OTHER_BAD_CALLS, through each script's entry point
    (`run()`, what its console-script wrapper calls), one after another in one child
    process (tests/fixtures/scripts_in_one_process.py: each call sees only its own
    script's flags; a process per call spent ~7 CPU-seconds importing TensorFlow)."""
    tmp_path = tmp_path_factory.mktemp("cli")
    # A path with a space and a quote: the message must show it as given.
    base = tmp_path / "dir with 'quote'"
    (base / "empty").mkdir(parents=True)
    (base / "a file.txt").write_text("x\n")
    (base / "not a run").mkdir()
    (base / "not a run" / "train_config.json").write_text('{"preset": "small"}\n')
    (base / "train-0.tfrecord").write_bytes(b"")
    subs = {"missing": str(base / "not there"), "file": str(base / "a file.txt"),
            "tmp": str(base / "empty"), "run": str(base / "not a run"), "base": str(base)}
    scripts = console_scripts()
    calls = [(prog, prog, [a.format(**subs) for a in BAD_INPUTS.get(prog, ([], ""))[0]])
             for prog in scripts]
    calls += [(case, prog, [a.format(**subs) for a in args])
              for case, (prog, args, _) in OTHER_BAD_CALLS.items()]
    spec, out = tmp_path / "calls.json", tmp_path / "results.json"
    spec.write_text(json.dumps([{"prog": prog, "module": scripts[prog], "args": args,
                                 "cwd": str(tmp_path)} for _, prog, args in calls]))
    proc = subprocess.run([sys.executable, RUNNER, str(spec), str(out)], cwd=str(tmp_path),
                          env=subprocess_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(out.read_text())
    assert [r["prog"] for r in results] == [prog for _, prog, _ in calls]
    runs = {case: subprocess.CompletedProcess([prog], r["returncode"], r["stdout"], r["stderr"])
            for (case, prog, _), r in zip(calls, results)}
    return runs, subs, base


@pytest.mark.parametrize("prog", sorted(console_scripts()))
def test_bad_input_is_one_line_and_exit_2(prog, bad_runs):
    results, subs, base = bad_runs
    assert_one_line_error(results[prog], prog, BAD_INPUTS[prog][1].format(**subs))
    assert os.listdir(base / "empty") == [], "a failed check must not write"


@pytest.mark.parametrize("case", sorted(OTHER_BAD_CALLS))
def test_other_bad_calls_are_one_line(case, bad_runs):
    """A required flag missing; a folder that is not a run (nothing written); l3-train's
    TrainConfig checks, before anything starts (no run folder)."""
    results, subs, base = bad_runs
    prog, _, expected = OTHER_BAD_CALLS[case]
    assert_one_line_error(results[case], prog, expected.format(**subs))
    assert not (base / "e").exists() and not (base / "run").exists()


def test_preset_that_does_not_match_the_checkpoint(tmp_path):
    (tmp_path / "train_config.json").write_text('{"preset": "small"}\n')
    with pytest.raises(errors.UsageError, match="'paper' does not match .* says 'small'"):
        run_dir.preset_name(str(tmp_path), "paper")
    assert run_dir.preset_name(str(tmp_path)) == "small"
    assert run_dir.preset_name(str(tmp_path), "small") == "small"
    (tmp_path / "empty").mkdir()
    with pytest.raises(errors.MissingInputError, match="train_config.json not found"):
        run_dir.preset_name(str(tmp_path / "empty"))


SCRIPT = """
import errno, sys
from l3.core import cli
from l3.core import errors
kind = sys.argv[1]
def main(argv):
    if kind == "bug":
        return {}["no such key"]
    if kind == "disk":
        raise OSError(errno.ENOSPC, "No space left on device", "/out/shard.tfrecord")
    raise errors.UsageError("--x=1 is wrong")
cli.run(main, "l3-fake")
"""


@pytest.mark.parametrize("kind,status,line", [
    ("usage", 2, "l3-fake: error: --x=1 is wrong"),
    ("disk", 1, "l3-fake: error: cannot write /out/shard.tfrecord: No space left on device"),
])
def test_run_wrapper_one_line(tmp_path, kind, status, line):
    proc = subprocess.run([sys.executable, "-c", SCRIPT, kind], capture_output=True, text=True,
                          cwd=str(tmp_path), timeout=60)
    assert proc.stderr.strip() == line and proc.returncode == status, proc.stderr


def test_unexpected_errors_keep_their_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-c", SCRIPT, "bug"], capture_output=True, text=True,
                          cwd=str(tmp_path), timeout=60)
    assert "Traceback" in proc.stderr and "KeyError: 'no such key'" in proc.stderr
    assert proc.returncode == 1


@pytest.mark.parametrize("prog", ["l3-build-tfrecords", "l3-train", "l3-export"])
def test_help_of_the_installed_script_lists_its_flags(prog):
    """`l3-x --help` through the console-script wrapper pip installs (not `python -m`,
    where the binary's module is `__main__`): its usage text and every flag it defines."""
    script = os.path.join(os.path.dirname(sys.executable), prog)
    assert os.path.exists(script), f"{script}: not installed (pip install -e .)"
    module = console_scripts()[prog]
    with open(importlib.util.find_spec(module).origin) as f:
        defined = re.findall(r'flags\.DEFINE_\w+\(\s*"(\w+)"', f.read())
    proc = subprocess.run([script, "--help"], env=subprocess_env(), capture_output=True, text=True,
                          timeout=300)
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]  # (absl's --help exits 1)
    assert proc.stdout.lstrip().startswith(f"{prog}: "), proc.stdout[:500]
    missing = [name for name in defined
               if f"--{name}" not in proc.stdout and f"--[no]{name}" not in proc.stdout]
    assert defined and not missing, (missing, proc.stdout)
