"""Which checkpoint a restarted multi-worker job resumes from (issue 21): the newest
whose step every worker's input position was saved for. The chief saves the model
before the workers save their positions, so a job killed in between has a newest
model checkpoint that some worker holds no position for; resuming there would
re-seed that worker's input and the run would no longer match an uninterrupted one
(found by the two-worker kill test: one run in three)."""

import os

import tensorflow as tf

from l3.train import distribute


def _save(directory, steps):
    state = tf.train.Checkpoint(step=tf.Variable(0, dtype=tf.int64))
    manager = tf.train.CheckpointManager(state, str(directory), max_to_keep=5,
                                         checkpoint_name="ckpt")
    for step in steps:
        state.step.assign(step)
        manager.save(checkpoint_number=step)


def test_the_newest_step_every_worker_holds(tmp_path):
    _save(tmp_path, [2, 4, 6])                                # the chief's model checkpoints
    _save(tmp_path / "input_state" / "worker-0", [2, 4, 6])
    _save(tmp_path / "input_state" / "worker-1", [2, 4])      # killed before saving 6
    assert distribute.resumable_checkpoint(str(tmp_path), 2) == os.path.join(str(tmp_path), "ckpt-4")
    # One worker: the position is inside the model checkpoint; the newest it is.
    assert distribute.resumable_checkpoint(str(tmp_path), 1) == os.path.join(str(tmp_path), "ckpt-6")
    _save(tmp_path / "input_state" / "worker-1", [6])
    assert distribute.resumable_checkpoint(str(tmp_path), 2) == os.path.join(str(tmp_path), "ckpt-6")


def test_no_positions_at_all_resume_at_the_newest(tmp_path):
    """Inputs that are not checkpointed (the tf.data service): the newest, as before."""
    _save(tmp_path, [3, 6])
    assert distribute.resumable_checkpoint(str(tmp_path), 2) == os.path.join(str(tmp_path), "ckpt-6")
    assert distribute.resumable_checkpoint(str(tmp_path / "empty"), 2) is None


def test_positions_but_no_common_step_start_afresh(tmp_path):
    """Killed during the first save: worker 0 saved its position, worker 1 did not."""
    _save(tmp_path, [2])
    _save(tmp_path / "input_state" / "worker-0", [2])
    assert distribute.resumable_checkpoint(str(tmp_path), 2) is None
