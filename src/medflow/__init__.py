"""medflow: a Snakemake + MLflow workflow for deep learning on biomedical data."""

__version__ = "0.1.0"
