#!/usr/bin/env bash
# Here, before a GPU session: what `streamrec bench gpu` needs on the device
# machine (Python 3.12, CUDA 13, PyTorch, no network) and lacks there, packed
# into parts small enough to carry (the device tool carries 64 MiB a call).
#
#   FAISS for CUDA 13 with cuVS (CAGRA): faiss-gpu-cu13-cuvs 1.15.0 (81 MB) needs
#   libcuvs-cu13 (222 MB), libraft-cu13, librmm-cu13 and rapids-logger; the CUDA libraries
#   they load (cuBLAS, cuSOLVER, cuSPARSE, cuRAND, NCCL, nvJitLink, NVRTC) are
#   there already, beside PyTorch. Their GPU code for seven architectures is
#   cut to the H200's sm_90 (prune_cubins.py), the rest compresses with xz.
#   streamrec's own dependencies missing there, pure Python or cp312 wheels.
#
# Writes .gpu/part-* (ignored by git) and prints their sizes. deploy/gpu-check/README.md says how to run it.
# PRUNE=0 keeps every architecture's code (about 6 parts instead of 2), should pruned libraries fail to load.
set -euo pipefail
cd "$(dirname "$0")/../.."
PART_MB=${PART_MB:-56}
out=.gpu
rm -rf "$out" && mkdir -p "$out/wheels" "$out/site"
platforms=()
for n in 39 34 28 27 24 17; do platforms+=(--platform "manylinux_2_${n}_x86_64"); done
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    "${platforms[@]}" --platform manylinux2014_x86_64 -d "$out/wheels" \
    faiss-gpu-cu13-cuvs==1.15.0 libcuvs-cu13==26.6.0 libraft-cu13==26.6.0 librmm-cu13==26.6.0 rapids-logger==0.2.3 \
    aiokafka==0.14.0 async-timeout==5.0.1 cramjam==2.14.0 python-dotenv==1.2.4 pydantic==2.14.4 \
    pydantic-core==2.50.5 pydantic-settings==2.16.3 typing-inspection==0.4.5 annotated-types==0.8.0
for wheel in "$out"/wheels/*.whl; do unzip -q -o "$wheel" -d "$out/site"; done
[ "${PRUNE:-1}" = 0 ] || python3 deploy/gpu-check/prune_cubins.py 90 $(find "$out/site" -name '*.so*' \( -path '*cuvs*' -o -path '*faiss*' -o -path '*raft*' \) -type f)
tar -C "$out" -cf - site | xz -T0 -6 | split -b "${PART_MB}M" - "$out/part-"
rm -rf "$out/site" "$out/wheels"
ls "$out"/part-* | wc -l > "$out/count"
du -b "$out"/part-* | awk '{printf "%s %.1f MiB\n", $2, $1 / 1048576; total += $1} END {printf "total %.1f MiB\n", total / 1048576}'
