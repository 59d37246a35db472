"""Pure builders of Amazon EMR API inputs (RunJobFlow overrides and job steps)."""
