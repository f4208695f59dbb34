"""Model loading, batched encoding and clip pooling."""
