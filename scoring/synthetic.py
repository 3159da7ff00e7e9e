"""A deterministic synthetic card-transaction data set, with an optional drifted variant.

Rows are generated in fixed-size blocks, each from its own seed, so ``generate(n)`` is the first
``n`` rows of ``generate(m)`` for any ``m > n``, and any size streams out in bounded memory.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pandas as pd

TARGET = "is_fraud"
ID_COLUMN = "transaction_id"
BLOCK_ROWS = 65_536

MERCHANTS = ("grocery", "fuel", "restaurants", "electronics", "travel", "online_services", "jewelry", "gambling")
CHANNELS = ("pos", "contactless", "online", "atm")
CARD_TYPES = ("debit", "credit", "prepaid")
DEVICES = ("terminal", "mobile", "desktop", "tablet")
COUNTRY_RISK = ("low", "medium", "high")

NUMERIC_FEATURES = (
    "amount",
    "account_age_days",
    "customer_age",
    "credit_limit",
    "credit_score",
    "txn_count_24h",
    "avg_amount_30d",
    "distance_from_home_km",
    "hour_of_day",
    "days_since_last_txn",
    "failed_logins_7d",
    "card_present",
)
CATEGORICAL_FEATURES = ("merchant_category", "channel", "card_type", "device_type", "country_risk")
FEATURES = NUMERIC_FEATURES + CATEGORICAL_FEATURES

# Hard domain limits: values outside them are data errors and are rejected by validation.
BOUNDS: dict[str, tuple[float | None, float | None]] = {
    "amount": (0.0, None),
    "customer_age": (18.0, 110.0),
    "credit_score": (300.0, 850.0),
    "hour_of_day": (0.0, 23.0),
    "card_present": (0.0, 1.0),
}


def generate(n_rows: int, *, seed: int = 42, drifted: bool = False, with_target: bool = True) -> pd.DataFrame:
    """Return ``n_rows`` transactions: an id, the features and (optionally) the fraud label."""
    frames = list(iter_blocks(n_rows, seed=seed, drifted=drifted, with_target=with_target))
    if not frames:
        return _block(0, 0, seed=seed, drifted=drifted, with_target=with_target)
    return pd.concat(frames, ignore_index=True)


def iter_blocks(
    n_rows: int, *, seed: int = 42, drifted: bool = False, with_target: bool = True, block_rows: int = BLOCK_ROWS
) -> Iterator[pd.DataFrame]:
    """Yield the same rows as ``generate`` in frames of at most ``block_rows`` rows."""
    start = 0
    while start < n_rows:
        count = min(block_rows, n_rows - start)
        yield _block(start, count, seed=seed, drifted=drifted, with_target=with_target)
        start += count


def _block(start: int, count: int, *, seed: int, drifted: bool, with_target: bool) -> pd.DataFrame:
    # Rows come from BLOCK_ROWS-aligned seeded blocks whatever the caller's block size.
    parts = []
    position = start
    end = start + count
    while position < end:
        block = position // BLOCK_ROWS
        offset = position - block * BLOCK_ROWS
        take = min(BLOCK_ROWS - offset, end - position)
        full = _seeded_block(block, seed=seed, drifted=drifted)
        parts.append(full.iloc[offset : offset + take])
        position += take
    frame = pd.concat(parts, ignore_index=True) if parts else _seeded_block(0, seed=seed, drifted=drifted).iloc[0:0]
    if not with_target:
        frame = frame.drop(columns=[TARGET])
    return frame.reset_index(drop=True)


def _seeded_block(block: int, *, seed: int, drifted: bool) -> pd.DataFrame:
    rng = np.random.default_rng([seed, block, int(drifted)])
    n = BLOCK_ROWS
    shift = 1.0 if drifted else 0.0

    merchant = rng.choice(
        len(MERCHANTS),
        n,
        p=[0.15, 0.1, 0.15, 0.2, 0.12, 0.18, 0.05, 0.05] if drifted else [0.28, 0.14, 0.2, 0.1, 0.07, 0.13, 0.04, 0.04],
    )
    channel = rng.choice(len(CHANNELS), n, p=[0.15, 0.15, 0.62, 0.08] if drifted else [0.38, 0.27, 0.28, 0.07])
    card_type = rng.choice(len(CARD_TYPES), n, p=[0.5, 0.38, 0.12])
    device = np.where(
        channel == 2,
        rng.choice([1, 2, 3], n, p=[0.6, 0.3, 0.1]),
        np.where(channel == 3, 0, rng.choice([0, 1], n, p=[0.8, 0.2])),
    )
    country = rng.choice(len(COUNTRY_RISK), n, p=[0.78, 0.16, 0.06])

    customer_age = np.clip(rng.normal(44, 14, n), 18, 95).round()
    account_age_days = np.floor(rng.gamma(2.0, 450.0, n))
    credit_limit = np.round(rng.lognormal(8.3, 0.6, n), -2)
    credit_score = np.clip(rng.normal(690, 70, n), 300, 850).round()
    credit_score[rng.random(n) < 0.02] = np.nan  # bureau lookups sometimes fail
    merchant_scale = np.array([3.4, 3.7, 3.5, 5.0, 5.6, 3.9, 5.8, 4.2])[merchant]
    amount = np.round(rng.lognormal(merchant_scale + 0.6 * shift, 0.9), 2)
    avg_amount_30d = np.round(rng.lognormal(4.0, 0.7, n), 2)
    txn_count_24h = rng.poisson(2.5 + 1.5 * shift, n).astype(float)
    distance = np.round(rng.exponential(15.0 * (1 + 2 * shift), n), 1)
    hour = np.where(rng.random(n) < 0.12, rng.integers(0, 6, n), rng.integers(6, 24, n)).astype(float)
    days_since_last = np.round(rng.exponential(3.0, n), 2)
    failed_logins = rng.poisson(0.3, n).astype(float)
    card_present = (channel <= 1).astype(float)

    logit = (
        -5.0
        + 0.9 * (np.log(amount + 1) - np.log(avg_amount_30d + 1))
        + 1.1 * np.isin(merchant, [3, 6, 7])
        + 0.9 * (channel == 2)
        + 0.7 * (card_type == 2)
        + np.array([0.0, 0.6, 1.5])[country]
        + 0.25 * (txn_count_24h - 2.5)
        + 0.012 * np.minimum(distance, 200)
        + 0.9 * (hour < 6)
        + 0.55 * failed_logins
        - 0.5 * np.log1p(account_age_days / 365)
        - 0.004 * (np.nan_to_num(credit_score, nan=600) - 690)
        - 0.6 * card_present
        # Concept drift: in the drifted world a fraud ring works from tablets and online fraud moves
        # elsewhere, so a model trained on the clean world ranks these rows worse (its labels say so).
        + shift * (1.6 * (device == 2) - 1.0 * (channel == 2) + 0.8 * (hour >= 20))
    )
    is_fraud = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int64)

    ids = np.char.add(
        f"txn-{seed}-{'d' if drifted else 'c'}-", np.char.zfill((block * BLOCK_ROWS + np.arange(n)).astype(str), 10)
    )
    return pd.DataFrame(
        {
            ID_COLUMN: ids.astype(object),
            "amount": amount,
            "account_age_days": account_age_days,
            "customer_age": customer_age,
            "credit_limit": credit_limit,
            "credit_score": credit_score,
            "txn_count_24h": txn_count_24h,
            "avg_amount_30d": avg_amount_30d,
            "distance_from_home_km": distance,
            "hour_of_day": hour,
            "days_since_last_txn": days_since_last,
            "failed_logins_7d": failed_logins,
            "card_present": card_present,
            "merchant_category": np.asarray(MERCHANTS, dtype=object)[merchant],
            "channel": np.asarray(CHANNELS, dtype=object)[channel],
            "card_type": np.asarray(CARD_TYPES, dtype=object)[card_type],
            "device_type": np.asarray(DEVICES, dtype=object)[device],
            "country_risk": np.asarray(COUNTRY_RISK, dtype=object)[country],
            TARGET: is_fraud,
        }
    )
