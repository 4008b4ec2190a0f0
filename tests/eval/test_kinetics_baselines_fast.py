"""Supervised pretraining (Table 1's baseline: frozen supervised trunks, only the
fusion trained) learns AVC above chance on a small learnable set (the fast CI
form; slow form: tests/eval/test_kinetics_baselines.py, 200 + 300 steps)."""

from l3.eval.transfer import kinetics_baselines as kb
from tests.fixtures.records import write_synthetic_shards


def test_supervised_pretraining_learns_avc_above_chance_fast(tmp_path):
    labels = ("bell", "dog", "drum", "siren")
    train = write_synthetic_shards(str(tmp_path / "train"), num_videos=24, seconds=3.0, fps=2.0,
                                   num_shards=2, labels=labels, seed=0, learnable=True)
    test = write_synthetic_shards(str(tmp_path / "test"), num_videos=8, seconds=3.0, fps=2.0,
                                  num_shards=1, labels=labels, seed=1, learnable=True,
                                  split="test")
    config = kb.BaselineConfig(preset="small", classifier_steps=60, pretraining_steps=80,
                               batch_size=16, num_val_pairs=64, num_eval_pairs=128,
                               bn_batches=5, log_every=20)
    result = kb.run_baselines(train_pattern=train, eval_pattern=test, config=config)
    pre = result["avc"][kb.PRETRAINING]
    # Chance is 0.5 (balanced pairs); 128 pairs: 0.5 + 3.5 standard deviations ~ 0.65.
    assert pre["accuracy"] > 0.65, result["avc"]
