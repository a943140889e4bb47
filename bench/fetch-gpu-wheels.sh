#!/usr/bin/env bash
# Run once on a machine WITH a network, in the repository root: downloads (does not install) the
# Python 3.12 x86-64 wheels a bare GPU machine lacks for bench/gpu.sh (and the scripts it runs) into .whl/
# (git-ignored through .git/info/exclude). Versions are those the project's tests run with.
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
platforms=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux1_x86_64; do
  platforms+=(--platform "$p")
done
python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  "${platforms[@]}" -d .whl \
  open_clip_torch==3.3.0 ftfy==6.3.1 wcwidth==0.9.4 regex==2026.11.19 \
  zarr==3.1.6 numcodecs==0.16.6 donfig==0.8.1.post1 google-crc32c==1.9.0 \
  pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5 \
  faiss-cpu==1.15.1
ls -la .whl
