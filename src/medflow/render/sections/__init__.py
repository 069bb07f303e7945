"""One module per report section; each ``build(ctx, ...)`` returns the section's blocks."""
