"""What the three test folders share: running the CLI (``helpers``), gloo ranks in processes
(``distributed``) and the session fixtures (``fixtures``, loaded by ``tests/conftest.py``)."""
