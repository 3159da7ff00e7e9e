"""Settings, section by section: the core's own here, each layer's in its package, composed at the entry point.

Every section reads ``SCOREPIPE_*`` variables and is a ``Section``: validated copies, the
variables to hand a child process, errors naming the variable. A layer's section inherits the
sections of the layers it builds on (``streaming.settings.StreamSettings`` is the core's and the
Kafka connection's, plus the stream's own), and the entry points compose all of them into one
object (``scorepipe.settings.Settings``), so a function annotated with a section reads only that
section's settings (mypy checks it). The core never reads ``os.environ`` itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from scoring.errors import SettingsError
from scoring.storage import Location

if TYPE_CHECKING:
    from scoring.compiled import TreeCompiler
    from scoring.drift_stats import DriftMethods
    from scoring.live_drift import LiveDrift
    from scoring.scorer import ScorerOptions

S = TypeVar("S", bound="Section")


class Section(BaseSettings):
    """What every section shares: ``SCOREPIPE_*`` variables, frozen values, secrets kept out of errors."""

    model_config = SettingsConfigDict(env_prefix="SCOREPIPE_", frozen=True, extra="ignore", hide_input_in_errors=True)

    def model_copy(self: S, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> S:
        """A copy with ``update`` applied, validated like any setting (pydantic's own copy would not check it).

        >>> CoreSettings().model_copy(update={"chunk_size": 0})
        Traceback (most recent call last):
        ...
        scoring.errors.SettingsError: invalid setting chunk_size = 0: Input should be greater than 0
        """
        if not update:
            return super().model_copy(deep=deep)
        unknown = sorted(set(update) - set(type(self).model_fields))
        if unknown:
            raise SettingsError(f"unknown setting(s): {', '.join(unknown)}")
        # Only what was set explicitly: a file named in the update (kafka_config) fills the rest.
        values = {name: getattr(self, name) for name in self.model_fields_set}
        try:
            return type(self).model_validate({**values, **update})
        except ValidationError as exc:
            raise SettingsError(describe(exc, dict(update), section=type(self))) from exc

    def as_env(self) -> dict[str, str]:
        """These settings as ``SCOREPIPE_*`` variables, to hand to a child process.

        >>> CoreSettings(chunk_size=10).as_env()["SCOREPIPE_CHUNK_SIZE"]
        '10'
        """
        prefix = self.model_config.get("env_prefix", "")
        values = {name: getattr(self, name) for name in type(self).model_fields}
        return {
            f"{prefix}{name}".upper(): value.get_secret_value() if isinstance(value, SecretStr) else str(value)
            for name, value in values.items()
            if value is not None
        }


class CoreSettings(Section):
    """The scoring core's settings: where things live, scoring, training and the quality gate.

    >>> CoreSettings(home=Path("/tmp/sp")).registry_dir
    Location('/tmp/sp/registry')
    """

    home: Path = Field(
        default=Path(".scorepipe"),
        description="Root of everything scorepipe writes (registry, demo data, results).",
    )
    registry: str | None = Field(
        default=None, description="Model registry: a folder or s3://bucket/prefix; default HOME/registry."
    )
    chunk_size: int = Field(default=100_000, gt=0, description="Rows scored per vectorized chunk.")
    min_roc_auc: float = Field(
        default=0.75, ge=0.0, le=1.0, description="Quality gate: minimum holdout ROC AUC to become champion."
    )
    reference_rows: int = Field(
        default=5_000, gt=0, description="Rows of training features kept in the bundle as drift reference."
    )
    seed: int = Field(default=42, description="Seed for synthetic data, splits and sampling.")
    small_frame_shortcut: bool = Field(
        default=True,
        description="Score frames of up to 512 rows with the verified tree shortcut (false: always sklearn).",
    )
    compiled_trees: bool = Field(
        default=True,
        description="Compile a model's trees to native code when it is registered, and score with them where "
        "they verify bit-identical to scikit-learn (false: neither).",
    )
    trees_compiler: str = Field(default="gcc", description="The C compiler that builds compiled trees.")
    trees_cache: Path | None = Field(
        default=None,
        description="Folder keeping compiled trees by content, so the same trees are compiled once; "
        "default HOME/cache/trees.",
    )
    serve_model_name: str = Field(
        default="scorepipe",
        description="The model's name: in Open Inference Protocol paths, and the Evidently project of its reports.",
    )
    live_window_rows: int = Field(
        default=5_000, gt=0, description="Rows per rolled live-window Parquet file (the stream's and the server's)."
    )
    live_window_seconds: float = Field(default=30.0, gt=0, description="Longest a live-window file stays open.")
    model_check_seconds: float = Field(
        default=1.0, gt=0, description="How often a long-running scorer checks whether its alias moved."
    )

    @field_validator("registry", mode="before")
    @classmethod
    def _location_text(cls, value: object) -> object:
        """A Path or a Location is kept as its text (``Path`` would fold ``s3://`` into ``s3:/``)."""
        return value if value is None or isinstance(value, str) else str(value)

    @property
    def registry_dir(self) -> Location:
        return Location(self.registry if self.registry is not None else self.home / "registry")

    @property
    def cache_dir(self) -> Path:
        return self.home / "cache"

    def tree_compiler(self) -> TreeCompiler | None:
        """What compiles a registered model's trees, or None when compiled trees are off."""
        if not self.compiled_trees:
            return None
        from scoring.compiled import TreeCompiler

        return TreeCompiler(toolchain=self.trees_compiler, cache=self.trees_cache or self.cache_dir / "trees")

    @property
    def scorer_options(self) -> ScorerOptions:
        from scoring.scorer import ScorerOptions

        return ScorerOptions(small_frame_shortcut=self.small_frame_shortcut, compiled_trees=self.compiled_trees)

    @property
    def live_dir(self) -> Path:
        """Where the stream appends scored features for drift reports."""
        return self.home / "live"


class DriftTestSettings(Section):
    """Which drift test judges numeric and categorical columns, and their thresholds: reports and live windows."""

    # Distances, not p-values: a p-value test flags trivial differences once windows are large, and
    # Evidently would otherwise switch methods with the data's size.
    drift_num_method: str = Field(
        default="wasserstein",
        description="Drift test for numeric columns: wasserstein, ks, psi, jensenshannon or kl_div (computed by "
        "scorepipe, equal to Evidently's); any other Evidently method is left to Evidently for every column "
        "of a report (live drift needs one of these).",
    )
    drift_cat_method: str = Field(
        default="jensenshannon",
        description="Drift test for categorical columns: jensenshannon, psi, kl_div or chisquare (computed by "
        "scorepipe); any other Evidently method is left to Evidently for every column of a report.",
    )
    drift_num_threshold: float = Field(default=0.1, description="Numeric test threshold (distance above = drift).")
    drift_cat_threshold: float = Field(default=0.1, description="Categorical test threshold (distance above = drift).")

    def drift_methods(self) -> DriftMethods:
        from scoring.drift_stats import DriftMethods

        return DriftMethods(
            self.drift_num_method, self.drift_cat_method, self.drift_num_threshold, self.drift_cat_threshold
        )


class LiveDriftSettings(DriftTestSettings):
    """Live drift of a long-running scorer (the stream, the server): its window and how often it is measured."""

    live_drift: bool = Field(
        default=True,
        description="Measure drift over the last rows scored and export it as Prometheus gauges "
        "(scorepipe_feature_drift, scorepipe_prediction_drift).",
    )
    live_drift_rows: int = Field(default=5_000, gt=0, description="Rows the live drift window holds at most.")
    live_drift_minutes: float = Field(default=15.0, gt=0, description="Age of the oldest row in the live drift window.")
    live_drift_interval_seconds: float = Field(
        default=30.0, gt=0, description="How often the live drift window is measured (off the scoring path)."
    )

    def live_drift_methods(self) -> DriftMethods:
        """The drift tests of the live window; ``SettingsError`` for one only Evidently computes (reports only)."""
        from scoring.drift_stats import CATEGORICAL_METHODS, NUMERIC_METHODS

        for kind, method, offered in (
            ("numeric", self.drift_num_method, NUMERIC_METHODS),
            ("categorical", self.drift_cat_method, CATEGORICAL_METHODS),
        ):
            if method not in offered:
                raise SettingsError(
                    f"live drift computes {', '.join(offered)} for {kind} columns, not {method!r} "
                    f"(SCOREPIPE_DRIFT_{'NUM' if kind == 'numeric' else 'CAT'}_METHOD); set "
                    "SCOREPIPE_LIVE_DRIFT=false to keep that method for reports only"
                )
        return self.drift_methods()

    def live_drift_window(self) -> LiveDrift | None:
        """The live drift window of a long-running scorer, or None when live drift is off."""
        if not self.live_drift:
            return None
        from scoring.live_drift import LiveDrift

        return LiveDrift(self.live_drift_methods(), rows=self.live_drift_rows, seconds=self.live_drift_minutes * 60)


def secret_fields(section: type[Section]) -> set[str]:
    return {name for name, field in section.model_fields.items() if "SecretStr" in str(field.annotation)}


def describe(
    exc: ValidationError, given: dict[str, Any] | None = None, *, section: type[Section], env_prefix: str = ""
) -> str:
    """Every problem of a validation error, each naming its setting (and its value, unless a secret)."""
    secrets = secret_fields(section)
    problems = []
    for error in exc.errors():
        if not error["loc"]:  # a check across settings: its message names them (the input may hold secrets)
            problems.append(f"invalid settings: {error['msg'].removeprefix('Value error, ')}")
            continue
        name = ".".join(str(part) for part in error["loc"])
        value = (given or {}).get(name, error.get("input"))
        shown = "" if name in secrets else f" = {value!r}"
        label = f"{env_prefix}{name}".upper() if env_prefix else name
        problems.append(f"invalid setting {label}{shown}: {error['msg']}")
    return "; ".join(problems)


def load(section: type[S]) -> S:
    """``section`` from ``SCOREPIPE_*`` variables; a bad value is a ``SettingsError`` naming each variable."""
    try:
        return section()
    except ValidationError as exc:
        prefix = section.model_config.get("env_prefix", "")
        raise SettingsError(describe(exc, section=section, env_prefix=prefix)) from exc
