"""Hooks for the apps above surveys: surveys sends, they connect (in their AppConfig.ready)."""
from django.dispatch import Signal

# survey_publish sends it with `survey` and `actor` (teams.actors, or None) inside its transaction, once the survey
# is LIVE: a receiver's writes commit with the publish, and a receiver that raises undoes it (results freezes the
# analysis plan here).
survey_published = Signal()
