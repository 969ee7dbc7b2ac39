"""``gapstream bench``: end-to-end fps, latency, CPU and memory of gapstream and the alternatives.

Every measured method runs in a fresh process (``python -m gapstream.bench.worker``) so that CPU
time and peak memory belong to that method alone. One concern per module:

* ``cli``       the options of ``gapstream bench`` and the run from clips to report;
* ``plan``      the models to use (random-weight stand-ins where missing) and the rows to measure;
* ``runner``    one measurement in a worker process, and the rows' fps, latency, CPU, memory, ratios;
* ``worker``    the worker process's entry point;
* ``methods``   gapstream's measured methods: raw PyAV decode (the ceiling), the pipeline, the
  single-process stage profile (through the real post-processing functions);
* ``baselines`` the naive Keras loop of the original project (the reference) and OpenCV's HOG;
* ``clips``     the generated benchmark clips;
* ``machine``   the machine's description and CPU / memory accounting;
* ``report``    speed targets, Markdown report, README table and plots;
* ``accuracy``  INRIA test-split accuracy next to OpenCV's HOG (``benchmarks/accuracy.py``).

CPU usage is user + system CPU seconds of the whole process tree over the wall time of the
measured run (100% = one core busy); peak memory is the largest sum of the tree's PSS
(proportional set size: shared memory counted once), sampled every 0.1 s by the parent.
Modules that a worker imports (``worker``, ``methods``, ``baselines``, ``machine``) load only the
standard library at import time, so that a worker can run under another interpreter (HOG needs
OpenCV 4).
"""
