"""Adaptive collection on plain arrays: the interval a condition's alignment gets under adaptive stopping
(``interval``), the stopping rule (``stopping``), the allocation of the next participant's blocks (``blocks``) and the
budget planner (``planner``, on the forecast's model in ``forecast``). numpy and scipy only: no Django, no querysets
(the sibling ``stats.alignment`` module is pure too and is imported relatively).

Vocabulary (as in ``alignment``): an answer is one participant's response to one trial (item); ``correct`` = it
chose the target; a condition is an IRI set (an int code 0..K-1 here); its alignment is the share of its answers
that chose the target. A trial list is the set of trials one participant does; its ``slots`` are its main trials.
"""
