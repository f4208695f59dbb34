"""Query side: load a published index and its query encoder, answer text/image/vector queries."""
