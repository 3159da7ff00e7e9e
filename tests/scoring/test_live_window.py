"""The live window: batches in, rolled Parquet files out, equal to the batches joined."""

from __future__ import annotations

import numpy as np
import pandas as pd

from scoring.live_window import LiveWindow


def batch(n: int, start: int, *, classes=("0", "1")) -> dict:
    scored_at = pd.Series(pd.Timestamp("2026-11-27 10:00", tz="UTC") + pd.Timedelta(seconds=start), index=range(n))
    columns = {
        "event_id": np.array([f"e{start + i}" for i in range(n)], dtype=object),
        "amount": pd.Series(np.arange(start, start + n, dtype=float), index=range(100, 100 + n)),  # any index
        "merchant": np.array(["shop", None] * (n // 2) + ["shop"] * (n % 2), dtype=object),
        "prediction": np.zeros(n, dtype=np.int64),
        "scored_at": scored_at,
    }
    columns.update({f"proba_{c}": np.full(n, 0.5) for c in classes})
    return columns


def read(window: LiveWindow) -> pd.DataFrame:
    return pd.concat([pd.read_parquet(p) for p in sorted(window.files_written)], ignore_index=True)


def test_rolled_files_hold_every_row_with_its_types(tmp_path):
    window = LiveWindow(tmp_path / "live", roll_rows=10, roll_seconds=3600)
    for start in range(0, 25, 5):
        window.append(batch(5, start))
    window.close()
    assert len(window.files_written) == 3  # rolled at 10 and 20 rows, the last 5 on close
    rows = read(window)
    assert rows["event_id"].tolist() == [f"e{i}" for i in range(25)]
    assert rows["amount"].tolist() == [float(i) for i in range(25)]
    assert str(rows["scored_at"].dtype) == "datetime64[ns, UTC]"
    assert rows["scored_at"].iloc[7] == pd.Timestamp("2026-11-27 10:00:05", tz="UTC")
    assert rows["merchant"].isna().sum() == 2 * 5 and rows["prediction"].dtype == np.int64
    assert not list((tmp_path / "live").rglob(".*.tmp"))


def test_a_frame_is_accepted_as_well_as_columns(tmp_path):
    window = LiveWindow(tmp_path / "live", roll_rows=100, roll_seconds=3600)
    columns = {k: v.reset_index(drop=True) if isinstance(v, pd.Series) else v for k, v in batch(4, 0).items()}
    window.append(pd.DataFrame(columns))
    window.append(batch(3, 4))
    window.close()
    assert read(window)["event_id"].tolist() == [f"e{i}" for i in range(7)]


def rows_of(columns: dict) -> list[dict]:
    """The batch as scored rows, each value the scalar a one-row frame would hold (as ``Scorer.score_one`` gives)."""
    frame = pd.DataFrame({k: v.reset_index(drop=True) if isinstance(v, pd.Series) else v for k, v in columns.items()})
    return [{name: frame[name].iloc[i] for name in frame.columns} for i in range(len(frame))]


def test_rows_appended_one_by_one_are_written_as_the_same_columns(tmp_path):
    by_columns = LiveWindow(tmp_path / "columns", roll_rows=100, roll_seconds=3600)
    by_rows = LiveWindow(tmp_path / "rows", roll_rows=100, roll_seconds=3600)
    for start in range(0, 12, 4):
        by_columns.append(batch(4, start))
    by_rows.append_rows(rows_of(batch(4, 0)))  # rows, then columns, then rows: each keeps its place
    by_rows.append(batch(4, 4))
    for row in rows_of(batch(4, 8)):
        by_rows.append_rows([row])
    by_columns.close()
    by_rows.close()
    expected, written = read(by_columns), read(by_rows)
    pd.testing.assert_frame_equal(written, expected)
    assert str(written["scored_at"].dtype) == "datetime64[ns, UTC]" and written["prediction"].dtype == np.int64


def test_rows_alone_roll_by_count_and_keep_their_types(tmp_path):
    window = LiveWindow(tmp_path / "live", roll_rows=5, roll_seconds=3600)
    for row in rows_of(batch(12, 0)):
        window.append_rows([row])
    window.close()
    assert [len(pd.read_parquet(p)) for p in sorted(window.files_written)] == [5, 5, 2]
    rows = read(window)
    assert rows["event_id"].tolist() == [f"e{i}" for i in range(12)]
    assert str(rows["scored_at"].dtype) == "datetime64[ns, UTC]" and rows["merchant"].isna().sum() == 6


def test_other_columns_after_a_reload_start_a_file_of_their_own(tmp_path):
    window = LiveWindow(tmp_path / "live", roll_rows=100, roll_seconds=3600)
    window.append(batch(4, 0))
    window.append(batch(4, 4, classes=("a", "b", "c")))  # a model with other classes
    window.close()
    first, second = (pd.read_parquet(p) for p in sorted(window.files_written))
    assert "proba_1" in first.columns and len(first) == 4
    assert "proba_c" in second.columns and len(second) == 4


def test_rows_older_than_the_age_limit_roll_when_the_scorer_is_idle(tmp_path):
    window = LiveWindow(tmp_path / "live", roll_rows=1000, roll_seconds=60)
    window.append(batch(4, 0))
    assert window.roll_if_due() is None  # young rows wait for more
    window._opened -= 61  # the buffer's first rows arrived a minute ago
    assert window.roll_if_due() is not None and window.roll_if_due() is None
    window.close()
    assert len(read(window)) == 4
