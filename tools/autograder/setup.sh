#!/usr/bin/env bash
# Gradescope runs this once when it builds the autograder image.
set -euo pipefail
apt-get update -qq && apt-get install -y -qq python3 python3-pip python3-venv > /dev/null
python3 -m venv /autograder/venv
/autograder/venv/bin/pip install -q --upgrade pip
# The CPU build of PyTorch is enough for grading and far smaller than the CUDA one.
/autograder/venv/bin/pip install -q torch --index-url https://download.pytorch.org/whl/cpu
/autograder/venv/bin/pip install -q numpy regex tqdm matplotlib pytest
# The unprivileged user the student's code runs as (grade.py also makes it if it is missing).
id hw5student > /dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin hw5student
