"""Sequence sources through the real prepare stage: synthetic ECG-like signals, the UCR/UEA
archive formats (written here as the archive writes them) and WFDB records written by the
wfdb package itself; every bad input is one DataError naming the file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from medflow.config.schema import validate_section
from medflow.config.types import DatasetConfig
from medflow.data.base import SPLITS
from medflow.data.format import PreparedDataset
from medflow.data.sources.synthetic_signals import CLASS_NAMES
from medflow.errors import ConfigError, DataError
from medflow.stages.prepare import prepare_dataset


def dataset(name: str, **section) -> DatasetConfig:
    return DatasetConfig.from_validated(name, validate_section(section, "dataset", source=name))


def prepare(tmp_path: Path, cfg: DatasetConfig) -> PreparedDataset:
    prepare_dataset(cfg, tmp_path / cfg.name)
    return PreparedDataset.open(tmp_path / cfg.name)


def assert_sequence_format(ds: PreparedDataset, channels: int, length: int) -> None:
    meta = ds.meta
    assert meta["kind"] == "sequence"
    assert meta["input_shape"] == [channels, length]
    assert meta["channels"] == channels and meta["length"] == length
    assert len(meta["normalisation"]["mean"]) == channels
    train = ds.normalise(ds.load("train").x)
    assert train.shape[1:] == (channels, length)
    # Train-only statistics: the normalised train split is standardised per channel.
    np.testing.assert_allclose(train.mean(axis=(0, 2)), 0, atol=1e-4)
    np.testing.assert_allclose(train.std(axis=(0, 2)), 1, atol=1e-3)


# ---- synthetic_signals ----------------------------------------------------------------


def test_synthetic_signals_are_seeded_balanced_sequences(tmp_path):
    opts = {"n_series": 800, "length": 128}
    ds = prepare(tmp_path, dataset("sig", source="synthetic_signals", options=opts))
    assert_sequence_format(ds, 1, 128)
    assert ds.meta["sampling_rate"] == 64.0 and ds.meta["class_names"] == CLASS_NAMES
    assert sum(ds.meta["split_sizes"].values()) == 800
    counts = np.sum([ds.meta["class_counts"][s] for s in SPLITS], axis=0)
    assert counts.tolist() == [100] * len(CLASS_NAMES)
    again = prepare(tmp_path / "again", dataset("sig", source="synthetic_signals", options=opts))
    assert again.content_hash == ds.content_hash
    other = prepare(
        tmp_path / "other", dataset("sig", source="synthetic_signals", seed=1, options=opts)
    )
    assert other.content_hash != ds.content_hash


def test_synthetic_signal_classes_differ_where_they_should():
    from medflow.data.sources.synthetic_signals import load

    opts = validate_section({"n_series": 1600}, "synthetic_signals_options", source="t")
    data = load(opts, 0).splits["all"]
    x, y = data.x[:, 0], data.y
    name = CLASS_NAMES.index

    def beats_per_series(label: int) -> float:
        """R peaks per series: samples above 60% of each series' maximum, counted once."""
        series = x[y == label]
        peaks = (series[:, 1:-1] > series[:, :-2]) & (series[:, 1:-1] >= series[:, 2:])
        tall = series[:, 1:-1] > 0.6 * series.max(axis=1, keepdims=True)
        return float((peaks & tall).sum(axis=1).mean())

    assert beats_per_series(name("tachycardia")) > beats_per_series(name("sinus"))
    assert beats_per_series(name("sinus")) > beats_per_series(name("bradycardia"))


def test_synthetic_signals_subset_of_classes(tmp_path):
    opts = {"n_series": 300, "length": 64, "classes": ["sinus", "atrial_fibrillation"]}
    ds = prepare(tmp_path, dataset("sig", source="synthetic_signals", options=opts))
    assert ds.meta["class_names"] == ["sinus", "atrial_fibrillation"]
    assert ds.meta["task"] == "binary"


def test_synthetic_signals_unknown_class_is_a_config_error():
    with pytest.raises(ConfigError, match="classes"):
        dataset("sig", source="synthetic_signals", options={"classes": ["sinus", "flutter"]})


# ---- ucr --------------------------------------------------------------------------------


