"""Evaluation maths on numpy arrays (no torch): metrics (shared with training), scores (input
checks, one-vs-rest), bootstrap (per-run test-set CIs), hierarchical (intervals over test
examples and seeds), intervals (t-intervals over seeds), operating_point (thresholds chosen
on validation, rates at them), calibration (Brier, ECE, temperature scaling), delong (AUC
comparison), clinical (the per-mode tables of evaluate), summary (per-class tables),
predictions (the per-example CSV)."""
