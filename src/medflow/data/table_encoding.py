"""A table's feature columns as numbers, encoded with what the train split alone shows.

Fill values for missing numbers (median or mean) and the categories of string columns are
fitted on train and applied unchanged to val and test, so the held-out splits never shape
the encoding (as with the normalisation statistics in medflow.data.format).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from medflow.errors import DataError

IMPUTE = {"impute_median": "median", "impute_mean": "mean"}  # options.missing -> statistic


@dataclass(frozen=True)
class TableEncoder:
    """Numeric columns as they are (missing cells filled), categorical columns one-hot."""

    columns: list[str]  # feature columns in file order
    fill: dict[str, float]  # numeric column -> value for its missing cells
    categories: dict[str, list[str]]  # categorical column -> categories seen in train

    @classmethod
    def fit(
        cls, train: pd.DataFrame, columns: list[str], categorical: list[str], missing: str
    ) -> TableEncoder:
        numeric = [c for c in columns if c not in categorical]
        fill: dict[str, float] = {}
        if missing in IMPUTE and numeric:
            stats = train[numeric].agg(IMPUTE[missing])  # skips missing cells
            empty = [str(c) for c in stats.index[stats.isna()]]
            if empty:
                raise DataError(
                    f"csv: options.missing: {missing} cannot fill column(s) "
                    f"{', '.join(map(repr, empty))}: no value in the train split"
                )
            fill = {str(c): float(v) for c, v in stats.items()}
        categories = {c: sorted(_as_text(train[c]).dropna().unique().tolist()) for c in categorical}
        empty = [c for c, seen in categories.items() if not seen]
        if empty:
            raise DataError(
                f"csv: options.categorical column(s) {', '.join(map(repr, empty))} have no "
                "value in the train split"
            )
        return cls(columns, fill, categories)

    @property
    def feature_names(self) -> list[str]:
        """One name per encoded feature: the column, or column=category for one-hot ones."""
        names: list[str] = []
        for column in self.columns:
            if column in self.categories:
                names += [f"{column}={category}" for category in self.categories[column]]
            else:
                names.append(column)
        return names

    def transform(self, frame: pd.DataFrame) -> tuple[np.ndarray, dict[str, list[str]]]:
        """(N, F) float32 features, and per categorical column the categories that train
        never showed (encoded as all zeros, like a missing category)."""
        blocks, unseen = [], {}
        for column in self.columns:
            if column in self.categories:
                values = _as_text(frame[column])
                known = self.categories[column]
                new = sorted(set(values.dropna()) - set(known))
                if new:
                    unseen[column] = new
                codes = pd.Categorical(values.where(values.isin(known)), categories=known)
                blocks.append(pd.get_dummies(codes).to_numpy(np.float32))
            else:
                values = frame[column].astype(np.float64)
                if column in self.fill:
                    values = values.fillna(self.fill[column])
                blocks.append(values.to_numpy(np.float32)[:, None])
        return np.concatenate(blocks, axis=1), unseen


def _as_text(column: pd.Series) -> pd.Series:
    """Category values as text, missing cells kept missing."""
    return column.where(column.isna(), column.astype(str))
