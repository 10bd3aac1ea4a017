import os

# Tests must not depend on how many threads the machine offers, and stay polite on 2 cores.
os.environ.setdefault("OMP_NUM_THREADS", "2")
# In-process `fdpkit loso` calls would tune this process's heap for the rest of the session
# (fdpkit.allocator), and the memory tests measure with glibc's default heap.
os.environ.setdefault("FDPKIT_MALLOC", "default")
