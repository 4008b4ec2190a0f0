"""Audio transfer (section 3.3): subclips, SVM, z-score and folds, ESC-50 and DCASE end to end.

The datasets are generated in the real layouts with real WAV files whose
classes are trivially separable (a low tone, a high tone, a noise band), so
even the random-weights small encoder must classify them almost perfectly.
"""

import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from scipy.optimize import minimize

from l3.core import fileio, presets
from l3 import media
from l3.eval.transfer import dcase, esc50, linear_svm, protocol, subclips
from l3.eval.transfer.protocol_config import SvmProtocolConfig

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SOURCE_RATE = 44_100
CLASS_NAMES = ("low_tone", "high_tone", "noise_band")


def _sound(kind: int, seconds: float, rate: int, rng, channels: int = 1) -> np.ndarray:
    """A clip of class `kind`: 0 a ~300 Hz tone, 1 a ~2.5 kHz tone, 2 noise in 4-6 kHz."""
    t = np.arange(int(seconds * rate)) / rate
    if kind == 2:
        spec = np.fft.rfft(rng.standard_normal(len(t)))
        f = np.fft.rfftfreq(len(t), 1 / rate)
        spec[(f < 4000) | (f > 6000)] = 0
        x = np.fft.irfft(spec, len(t))
        x /= np.abs(x).max()
    else:
        f0 = (300.0 if kind == 0 else 2500.0) * rng.uniform(0.95, 1.05)
        x = np.sin(2 * np.pi * f0 * t + rng.uniform(0, 2 * np.pi))
    x = rng.uniform(0.2, 0.5) * x + 0.003 * rng.standard_normal(len(t))
    if channels == 2:  # binaural-ish: the second channel slightly delayed and quieter
        x = np.stack([x, 0.8 * np.roll(x, 7)], axis=1)
    return x.astype(np.float32)


def make_esc50(root, *, clips_per_class_fold: int = 2, seconds: float = 5.0, seed: int = 0) -> str:
    """A tiny ESC-50 in the released layout: 3 classes x 5 folds, two takes per src_file."""
    rng = np.random.default_rng(seed)
    os.makedirs(os.path.join(root, "audio"), exist_ok=True)
    os.makedirs(os.path.join(root, "meta"), exist_ok=True)
    rows = []
    for fold in range(1, 6):
        for target, category in enumerate(CLASS_NAMES):
            src = f"{100000 + 100 * fold + target}"
            for k in range(clips_per_class_fold):
                take = "AB"[k % 2]
                name = f"{fold}-{src}-{take}-{target}.wav"
                media.write_wav(os.path.join(root, "audio", name),
                                _sound(target, seconds, SOURCE_RATE, rng), SOURCE_RATE)
                rows.append([name, fold, target, category, str(target < 2), src, take])
    with open(os.path.join(root, "meta", "esc50.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(esc50.COLUMNS)
        w.writerows(rows)
    return str(root)


DCASE_CLASSES = ("bus", "office", "park")


def make_dcase(root, *, clips_per_class: int = 5, seconds: float = 3.0, seed: int = 0) -> str:
    """A tiny DCASE 2013 scenes set: scenes_stereo/<class><NN>.wav, stereo, 44.1 kHz."""
    rng = np.random.default_rng(seed)
    folder = os.path.join(root, "scenes_stereo")
    os.makedirs(folder, exist_ok=True)
    for kind, name in enumerate(DCASE_CLASSES):
        for n in range(1, clips_per_class + 1):
            media.write_wav(os.path.join(folder, f"{name}{n:02d}.wav"),
                            _sound(kind, seconds, SOURCE_RATE, rng, channels=2), SOURCE_RATE)
    return str(root)


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory):
    from l3.export import writer as export
    from l3.model import network as model
    out = str(tmp_path_factory.mktemp("export") / "export")
    export.export_model(model.build_avc_model(presets.SMALL), presets.SMALL, out)
    return out


@pytest.fixture(scope="module")
def esc_root(tmp_path_factory):
    return make_esc50(tmp_path_factory.mktemp("esc50"))


# ---------------------------------------------------------------------------
# Subclips.


def test_subclip_starts_are_equally_spaced_and_cover_the_clip():
    rate = 16_000
    starts = subclips.subclip_starts(5 * rate, rate, 10)
    assert starts[0] == 0 and starts[-1] == 4 * rate  # last window ends at the clip's end
    gaps = np.diff(starts)
    assert np.all(np.abs(gaps - 4 * rate / 9) <= 1)
    assert len(subclips.subclip_starts(30 * rate, rate, 60)) == 60


def test_extract_subclips_values_and_short_clip_padding():
    x = np.arange(25, dtype=np.float32)
    sub = subclips.extract_subclips(x, 10, 4)
    assert sub.shape == (4, 10)
    np.testing.assert_array_equal(sub[0], x[:10])
    np.testing.assert_array_equal(sub[-1], x[15:25])
    short = subclips.extract_subclips(np.ones(3, np.float32), 10, 5)  # shorter than one window
    assert short.shape == (5, 10)
    np.testing.assert_array_equal(short, np.tile([1, 1, 1, 0, 0, 0, 0, 0, 0, 0], (5, 1)))


# ---------------------------------------------------------------------------
# The SVM.


def _problem(n=240, d=30, k=4, seed=1):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, k, n)
    x = (0.6 * rng.normal(size=(k, d))[labels] + rng.normal(size=(n, d))).astype(np.float32)
    return x, labels


