"""Types a fitted pipeline holds beyond scikit-learn's estimators, for skops.

Loading trusts exactly these, never the list a model artifact carries about itself. Kept apart
from pipeline.py so importing the list does not import scikit-learn."""

SKOPS_TRUSTED_TYPES = [
    "numpy.dtype",
    "sklearn.tree._tree.Tree",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    # HistGradientBoosting's own preprocessor for native categoricals passes numeric columns
    # through partial(check_array, ...); skops checks the partial's function on its own, so
    # this trusts check_array, not any partial.
    "functools.partial",
    "sklearn.utils.validation.check_array",
    "sklearn.compose._column_transformer._RemainderColsList",
]
