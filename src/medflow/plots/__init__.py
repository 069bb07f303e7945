"""Figures as ``matplotlib.figure.Figure`` objects (no pyplot): classification (confusion
matrices, ROC curves) and training (learning curves)."""
