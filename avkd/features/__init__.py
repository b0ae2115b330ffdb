"""Teacher/student audio-visual feature extraction (Inception-v3 + PANNs Cnn10 or Cnn14 with SimPF)."""

import os

# Must happen before torch loads its OpenMP runtime (it reads this once). On a shared, oversubscribed
# CPU, OpenMP threads that spin while waiting made Inception-v3 5x slower (measured: 100-170 vs 19-35
# ms/frame at 128 px, 2 threads); passive waiting costs little on a quiet machine. No effect if torch
# was imported first (then set it in the environment).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
