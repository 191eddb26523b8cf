"""Types a fitted pipeline holds beyond scikit-learn's estimators, for skops.

Loading trusts exactly these, never the list a model artifact carries about itself. Kept apart
from pipeline.py so importing the list does not import scikit-learn."""

SKOPS_TRUSTED_TYPES = [
    "numpy.dtype",
    "sklearn.tree._tree.Tree",
    "sklearn.compose._column_transformer._RemainderColsList",
]
