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
