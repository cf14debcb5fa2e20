"""Face detection, alignment and embedding with quantised TFLite models."""
