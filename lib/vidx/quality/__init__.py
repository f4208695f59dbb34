"""Data and result quality checks: retrieval evaluation against ground truth (`vidx eval`)."""