@pytest.mark.parametrize("c", [1e-3, 0.1, 2.0])
def test_svm_reaches_the_optimum_of_the_squared_hinge_objective(c):
    x, labels = _problem()
    model = linear_svm.fit_ova_svm(x, labels, c, tol=1e-6)
    f = linear_svm.objective(model, x, labels)
    xd = x.astype(np.float64)
    d = x.shape[1]
    for k in range(4):
        y = np.where(labels == k, 1.0, -1.0)

        def fun(v):
            xi = np.maximum(0, 1 - y * (xd @ v[:d] + v[d]))
            grad = np.append(v[:d] - 2 * c * xd.T @ (y * xi), -2 * c * np.sum(y * xi))
            return 0.5 * v[:d] @ v[:d] + c * xi @ xi, grad

        ref = minimize(fun, np.zeros(d + 1), jac=True, method="L-BFGS-B",
                       options=dict(maxiter=20000, gtol=1e-10, ftol=1e-14))
        assert f[k] <= ref.fun * (1 + 1e-5) + 1e-9
        np.testing.assert_allclose(model.coef[:, k], ref.x[:d],
                                   atol=2e-3 * max(1, np.abs(ref.x).max()))


def test_svm_warm_start_converges_to_the_same_solution_faster():
    x, labels = _problem(seed=2)
    cold = linear_svm.fit_ova_svm(x, labels, 1.0, tol=1e-5)
    warm = linear_svm.fit_ova_svm(x, labels, 1.0, tol=1e-5,
                                  warm_start=linear_svm.fit_ova_svm(x, labels, 0.5, tol=1e-5))
    np.testing.assert_allclose(linear_svm.objective(warm, x, labels),
                               linear_svm.objective(cold, x, labels), rtol=1e-5)
    np.testing.assert_allclose(warm.coef, cold.coef, atol=5e-3)  # float32 GEMMs: a flat optimum
    assert warm.info["converged"] and cold.info["converged"]
    assert warm.info["newton_iterations"] <= cold.info["newton_iterations"]


def test_subspace_preconditioner_reaches_the_same_optimum_with_fewer_products():
    rng = np.random.default_rng(5)
    labels = rng.integers(0, 5, 800)
    latent = rng.normal(size=(5, 8))[labels] + rng.normal(size=(800, 8))
    x = (latent @ (3 * rng.normal(size=(8, 160))) + rng.normal(size=(800, 160))).astype(np.float32)
    x = protocol.fit_zscore(x).apply(x)
    plain = linear_svm.fit_ova_svm(x, labels, 1e-3, tol=1e-8, precondition_rank=0)
    pre = linear_svm.fit_ova_svm(x, labels, 1e-3, tol=1e-8, precondition_rank=16)
    np.testing.assert_allclose(linear_svm.objective(pre, x, labels),
                               linear_svm.objective(plain, x, labels), rtol=1e-5)
    assert pre.info["hessian_products"] < plain.info["hessian_products"]


