"""One training run, as ``nosync train`` makes it: its configuration (``config``), the model,
data and optimizer it builds (``build``), the strategy that wraps the loop (``strategies``), the
loop (``train``), what runs beside it (``control``: stop votes, stragglers, faults), what it
watches and records (``monitor`` over ``evaluation``, ``clocks``, ``summary`` and ``outputs``;
``metrics``, ``loggers``) and keeps (``checkpoint``, ``export``).

It uses ``core`` and ``data``; the launcher (``nosync.launch``) starts it, the tools read it.
"""
