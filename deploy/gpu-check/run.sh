#!/usr/bin/env bash
# There, on the device machine, once per carried part (README.md beside this):
# stash the part; when every part is there, unpack them and run the check,
# writing its JSON and log under $OUT.
set -euo pipefail
stash=/tmp/streamrec-gpu-parts
mkdir -p "$stash"
cp .gpu/part-* "$stash"/
have=$(ls "$stash" | wc -l) want=$(cat .gpu/count)
if [ "$have" -lt "$want" ]; then
    echo "stashed $(ls .gpu | grep part- | tr '\n' ' ')($have of $want parts): carry the next at once, the machine stays warm 30 s"
    exit 0
fi
[ -d /tmp/site ] || cat "$stash"/part-* | xz -d | tar -x -C /tmp
# libcuvs finds the CUDA libraries through an RPATH into its own site-packages; here they are PyTorch's.
nvidia=$(python3 -c 'import nvidia, pathlib; print(":".join(str(p) for p in pathlib.Path(list(nvidia.__path__)[0]).glob("*/lib")))')
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
export LD_LIBRARY_PATH=/tmp/site/librmm/lib64:/tmp/site/rapids_logger/lib64:$nvidia:${LD_LIBRARY_PATH:-}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/nvidia-smi.csv"
python3 -c 'import faiss; print("faiss", faiss.__version__, "GPUs", faiss.get_num_gpus(), "CAGRA", hasattr(faiss, "GpuIndexCagra"))'
python3 -m streamrec.cli bench gpu --out "$OUT/bench-gpu-h200.json" "$@" 2>&1 | tee "$OUT/bench-gpu.log"
