"""snnctl test suite."""
