"""LwM2M-over-CoAP pieces that every role shares: errors, names, registration and attribute parameters."""
