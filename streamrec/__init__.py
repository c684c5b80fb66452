"""The top: the `streamrec` command, the demo, process wiring, the shop client
SDK (`streamrec.shop`) and the benchmarks (`streamrec.bench`).
"""