def make_series(n: int, length: int, n_classes: int = 2, dims: int = 1, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % n_classes
    t = np.linspace(0, 2 * np.pi, length)
    x = np.sin((1 + y[:, None, None]) * t) + 0.1 * rng.standard_normal((n, dims, length))
    return x.round(4), y


def write_ts(path: Path, x, y, labels=("a", "b"), header_extra: str = "", length=None) -> Path:
    dims = x.shape[1]
    lines = [
        "# written as sktime/aeon write .ts files",
        "@problemName toy",
        "@timeStamps false",
        "@missing false",
        f"@univariate {'true' if dims == 1 else 'false'}",
        *([f"@dimensions {dims}"] if dims > 1 else []),
        "@equalLength true",
        f"@seriesLength {length or x.shape[2]}",
        f"@classLabel true {' '.join(labels)}",
        *([header_extra] if header_extra else []),
        "@data",
    ]
    for series, label in zip(x, y, strict=True):
        dims_text = ":".join(",".join(f"{v:g}" for v in d) for d in series)
        lines.append(f"{dims_text}:{labels[label]}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def write_delimited(path: Path, x, y, sep: str, label_fmt=str) -> Path:
    rows = [
        sep.join([label_fmt(label), *(f"{v:g}" for v in series[0])])
        for series, label in zip(x, y, strict=True)
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(rows) + "\n")
    return path


def write_arff(path: Path, x, y, labels=("1", "2")) -> Path:
    lines = ["@relation toy"]
    lines += [f"@attribute att{i} numeric" for i in range(x.shape[2])]
    lines += [f"@attribute target {{{','.join(labels)}}}", "@data"]
    lines += [
        ",".join([*(f"{v:g}" for v in series[0]), labels[label]])
        for series, label in zip(x, y, strict=True)
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def write_archive(root: Path, fmt: str, name: str = "Toy", dims: int = 1) -> Path:
    for split, n, seed in (("TRAIN", 30, 0), ("TEST", 20, 1)):
        x, y = make_series(n, 24, dims=dims, seed=seed)
        path = root / name / f"{name}_{split}.{fmt}"
        if fmt == "ts":
            write_ts(path, x, y)
        elif fmt == "tsv":
            write_delimited(path, x, y, "\t", label_fmt=lambda v: str(v + 1))
        elif fmt == "txt":
            write_delimited(path, x, y, "  ", label_fmt=lambda v: f"{v + 1:.7e}")
        else:
            write_arff(path, x, y)
    return root


def ucr(root: Path, **options) -> DatasetConfig:
    return dataset("toy", source="ucr", options={"root": str(root), "name": "Toy", **options})


@pytest.mark.parametrize("fmt", ["ts", "tsv", "txt", "arff"])
def test_ucr_formats_keep_the_archive_split_and_carve_val(tmp_path, fmt):
    ds = prepare(tmp_path / "out", ucr(write_archive(tmp_path / "ucr", fmt)))
    assert_sequence_format(ds, 1, 24)
    sizes = ds.meta["split_sizes"]
    assert sizes["test"] == 20 and sizes["train"] + sizes["val"] == 30 and sizes["val"] == 6
    assert ds.meta["splits_from_source"] and ds.meta["notes"]["archive_format"] == fmt
    assert ds.meta["class_counts"]["val"] == [3, 3]  # stratified
    expected = ["a", "b"] if fmt == "ts" else ["1", "2"]
    assert ds.meta["class_names"] == expected
    # The archive's TEST rows in file order: the values written are the values loaded.
    x, y = make_series(20, 24, seed=1)
    test = ds.load("test")
    np.testing.assert_allclose(test.x, x, atol=1e-4)
    np.testing.assert_array_equal(test.y, y)


def test_ucr_multivariate_ts(tmp_path):
    ds = prepare(tmp_path / "out", ucr(write_archive(tmp_path / "ucr", "ts", dims=3)))
    assert_sequence_format(ds, 3, 24)


def test_ucr_unequal_lengths_error_or_pad_truncate_resample(tmp_path):
    root = write_archive(tmp_path / "ucr", "tsv")
    train = root / "Toy" / "Toy_TRAIN.tsv"
    lines = train.read_text().splitlines()
    lines[4] = "\t".join(lines[4].split("\t")[:-4] + ["NaN"] * 4)  # UCR 2018 padding
    train.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"Toy_TRAIN.tsv line 5: series of length 20.*unequal"):
        prepare(tmp_path / "out", ucr(root))
    for how, length in (("pad", 24), ("truncate", 20), ("resample", 24)):
        ds = prepare(tmp_path / how, ucr(root, unequal_length=how))
        assert ds.meta["input_shape"] == [1, length], how
    ds = prepare(tmp_path / "fixed", ucr(root, unequal_length="resample", length=16))
    assert ds.meta["input_shape"] == [1, 16]


def test_ucr_missing_values_error_or_interpolate(tmp_path):
    root = write_archive(tmp_path / "ucr", "txt")
    train = root / "Toy" / "Toy_TRAIN.txt"
    lines = train.read_text().splitlines()
    fields = lines[2].split()
    fields[5] = "NaN"
    lines[2] = "  ".join(fields)
    train.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"Toy_TRAIN.txt line 3: 1 missing value"):
        prepare(tmp_path / "out", ucr(root))
    ds = prepare(tmp_path / "filled", ucr(root, missing="interpolate"))
    assert np.isfinite(ds.load("train").x).all()


def test_ucr_missing_file(tmp_path):
    with pytest.raises(DataError, match=r"file not found: .*Toy_TRAIN\.ts or"):
        prepare(tmp_path / "out", ucr(tmp_path / "nothing"))
    root = write_archive(tmp_path / "ucr", "tsv")
    (root / "Toy" / "Toy_TEST.tsv").unlink()
    with pytest.raises(DataError, match=r"file not found: .*Toy_TEST\.tsv"):
        prepare(tmp_path / "out", ucr(root))


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda t: t.replace(",0.2566,", ",0.25x66,", 1), r"line 10: not a number"),
        (lambda t: t.replace(":a\n", "\n", 1), r"line 10: expected values:\.\.\.:label"),
        (lambda t: t.replace(":a\n", ":c\n", 1), r"label 'c' is not among the @classLabel"),
        (lambda t: t.replace("@seriesLength 24", "@seriesLength 25"), r"@seriesLength 25 but"),
        (
            lambda t: t.replace("@univariate true", "@univariate true\n@dimensions 2"),
            "@dimensions 2",
        ),
        (lambda t: t.replace("@classLabel true a b", "@classLabel false"), "declares no class"),
        (lambda t: t.replace("@data\n", ""), "expected a @tag or @data"),
    ],
    ids=["malformed_value", "no_label", "label_absent", "length", "dims", "unlabelled", "no_data"],
)
def test_ucr_ts_bad_input_names_file_and_line(tmp_path, edit, message):
    root = write_archive(tmp_path / "ucr", "ts")
    train = root / "Toy" / "Toy_TRAIN.ts"
    train.write_text(edit(train.read_text()))
    with pytest.raises(DataError, match=rf"Toy_TRAIN\.ts.*{message}"):
        prepare(tmp_path / "out", ucr(root))


