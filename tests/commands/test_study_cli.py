"""`trtcalib study batch-size|scenario` end to end, in-process, on tiny models built in code."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest
import tinymodels

from trtcalib.study import CSV_COLUMNS, JSON_SCHEMA

CONV_TENSORS = ["input", "conv1", "relu1", "conv2", "add1", "pool", "flat", "logits"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def tiny(tmp_path):
    model = tinymodels.save(tinymodels.conv_model(), tmp_path)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(12, 3, 8, 8)).astype(np.float32)
    x[11, 0, 0, 0] = 9.0  # the largest input arrives last: the trt range must grow
    data = tmp_path / "calib.npz"
    np.savez(data, input=x)
    labels = tmp_path / "labels.npy"
    np.save(labels, rng.integers(0, 4, 12))
    return model, data, labels


def test_batch_size_end_to_end(cli, tiny, tmp_path):
    model, data, _ = tiny
    out = tmp_path / "out"
    r = cli("study", "batch-size", model, "--data", data, "--batches", "1,4,12",
            "--orders", "2", "--out", out)  # fmt: skip
    assert r.exit_code == 0, r.stderr
    assert "wrote" in r.stdout and "entropy amax" in r.stdout
    doc = json.loads((out / "results.json").read_text())
    assert doc["schema"] == JSON_SCHEMA
    assert doc["num_samples"] == 12 and doc["batch_sizes"] == [1, 4, 12] and doc["orders"] == 2
    assert [t["name"] for t in doc["tensors"]] == CONV_TENSORS
    assert doc["storage"]["mode"] == "memory"
    inp = next(t for t in doc["tensors"] if t["name"] == "input")
    assert inp["global_max"] == 9.0
    # data order, batch 1: the 9.0 arrives in the last batch -> at least one growth;
    # batch 12: one batch, the range is its max, no growth
    assert inp["settings"][0]["growth_events"][0] >= 1
    assert inp["settings"][2]["growth_events"] == [0, 0]
    assert inp["settings"][2]["range_max"] == [9.0, 9.0]
    rows = list(csv.DictReader(io.StringIO((out / "results.csv").read_text())))
    assert list(rows[0]) == CSV_COLUMNS
    assert len(rows) == len(CONV_TENSORS) * 3 * 2
    for png in ("amax_vs_batch.png", "histogram_small_vs_large_batch.png"):
        assert (out / png).read_bytes()[:8] == PNG_MAGIC
    assert not list(out.glob(".*")) and not list(out.glob("*.tmp"))


def test_out_inside_a_data_folder_is_refused_before_any_work(cli, tiny, tmp_path):
    model, data, _ = tiny
    folder = tmp_path / "arrays"
    folder.mkdir()
    np.save(folder / "x.npy", np.load(data)["input"])
    # PNGs next to x.npy would make the next scan fail ("mixes .npy/.npz files and images")
    r = cli("study", "batch-size", model, "--data", folder, "--batches", "2", "--out", folder)
    assert r.exit_code == 2 and "is inside the --data source" in r.stderr
    assert sorted(p.name for p in folder.iterdir()) == ["x.npy"]
    # a subfolder is fine: an array folder reads its top level only (`study --data .`)
    r = cli("study", "batch-size", model, "--data", folder, "--batches", "2", "--orders", "1",
            "--tensors", "conv1", "--out", folder / "study")  # fmt: skip
    assert r.exit_code == 0, r.stderr
    assert (folder / "study" / "amax_vs_batch.png").is_file()


def test_out_inside_an_image_folder_is_refused_only_with_plots(cli, tiny, tmp_path):
    from PIL import Image

    model, _, _ = tiny
    images = tmp_path / "images"
    images.mkdir()
    for i in range(4):
        Image.new("RGB", (8, 8), (60 * i, 0, 0)).save(images / f"{i}.png")
    args = ("study", "batch-size", model, "--data", images, "--batches", "2", "--orders", "1",
            "--tensors", "conv1", "--out", images / "study")  # fmt: skip
    r = cli(*args)  # the plots would be read back as calibration images
    assert r.exit_code == 2 and "_vs_batch.png: is inside the --data source" in r.stderr
    r = cli(*args, "--no-plots")
    assert r.exit_code == 0, r.stderr
    assert sorted(p.name for p in (images / "study").iterdir()) == ["results.csv", "results.json"]


def test_default_out_dir_is_study_out_model_stem(cli, tiny, tmp_path, monkeypatch):
    model, data, _ = tiny
    monkeypatch.chdir(tmp_path)
    r = cli("study", "batch-size", model, "--data", data, "--batches", "2,6", "--orders", "1",
            "--no-plots", "--tensors", "conv1,relu1")  # fmt: skip
    assert r.exit_code == 0, r.stderr
    doc = json.loads((tmp_path / "study-out" / "model" / "results.json").read_text())
    assert [t["name"] for t in doc["tensors"]] == ["conv1", "relu1"]
    assert not list((tmp_path / "study-out" / "model").glob("*.png"))


def test_out_that_is_a_file_is_an_error_before_any_work(cli, tiny, tmp_path, monkeypatch):
    import trtcalib.study.batch_size as batch_size

    model, data, _ = tiny
    monkeypatch.setattr(batch_size, "run_batch_size_study", lambda *a, **k: pytest.fail("ran"))
    r = cli("study", "batch-size", model, "--data", data, "--batches", "2", "--out", data)
    assert r.exit_code == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines()[-1] == f"error: --out {data}: exists and is not a folder"


def test_jobs_two_writes_the_same_results_as_jobs_one(cli, tiny, tmp_path):
    model, data, _ = tiny
    texts = []
    for jobs in ("1", "2"):
        out = tmp_path / f"jobs{jobs}"
        r = cli("study", "batch-size", model, "--data", data, "--batches", "1,3", "--orders",
                "2", "--jobs", jobs, "--no-plots", "--out", out)  # fmt: skip
        assert r.exit_code == 0, r.stderr
        texts.append((out / "results.csv").read_text())
    assert texts[0] == texts[1]


def test_replay_collector_writes_the_same_results_as_auto(cli, tiny, tmp_path):
    model, data, _ = tiny
    texts = []
    for replay in ("auto", "collector"):
        out = tmp_path / replay
        r = cli("study", "batch-size", model, "--data", data, "--batches", "1,2,5", "--orders",
                "3", "--replay", replay, "--no-plots", "--out", out)  # fmt: skip
        assert r.exit_code == 0, r.stderr
        texts.append((out / "results.csv").read_text())
    assert texts[0] == texts[1]


def test_labels_add_accuracy(cli, tiny, tmp_path):
    model, data, labels = tiny
    out = tmp_path / "acc"
    r = cli("study", "batch-size", model, "--data", data, "--batches", "1,12", "--orders", "2",
            "--labels", labels, "--out", out)  # fmt: skip
    assert r.exit_code == 0, r.stderr
    doc = json.loads((out / "results.json").read_text())
    acc = doc["accuracy"]
    assert [(s["batch_size"], s["order"]) for s in acc["settings"]] == [
        (1, 0), (1, 1), (12, 0), (12, 1)
    ]  # fmt: skip
    # accuracy is a fraction of 12 samples
    for value in [acc["float"], acc["exact"]] + [s["accuracy"] for s in acc["settings"]]:
        assert 0.0 <= value <= 1.0 and round(value * 12, 9).is_integer()
    rows = list(csv.DictReader(io.StringIO((out / "accuracy.csv").read_text())))
    assert len(rows) == 4
    assert (out / "accuracy_vs_batch.png").read_bytes()[:8] == PNG_MAGIC


def test_labels_out_of_the_classifier_range_are_named_in_the_error(cli, tiny, tmp_path):
    model, data, _ = tiny
    bad = tmp_path / "bad_labels.npy"
    np.save(bad, np.full(12, 7))  # the model has 4 classes
    r = cli("study", "batch-size", model, "--data", data, "--batches", "2", "--orders", "1",
            "--labels", bad, "--no-plots", "--out", tmp_path / "out")  # fmt: skip
    assert r.exit_code == 2, r.stderr
    assert r.stderr.splitlines()[-1].startswith(f"error: --labels {bad}: "), r.stderr


def test_labels_of_another_npz_without_eval_data_are_refused(cli, tiny, tmp_path):
    # eval.npz's labels would be paired with calib.npz's samples: chance accuracy, exit 0
    model, data, labels = tiny
    other = tmp_path / "eval.npz"
    x = np.random.default_rng(5).normal(size=(12, 3, 8, 8)).astype(np.float32)
    np.savez(other, input=x, labels=np.load(labels))
    args = ("study", "batch-size", model, "--data", data, "--batches", "2", "--orders", "1",
            "--no-plots", "--out", tmp_path / "out")  # fmt: skip
    r = cli(*args, "--labels", other)
    assert r.exit_code == 2 and "add --eval-data" in r.stderr, r.stderr
    assert "capturing" not in r.stderr  # before any work
    r = cli(*args, "--labels", other, "--eval-data", other)
    assert r.exit_code == 0, r.stderr
    # as in eval and compare, an --eval-data .npz brings its 'labels' array
    r = cli(*args, "--eval-data", other)
    assert r.exit_code == 0 and f"labels: the 'labels' array of {other}" in r.stderr, r.stderr


def test_tensors_too_few_for_the_qdq_accuracy_are_refused_before_any_work(cli, tiny, tmp_path):
    model, data, labels = tiny
    r = cli("study", "batch-size", model, "--data", data, "--batches", "2", "--orders", "1",
            "--labels", labels, "--tensors", "input", "--no-plots",
            "--out", tmp_path / "out")  # fmt: skip
    assert r.exit_code == 2 and "--tensors with --labels" in r.stderr, r.stderr
    assert "capturing" not in r.stderr


def _predicted_classes(model, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    return session.run(None, {"input": x})[0].argmax(axis=1)


def test_subset_picks_calibration_samples_and_their_labels_only(cli, tiny, tmp_path):
    model, data, _ = tiny
    x = np.load(data)["input"]
    predicted = tmp_path / "predicted.npy"  # the float model is right on every sample
    np.save(predicted, _predicted_classes(model, x))
    subset = ["--subset-len", "6", "--sample-method", "random", "--seed", "3"]
    out = tmp_path / "on-data"
    r = cli("study", "batch-size", model, "--data", data, "--batches", "1,6", "--orders", "1",
            "--labels", predicted, "--no-plots", "--out", out, *subset)  # fmt: skip
    assert r.exit_code == 0, r.stderr
    doc = json.loads((out / "results.json").read_text())
    assert doc["num_samples"] == 6
    assert doc["accuracy"]["float"] == 1.0  # labels subsetted like the samples, still aligned
    # --eval-data is evaluated whole: the subset options choose calibration samples only
    ev = np.random.default_rng(9).normal(size=(20, 3, 8, 8)).astype(np.float32)
    np.savez(tmp_path / "eval.npz", input=ev)
    np.save(tmp_path / "eval_labels.npy", _predicted_classes(model, ev))
    out = tmp_path / "on-eval"
    r = cli("study", "batch-size", model, "--data", data, "--batches", "1,6", "--orders", "1",
            "--eval-data", tmp_path / "eval.npz", "--labels", tmp_path / "eval_labels.npy",
            "--no-plots", "--out", out, *subset)  # fmt: skip
    assert r.exit_code == 0, r.stderr
    doc = json.loads((out / "results.json").read_text())
    assert doc["num_samples"] == 6 and doc["accuracy"]["float"] == 1.0
    fractions = [s["accuracy"] * 20 for s in doc["accuracy"]["settings"]]
    assert all(round(f, 9).is_integer() for f in fractions)


def test_a_rerun_removes_outputs_it_no_longer_makes(cli, tiny, tmp_path):
    model, data, labels = tiny
    out = tmp_path / "again"
    r = cli("study", "batch-size", model, "--data", data, "--batches", "1,12", "--orders", "1",
            "--labels", labels, "--out", out)  # fmt: skip
    assert r.exit_code == 0, r.stderr
    assert (out / "accuracy.csv").exists() and (out / "accuracy_vs_batch.png").exists()
    (out / "notes.txt").write_text("mine")
    r = cli("study", "batch-size", model, "--data", data, "--batches", "1,12", "--orders", "1",
            "--no-plots", "--out", out)  # fmt: skip
    assert r.exit_code == 0, r.stderr
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt", "results.csv", "results.json"]
    assert "removed" in r.stdout


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--batches", "1,x"], "--batches"),
        (["--batches", "0"], "--batches"),
        (["--batches", ""], "--batches"),
        (["--batches", "1,64"], "larger than the 12 samples"),
        (["--orders", "0"], "--orders"),
        (["--jobs", "0"], "--jobs"),
        (["--growth", "cube"], "--growth"),
        (["--calibrator", "nope"], "--calibrator"),
        (["--num-bins", "100"], "--num-bins"),
        (["--num-bins", "131072"], "from 128 to 65536"),
        (["-c", "mse", "--num-bins", "128"], "start_bin=128 is past the histogram's 128 bins"),
        (["--out", "FILE/below"], "is not a folder"),
        (["--replay", "fast"], "--replay"),
        (["--param", "nonsense"], "--param"),
        (["--param", "nope=1"], "nope"),
        (["--top", "0"], "--top"),
        (["--labels", "missing.npy"], "missing.npy"),
        (["--labels", "WRONG"], "labels"),
        (["--eval-data", "DATA"], "no 'labels' array in it: give --labels"),
    ],
)
def test_bad_inputs_one_line_error_nothing_written(cli, tiny, tmp_path, args, needle):
    model, data, _ = tiny
    wrong = tmp_path / "wrong.npy"
    np.save(wrong, np.zeros(5, dtype=np.int64))  # 5 labels for 12 samples
    args = [str(wrong) if a == "WRONG" else str(data) if a == "DATA" else a for a in args]
    args = [str(tmp_path / a) if a == "missing.npy" else a for a in args]
    args = [a.replace("FILE", str(wrong)) for a in args]
    out = tmp_path / "never"
    r = cli("study", "batch-size", model, "--data", data, "--orders", "1", "--out", out, *args)
    assert r.exit_code == 2
    assert r.stderr.startswith("error:") and r.stderr.strip().count("\n") == 0, r.stderr
    assert needle in r.stderr
    assert not out.exists()


def test_missing_data_and_model(cli, tiny, tmp_path):
    model, data, _ = tiny
    out = tmp_path / "never"
    r = cli("study", "batch-size", model, "--data", tmp_path / "nope.npz", "--out", out)
    assert r.exit_code == 2 and r.stderr.startswith("error:") and "nope.npz" in r.stderr
    r = cli("study", "batch-size", tmp_path / "nope.onnx", "--data", data, "--out", out)
    assert r.exit_code == 2 and r.stderr.startswith("error:") and "nope.onnx" in r.stderr
    r = cli("study", "batch-size", model, "--out", out)  # --data is required
    assert r.exit_code == 2
    assert not out.exists()


def test_help_teaches(cli):
    r = cli("study", "batch-size", "--help")
    assert r.exit_code == 0
    for word in ("--batches", "--orders", "--jobs", "Example", "exact"):
        assert word in r.stdout


def test_scenario(cli, tmp_path):
    out = tmp_path / "scen"
    r = cli("study", "scenario", "--out", out)
    assert r.exit_code == 0, r.stderr
    assert "1.54" in r.stdout and "worked example" in r.stdout
    names = sorted(p.name for p in out.iterdir())
    assert names == ["scenario-evenly-spread.png", "scenario-outlier-last.png",
                     "scenario-robust.png", "scenarios.json"]  # fmt: skip
    for name in names[:3]:
        assert (out / name).read_bytes()[:8] == PNG_MAGIC
    doc = json.loads((out / "scenarios.json").read_text())
    worked = {(w["policy"], tuple(w["order"])): w for w in doc["worked"]}
    # pow2: 1.54 first -> range 1.54, 2.4 doubles it once: 3.08
    assert worked["trt/pow2", (1.54, 2.4)]["range_max"] == pytest.approx(3.08)
    assert worked["trt/pow2", (1.54, 2.4)]["growth_events"] == 1
    # 2.4 first: 1.54 fits, the range stays 2.4 under every policy
    for policy in ("trt/pow2", "trt/square", "exact"):
        assert worked[policy, (2.4, 1.54)]["range_max"] == pytest.approx(2.4)
        assert worked[policy, (2.4, 1.54)]["growth_events"] == 0
    # square: 1.54 first, then 2.4 exceeds it: the new range is 2.4^2 = 5.76
    assert worked["trt/square", (1.54, 2.4)]["range_max"] == pytest.approx(5.76)
    assert worked["trt/square", (1.54, 2.4)]["growth_events"] == 1
    # exact: the range is the max whatever the order; minmax is 2.4 everywhere
    assert worked["exact", (1.54, 2.4)]["range_max"] == pytest.approx(2.4)
    for w in doc["worked"]:
        assert w["amax"]["minmax"] == pytest.approx(2.4)
    scen = {s["key"]: s for s in doc["scenarios"]}
    robust = scen["robust"]["runs"]
    assert {r["range_max"] for r in robust} == {6.0}
    assert {r["growth_events"] for r in robust} == {0}
    assert len({r["amax"]["entropy"] for r in robust if r["histogram"] == "trt"}) == 1
    last = {r["label"]: r for r in scen["outlier-last"]["runs"]}
    assert last["trt, batch 1"]["growth_events"] >= 1
    assert last["trt, batch 1"]["range_max"] > last["trt, batch 64"]["range_max"]
    assert last["trt, batch 64"]["range_max"] == scen["outlier-last"]["max_abs"]


def test_scenario_bad_growth(cli, tmp_path):
    out = tmp_path / "scen"
    r = cli("study", "scenario", "--growth", "cube", "--out", out)
    assert r.exit_code == 2 and r.stderr.startswith("error:") and "--growth" in r.stderr
    assert not out.exists()
    (tmp_path / "file").write_text("x")
    r = cli("study", "scenario", "--out", tmp_path / "file" / "scen")
    assert r.exit_code == 2 and "Traceback" not in r.stderr
    assert (
        r.stderr.strip()
        == f"error: --out {tmp_path / 'file' / 'scen'}: {tmp_path / 'file'} is not a folder"
    )


def test_fixed_batch_model_is_captured_one_sample_at_a_time(cli, tmp_path):
    model = tinymodels.save(tinymodels.conv_model(batch=1), tmp_path, "fixed.onnx")
    data = tmp_path / "five.npz"
    x = np.random.default_rng(3).normal(size=(5, 3, 8, 8)).astype(np.float32)
    np.savez(data, input=x)
    out = tmp_path / "fixed"
    r = cli("study", "batch-size", model, "--data", data, "--batches", "1,5", "--orders", "1",
            "--no-plots", "--out", out)  # fmt: skip
    assert r.exit_code == 0, r.stderr
    assert (
        "model input 'input' [1, 3, 8, 8] has a fixed batch of 1: TensorRT calibrates it at "
        "batch 1 only; batch sizes 5 show" in " ".join(r.stderr.split())
    )
    doc = json.loads((out / "results.json").read_text())
    assert doc["num_samples"] == 5 and doc["last_batch"] == "keep"
    inp = next(t for t in doc["tensors"] if t["name"] == "input")
    assert inp["global_max"] == float(np.abs(x).max())


def test_inf_activations_are_warned_and_left_out_of_the_plots(cli, tmp_path):
    # an Inf in input 'a' makes a, prod, act and out infinite; 'b' stays finite
    model = tinymodels.save(tinymodels.two_input_model(), tmp_path, "two.onnx")
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(8, 4)).astype(np.float32), rng.random((8, 4)).astype(np.float32)
    a[3, 1] = np.inf
    data = tmp_path / "inf.npz"
    np.savez(data, a=a, b=b + 0.5)
    out = tmp_path / "inf"
    r = cli("study", "batch-size", model, "--data", data, "--batches", "1,8", "--orders", "2",
            "-c", "minmax", "--out", out)  # fmt: skip
    assert r.exit_code == 0, r.stderr
    assert "warning: tensor 'a': 0 NaN and 1 Inf activation values" in r.stderr
    assert "warning: tensor 'b'" not in r.stderr
    assert "nan" not in r.stdout
    assert (out / "amax_vs_batch.png").read_bytes()[:8] == PNG_MAGIC
    doc = json.loads((out / "results.json").read_text())
    amax = {t["name"]: t["exact_amax"] for t in doc["tensors"]}
    assert amax["a"] == "inf" and amax["b"] == pytest.approx(float(b.max()) + 0.5)


def test_square_growth_goes_through_the_collectors(cli, tiny, tmp_path):
    model, data, _ = tiny
    out = tmp_path / "square"
    r = cli("study", "batch-size", model, "--data", data, "--batches", "1,12", "--orders", "2",
            "--growth", "square", "--tensors", "input", "--no-plots", "--out", out)  # fmt: skip
    assert r.exit_code == 0, r.stderr
    doc = json.loads((out / "results.json").read_text())
    assert doc["growth"] == "square"
    (inp,) = doc["tensors"]
    b1, b12 = inp["settings"]
    assert b12["range_max"] == [9.0, 9.0] and b12["growth_events"] == [0, 0]
    # data order: the 9.0 comes last, so the range grew at least once and now covers it
    assert b1["growth_events"][0] >= 1 and b1["range_max"][0] >= 9.0


def test_param_reaches_the_algorithm(cli, tiny, tmp_path):
    model, data, _ = tiny
    amax = {}
    for p in ("50", "100"):
        out = tmp_path / p
        r = cli("study", "batch-size", model, "--data", data, "--batches", "12", "--orders",
                "1", "--calibrator", "percentile", "--param", f"percentile={p}", "--tensors",
                "input", "--no-plots", "--out", out)  # fmt: skip
        assert r.exit_code == 0, r.stderr
        doc = json.loads((out / "results.json").read_text())
        assert doc["params"] == {"percentile": float(p)}
        amax[p] = doc["tensors"][0]["settings"][0]["amax"][0]
    # the median of |x| lies far below the top of the histogram (max |x| = 9.0)
    assert amax["50"] < amax["100"] <= 9.0 * (1 + 1 / 2048)
