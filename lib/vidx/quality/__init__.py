"""Data and result quality checks: the great-expectations publish gate (`vidx validate`, the
`validations` table), the post-publish smoke search, and retrieval evaluation against ground
truth (`vidx eval`)."""