def test_ucr_malformed_tsv_line(tmp_path):
    root = write_archive(tmp_path / "ucr", "tsv")
    test = root / "Toy" / "Toy_TEST.tsv"
    test.write_text(test.read_text() + "2\n")
    with pytest.raises(DataError, match=r"Toy_TEST\.tsv line 21: a label and at least one value"):
        prepare(tmp_path / "out", ucr(root))


def test_ucr_arff_label_outside_declared(tmp_path):
    root = write_archive(tmp_path / "ucr", "arff")
    train = root / "Toy" / "Toy_TRAIN.arff"
    text = train.read_text().splitlines()
    text[-1] = text[-1].rsplit(",", 1)[0] + ",3"
    train.write_text("\n".join(text) + "\n")
    with pytest.raises(DataError, match=r"Toy_TRAIN\.arff"):
        prepare(tmp_path / "out", ucr(root))


# ---- wfdb -------------------------------------------------------------------------------

FS = 100


def write_records(root: Path, n_records: int = 5, beats: int = 30, seed: int = 0) -> Path:
    """Records with two leads and beat annotations, written by the wfdb package."""
    import wfdb

    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for r in range(n_records):
        samples = np.arange(1, beats + 1) * 80
        symbols = np.where(np.arange(beats) % 3 == 0, "V", "N")
        signal = 0.05 * rng.standard_normal((samples[-1] + 100, 2))
        for s, sym in zip(samples, symbols, strict=True):
            signal[s - 3 : s + 3, 0] += 1.0 if sym == "N" else -1.0
        wfdb.wrsamp(
            f"rec{r}",
            fs=FS,
            units=["mV", "mV"],
            sig_name=["MLII", "V5"],
            p_signal=signal,
            fmt=["16", "16"],
            write_dir=str(root),
        )
        ann_symbols = np.append(symbols, "+")  # a rhythm annotation, not a beat
        ann_samples = np.append(samples, samples[-1] + 10)
        wfdb.wrann(f"rec{r}", "atr", ann_samples, ann_symbols, write_dir=str(root))
    return root


