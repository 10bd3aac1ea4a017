import os

# Tests must not depend on how many threads the machine offers, and stay polite on 2 cores.
os.environ.setdefault("OMP_NUM_THREADS", "2")
