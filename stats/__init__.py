"""The platform's statistics, as pure functions on numpy arrays: alignment shares and their intervals
(``alignment``), the exclusion rules (``exclusions``), agreement between raters (``agreement``), the split-half
ceiling (``ceiling``), adaptive collection's intervals, stopping rule, blocks, forecasts and budget planner (the
``adaptive`` package) and the people-versus-network comparison of classification surveys (``recognition``). Only numpy and scipy: no Django, no
database, no files, no network, so that the same code runs in the web process, the simulator (``bench/``) and a study
archive's ``reanalyse.py`` (which copies these modules); import-linter holds that in the suite (pyproject.toml).
"""