def wfdb_cfg(root: Path, **options) -> DatasetConfig:
    labels = {"N": "normal", "V": "ventricular"}
    return dataset("beats", source="wfdb", options={"root": str(root), "labels": labels, **options})


def test_wfdb_windows_around_beats_split_by_record(tmp_path):
    root = write_records(tmp_path / "db")
    ds = prepare(tmp_path / "out", wfdb_cfg(root))
    assert_sequence_format(ds, 2, 70)  # 0.25 s + 0.45 s at 100 Hz
    assert ds.meta["sampling_rate"] == FS and ds.meta["feature_names"] == ["MLII", "V5"]
    assert ds.meta["class_names"] == ["normal", "ventricular"]
    records = ds.meta["notes"]["records"]
    assert sorted(r for names in records.values() for r in names) == [f"rec{i}" for i in range(5)]
    assert [len(records[s]) for s in ("train", "val", "test")] == [3, 1, 1]
    assert ds.meta["split_sizes"] == {"train": 90, "val": 30, "test": 30}
    assert ds.meta["notes"]["skipped_annotations"]["unmapped_symbol"] == 5
    # The window is centred as configured: the beat sits 25 samples in.
    raw = ds.load("test")
    peak = np.abs(raw.x[:, 0]).argmax(axis=1)
    assert (np.abs(peak - 25) <= 3).all()
    np.testing.assert_array_equal(raw.y[:3], [1, 0, 0])
    again = prepare(tmp_path / "again", wfdb_cfg(root))
    assert again.content_hash == ds.content_hash


def test_wfdb_channel_selection(tmp_path):
    root = write_records(tmp_path / "db")
    ds = prepare(tmp_path / "out", wfdb_cfg(root, channels=["V5"]))
    assert ds.meta["input_shape"] == [1, 70]


def test_wfdb_record_without_annotations(tmp_path):
    root = write_records(tmp_path / "db")
    (root / "rec2.atr").unlink()
    with pytest.raises(DataError, match=r"rec2 has no annotations: .*rec2\.atr not found"):
        prepare(tmp_path / "out", wfdb_cfg(root))


def test_wfdb_header_contradicting_data(tmp_path):
    root = write_records(tmp_path / "db")
    dat = root / "rec1.dat"
    dat.write_bytes(dat.read_bytes()[:1000])
    with pytest.raises(DataError, match=r"rec1.*contradicts its signal file"):
        prepare(tmp_path / "out", wfdb_cfg(root))


def test_wfdb_missing_record_and_folder(tmp_path):
    root = write_records(tmp_path / "db")
    with pytest.raises(DataError, match=r"file not found: .*rec9\.hea"):
        prepare(tmp_path / "out", wfdb_cfg(root, records=["rec0", "rec9", "rec1"]))
    with pytest.raises(DataError, match="folder not found"):
        prepare(tmp_path / "out", wfdb_cfg(tmp_path / "nowhere"))


def test_wfdb_malformed_header_line(tmp_path):
    root = write_records(tmp_path / "db")
    hea = root / "rec0.hea"
    lines = hea.read_text().splitlines()
    lines[1] = "rec0.dat sixteen"
    hea.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"rec0"):
        prepare(tmp_path / "out", wfdb_cfg(root))


def test_wfdb_labels_absent_from_annotations(tmp_path):
    root = write_records(tmp_path / "db")
    cfg = dataset("beats", source="wfdb", options={"root": str(root), "labels": {"A": "apc"}})
    with pytest.raises(DataError, match=r"no annotation .* has a symbol of options.labels \(A\)"):
        prepare(tmp_path / "out", cfg)


def test_wfdb_too_few_records(tmp_path):
    root = write_records(tmp_path / "db", n_records=2)
    with pytest.raises(DataError, match="at least 3"):
        prepare(tmp_path / "out", wfdb_cfg(root))
