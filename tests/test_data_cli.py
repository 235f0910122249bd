"""python -m kit data check / clean."""

import json

import pandas as pd
import pytest

from kit import data
from kit.cli import main


@pytest.fixture
def bad_file(tmp_path, ohlcv):
    f = ohlcv.copy()
    for c in ("open", "high", "low", "close", "adjusted_close"):
        f.loc[10, c] *= 1.6  # a bad row: error
    f.loc[20, "volume"] = 0  # a zero volume: warning
    path = tmp_path / "prices.parquet"
    f.to_parquet(path)
    return path


def test_check_json_lines_and_exit_codes(bad_file, capsys):
    assert main(["data", "check", str(bad_file), "--json"]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert {(x["check"], x["severity"]) for x in lines} == {("bad_row", "error"), ("large_move", "warning"), ("non_positive_volume", "warning")}
    bad = next(x for x in lines if x["check"] == "bad_row")
    assert bad["symbol"] == "AAA" and bad["date"] == "2020-01-15" and bad["field"] == "close" and bad["value"] == pytest.approx(1.6, rel=0.05)
    assert set(bad) == {"check", "severity", "symbol", "date", "field", "value", "reason"}
    assert main(["data", "check", str(bad_file), "--strict"]) == 1
    out = capsys.readouterr().out
    assert "3 findings (1 errors)" in out and "bad_row" in out


def test_check_unreadable_file_exits_65_with_the_message(tmp_path, capsys):
    path = tmp_path / "x.csv"
    path.write_text("Symbol,Date,Close\nA,2020-01-02,1\n")
    assert main(["data", "check", str(path)]) == 65
    err = capsys.readouterr().err
    assert "x.csv: missing required column(s)" in err and "columns found: Symbol, Date, Close" in err


def test_clean_writes_the_store_and_its_report(bad_file, tmp_path, capsys):
    out = tmp_path / "clean.parquet"
    assert main(["data", "clean", str(bad_file), "--out", str(out), "--policy", '{"error": "drop"}']) == 0
    cleaned = pd.read_parquet(out)
    assert len(cleaned) == 59
    rep = json.loads((tmp_path / "clean.parquet.report.json").read_text())
    assert rep["rows_removed"] == 1 and rep["actions"][0]["check"] == "bad_row" and rep["actions"][0]["date"] == "2020-01-15"
    assert data.validate_prices(cleaned).issues.query("severity == 'error'").empty
    assert main(["data", "clean", str(bad_file), "--out", str(out), "--policy", "strict"]) == 2
    assert "cleaning must be 'default', 'none' or a mapping" in capsys.readouterr().err


@pytest.mark.slow
def test_check_runs_on_the_committed_store(capsys):
    assert main(["data", "check", str(data.default_store()), "--json"]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert sum(x["severity"] == "error" for x in lines) == 19
    assert main(["data", "check", str(data.default_store()), "--strict"]) == 1
