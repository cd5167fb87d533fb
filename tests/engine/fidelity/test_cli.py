"""``python -m recon_engine fidelity ...``: tables written, bad input answered in one line."""

import csv
import json

import pytest

from recon_engine.cli import main


def test_detect_writes_rows_and_the_smallest_detected_size(tmp_path, capsys):
    out, summary = tmp_path / "rows.csv", tmp_path / "summary.json"
    status = main(
        [
            "fidelity",
            "detect",
            "--size",
            "64",
            "--pixel-mm",
            "1",
            "--realisations",
            "8",
            "--methods",
            "rss",
            "--accelerations",
            "1",
            "--sizes",
            "2,6",
            "--contrast",
            "0.8",
            "--out",
            str(out),
            "--summary",
            str(summary),
        ]
    )
    assert status == 0
    rows = list(csv.DictReader(out.open()))
    assert [float(r["size_mm"]) for r in rows] == [2.0, 6.0]
    assert all(0.5 <= float(r["cho_auc"]) <= 1.0 for r in rows)
    # fully sampled, 80 % contrast at SNR 20: a 6 mm focus keeps its whole contrast
    assert float(rows[1]["contrast_recovery"]) == pytest.approx(1.0, abs=0.1)
    table = json.loads(summary.read_text())
    assert table[0]["method"] == "rss" and table[0]["smallest_detected_npw_mm"] == 2.0


def test_attack_skips_methods_without_a_gradient_and_says_why(tmp_path):
    out = tmp_path / "attack.json"
    status = main(
        [
            "fidelity",
            "attack",
            "--size",
            "64",
            "--methods",
            "cg_sense",
            "--epsilons",
            "0.01",
            "--out",
            str(out),
        ]
    )
    assert status == 0
    (row,) = json.loads(out.read_text())
    assert "no differentiable forward" in row["skipped"]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["detect", "--size", "64", "--sizes", "0.5", "--methods", "rss"], "below one pixel"),
        (["detect", "--size", "64", "--methods", "nonsense"], "unknown method"),
        (["detect", "--size", "64", "--sizes", "a,b"], "comma-separated numbers"),
    ],
)
def test_bad_input_is_one_line_and_status_2(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["fidelity", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_a_table_path_of_another_kind_is_refused_before_any_work(capsys):
    with pytest.raises(SystemExit) as stopped:
        main(["fidelity", "tiny", "--methods", "rss", "--out", "x.txt"])
    assert stopped.value.code == 2
    assert "must end in .csv or .json" in capsys.readouterr().err
