"""The bottom layer: pure Python that every other package may use (the engine and the statistics included), and
that imports none of them, nor Django, torch or any I/O."""
