"""The benchmarks behind `streamrec bench`: each prints a table and ends with a JSON line."""
