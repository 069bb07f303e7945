"""Evaluation maths on numpy arrays (no torch): metrics (shared with training), scores (input
checks, one-vs-rest), bootstrap (test-set CIs), intervals (over seeds), summary (tables),
predictions (the per-example CSV)."""
