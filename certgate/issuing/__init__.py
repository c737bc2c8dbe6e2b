"""Server-side issuance for the CLI: device requests (from options or a CSV file) checked up
front, then issued in one process with one store connection and only the keys they need."""