def test_svm_class_without_positives_and_class_order():
    x, labels = _problem(k=3, seed=3)
    model = linear_svm.fit_ova_svm(x, labels, 0.1, classes=np.array([2, 0, 1, 7]))
    assert model.coef.shape == (x.shape[1], 4)
    scores = model.decision_function(x)
    assert np.all(scores[:, 3] < 0)  # class 7 never seen: always "rest"
    assert np.mean(model.predict(x) == labels) > 0.9


# ---------------------------------------------------------------------------
# z-score, folds, C selection: nothing from the test clips reaches training.


def test_zscore_is_fitted_on_training_clips_only(monkeypatch):
    rng = np.random.default_rng(0)
    train = rng.normal(size=(30, 4, 8)).astype(np.float32)
    labels = np.arange(30) % 3
    test = 1e3 + rng.normal(size=(9, 4, 8)).astype(np.float32)  # would dominate pooled stats
    seen = []
    real_fit = protocol.fit_zscore
    monkeypatch.setattr(protocol, "fit_zscore", lambda x: seen.append(np.array(x)) or real_fit(x))
    r1 = protocol.train_and_test(train, labels, test, np.arange(9) % 3,
                                 config=SvmProtocolConfig(c_grid=(0.01, 0.1)))
    assert len(seen) == 1 and seen[0].shape == train.shape and np.all(np.abs(seen[0]) < 100)
    np.testing.assert_allclose(r1["zscore"].mean, train.reshape(-1, 8).mean(0), atol=1e-5)
    np.testing.assert_allclose(r1["zscore"].std, train.reshape(-1, 8).std(0), rtol=1e-4)
    # Whatever the test clips are, the fitted normalisation, C and classifier are the same.
    r2 = protocol.train_and_test(train, labels, -test, np.arange(9) % 3,
                                 config=SvmProtocolConfig(c_grid=(0.01, 0.1)))
    np.testing.assert_array_equal(r1["zscore"].mean, r2["zscore"].mean)
    assert r1["C"] == r2["C"] and r1["cv_accuracy"] == r2["cv_accuracy"]


def test_inner_cv_never_splits_a_recording_and_is_stratified():
    labels = np.repeat(np.arange(3), 12)
    groups = np.repeat(np.arange(18), 2)  # two clips (takes) per recording
    splits = protocol.inner_splits(labels, groups, 3, seed=0)
    assert len(splits) == 3
    covered = np.zeros(len(labels), int)
    for tr, va in splits:
        assert not set(groups[tr]) & set(groups[va])
        assert set(labels[va]) == {0, 1, 2}
        covered[va] += 1
    assert np.all(covered == 1)


def test_run_folds_rejects_a_recording_in_two_folds():
    feats = np.zeros((4, 2, 3), np.float32)
    with pytest.raises(ValueError, match="both sides"):
        protocol.run_folds(feats, np.array([0, 1, 0, 1]), np.array([1, 1, 2, 2]),
                           groups=np.array(["a", "b", "a", "c"]))


def test_esc50_meta_with_src_file_in_two_folds_is_rejected(tmp_path):
    root = make_esc50(tmp_path / "bad", clips_per_class_fold=1, seconds=0.2)
    meta = os.path.join(root, "meta", "esc50.csv")
    with open(meta) as f:
        rows = list(csv.reader(f))
    assert rows[1][1] == "1" and rows[-1][1] == "5"
    rows[-1][5] = rows[1][5]  # a fold-5 clip cut from a fold-1 recording
    with open(meta, "w", newline="") as f:
        csv.writer(f).writerows(rows)
    with pytest.raises(ValueError, match="folds"):
        esc50.read_meta(root)


def test_c_selection_picks_the_grid_value_with_the_best_cv_accuracy():
    rng = np.random.default_rng(4)
    labels = np.repeat(np.arange(2), 20)
    x = (rng.normal(size=(40, 3, 16)) + 0.8 * labels[:, None, None]).astype(np.float32)
    z = protocol.fit_zscore(x).apply(x)
    best, acc, stats = protocol.select_c(z, labels, np.arange(40), num_subclips=3,
                                         classes=np.arange(2),
                                         config=SvmProtocolConfig(c_grid=(1e-3, 1e-2, 1.0)))
    assert set(acc) == {1e-3, 1e-2, 1.0} and stats["fits"] == 9
    assert acc[best] == max(acc.values())
    assert best == min(c for c in acc if acc[c] == acc[best])  # ties: the smaller C


def _clips_needing_a_large_c(seed=6, n=90, k=3, s=2, d=24):
    """z-scored [n * s, d] features whose class means are swamped along one noisy
    direction: the near-class-mean classifier of a tiny C is poor, large C is not."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % k
    means = 0.4 * rng.normal(size=(k, d))
    u = means[1] - means[0]
    u /= np.linalg.norm(u)
    e = rng.normal(size=d)
    e -= (e @ u) * u
    v = (u + e / np.linalg.norm(e)) / np.sqrt(2)  # half along a mean difference
    x = means[labels][:, None] + 6.0 * rng.normal(size=(n, s, 1)) * v + 0.5 * rng.normal(size=(n, s, d))
    x = x.astype(np.float32)
    return protocol.fit_zscore(x).apply(x), labels


def test_c_selection_extends_a_truncated_grid_until_c_is_interior(caplog):
    """CV accuracy rises with C up to ~0.1 here: a grid (1e-5, 1e-4) has its best at the
    top, so the search climbs past it until C is interior."""
    z, labels = _clips_needing_a_large_c()
    grid = (1e-5, 1e-4)
    config = SvmProtocolConfig(c_grid=grid, c_extensions=6)
    with caplog.at_level("WARNING"):
        best, acc, stats = protocol.select_c(z, labels, np.arange(len(labels)), num_subclips=2,
                                             classes=np.arange(3), config=config)
    assert stats["extensions"][0] == 1e-3 and len(stats["extensions"]) < 6
    assert set(acc) == set(grid) | set(stats["extensions"])
    assert stats["fits"] == 3 * len(acc)
    assert acc[best] == max(acc.values()) and acc[best] > acc[1e-4] + 0.05
    cs = sorted(acc)
    # Interior: the largest C tried is no better than the one below it.
    assert best < cs[-1] and acc[cs[-1]] <= acc[cs[-2]]
    assert "edge" not in caplog.text
    # Without extensions the same search stops at the grid's top and says so.
    with caplog.at_level("WARNING"):
        best0, acc0, stats0 = protocol.select_c(
            z, labels, np.arange(len(labels)), num_subclips=2, classes=np.arange(3),
            config=SvmProtocolConfig(c_grid=grid, c_extensions=0))
    assert best0 == 1e-4 and set(acc0) == set(grid) and not stats0["extensions"]
    assert "edge" in caplog.text


def test_c_edge_extension_rule():
    ext = protocol._edge_extension
    assert ext({1e-4: 0.5, 1e-3: 0.7}, 10.0, 10.0) == 1e-2       # best strictly at the top
    assert ext({1e-4: 0.7, 1e-3: 0.5}, 10.0, 10.0) == 1e-5       # best strictly at the bottom
    assert ext({1e-4: 0.7, 1e-3: 0.7, 1e-2: 0.6}, 10.0, 10.0) is None  # a plateau: not truncated
    assert ext({1e-4: 0.5, 1e-3: 0.7, 1e-2: 0.6}, 10.0, 10.0) is None  # interior


# ---------------------------------------------------------------------------
# In-memory clips (the API the demo uses) with a numpy encoder.


def _band_energy_encoder(waveforms):
    """A fixed, training-free 'encoder': log energies in 32 frequency bands."""
    spec = np.abs(np.fft.rfft(waveforms, axis=1)) ** 2
    bands = np.array_split(spec, 32, axis=1)
    return np.log(np.stack([b.sum(1) for b in bands], axis=1) + 1e-6).astype(np.float32)


def test_evaluate_clips_with_a_callable_encoder_resamples_and_separates():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 10)
    clips = [_sound(k, rng.uniform(0.6, 3.0), SOURCE_RATE, rng) for k in labels]  # some < 1 s
    folds = np.tile(np.arange(5), 6)
    seen = []

    def encoder(waveforms):
        seen.append(waveforms.shape)
        return _band_energy_encoder(waveforms)

    result = protocol.evaluate_clips(encoder, clips, labels, folds, sample_rate=SOURCE_RATE,
                                     encoder_sample_rate=16_000,
                                     config=SvmProtocolConfig(num_subclips=4, c_grid=(1e-3, 1e-1)))
    assert {shape[1] for shape in seen} == {16_000}  # 1 s windows at the encoder's rate
    assert sum(shape[0] for shape in seen) == 4 * len(clips)
    assert result["mean_accuracy"] >= 0.95
    assert result["protocol"]["sample_rate"] == 16_000
    assert len(result["fold_accuracies"]) == 5
    assert result["protocol"]["subclips_per_clip"] == 4
    assert result["protocol"]["feature_dim"] == 32
    json.dumps(result, default=fileio.json_default)


def test_evaluate_clips_with_an_exported_encoder(export_dir):
    rng = np.random.default_rng(1)
    labels = np.repeat(np.arange(3), 5)
    clips = [_sound(k, 2.0, 22_050, rng) for k in labels]
    result = protocol.evaluate_clips(export_dir, clips, labels, np.tile(np.arange(5), 3),
                                     sample_rate=22_050,
                                     config=SvmProtocolConfig(num_subclips=3, c_grid=(1e-2,)))
    assert result["mean_accuracy"] >= 0.9
    assert result["protocol"]["sample_rate"] == 16_000
    assert result["protocol"]["feature_dim"] == presets.SMALL.audio_transfer_dim
    assert result["protocol"]["c_selection"]["grid"] == [1e-2]


# ---------------------------------------------------------------------------
# ESC-50 and DCASE in their real layouts.


def test_esc50_end_to_end_with_a_random_encoder(esc_root, export_dir, tmp_path):
    cache = str(tmp_path / "cache")
    result = esc50.run(esc_root, export_dir,
                       config=SvmProtocolConfig(cache_dir=cache, c_grid=(1e-3, 1e-1)))
    assert result["num_clips"] == 30 and result["num_classes"] == 3
    assert result["folds"] == [1, 2, 3, 4, 5]
    assert len(result["fold_accuracies"]) == 5
    assert result["mean_accuracy"] >= 0.9
    assert set(result["per_class_accuracy"]) == set(CLASS_NAMES)
    p = result["protocol"]
    assert p["subclips_per_clip"] == 10 and p["feature"] == "conv4_2_pooled"
    assert p["c_selection"]["grid"] == [1e-3, 1e-1]
    assert not p["features_from_cache"] and len(os.listdir(cache)) == 1
    again = esc50.run(esc_root, export_dir,
                      config=SvmProtocolConfig(cache_dir=cache, c_grid=(1e-1,)))
    assert again["protocol"]["features_from_cache"]
    assert again["chosen_C"] == [0.1] * 5
    print(esc50.format_table(result))


def test_esc10_subset(esc_root, export_dir):
    result = esc50.run(esc_root, export_dir, esc10=True, config=SvmProtocolConfig(c_grid=(1e-2,)))
    assert result["benchmark"] == "esc10"
    assert result["num_clips"] == 20 and result["num_classes"] == 2
    assert result["paper_accuracy"] is None
    assert result["mean_accuracy"] >= 0.9


def test_dcase_folds_are_stratified_contiguous_blocks():
    items = [(f"{c}{n:02d}.wav", c, n) for c in ("bus", "park") for n in range(1, 11)]
    folds = dcase.dev_folds(items)
    for c in ("bus", "park"):
        f = [fo for (_, cc, _), fo in zip(items, folds) if cc == c]
        assert f == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]


def test_dcase_lists_the_release_layout(tmp_path):
    root = make_dcase(tmp_path / "dev", clips_per_class=5, seconds=0.1)
    open(os.path.join(root, "scenes_stereo", "README.txt"), "w").close()
    items = dcase.list_scenes(root)
    assert [(os.path.basename(p), c, n) for p, c, n in items][:2] == [("bus01.wav", "bus", 1),
                                                                     ("bus02.wav", "bus", 2)]
    assert len(items) == 15
    assert dcase.list_scenes(os.path.join(root, "scenes_stereo")) == items


def _run_binary(module, args, timeout=300):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    proc = subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


def test_esc50_binary_writes_the_json(esc_root, export_dir, tmp_path):
    out = tmp_path / "esc50.json"
    stdout = _run_binary("l3.bin.esc50", [f"--data_dir={esc_root}", f"--export_dir={export_dir}",
                                          f"--output_json={out}", "--c_grid=0.001,0.1",
                                          "--noprogress"])
    assert "paper" in stdout and "79.3%" in stdout
    result = json.loads(out.read_text())
    assert 0.9 <= result["mean_accuracy"] <= 1.0
    assert isinstance(result["fold_accuracies"], list) and len(result["fold_accuracies"]) == 5
    for key in ("subclips_per_clip", "feature", "classifier", "solver", "tol", "c_selection",
                "evaluation", "fit_seconds", "normalization", "clip_score"):
        assert key in result["protocol"], key
    assert len(result["protocol"]["fit_seconds"]) == 5


def test_dcase_binary_dev_cv_and_test_set(export_dir, tmp_path):
    dev = make_dcase(tmp_path / "dev", clips_per_class=5, seconds=3.0, seed=1)
    test = make_dcase(tmp_path / "test", clips_per_class=2, seconds=3.0, seed=2)
    out = tmp_path / "dcase.json"
    stdout = _run_binary("l3.bin.dcase", [f"--data_dir={dev}", f"--test_dir={test}",
                                          f"--export_dir={export_dir}", f"--output_json={out}",
                                          "--c_grid=0.01", "--noprogress"])
    assert "93.0%" in stdout
    result = json.loads(out.read_text())
    assert result["num_clips"] == 15 and len(result["fold_accuracies"]) == 5
    assert result["mean_accuracy"] >= 0.9
    assert result["test_num_clips"] == 6 and result["test_accuracy"] >= 0.8
    assert result["protocol"]["subclips_per_clip"] == 60
    assert result["protocol"]["folds"] == [1, 2, 3, 4, 5] * 3


@pytest.mark.slow
def test_svm_protocol_on_an_esc50_sized_problem_is_fast():
    """1600 training clips x 10 subclips x 6144-D, 50 classes, 4-value C grid, 3 inner folds."""
    rng = np.random.default_rng(0)
    n, s, d, k = 2000, 10, 6144, 50
    labels = np.arange(n) % k
    means = rng.normal(size=(k, d)).astype(np.float32)
    x = np.empty((n, s, d), np.float32)
    for i in range(0, n, 100):
        x[i:i + 100] = 0.3 * means[labels[i:i + 100], None] + rng.normal(size=(100, s, d))
    test = (np.arange(n) // k) % 5 == 0  # 8 clips of every class
    train = ~test
    r = protocol.train_and_test(x[train], labels[train], x[test], labels[test])
    print(f"fit {r['fit_seconds']:.1f} s, {r['select_fits']} CV fits, "
          f"{r['hessian_products']} Hessian products, C={r['C']}")
    assert r["accuracy"] > 0.9 and r["converged"]
    assert r["fit_seconds"] < 1800
